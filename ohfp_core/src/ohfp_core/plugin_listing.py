"""``ohfp plugins``: what is installed, as JSON, without importing providers not in use."""

from __future__ import annotations

import inspect
from typing import Any

from ohfp_core import hookspecs
from ohfp_core.errors import OhfpError
from ohfp_core.plugins import (
    PLUGIN_GROUP,
    PROVIDER_GROUP,
    EntryPointInfo,
    allowed_extensions,
    choose_provider,
    entry_points_of,
    hooks_of,
    load_provider_factory,
)


def _hooks_in_module(obj: object) -> list[str]:
    """Hooks implemented by the classes (or the module) an entry point's object lives in."""
    module = inspect.getmodule(obj)
    found = set(hooks_of(obj))
    if module is not None:
        found.update(hooks_of(module))
        for _, member in inspect.getmembers(module, inspect.isclass):
            if member.__module__ == module.__name__:
                found.update(hooks_of(member))
    return sorted(found)


def _entry(info: EntryPointInfo, **extra: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "entryPoint": info.value,
        **extra,
    }


def describe_plugins(requested: str | None, include_builtin: bool = False) -> dict[str, Any]:
    """Providers (only the selected one imported, to list its hooks) and extension plugins."""
    from ohfp_core.plugins import installed

    try:
        selected: str | None = choose_provider(requested)
    except OhfpError:
        selected = None
    providers = []
    for info in installed(PROVIDER_GROUP):
        hooks = _hooks_in_module(load_provider_factory(info.name)) if info.name == selected else None
        providers.append(_entry(info, selected=info.name == selected, hooks=hooks))
    allowed = allowed_extensions()
    plugins = []
    for info in installed(PLUGIN_GROUP):
        enabled = allowed is None or info.name in allowed
        hooks = None
        if enabled:
            for ep in entry_points_of(PLUGIN_GROUP):
                if ep.name == info.name:
                    hooks = _hooks_in_module(ep.load())
        plugins.append(_entry(info, enabled=enabled, hooks=hooks))
    reply: dict[str, Any] = {"providers": providers, "plugins": plugins}
    if include_builtin:
        from ohfp_core.plugins import _CoreDefaults

        reply["builtin"] = [{"name": "ohfp-core-defaults", "hooks": hooks_of(_CoreDefaults)}]
    reply["hookspecs"] = sorted(name for name in dir(hookspecs) if name.startswith("ohfp_"))
    return reply

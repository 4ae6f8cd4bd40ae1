"""``ohfp plugins``: what is installed, as JSON, without importing providers not in use.

A hook is listed for a plugin only when pluggy would register it: an attribute marked with
``@hookimpl`` (a method named ``ohfp_…`` without the marker is not a hook). The provider
that would run — ``--provider``, then ``OHFP_PROVIDER``, then the ``provider`` setting of the
instance's ``ohfp.json``, then the only one installed — is marked ``selected`` and is the only
provider imported, to list its hooks from the class its factory returns.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pluggy

from ohfp_core import hookspecs
from ohfp_core.errors import OhfpError
from ohfp_core.plugins import (
    PLUGIN_GROUP,
    PROVIDER_GROUP,
    EntryPointInfo,
    allowed_extensions,
    choose_provider,
    entry_points_of,
    load_provider_factory,
)


def marked_hooks(obj: object) -> list[str]:
    """The ohfp hooks ``obj`` (a module, class or instance) implements with ``@hookimpl``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    return sorted(
        name
        for name in dir(obj)
        if name.startswith("ohfp_") and pm.parse_hookimpl_opts(obj, name) is not None
    )


def _provider_hooks(factory: object) -> list[str]:
    """Hooks of the object a provider factory returns: the class its return annotation
    names, else every class of the factory's module that has marked hooks."""
    try:
        returned = typing.get_type_hints(factory).get("return")
    except Exception:  # an annotation that does not resolve: fall back to the module
        returned = None
    if inspect.isclass(returned):
        return marked_hooks(returned)
    found = set(marked_hooks(factory))
    module = inspect.getmodule(factory)
    if module is not None:
        found.update(marked_hooks(module))
        for _, member in inspect.getmembers(module, inspect.isclass):
            if member.__module__ == module.__name__:
                found.update(marked_hooks(member))
    return sorted(found)


def _entry(info: EntryPointInfo, **extra: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "entryPoint": info.value,
        **extra,
    }


def _setting() -> str | None:
    """The ``provider`` setting of the instance's ``ohfp.json``, if it can be read."""
    from ohfp_core import config

    try:
        return config.load_settings(config.resolve_paths().confdir, ()).provider
    except OhfpError:
        return None


def describe_plugins(requested: str | None, include_builtin: bool = False) -> dict[str, Any]:
    """Providers (only the selected one imported, to list its hooks) and extension plugins."""
    from ohfp_core.plugins import installed

    try:
        selected: str | None = choose_provider(requested, _setting())
    except OhfpError:
        selected = None
    providers = []
    for info in installed(PROVIDER_GROUP):
        hooks = _provider_hooks(load_provider_factory(info.name)) if info.name == selected else None
        providers.append(_entry(info, selected=info.name == selected, hooks=hooks))
    allowed = allowed_extensions()
    plugins = []
    for info in installed(PLUGIN_GROUP):
        enabled = allowed is None or info.name in allowed
        hooks = None
        if enabled:
            for ep in entry_points_of(PLUGIN_GROUP):
                if ep.name == info.name:
                    hooks = marked_hooks(ep.load())
        plugins.append(_entry(info, enabled=enabled, hooks=hooks))
    reply: dict[str, Any] = {"providers": providers, "plugins": plugins}
    if include_builtin:
        from ohfp_core.plugins import _CoreDefaults

        reply["builtin"] = [{"name": "ohfp-core-defaults", "hooks": marked_hooks(_CoreDefaults)}]
    reply["hookspecs"] = sorted(name for name in dir(hookspecs) if name.startswith("ohfp_"))
    return reply

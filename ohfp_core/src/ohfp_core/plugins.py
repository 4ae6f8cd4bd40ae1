"""Finding, loading and calling plugins.

Two entry-point groups:

- ``ohfp.providers``: one entry point per provider *type* (``aws``, ``mock`` …). Its object
  is a factory ``(ProviderContext) -> plugin`` returning an object whose methods are
  hookimpls. Exactly one provider is loaded per process.
- ``ohfp.plugins``: extension plugins (modules or objects with hookimpls), all loaded
  unless ``OHFP_LOAD_PLUGINS`` restricts them: unset loads all, an empty value loads none,
  ``a,b`` loads only the entry points named ``a`` and ``b``.

:class:`Hooks` is the only way the rest of core calls hooks: one typed method per hook.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import attrs
import pluggy

from ohfp_core import hookimpl, hookspecs
from ohfp_core.environment import environ as current_environ
from ohfp_core.errors import ConfigError, OhfpError
from ohfp_core.models import (
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    Problem,
    ProviderContext,
    Provisioned,
    Reclaim,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_core.storage import StorageFactory

PROVIDER_GROUP = "ohfp.providers"
PLUGIN_GROUP = "ohfp.plugins"
LOAD_PLUGINS_ENV = "OHFP_LOAD_PLUGINS"
PROVIDER_ENV = "OHFP_PROVIDER"

ProviderFactory = Callable[[ProviderContext], object]


@attrs.frozen
class EntryPointInfo:
    """An installed entry point, described without importing it."""

    name: str
    group: str
    value: str
    distribution: str | None
    version: str | None


@functools.cache
def entry_points_of(group: str) -> tuple[metadata.EntryPoint, ...]:
    """The entry points of ``group``: one scan per group and process (a scan reads every
    installed distribution's metadata, and each HF call is a new process)."""
    return tuple(metadata.entry_points(group=group))


def names_of(group: str) -> list[str]:
    """Entry-point names of ``group``, sorted. Reads no distribution versions."""
    return sorted({ep.name for ep in entry_points_of(group)})


def installed(group: str) -> list[EntryPointInfo]:
    """Entry points of ``group`` with their distributions, sorted by name. Imports nothing."""
    found: dict[str, EntryPointInfo] = {}
    for ep in entry_points_of(group):
        dist = ep.dist
        found.setdefault(
            ep.name,
            EntryPointInfo(
                name=ep.name,
                group=group,
                value=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            ),
        )
    return [found[name] for name in sorted(found)]


def choose_provider(requested: str | None, setting: str | None = None) -> str:
    """The provider type to load: ``requested`` (``--provider``), then ``OHFP_PROVIDER``, then
    ``setting`` (ohfp.json), then the only one installed.

    :raises ConfigError: when the choice is not installed or is ambiguous; the message lists
        what is installed.
    """
    names = names_of(PROVIDER_GROUP)
    choice = requested or current_environ().get(PROVIDER_ENV) or setting
    listing = ", ".join(names) if names else "none"
    if choice:
        if choice not in names:
            raise ConfigError(
                f"provider {choice!r} is not installed (installed providers: {listing}); "
                f"pip install the package that provides it, or choose another with --provider"
            )
        return choice
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError("no provider is installed: pip install ohfp-mock, ohfp-aws or another provider")
    raise ConfigError(
        f"several providers are installed ({listing}): choose one with --provider, "
        f"{PROVIDER_ENV} or the 'provider' setting"
    )


def load_provider_factory(provider_type: str) -> ProviderFactory:
    """Import the factory behind the ``ohfp.providers`` entry point ``provider_type``."""
    for ep in entry_points_of(PROVIDER_GROUP):
        if ep.name != provider_type:
            continue
        factory = ep.load()
        if not callable(factory):
            raise ConfigError(f"provider entry point {provider_type!r} ({ep.value}) is not callable")
        return factory  # type: ignore[no-any-return]
    raise ConfigError(f"provider {provider_type!r} is not installed")


def allowed_extensions(environ: Mapping[str, str] | None = None) -> set[str] | None:
    """The extension entry-point names ``OHFP_LOAD_PLUGINS`` allows; None means all."""
    env = current_environ() if environ is None else environ
    value = env.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


class _CoreDefaults:
    """Core's own fallbacks, registered last so any provider answer wins."""

    @hookimpl(trylast=True)
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        return templates

    @hookimpl(trylast=True)
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        return ()

    @hookimpl
    def ohfp_register_storage(self, register: Callable[[str, StorageFactory], None]) -> None:
        from ohfp_core.storage_backends import backend_factory

        register(
            "sqlite",
            backend_factory("sqlite", "ohfp_core.sqlite:open_sqlite", "ohfp_core.sqlite:SQLiteSettings"),
        )


def make_manager(
    provider: object | None = None,
    *,
    provider_name: str = "provider",
    extensions: Iterable[tuple[str, object]] = (),
    load_entry_points: bool = False,
) -> pluggy.PluginManager:
    """Build a plugin manager in a fixed order.

    Specs → the provider → extensions given → (optionally) extension entry points allowed
    by ``OHFP_LOAD_PLUGINS`` → core defaults → ``check_pending()``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if provider is not None:
        pm.register(provider, name=f"provider:{provider_name}")
    for name, plugin in extensions:
        pm.register(plugin, name=name)
    if load_entry_points:
        allowed = allowed_extensions()
        for ep in entry_points_of(PLUGIN_GROUP):
            if allowed is not None and ep.name not in allowed:
                continue
            if pm.get_plugin(ep.name) is None:
                pm.register(ep.load(), name=ep.name)
    pm.register(_CoreDefaults(), name="ohfp-core-defaults")
    pm.check_pending()
    return pm


class ProviderMissingHook(OhfpError):
    """The provider does not implement a hook core needs."""


class Hooks:
    """Typed access to every hook. Core never touches ``pm.hook`` elsewhere."""

    def __init__(self, pm: pluggy.PluginManager, provider_type: str = "provider") -> None:
        self.pm = pm
        self.provider_type = provider_type

    def _first(self, result: Any, hook: str) -> Any:
        if result is None:
            raise ProviderMissingHook(f"provider {self.provider_type!r} does not implement {hook}")
        return result

    # provider hooks -------------------------------------------------------------------
    def available_templates(self, templates: Sequence[Template]) -> list[Template]:
        return list(self.pm.hook.ohfp_available_templates(templates=tuple(templates)))

    def provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        result = self.pm.hook.ohfp_provision(request_id=request_id, template=template, count=count)
        return self._first(result, "ohfp_provision")  # type: ignore[no-any-return]

    def machine_status(self, requests: Sequence[CloudRequest]) -> dict[str, RequestSnapshot]:
        if not requests:
            return {}
        result = self.pm.hook.ohfp_machine_status(requests=tuple(requests))
        return dict(self._first(result, "ohfp_machine_status"))

    def terminate_machines(self, machines: Sequence[ReturnItem]) -> dict[str, str]:
        if not machines:
            return {}
        result = self.pm.hook.ohfp_terminate_machines(machines=tuple(machines))
        return dict(self._first(result, "ohfp_terminate_machines"))

    def cancel_request(self, request: CloudRequest) -> bool:
        """True when the provider removed everything made for ``request``; False when it
        does not implement cancelling (core then terminates the machines it can find)."""
        return bool(self.pm.hook.ohfp_cancel_request(request=request))

    def request_details(self, request: CloudRequest) -> dict[str, Any]:
        """The provider's explanation of a request (empty when it has none)."""
        return dict(self.pm.hook.ohfp_request_details(request=request) or {})

    def reclaimed_machines(self, machines: Sequence[MachineRef]) -> list[Reclaim]:
        if not machines:
            return []
        return list(self.pm.hook.ohfp_reclaimed_machines(machines=tuple(machines)))

    # extension hooks ------------------------------------------------------------------
    def configure(self, context: ProviderContext, settings: Mapping[str, Mapping[str, Any]]) -> None:
        """Hand every plugin but the provider its context and ``ohfp.json``'s sections."""
        provider = self.pm.get_plugin(f"provider:{self.provider_type}")
        caller = self.pm.subset_hook_caller("ohfp_configure", [provider] if provider is not None else [])
        caller(context=context, settings=settings)

    def call_started(self, timeout_sec: float) -> None:
        self.pm.hook.ohfp_call_started(timeout_sec=timeout_sec)

    def wait_for_events(self, seconds: float) -> None:
        self.pm.hook.ohfp_wait_for_events(seconds=seconds)

    def validate_template(self, template: Template) -> list[Problem]:
        results = self.pm.hook.ohfp_validate_template(template=template)
        return [problem for result in results if result for problem in result]

    def validate_templates_online(self, templates: Sequence[Template]) -> dict[str, list[Problem]] | None:
        """Problems per template id from every plugin with online checks; None when no
        plugin has any."""
        results = self.pm.hook.ohfp_validate_templates_online(templates=tuple(templates))
        if not results:
            return None
        found: dict[str, list[Problem]] = {}
        for result in results:
            for template_id, problems in result.items():
                found.setdefault(template_id, []).extend(problems)
        return found

    def health_check(self) -> list[HealthCheck]:
        results = self.pm.hook.ohfp_health_check()
        return [check for result in results if result for check in result]

    def storage_factories(self) -> dict[str, StorageFactory]:
        factories: dict[str, StorageFactory] = {}

        def register(name: str, factory: StorageFactory) -> None:
            factories.setdefault(name, factory)

        self.pm.hook.ohfp_register_storage(register=register)
        return factories

    # lifecycle events -------------------------------------------------------------------
    def request_submitted(self, request: CloudRequest) -> None:
        self.pm.hook.ohfp_request_submitted(request=request)

    def machines_ready(self, request: CloudRequest, machines: Sequence[Machine]) -> None:
        if machines:
            self.pm.hook.ohfp_machines_ready(request=request, machines=tuple(machines))

    def machines_returned(self, request: CloudRequest, machines: Sequence[Machine]) -> None:
        if machines:
            self.pm.hook.ohfp_machines_returned(request=request, machines=tuple(machines))

    def machines_reclaimed(self, reclaims: Sequence[Reclaim]) -> None:
        if reclaims:
            self.pm.hook.ohfp_machines_reclaimed(reclaims=tuple(reclaims))


def build_provider(factory: ProviderFactory, context: ProviderContext) -> object:
    """Call a provider factory, turning its configuration complaints into ConfigError."""
    try:
        return factory(context)
    except OhfpError:
        raise
    except ValueError as exc:  # a factory's way to say "bad config"; anything else is a bug
        raise ConfigError(f"provider {context.provider_type!r} rejected its configuration: {exc}") from exc


def load_hooks(context: ProviderContext, settings: Mapping[str, Mapping[str, Any]] | None = None) -> Hooks:
    """Load the provider named in ``context`` and the allowed extension plugins, then
    configure the extensions with ``settings`` (``ohfp.json``'s sections by name)."""
    factory = load_provider_factory(context.provider_type)
    provider = build_provider(factory, context)
    pm = make_manager(provider, provider_name=context.provider_type, load_entry_points=True)
    from ohfp_core import logs

    if logs.enabled("debug"):
        trace_hook_calls(pm)
    hooks = Hooks(pm, context.provider_type)
    hooks.configure(context, settings or {})
    return hooks


def trace_hook_calls(pm: pluggy.PluginManager) -> None:
    """Log one DEBUG line per hook call: the hook, the plugins that implement it (in call
    order), how long the call took and whether it raised. Core's own defaults are left out."""
    import threading
    import time

    from ohfp_core.logs import get_logger

    log = get_logger("ohfp.hooks")
    local = threading.local()  # calls nest (a wrapper calling another hook) and run in threads

    def before(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        local.__dict__.setdefault("started", []).append(time.perf_counter())

    def after(outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        seconds = time.perf_counter() - local.started.pop()
        plugins = [
            impl.plugin_name for impl in reversed(hook_impls) if impl.plugin_name != "ohfp-core-defaults"
        ]
        error = outcome.exception
        log.debug(
            "hook call",
            hook=hook_name,
            plugins=plugins,
            duration_ms=round(seconds * 1000, 2),
            raised=type(error).__name__ if error is not None else None,
        )

    pm.add_hookcall_monitoring(before, after)

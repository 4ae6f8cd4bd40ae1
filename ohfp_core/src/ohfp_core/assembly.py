"""One provider instance put together from the call's environment: its context and
settings, its plugins, its state store and the :class:`~ohfp_core.operations.Operations`
that answer Host Factory.

Each ``ohfp`` command builds what it needs once per process; the resident service
(:mod:`ohfp_core.serve`) builds the same once per instance and keeps it warm. Both log as
``log(logdir, instance, level)`` says: the command configures its process, the service
routes the call's thread. Heavy modules are imported here only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ohfp_core.config import Settings
    from ohfp_core.deadline import Deadline
    from ohfp_core.models import ProviderContext
    from ohfp_core.operations import Operations
    from ohfp_core.plugins import Hooks
    from ohfp_core.storage import Storage

LogSetup = Callable[[Path | None, str, str], None]
"""``log(logdir, instance, level)``: where the instance's lines go from now on."""


def configure_process_logging(logdir: Path | None, instance: str, level: str) -> None:
    """The command's :data:`LogSetup`: the whole process logs to the instance's file."""
    from ohfp_core.logs import configure_logging

    configure_logging(logdir=logdir, instance=instance, level=level)


def early_logging(provider: str | None = None, log: LogSetup = configure_process_logging) -> None:
    """Log to the instance's log file from the start, so failures before the settings are
    read (an unreadable input, a bad ohfp.json, a missing work directory) reach it too; the
    settings then set the level. The file is named as it will be once the call runs
    (:func:`ohfp_core.config.instance_name`); only when no provider can be chosen at all is it
    ``ohfp-ohfp.log``. Quiet when the environment names no usable log file."""
    from ohfp_core import config
    from ohfp_core.environment import environ
    from ohfp_core.errors import OhfpError
    from ohfp_core.plugins import choose_provider

    try:
        paths = config.resolve_paths()
        try:
            instance = paths.instance or choose_provider(provider, config.provider_setting(paths.confdir))
        except OhfpError:
            instance = "ohfp"
        level = environ().get("OHFP_LOG_LEVEL", "").strip().upper() or "INFO"
        log(paths.logdir, instance, level if level in config.LOG_LEVELS else "INFO")
    except OhfpError:
        return


def context(
    provider: str | None, log: LogSetup = configure_process_logging
) -> tuple[ProviderContext, Settings]:
    """The instance's context and ohfp's settings (from :func:`ohfp_core.environment.environ`);
    sets up logging with ``log``.

    :raises ConfigError: for invalid settings, provider choice or provider config.
    """
    from ohfp_core import config
    from ohfp_core.plugins import PLUGIN_GROUP, PROVIDER_GROUP, choose_provider, names_of

    paths = config.resolve_paths()
    named = (*names_of(PROVIDER_GROUP), *names_of(PLUGIN_GROUP), "sqlite", "serve")
    settings = config.load_settings(paths.confdir, named)
    provider_type = choose_provider(provider, settings.provider)
    found = config.provider_context(provider_type, paths, settings)
    log(found.logdir, found.instance, config.log_level(settings, found.config))
    return found, settings


def operations(
    provider: str | None,
    log: LogSetup = configure_process_logging,
    begun_sec: float = 0.0,
    watch: Callable[[Deadline], None] | None = None,
) -> Operations:
    """The instance's :class:`~ohfp_core.operations.Operations`: context, plugins, store.

    The store opens within the deadline of a call begun ``begun_sec`` ago (the first call's;
    each call then brings its own), which ``watch`` gets before anything waits on it.
    """
    from ohfp_core.deadline import call_deadline
    from ohfp_core.operations import Operations
    from ohfp_core.plugins import load_hooks

    found, settings = context(provider, log)
    deadline = call_deadline(found.timeout_sec, begun_sec)
    if watch is not None:
        watch(deadline)
    hooks = load_hooks(found, settings.sections)
    return Operations(hooks, open_store(hooks, found, settings, deadline=deadline), found, deadline=deadline)


def open_store(
    hooks: Hooks,
    context: ProviderContext,
    settings: Settings,
    name: str | None = None,
    deadline: Deadline | None = None,
) -> Storage:
    """The store ``name`` names (default: the ``storage`` setting; else ``--to`` of a
    migration), opened for ``context`` with its own section of ``ohfp.json``, within
    ``deadline`` (default: a call's, from now)."""
    from ohfp_core.deadline import call_deadline
    from ohfp_core.storage import StorageContext
    from ohfp_core.storage_backends import open_backend

    store_context = StorageContext(
        instance=context.instance,
        workdir=context.workdir,
        settings=settings.section(name or settings.storage),
        timeout_sec=context.timeout_sec,
        deadline=deadline or call_deadline(context.timeout_sec),
    )
    if name is None:
        return open_backend(hooks.storage_factories(), settings.storage, store_context)
    return open_backend(hooks.storage_factories(), name, store_context, setting="--to")

"""Storage backends by name: registering one from a plugin, opening the one the settings choose.

A backend package's entry point module needs one line::

    ohfp_register_storage = backend(
        "postgresql", "ohfp_postgresql.store:open_store", "ohfp_postgresql.settings:PostgresSettings"
    )

Nothing of the backend is imported until the ``storage`` setting chooses it: the factory
imports its settings class and its store when a store is opened, reads the backend's
section of ``ohfp.json`` (errors name the field, ``$.postgresql.schema``) and calls the
store's opener with the settings and the :class:`~ohfp_core.storage.StorageContext`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ohfp_core import hookimpl
from ohfp_core.errors import ConfigError
from ohfp_core.files import private_dir
from ohfp_core.storage import Storage, StorageContext, StorageFactory
from ohfp_core.store_log import LoggedStore

T = TypeVar("T")
Register = Callable[[str, StorageFactory], None]


def _load(path: str) -> Any:
    """The object ``"module:attribute"`` names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def backend_factory(name: str, opener: str, settings: str) -> StorageFactory:
    """A factory that reads section ``name`` as the class ``settings`` names and passes it,
    with the context, to the function ``opener`` names (both ``"module:attribute"``)."""

    def factory(context: StorageContext) -> Storage:
        section = read_section(name, _load(settings), context.settings)
        store: Storage = _load(opener)(section, context)
        return store

    factory.__qualname__ = factory.__name__ = f"open_{name}"
    return factory


def backend(name: str, opener: str, settings: str) -> Callable[[Register], None]:
    """An ``ohfp_register_storage`` hook implementation registering backend ``name``
    (see :func:`backend_factory`); assign it to that name in a plugin module."""

    @hookimpl
    def ohfp_register_storage(register: Register) -> None:
        register(name, backend_factory(name, opener, settings))

    return ohfp_register_storage


def read_section(name: str, cls: type[T], section: Mapping[str, Any]) -> T:
    """A backend's ``ohfp.json`` section (``"postgresql": {…}``) as its settings class ``cls``.

    :raises ConfigError: naming every bad key as ``$.<name>.<key>: message``.
    """
    from ohfp_core.parsing import config_converter, structure

    return structure(
        dict(section),
        cls,
        converter=config_converter(),
        error=ConfigError,
        message=f"invalid settings file: section {name!r}",
        path=f"$.{name}",
    )


def open_backend(
    factories: Mapping[str, StorageFactory], name: str, context: StorageContext, setting: str = "$.storage"
) -> Storage:
    """Open the backend registered as ``name`` (``setting`` says where the name came from:
    the ``storage`` setting, or ``--to`` of a migration). The work directory is made
    owner-only first, whatever the umask and whichever backend keeps the state: it holds
    the provider's and the call's files too (:func:`ohfp_core.files.private_dir`).

    The store's commits are logged at DEBUG (:class:`ohfp_core.store_log.LoggedStore`).

    :raises ConfigError: when no plugin registers ``name``, listing those that do.
    """
    if name not in factories:
        registered = ", ".join(sorted(factories))
        raise ConfigError(
            f"storage backend {name!r} is not registered (registered: {registered})",
            [f"{setting}: choose one of {registered}, or pip install the package providing it (ohfp-{name})"],
        )
    private_dir(context.workdir)
    return LoggedStore(factories[name](context), name)

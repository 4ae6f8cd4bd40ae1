"""The ``ohfp.plugins`` entry point ``postgresql``: registers the ``postgresql`` storage backend.

Loaded by every ohfp process that has the package installed, so it imports nothing but
core's hook marker; psycopg comes with the store, when the ``storage`` setting chooses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ohfp_core import hookimpl

if TYPE_CHECKING:
    from ohfp_core.storage import Storage, StorageContext, StorageFactory

NAME = "postgresql"


def open_postgresql(context: StorageContext) -> Storage:
    """The ``postgresql`` storage factory (see :func:`ohfp_postgresql.store.open_store`)."""
    from ohfp_postgresql.store import open_store

    return open_store(context)


@hookimpl
def ohfp_register_storage(register: Callable[[str, StorageFactory], None]) -> None:
    register(NAME, open_postgresql)

"""The ``ohfp.plugins`` entry point ``dynamodb``: registers the ``dynamodb`` storage backend.

Loaded by every ohfp process that has the package installed, so it imports nothing but
core's hook marker; botocore comes with the store, when the ``storage`` setting chooses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ohfp_core import hookimpl

if TYPE_CHECKING:
    from ohfp_core.storage import Storage, StorageContext, StorageFactory

NAME = "dynamodb"


def open_dynamodb(context: StorageContext) -> Storage:
    """The ``dynamodb`` storage factory (see :func:`ohfp_dynamodb.store.open_store`)."""
    from ohfp_dynamodb.store import open_store

    return open_store(context)


@hookimpl
def ohfp_register_storage(register: Callable[[str, StorageFactory], None]) -> None:
    register(NAME, open_dynamodb)

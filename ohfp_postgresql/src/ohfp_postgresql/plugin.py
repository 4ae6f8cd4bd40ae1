"""The ``ohfp.plugins`` entry point ``postgresql``: registers the ``postgresql`` storage backend.

Loaded by every ohfp process that has the package installed, so it imports nothing of its
own: psycopg comes with the store, when the ``storage`` setting chooses it.
"""

from __future__ import annotations

from ohfp_core.storage_backends import backend

ohfp_register_storage = backend(
    "postgresql", "ohfp_postgresql.store:open_store", "ohfp_postgresql.settings:PostgresSettings"
)

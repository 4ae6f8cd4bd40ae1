"""The ``ohfp.plugins`` entry point ``dynamodb``: registers the ``dynamodb`` storage backend.

Loaded by every ohfp process that has the package installed, so it imports nothing of its
own: botocore comes with the store, when the ``storage`` setting chooses it.
"""

from __future__ import annotations

from ohfp_core.storage_backends import backend

ohfp_register_storage = backend(
    "dynamodb", "ohfp_dynamodb.store:open_store", "ohfp_dynamodb.settings:DynamoSettings"
)

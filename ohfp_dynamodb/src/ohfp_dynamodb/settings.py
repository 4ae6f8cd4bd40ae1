"""The ``dynamodb`` section of ``ohfp.json``."""

from __future__ import annotations

import re

from attrs import field, frozen

from ohfp_core.parsing import between, matching, rule
from ohfp_core.parsing import key as setting_key

TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


@frozen(kw_only=True)
class DynamoSettings:
    """Where the store lives and how writes wait for each other.

    ``table``: the table's name (one per provider instance). ``region``: else ``AWS_REGION``,
    else ``AWS_DEFAULT_REGION`` or the AWS config file. ``endpointUrl``: else
    ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL`` (a local DynamoDB, a VPC endpoint).
    ``createTable``: create the table on first use (else ``ohfp-dynamodb create-table``).
    ``lockLeaseSeconds``: how long a write lock of a call that died blocks the others (a
    live writer renews it).
    ``lockTimeout``: seconds a write waits for another call's write. ``callLeaseSeconds``:
    how long after a call dies its requests' leases lapse, for any host to reconcile them
    (renewed every third of it while the call runs). Credentials come the standard AWS way
    (environment, shared files, instance role).
    """

    table: str = field(validator=rule(matching(TABLE_RE, "3 to 255 characters of [A-Za-z0-9_.-]")))
    region: str | None = None
    endpoint_url: str | None = field(default=None, metadata=setting_key("endpointUrl"))
    create_table: bool = field(default=False, metadata=setting_key("createTable"))
    lock_lease_seconds: float = field(
        default=5.0, metadata=setting_key("lockLeaseSeconds"), validator=rule(between(1, 600))
    )
    lock_timeout: float = field(
        default=30.0, metadata=setting_key("lockTimeout"), validator=rule(between(1, 3600))
    )
    call_lease_seconds: float = field(
        default=10.0, metadata=setting_key("callLeaseSeconds"), validator=rule(between(2, 600))
    )

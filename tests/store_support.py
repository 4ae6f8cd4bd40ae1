"""What a store written by ohfp 0.2 holds in the migration tests, and the check that all of it
is still there once this ohfp has opened (and migrated) the store; the settings of the
shared stores for tests that run the ``ohfp`` command."""

from __future__ import annotations

from typing import Any

from ohfp_core.models import RequestKind
from ohfp_core.sql_schema import SCHEMA_VERSION
from ohfp_core.storage import RequestRecord, Storage, StoredValue
from ohfp_core.storage_contract import full_machine, full_request, mrec
from testbeds.dynamodb import REGION, SerialMotoServer, new_table
from testbeds.postgresql import PostgresServer

UNDELIVERED = RequestRecord(request_id="req-dead", kind=RequestKind.ACQUIRE, template_id="t", created_at=3)
REQUESTS = [full_request(), UNDELIVERED]
MACHINES = [
    full_machine(),
    mrec("i-2", "req-dead", template_id="t"),
    mrec("i-1", "req-dead", template_id="t"),
]
VALUES = [StoredValue(key="aws:k", value={"a": [1, None]}, expires_at=9)]


def assert_nothing_lost(store: Storage) -> None:
    """Every record of :data:`REQUESTS`, :data:`MACHINES` and :data:`VALUES` reads back as it
    was written, through every kind of lookup, a new machine goes after them, and the store
    checks out at the current schema version."""
    assert list(store.iter_requests()) == sorted(REQUESTS, key=lambda r: r.created_at)
    assert list(store.iter_machines()) == MACHINES
    assert list(store.iter_values()) == VALUES
    assert store.undelivered_requests() == [UNDELIVERED]
    assert [m.machine_id for m in store.held_machines("t")] == ["i-2", "i-1"]
    store.put_machines([mrec("i-3", "req-dead", template_id="t")])
    assert [m.machine_id for m in store.machines_of(["req-dead"])["req-dead"]] == ["i-2", "i-1", "i-3"]
    report = store.check()
    assert report["ok"] is True and report["schemaVersion"] == SCHEMA_VERSION, report


def shared_sections(postgres: PostgresServer, dynamo: SerialMotoServer, label: str) -> dict[str, Any]:
    """``ohfp.json`` sections of a fresh PostgreSQL schema and a fresh DynamoDB table."""
    return {
        "postgresql": {"dsn": postgres.dsn, "schema": postgres.new_schema(label)},
        "dynamodb": {"table": new_table(label), "region": REGION, "endpointUrl": dynamo.endpoint,
                     "createTable": True},
    }  # fmt: skip

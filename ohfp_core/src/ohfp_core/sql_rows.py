"""One row spelling of the records for SQL backends (SQLite, PostgreSQL).

Requests and machines are rows of the columns below, in that order; mappings, lists and the
machine are JSON text (:func:`ohfp_core.storage.dumps`), ``delivered`` a boolean (SQLite
stores it as 1 or 0).
"""

from __future__ import annotations

import json
from typing import Any

from ohfp_core.models import MachineResult, RequestKind, RequestStatus
from ohfp_core.storage import MachineRecord, RequestRecord, dumps, machine_from_doc, machine_to_doc

REQUEST_FIELDS = (
    "request_id", "kind", "status", "template_id", "machine_count", "handle", "machine_ids", "errors",
    "message", "created_at", "updated_at", "delivered", "owner",
)  # fmt: skip
MACHINE_FIELDS = (
    "machine_id", "request_id", "template_id", "name", "result", "return_request_id", "reclaimed_at",
    "updated_at", "machine",
)  # fmt: skip
REQUEST_COLUMNS = ", ".join(REQUEST_FIELDS)
MACHINE_COLUMNS = ", ".join(MACHINE_FIELDS)


def request_row(record: RequestRecord) -> tuple[Any, ...]:
    return (
        record.request_id,
        record.kind.value,
        record.status.value,
        record.template_id,
        record.machine_count,
        None if record.handle is None else dumps(dict(record.handle)),
        dumps(list(record.machine_ids)),
        dumps(dict(record.errors)),
        record.message,
        record.created_at,
        record.updated_at,
        record.delivered,
        record.owner,
    )


def request_from_row(row: tuple[Any, ...]) -> RequestRecord:
    handle = row[5]
    return RequestRecord(
        request_id=row[0],
        kind=RequestKind(row[1]),
        status=RequestStatus(row[2]),
        template_id=row[3],
        machine_count=row[4],
        handle=None if handle is None else json.loads(handle),
        machine_ids=tuple(json.loads(row[6])),
        errors=json.loads(row[7]),
        message=row[8],
        created_at=row[9],
        updated_at=row[10],
        delivered=bool(row[11]),
        owner=row[12],
    )


def machine_row(record: MachineRecord) -> tuple[Any, ...]:
    return (
        record.machine_id,
        record.request_id,
        record.template_id,
        record.name,
        record.result.value,
        record.return_request_id,
        record.reclaimed_at,
        record.updated_at,
        dumps(machine_to_doc(record.machine)),
    )


def machine_from_row(row: tuple[Any, ...]) -> MachineRecord:
    return MachineRecord(
        machine=machine_from_doc(json.loads(row[8])),
        request_id=row[1],
        template_id=row[2],
        result=MachineResult(row[4]),
        return_request_id=row[5],
        reclaimed_at=row[6],
        updated_at=row[7],
    )

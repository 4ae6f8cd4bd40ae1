"""Requests as an administrator reads them: ``ohfp requests show`` and ``ohfp requests list``.

Pure functions from the JSON documents the commands build (:meth:`Operations.show_request`,
:func:`list_entry`) to text: times as ISO 8601 dates in UTC, a line per machine, the
provider's explanation indented under its keys. ``--json`` prints the documents instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ohfp_core.storage import RequestRecord


def iso(stamp: int | None) -> str:
    """Seconds since the epoch as ``2026-12-07T02:44:40Z``; ``-`` for none."""
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def list_entry(record: RequestRecord) -> dict[str, Any]:
    """One request of ``ohfp requests list --json``."""
    return {
        "requestId": record.request_id,
        "kind": record.kind.value,
        "status": record.status.value,
        "templateId": record.template_id,
        "machineCount": record.machine_count if record.kind.value == "acquire" else len(record.machine_ids),
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
        "message": record.message,
    }


def requests_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """The requests of ``ohfp requests list``, one aligned line each, newest first."""
    if not entries:
        return "no requests\n"
    header = ("REQUEST", "KIND", "STATUS", "TEMPLATE", "MACHINES", "CREATED", "MESSAGE")
    rows = [
        (
            e["requestId"],
            e["kind"],
            e["status"],
            e["templateId"] or "-",
            str(e["machineCount"]),
            e["createdAt"],
            _one_line(e["message"]),
        )
        for e in entries
    ]
    return _table(header, rows)


def request_text(shown: Mapping[str, Any]) -> str:
    """One request of ``ohfp requests show``: its record, machines and the provider's
    explanation (``details``), as built by :meth:`~ohfp_core.operations.Operations.show_request`."""
    request = shown["request"]
    kind = request["kind"]
    lines = [
        f"{request['request_id']}  {request['status']}  ({kind} request)",
        f"  template:  {request['template_id'] or '-'}",
    ]
    if kind == "acquire":
        lines.append(f"  asked for: {request['machine_count']} machine(s) or units")
    else:
        lines.append(f"  returns:   {len(request['machine_ids'])} machine(s)")
    lines += [
        f"  created:   {iso(request['created_at'])}",
        f"  updated:   {iso(request['updated_at'])}",
        f"  delivered: {'yes' if request['delivered'] else 'no (Host Factory has not got its id yet)'}",
    ]
    if request["message"]:
        lines.append(f"  message:   {_one_line(request['message'])}")
    for key, error in sorted(request.get("errors", {}).items()):
        if error:
            lines.append(f"  error:     {key}: {_one_line(error)}")
    machines = shown.get("machines") or []
    lines.append("")
    lines.append(f"machines ({len(machines)}):")
    if machines:
        header = ("MACHINE", "NAME", "STATE", "RESULT", "ADDRESS", "TYPE", "NOTE")
        rows = [_machine_row(m) for m in machines]
        lines += ["  " + line for line in _table(header, rows).splitlines()]
    details = shown.get("details")
    if details:
        lines.append("")
        lines.append("from the provider:")
        lines += list(_tree(details, "  "))
    return "\n".join(lines) + "\n"


def _machine_row(doc: Mapping[str, Any]) -> tuple[str, ...]:
    machine = doc["machine"]
    note = []
    if doc.get("return_request_id"):
        note.append(f"returned by {doc['return_request_id']}")
    if doc.get("reclaimed_at"):
        note.append(f"reclaimed {iso(doc['reclaimed_at'])}")
    if machine.get("message"):
        note.append(_one_line(machine["message"]))
    return (
        machine["machine_id"] or "-",
        machine["name"] or "-",
        machine["state"],
        doc["result"],
        machine.get("private_ip") or machine.get("public_ip") or "-",
        machine.get("instance_type") or "-",
        "; ".join(note),
    )


def _tree(value: Any, indent: str) -> Iterable[str]:
    """A JSON value as indented ``key: value`` lines (lists of objects as ``-`` items)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                yield f"{indent}{key}:"
                yield from _tree(item, indent + "  ")
            else:
                yield f"{indent}{key}: {_scalar(item)}"
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and item:
                first, *rest = list(_tree(item, indent + "  "))
                yield f"{indent}- {first.lstrip()}"
                yield from rest
            else:
                yield f"{indent}- {_scalar(item)}"
    else:
        yield f"{indent}{_scalar(value)}"


def _scalar(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _one_line(str(value))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    out = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"

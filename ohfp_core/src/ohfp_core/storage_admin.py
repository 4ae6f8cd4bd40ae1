"""``ohfp storage check`` and ``ohfp storage migrate``: look after a state store.

:func:`migrate` copies every request, machine and value from one store to another (any
pair of backends, either direction), refusing a target that holds anything unless forced,
then reads the target back and compares every record. The source's write lock is held for
the copy, so Host Factory calls made meanwhile wait and the copy is one consistent state;
switch the ``storage`` setting before the next call that writes (see the administrator guide).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
from attrs import AttrsInstance

from ohfp_core.errors import ConfigError, StorageError
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, StoredValue

BATCH = 500
"""Records written per write group."""

T = TypeVar("T", bound=AttrsInstance)


def is_empty(report: Mapping[str, Any]) -> bool:
    """Whether a :meth:`Storage.check` report counts no record."""
    return not any(report.get("counts", {}).values())


def _batches(items: list[Any], size: int = BATCH) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _differences(
    what: str, source: Iterable[T], target: Iterable[T], key: Callable[[T], str]
) -> tuple[int, list[str]]:
    """How many of ``source`` the target holds unchanged, and what differs (first few)."""
    held = {key(record): record for record in target}
    problems = []
    count = 0
    for record in source:
        other = held.get(key(record))
        if other is None:
            problems.append(f"{what} {key(record)} is missing from the target")
        elif other != record:
            changed = [
                f.name
                for f in attrs.fields(type(record))
                if getattr(record, f.name) != getattr(other, f.name)
            ]
            problems.append(f"{what} {key(record)} differs in the target: {', '.join(changed)}")
        else:
            count += 1
    return count, problems[:20]


def migrate(
    source: Storage, target: Storage, *, source_name: str, target_name: str, force: bool
) -> dict[str, Any]:
    """Copy the whole state of ``source`` into ``target`` and verify it.

    :raises ConfigError: the target holds records and ``force`` is False.
    :raises StorageError: the copy read back from the target differs from the source.
    :returns: the JSON report: what was copied and the target's :meth:`Storage.check`.
    """
    before = target.check()
    if not is_empty(before) and not force:
        raise ConfigError(
            f"the {target_name} store is not empty ({before['counts']}): copying into it would mix two"
            " states; empty it or pass --force to copy over it"
        )
    with source.transaction():  # hold writers back: the copy is one state
        requests: list[RequestRecord] = list(source.iter_requests())
        machines: list[MachineRecord] = list(source.iter_machines())
        values: list[StoredValue] = list(source.iter_values())
        for group in _batches(requests):
            with target.transaction():
                for record in group:
                    target.put_request(record)
        for chunk in _batches(machines):
            target.put_machines(chunk)
        for part in _batches(values):
            target.put_values(part)
    problems: list[str] = []
    copied = {}
    for what, source_records, target_records, key in (
        ("request", requests, target.iter_requests(), lambda r: r.request_id),
        ("machine", machines, target.iter_machines(), lambda m: m.machine_id),
        ("value", values, target.iter_values(), lambda v: v.key),
    ):
        count, found = _differences(what, source_records, target_records, key)
        copied[f"{what}s"] = count
        problems += found
    after = target.check()
    if problems or not after.get("ok"):
        raise StorageError(
            f"the copy from {source_name} to {target_name} does not match its source",
            [*problems, *after["problems"]],
        )
    return {
        "message": (
            f"copied {copied['requests']} requests, {copied['machines']} machines and"
            f" {copied['values']} values from {source_name} to {target_name};"
            f' set "storage": "{target_name}" in ohfp.json'
        ),
        "from": source_name,
        "to": target_name,
        "copied": copied,
        "verified": True,
        "target": after,
    }


def check(store: Storage) -> dict[str, Any]:
    """:meth:`Storage.check`'s report with a ``message``."""
    report = store.check()
    state = "ok" if report.get("ok") else f"{len(report.get('problems', []))} problem(s)"
    return {"message": f"{report.get('backend', 'store')} state store: {state}", **report}

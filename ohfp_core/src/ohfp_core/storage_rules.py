"""The rules of the request store that are not storage technology, decided once for every backend.

A backend stores records and finds them by key or index; what "held" means, the order a
lookup returns records in, how many ids one query may carry and what a store refuses to
open are decided here, so every backend answers :class:`~ohfp_core.storage.Storage` alike
(the storage kit, :mod:`ohfp_core.storage_contract`, holds them to it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from ohfp_core.deadline import Deadline
from ohfp_core.errors import StorageError, StorageFailure
from ohfp_core.models import MachineResult
from ohfp_core.storage import MachineRecord, RequestRecord

T = TypeVar("T")


def is_held(record: MachineRecord) -> bool:
    """Whether Host Factory holds the machine: it did not fail and is in no return request.

    SQL stores spell it as :data:`ohfp_core.sql_schema.HELD` (their index of held machines).
    """
    return record.return_request_id is None and record.result is not MachineResult.FAIL


def unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, first occurrence kept (lookups take ids in any number)."""
    return list(dict.fromkeys(items))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size`` (bounded ``IN`` lists, batch reads and writes)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def oldest_first(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """Requests by creation time, then by id compared byte by byte (SQL's ``ORDER BY
    created_at, request_id`` under a binary collation)."""
    return sorted(records, key=lambda r: (r.created_at, r.request_id.encode()))


def in_find_order(
    ids: Sequence[str], names: Sequence[str], by_id: Iterable[MachineRecord], by_name: Iterable[MachineRecord]
) -> list[MachineRecord]:
    """What :meth:`~ohfp_core.storage.Storage.find_machines` returns: the machines found by
    id in the order of ``ids``, then those found by name in the order of ``names`` (machines
    of one name in the order first stored, as ``by_name`` lists them), each machine once.

    A record in ``by_name`` counts under its current name only (an index entry a backend
    keeps for an older name finds nothing).
    """
    found = {record.machine_id: record for record in by_id}
    result = [found[machine_id] for machine_id in ids if machine_id in found]
    seen = {record.machine_id for record in result}
    named: dict[str, list[MachineRecord]] = {}
    for record in by_name:
        named.setdefault(record.name, []).append(record)
    for name in names:
        for record in named.get(name, ()):
            if record.machine_id not in seen:
                seen.add(record.machine_id)
                result.append(record)
    return result


def out_of_time(where: str, deadline: Deadline) -> StorageError:
    """The error of a round trip the call's ``deadline`` cut short (or did not allow)."""
    return StorageError(
        f"{where}: no answer within the {deadline.budget:g} s this Host Factory call may take"
        " (HF_PROVIDER_ACTION_TIMEOUT less a reserve); the next call reconciles what this one left",
        kind=StorageFailure.TIMED_OUT,
    )


def lock_held_too_long(where: str, wait_sec: float) -> StorageError:
    """The error of a write that waited ``wait_sec``, the longest it was allowed (the lock
    timeout, or what was left of the call's time), for another call's write lock."""
    return StorageError(
        f"{where}: another call held the write lock longer than {wait_sec:g} s",
        kind=StorageFailure.LOCK_TIMEOUT,
    )


def refuse_newer(where: str, version: int, known: int, package: str, elsewhere: str) -> None:
    """Refuse a store whose schema ``version`` is newer than the ``known`` one.

    :param where: the store as the message names it (``the PostgreSQL schema 'ohfp'``).
    :param package: the distribution to upgrade; ``elsewhere`` what else to use instead.
    :raises StorageError: of kind ``NEWER_SCHEMA``.
    """
    if version > known:
        raise StorageError(
            f"{where} has state schema version {version} but this {package} knows versions up to {known}:"
            f" it was written by a newer ohfp; upgrade {package} or use another {elsewhere}",
            kind=StorageFailure.NEWER_SCHEMA,
        )


def refuse_other_instance(where: str, owner: str | None, instance: str, setting: str) -> None:
    """Refuse a store that holds another provider instance's state (``owner``; None: nobody's yet).

    :raises StorageError: of kind ``OTHER_INSTANCE``, naming the ``setting`` that chooses another.
    """
    if owner is not None and owner != instance:
        raise StorageError(
            f"{where} holds the state of provider instance {owner!r}, not {instance!r}:"
            f" give each instance a {setting} of its own ({setting!r} setting)",
            kind=StorageFailure.OTHER_INSTANCE,
        )

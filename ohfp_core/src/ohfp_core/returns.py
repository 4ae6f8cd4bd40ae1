"""Hosts Host Factory hands back: matching them to stored machines, and what the provider is told.

HF names a host by ``machineId`` and ``name``, or by ``name`` alone. Core keys on the id when
there is one, else on the name; a host core does not know is still terminated (by id, or
looked up by name by the provider). A host named without an id that core does not know is
kept in the return request's ``errors`` under ``host:<name>`` (empty while all is well).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from attrs import frozen

from ohfp_core.converter import MachineInput
from ohfp_core.models import Machine, MachineResult, MachineState, ReturnItem
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, cloud_request

HOST_PREFIX = "host:"


def host_key(name: str) -> str:
    """How a return record keys a host HF named without an id (``errors`` map)."""
    return f"{HOST_PREFIX}{name}"


def named_hosts(record: RequestRecord) -> list[tuple[str, str]]:
    """(host name, termination error) of each host the return named without an id."""
    return [
        (key.removeprefix(HOST_PREFIX), error)
        for key, error in record.errors.items()
        if key.startswith(HOST_PREFIX)
    ]


def with_failures(
    errors: Mapping[str, str], failures: Mapping[str, str], names_only: Iterable[str]
) -> dict[str, str]:
    """A return's ``errors`` with the provider's termination failures added: keyed by machine
    id, or by ``host:<name>`` for a host named without an id."""
    named = set(names_only)
    merged = dict(errors)
    for key, error in failures.items():
        merged[host_key(key) if key in named else key] = error
    return merged


@frozen(kw_only=True)
class Matched:
    """HF's hosts split three ways.

    ``known``: machines core has stored. ``unknown_ids``: machines HF named by an id core
    never saw, recorded under the return request. ``names_only``: hosts HF named without an
    id that core does not know (the provider looks them up by name).
    """

    known: tuple[MachineRecord, ...]
    unknown_ids: tuple[MachineRecord, ...]
    names_only: tuple[str, ...]

    @property
    def records(self) -> tuple[MachineRecord, ...]:
        return (*self.known, *self.unknown_ids)


def match_hosts(store: Storage, asked: Sequence[MachineInput], return_id: str) -> Matched:
    """Match HF's hosts to stored machines by id, else by name."""
    found = store.find_machines(
        [m.machine_id for m in asked if m.machine_id], [m.name for m in asked if not m.machine_id]
    )
    by_id = {r.machine_id: r for r in found}
    by_name = {r.name: r for r in found}
    known: dict[str, MachineRecord] = {}
    unknown: dict[str, MachineRecord] = {}
    names: list[str] = []
    for entry in asked:
        record = by_id.get(entry.machine_id) if entry.machine_id else by_name.get(entry.name)
        if record is not None:
            known[record.machine_id] = record
        elif entry.machine_id:
            machine = Machine(machine_id=entry.machine_id, name=entry.name, state=MachineState.RUNNING)
            unknown[entry.machine_id] = MachineRecord(machine=machine, request_id=return_id)
        elif entry.name not in names:
            names.append(entry.name)
    return Matched(known=tuple(known.values()), unknown_ids=tuple(unknown.values()), names_only=tuple(names))


def return_items(store: Storage, records: Iterable[MachineRecord], return_id: str) -> list[ReturnItem]:
    """The provider's view of machines being returned by ``return_id``: each with its
    acquire request and the machines of that request Host Factory still holds, this return's
    included (other returns and failed machines left out), so the provider knows when
    nothing of a fleet is left."""
    records = list(records)
    acquire = store.get_requests(list({r.request_id for r in records}))
    held = store.machines_of(list(acquire))
    requests = {
        request_id: cloud_request(
            record,
            [
                m.machine_id
                for m in held.get(request_id, [])
                if m.result is not MachineResult.FAIL and m.return_request_id in (None, return_id)
            ],
        )
        for request_id, record in acquire.items()
    }
    return [
        ReturnItem(machine_id=r.machine_id, name=r.name, request=requests.get(r.request_id)) for r in records
    ]


def items_for(store: Storage, record: RequestRecord) -> tuple[list[MachineRecord], list[ReturnItem]]:
    """The machines a return request still returns, and the items for the provider (hosts
    named without an id included)."""
    still = [
        m for m in store.find_machines(list(record.machine_ids)) if m.return_request_id == record.request_id
    ]
    items = return_items(store, still, record.request_id)
    items += [ReturnItem(machine_id="", name=name) for name, _ in named_hosts(record)]
    return still, items

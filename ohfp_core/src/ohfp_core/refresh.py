"""A status poll: what the cloud says about running requests, stored and answered.

:func:`refresh` asks the provider about every running request in one batch, applies the
status rules of :mod:`ohfp_core.status`, stores the outcome (one transaction per request;
the first also stores what the provider wrote to its values,
:func:`ohfp_core.values.recorded`) and builds each request's reply entry.
:func:`stored_entry` answers a finished request from the store alone. :func:`merge_machines`
is how any call stores what the cloud said about an acquire request's machines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from ohfp_core import converter, status
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger
from ohfp_core.models import Machine, MachineResult, MachineState, RequestKind, RequestSnapshot, RequestStatus
from ohfp_core.plugins import Hooks
from ohfp_core.returns import named_hosts
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, cloud_request
from ohfp_core.values import Values, recorded

log = get_logger("ohfp.refresh")

Clock = Callable[[], int]


def log_ready(machines: Sequence[MachineRecord]) -> None:
    """One INFO line per machine that became usable: its request, template, id, host name and
    address, so grepping the log for a host finds where it came from."""
    for ready in machines:
        log.info(
            "machine ready",
            request_id=ready.request_id,
            template_id=ready.template_id,
            machine_id=ready.machine_id,
            name=ready.name,
            private_ip=ready.machine.private_ip,
            instance_type=ready.machine.instance_type,
        )


def merge_machines(
    store: Storage, record: RequestRecord, seen: Sequence[tuple[Machine, MachineResult]], stamp: int
) -> list[MachineRecord]:
    """Store what the cloud said about an acquire request's machines, keeping what other
    calls decided (return and reclaim marks). Call inside a transaction.

    :returns: the records whose result became ``succeed`` just now.
    """
    if not seen:
        return []
    existing = {m.machine_id: m for m in store.find_machines([m.machine_id for m, _ in seen])}
    newly_ready: list[MachineRecord] = []
    updated: list[MachineRecord] = []
    for machine, result in seen:
        old = existing.get(machine.machine_id)
        new = MachineRecord(
            machine=machine,
            request_id=record.request_id,
            template_id=record.template_id,
            result=result,
            return_request_id=old.return_request_id if old else None,
            reclaimed_at=old.reclaimed_at if old else None,
            updated_at=stamp,
        )
        if result is MachineResult.SUCCEED and (old is None or old.result is not MachineResult.SUCCEED):
            newly_ready.append(new)
        updated.append(new)
    store.put_machines(updated)
    return newly_ready


def refresh(
    hooks: Hooks, store: Storage, records: Sequence[RequestRecord], clock: Clock, values: Values
) -> dict[str, dict[str, Any]]:
    """Reply entries for running requests, after one batched status call; stored.

    A request Host Factory asks about has evidently got its id: it is marked delivered.
    When the cloud cannot be asked, the stored view is answered with the reason.
    """
    if not records:
        return {}
    acquires = [r for r in records if r.kind is RequestKind.ACQUIRE]
    returns = [r for r in records if r.kind is RequestKind.RETURN]
    known = store.machines_of([r.request_id for r in acquires])
    asks = [
        cloud_request(r, [m.machine_id for m in known.get(r.request_id, [])])
        for r in acquires
        if r.handle is not None
    ]
    asks += [cloud_request(r) for r in returns]
    try:
        snapshots = hooks.machine_status(asks)
    except CloudError as exc:
        log.warning("status unavailable", error=exc.message, code=exc.code)
        return {
            r.request_id: {**stored_entry(store, r), "message": f"cloud status unavailable: {exc.message}"}
            for r in records
        }
    replies: dict[str, dict[str, Any]] = {}
    for record in acquires:
        if record.handle is None:
            replies[record.request_id] = converter.request_entry(
                record.request_id, RequestStatus.RUNNING, "provisioning", []
            )
            continue
        snapshot = snapshots.get(record.request_id, RequestSnapshot())
        replies[record.request_id] = _refresh_acquire(
            hooks, store, values, record, snapshot, known.get(record.request_id, []), clock()
        )
    if returns:
        returned = store.find_machines([m for r in returns for m in r.machine_ids])
        by_id = {m.machine_id: m for m in returned}
        for record in returns:
            snapshot = snapshots.get(record.request_id, RequestSnapshot())
            replies[record.request_id] = _refresh_return(
                hooks, store, values, record, snapshot, by_id, clock()
            )
    return replies


def _refresh_acquire(
    hooks: Hooks,
    store: Storage,
    values: Values,
    record: RequestRecord,
    snapshot: RequestSnapshot,
    known: Sequence[MachineRecord],
    stamp: int,
) -> dict[str, Any]:
    seen = {m.machine_id: m for m in snapshot.machines}
    for old in known:  # machines the cloud forgot failed (unless HF returned them since)
        if old.machine_id not in seen and old.return_request_id is None:
            seen[old.machine_id] = attrs.evolve(
                old.machine,
                state=MachineState.TERMINATED,
                message=old.machine.message or status.UNKNOWN_MESSAGE,
            )
    results = [(m, status.acquire_result(m)) for m in seen.values()]
    state = status.acquire_status(record.machine_count, results, snapshot.open)
    message = snapshot.message
    if state is RequestStatus.COMPLETE_WITH_ERROR and not message:
        units = sum(m.weight for m, r in results if r is MachineResult.SUCCEED)
        message = f"{units} of {record.machine_count} machines delivered"
    updated = attrs.evolve(
        record,
        status=state,
        message=message,
        handle=dict(snapshot.handle) if snapshot.handle is not None else record.handle,
        delivered=True,
        updated_at=stamp,
    )
    with recorded(store, values):
        newly_ready = merge_machines(store, updated, results, stamp)
        store.put_request(updated)
    if newly_ready:
        log_ready(newly_ready)
        hooks.machines_ready(cloud_request(updated), [m.machine for m in newly_ready])
    if state.is_final:
        log.info(
            "request finished",
            request_id=record.request_id,
            status=state.value,
            machines=sum(r is MachineResult.SUCCEED for _, r in results),
            message=message,
        )
    machines = [
        converter.machine_json(m, r, status.acquire_failure_message(m) if r is MachineResult.FAIL else "")
        for m, r in results
    ]
    return converter.request_entry(record.request_id, state, message, machines)


@frozen(kw_only=True)
class ReturnOutcome:
    """What the cloud says of a return request's machines, by the status rules.

    ``updates``: the stored machines as the cloud shows them (a machine whose termination
    failed is held again); ``gone``: the machines the cloud confirms gone; ``entries``: the
    reply's machine entries.
    """

    status: RequestStatus
    message: str
    updates: list[MachineRecord]
    gone: list[Machine]
    entries: list[dict[str, Any]]


def return_outcome(
    record: RequestRecord, snapshot: RequestSnapshot, stored: Mapping[str, MachineRecord], stamp: int
) -> ReturnOutcome:
    """Apply the return rules (:func:`ohfp_core.status.return_result`) to what the cloud
    said (``snapshot``) of ``record``'s machines (``stored``: their records by id)."""
    seen = {m.machine_id: m for m in snapshot.machines}
    machines: list[dict[str, Any]] = []
    results: list[MachineResult] = []
    updates: list[MachineRecord] = []
    gone: list[Machine] = []
    for machine_id in record.machine_ids:
        old = stored.get(machine_id)
        current = seen.get(machine_id)
        error = record.errors.get(machine_id)
        result = status.return_result(current, error)
        shown = current or (
            attrs.evolve(old.machine, state=MachineState.TERMINATED)
            if old
            else Machine(machine_id=machine_id, name=machine_id, state=MachineState.TERMINATED)
        )
        if old is not None:
            # A machine whose termination failed is still Host Factory's: held again.
            still_held = result is MachineResult.FAIL and old.return_request_id == record.request_id
            owner = None if still_held else old.return_request_id
            updates.append(attrs.evolve(old, machine=shown, return_request_id=owner, updated_at=stamp))
        if result is MachineResult.SUCCEED:
            gone.append(shown)
        results.append(result)
        machines.append(converter.machine_json(shown, result, error or ""))
    for name, error in named_hosts(record):
        host_json, result = converter.named_host_json(name, error)
        results.append(result)
        machines.append(host_json)
    state = status.return_status(results)
    failed = sum(r is MachineResult.FAIL for r in results)
    message = (
        f"{failed} of {len(results)} machines could not be returned" if failed and state.is_final else ""
    )
    return ReturnOutcome(status=state, message=message, updates=updates, gone=gone, entries=machines)


def _refresh_return(
    hooks: Hooks,
    store: Storage,
    values: Values,
    record: RequestRecord,
    snapshot: RequestSnapshot,
    stored: Mapping[str, MachineRecord],
    stamp: int,
) -> dict[str, Any]:
    outcome = return_outcome(record, snapshot, stored, stamp)
    state = outcome.status
    updated = attrs.evolve(record, status=state, message=outcome.message, delivered=True, updated_at=stamp)
    with recorded(store, values):
        store.put_machines(outcome.updates)
        store.put_request(updated)
    if state.is_final:
        hooks.machines_returned(cloud_request(updated), outcome.gone)
        for machine in outcome.gone:
            log.info(
                "machine returned",
                request_id=record.request_id,
                machine_id=machine.machine_id,
                name=machine.name,
            )
        log.info(
            "return finished", request_id=record.request_id, status=state.value, machines=len(outcome.entries)
        )
    return converter.request_entry(record.request_id, state, outcome.message, outcome.entries)


def stored_entry(store: Storage, record: RequestRecord) -> dict[str, Any]:
    """A request answered from the store without calling the cloud."""
    if record.kind is RequestKind.ACQUIRE:
        stored = store.machines_of([record.request_id]).get(record.request_id, [])
        machines = [
            converter.machine_json(
                m.machine,
                m.result,
                status.acquire_failure_message(m.machine) if m.result is MachineResult.FAIL else "",
            )
            for m in stored
        ]
    else:
        machines = []
        for m in store.find_machines(list(record.machine_ids)):
            error = record.errors.get(m.machine_id)
            result = status.return_result(m.machine, error)
            machines.append(converter.machine_json(m.machine, result, error or ""))
        machines += [converter.named_host_json(name, error)[0] for name, error in named_hosts(record)]
    return converter.request_entry(record.request_id, record.status, record.message, machines)

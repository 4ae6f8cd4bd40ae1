"""Requests whose call died before Host Factory got their id, found and ended, from any host.

requestMachines and requestReturnMachines record a request before they touch the cloud and
mark it *delivered* only once the reply naming it is written. From before the record exists
until then, the call holds the request's **lease** (:meth:`Storage.hold_lease
<ohfp_core.storage.Storage.hold_lease>`), which the *store* sees die with the call, however
the call ends:

- SQLite: a file lock in the work directory (:mod:`ohfp_core.inflight`); the kernel drops it
  when the process ends. One host's only: a request another host recorded (a database on
  shared storage) is judged by its age, dead once older than ``HF_PROVIDER_ACTION_TIMEOUT``
  + :data:`AGE_MARGIN_SEC`, when Host Factory has given up on its call for sure;
- PostgreSQL: a session-level advisory lock per request, on the call's connection; the
  server drops it the moment that connection closes (a killed process), or within seconds
  when TCP keepalives find the host gone (``ohfp_postgresql.store``);
- DynamoDB: a lease item per request whose expiry a thread of the call pushes forward while
  it runs (``ohfp_dynamodb.leases``); it lapses within ``callLeaseSeconds`` of the call's end.

A running request that is not delivered and whose lease any call can take (:meth:`dead`)
was never seen by Host Factory, and is ended at once, from whichever host calls next:

- an acquire request is **cancelled**: the provider removes everything the cloud made for it
  (``ohfp_cancel_request``; without that hook, core terminates the machines the provider
  finds for it), its stored machines end failed, and it ends ``complete_with_error``;
- a return request is **finished**: Host Factory asked for those machines to go, so they
  are terminated (again: termination is idempotent), and the request ends once the cloud
  confirms them gone: ``complete``, or ``complete_with_error`` when a termination failed
  (that machine is held again, as after any failed termination). Until then it stays
  running and undelivered, its machines count against ``maxNumber``
  (:mod:`ohfp_core.capacity`), and each later call looks again.

Leases are ended explicitly too (delivered, reconciled, or the call failed): a process that
serves many calls keeps nothing of one call's leases into the next. Every Host Factory call
runs :meth:`Reconciler.run` first: the query reads only undelivered requests (indexed), so
it costs nothing when no call died. A cloud refusal leaves the request for the next call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs

from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger
from ohfp_core.models import (
    CloudRequest,
    MachineResult,
    MachineState,
    RequestKind,
    RequestSnapshot,
    RequestStatus,
    ReturnItem,
)
from ohfp_core.plugins import Hooks
from ohfp_core.refresh import return_outcome
from ohfp_core.returns import items_for, named_hosts, with_failures
from ohfp_core.storage import Lease, RequestRecord, Storage, cloud_request

log = get_logger("ohfp.reconcile")

MAX_PER_CALL = 20
"""Most dead requests one call reconciles (the rest wait for the next call)."""
AGE_MARGIN_SEC = 5
"""Added to the action timeout before a request judged by its age counts as dead."""
CANCELLED = (
    "abandoned: the call that made it ended before Host Factory got its id; everything it made was removed"
)
RETURNED = (
    "the call that returned these machines ended before Host Factory got the reply;"
    " they were terminated all the same"
)


class Reconciler:
    """Finds dead calls' requests in ``store`` and ends them through ``hooks``."""

    def __init__(self, hooks: Hooks, store: Storage, timeout_sec: float, clock: Callable[[], int]) -> None:
        self.hooks = hooks
        self.store = store
        self.timeout_sec = timeout_sec
        self.clock = clock

    def dead(self) -> Iterator[tuple[RequestRecord, Lease]]:
        """Undelivered running requests whose call is gone, each with its lease now held (so
        no other call reconciles it at the same time). Release every lease yielded."""
        for record in self.store.undelivered_requests():
            young = self.clock() - record.created_at <= self.timeout_sec + AGE_MARGIN_SEC
            if young and not self.store.sees_leases_of(record.owner):
                continue  # its call may still be at work: wait for Host Factory's timeout
            lease = self.store.take_lease(record.request_id)
            if lease is None:
                continue  # its call is at work (or another call is reconciling it)
            current = self.store.get_requests([record.request_id]).get(record.request_id)
            if current is None or current.delivered or current.status.is_final:
                lease.release()  # it finished just before letting go of its lease
                continue
            yield current, lease

    def run(self, limit: int = MAX_PER_CALL) -> int:
        """End up to ``limit`` dead calls' requests; how many were taken care of."""
        ended = 0
        for record, lease in self.dead():
            try:
                if record.kind is RequestKind.ACQUIRE:
                    self._cancel(record)
                else:
                    self._finish_return(record)
                ended += 1
            except CloudError as exc:
                log.warning("reconcile postponed", request_id=record.request_id, error=exc.message)
            finally:
                lease.release()
            if ended >= limit:
                break
        return ended

    def _cancel(self, record: RequestRecord) -> None:
        request = cloud_request(record)
        if not self.hooks.cancel_request(request):
            self._terminate_found(request)
        stamp = self.clock()
        machines = self.store.machines_of([record.request_id]).get(record.request_id, [])
        with self.store.transaction():
            self.store.put_machines(
                [
                    attrs.evolve(
                        m,
                        machine=attrs.evolve(m.machine, state=MachineState.TERMINATED, message=CANCELLED),
                        result=MachineResult.FAIL,
                        updated_at=stamp,
                    )
                    for m in machines
                ]
            )
            self.store.put_request(
                attrs.evolve(
                    record,
                    status=RequestStatus.COMPLETE_WITH_ERROR,
                    message=CANCELLED,
                    handle=record.handle if record.handle is not None else {},
                    updated_at=stamp,
                )
            )
        log.warning("abandoned request cancelled", request_id=record.request_id, machines=len(machines))

    def _terminate_found(self, request: CloudRequest) -> None:
        """Terminate the machines the provider finds for ``request`` (by its id)."""
        snapshot = self.hooks.machine_status([request]).get(request.request_id, RequestSnapshot())
        found = tuple(m.machine_id for m in snapshot.machines)
        owner = attrs.evolve(request, handle=dict(snapshot.handle or {}), machine_ids=found)
        self.hooks.terminate_machines(
            [ReturnItem(machine_id=m.machine_id, name=m.name, request=owner) for m in snapshot.machines]
        )

    def _finish_return(self, record: RequestRecord) -> None:
        """Terminate what the return still returns, then store what the cloud says of those
        machines by the return rules (:func:`ohfp_core.refresh.return_outcome`): the request
        ends once the cloud confirms every machine gone (or its termination failed); until
        then it stays running and undelivered, for the next call to look again."""
        still, items = items_for(self.store, record)
        failures = self.hooks.terminate_machines(items)
        record = attrs.evolve(
            record, errors=with_failures(record.errors, failures, [name for name, _ in named_hosts(record)])
        )
        snapshot = self.hooks.machine_status([cloud_request(record)]).get(
            record.request_id, RequestSnapshot()
        )
        stored = {m.machine_id: m for m in self.store.find_machines(list(record.machine_ids))}
        stamp = self.clock()
        outcome = return_outcome(record, snapshot, stored, stamp)
        final = outcome.status.is_final
        message = "; ".join(filter(None, (RETURNED, outcome.message))) if final else record.message
        with self.store.transaction():
            self.store.put_machines(outcome.updates)
            self.store.put_request(
                attrs.evolve(record, status=outcome.status, message=message, updated_at=stamp)
            )
        log.warning(
            "abandoned return finished" if final else "abandoned return: termination not confirmed yet",
            request_id=record.request_id,
            machines=len(still),
            failed=len(failures),
        )

"""The request store: what core remembers between Host Factory calls.

Every HF call is a new process and calls overlap, so the store is the only memory and it
must be safe for concurrent writers (and, for a shared store, for a failover host). Backends
implement :class:`Storage` and are registered through the ``ohfp_register_storage`` hook
with a :data:`StorageFactory` (:mod:`ohfp_core.storage_backends`); the embedded default is
SQLite (:mod:`ohfp_core.sqlite`), which shares its SQL with PostgreSQL's
(:mod:`ohfp_core.sql_store`). The ``storage`` setting chooses the backend and the backend's
own section of ``ohfp.json`` reaches its factory in :attr:`StorageContext.settings`. What
is not storage technology (the held rule, the order of results, what a store refuses) is
decided once in :mod:`ohfp_core.storage_rules`, and every backend raises
:class:`~ohfp_core.errors.StorageError` only.

Records are values: frozen attrs classes, changed with :func:`attrs.evolve` and stored whole.
:func:`request_to_doc` and friends give every backend one JSON spelling of them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import attrs
from attrs import Factory, field, frozen

from ohfp_core.deadline import Deadline, call_deadline
from ohfp_core.models import (
    CloudRequest,
    Machine,
    MachineResult,
    MachineState,
    PriceType,
    RequestKind,
    RequestStatus,
)
from ohfp_core.values import StoredValue as StoredValue  # records of the store, re-exported


@frozen(kw_only=True)
class RequestRecord:
    """One acquire (``req-…``) or return (``ret-…``) request.

    ``handle`` is None until the provider's provisioning call has returned. ``delivered`` turns
    True once the reply that names the request was written for Host Factory: a running
    request that is not delivered belongs to a call still at work, or to one that died before
    Host Factory learned the id (see :mod:`ohfp_core.reconcile`). ``owner`` names where the
    call that made it holds its lock (:mod:`ohfp_core.inflight`). For a return request
    ``machine_ids`` are the machines being returned and ``errors`` the termination errors per
    machine id (``host:<name>`` for a host named without an id).
    """

    request_id: str
    kind: RequestKind
    status: RequestStatus = RequestStatus.RUNNING
    template_id: str | None = None
    machine_count: int = 0
    handle: Mapping[str, Any] | None = None
    machine_ids: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(factory=dict)
    message: str = ""
    created_at: int = 0
    updated_at: int = 0
    delivered: bool = False
    owner: str = ""


def cloud_request(record: RequestRecord, machine_ids: Sequence[str] | None = None) -> CloudRequest:
    """What the provider is told about a stored request (``machine_ids`` replaces the
    record's own, e.g. the machines of an acquire request Host Factory still holds)."""
    return CloudRequest(
        request_id=record.request_id,
        kind=record.kind,
        template_id=record.template_id,
        machine_count=record.machine_count,
        handle=dict(record.handle or {}),
        machine_ids=tuple(record.machine_ids if machine_ids is None else machine_ids),
        created_at=record.created_at,
    )


@frozen(kw_only=True)
class MachineRecord:
    """A machine core has seen, the acquire request it belongs to and its fate."""

    machine: Machine
    request_id: str
    template_id: str | None = None
    result: MachineResult = MachineResult.EXECUTING
    return_request_id: str | None = None
    reclaimed_at: int | None = None
    updated_at: int = 0

    @property
    def machine_id(self) -> str:
        return self.machine.machine_id

    @property
    def name(self) -> str:
        return self.machine.name


@frozen(kw_only=True)
class StorageContext:
    """What a storage factory gets: the instance, its work directory, the backend's own
    section of ``ohfp.json`` (by backend name, e.g. ``"postgresql": {…}``), Host Factory's
    time budget for the call and the call's deadline."""

    instance: str
    workdir: Path
    settings: Mapping[str, Any] = field(factory=dict)
    timeout_sec: float = 240.0
    deadline: Deadline = field(
        default=Factory(lambda self: call_deadline(self.timeout_sec), takes_self=True), eq=False
    )
    """When the call must have its reply: bound every round trip by it (default: from
    ``timeout_sec``, counted from the context's making)."""


class Lease(Protocol):
    """The in-flight lease of one request, held by the call making (or reconciling) it. The
    store sees it die with the call (:mod:`ohfp_core.reconcile`)."""

    def release(self) -> None:
        """The call is done with the request (its reply is written, or it ended it): end the
        lease for good."""
        ...

    def drop(self) -> None:
        """Let the lease go as a call that dies lets it go: the next call may reconcile the
        request at once."""
        ...


class Storage(Protocol):
    """A request store. All methods are safe under concurrent processes.

    Reads and writes outside :meth:`transaction` are each atomic on their own. Unknown ids
    are never errors: they are absent from results. Every round trip is bounded by the
    deadline of the call using the store (:meth:`use_deadline`); a store object serves one
    thread at a time unless :attr:`threadsafe`.
    """

    threadsafe: bool
    """Whether threads may share one store object (else a process running calls in threads
    opens one per thread)."""
    lease_owner: str
    """Where this store's leases are held, recorded as :attr:`RequestRecord.owner`."""

    def use_deadline(self, deadline: Deadline) -> None:
        """Bound every round trip from now on by ``deadline`` (connect, query, commit, lock
        waits): past it, fail with :class:`~ohfp_core.errors.StorageError` of kind
        ``TIMED_OUT`` (each call brings its own deadline)."""
        ...

    # in-flight leases ----------------------------------------------------------------
    def hold_lease(self, request_id: str) -> Lease:
        """Take the lease of a request this call is about to record (a new id: nobody holds it)."""
        ...

    def take_lease(self, request_id: str) -> Lease | None:
        """The request's lease if its call is gone (nobody holds it), else None. Read the
        request again once it is yours: its call may have finished just before letting go."""
        ...

    def sees_leases_of(self, owner: str) -> bool:
        """Whether this store's leases tell a live call from a dead one for a request
        recorded by ``owner``; where not, core judges the request by its age."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Hold an exclusive write lock for a read-modify-write across every process (and
        host) using the store; commit on exit, roll back on error. Not re-entrant."""
        ...

    # requests ------------------------------------------------------------------------
    def put_request(self, record: RequestRecord) -> None:
        """Insert or replace a request."""
        ...

    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        """Requests by id; unknown ids are absent from the result."""
        ...

    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        """Requests whose status is still ``running``, oldest first (then by id)."""
        ...

    def undelivered_requests(self) -> list[RequestRecord]:
        """Running requests whose reply Host Factory has not got, oldest first. Indexed: it
        reads only such requests, however many others the store holds."""
        ...

    # machines ------------------------------------------------------------------------
    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        """Insert or replace machines by machine id."""
        ...

    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        """Machines of acquire requests, by request id (every id present, maybe empty), each
        list in the order the machines were first stored."""
        ...

    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        """Machines whose id is in ``machine_ids`` or whose name is in ``names``, each once:
        matches by id in the order given, then further matches by name in the order given."""
        ...

    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        """Machines Host Factory holds (result not ``fail``, in no return request),
        optionally of one template, in the order they were first stored."""
        ...

    # values (providers' and plugins' caches) -------------------------------------------
    def put_values(self, values: Sequence[StoredValue]) -> None:
        """Insert or replace values by key."""
        ...

    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]:
        """Values by key that have not expired at ``now``; others are absent."""
        ...

    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]:
        """Every unexpired value whose key starts with ``prefix``, by key."""
        ...

    def delete_values(self, keys: Sequence[str]) -> None:
        """Forget values (missing keys are fine)."""
        ...

    # administration (ohfp storage …) -----------------------------------------------------
    def iter_requests(self) -> Iterator[RequestRecord]:
        """Every request (for copying a store)."""
        ...

    def iter_machines(self) -> Iterator[MachineRecord]:
        """Every machine (for copying a store)."""
        ...

    def iter_values(self) -> Iterator[StoredValue]:
        """Every value, expired ones included (for copying a store)."""
        ...

    def check(self) -> dict[str, Any]:
        """A JSON summary: ``backend``, ``schemaVersion``, ``ok``, ``problems`` (list of
        text), ``counts`` (requests, machines, values) and backend details (never a
        password)."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


StorageFactory = Callable[[StorageContext], Storage]
"""Opens a backend's store (registered by name, :mod:`ohfp_core.storage_backends`)."""


def dumps(value: Any) -> str:
    """Compact JSON text, as every backend stores documents and values."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------
# One JSON spelling of the records for every backend (snake_case, enums as values).
# --------------------------------------------------------------------------------------

_MACHINE_FIELDS = frozenset(f.name for f in attrs.fields(Machine))


def _plain(instance: Any, attribute: Any, value: Any) -> Any:
    """attrs.asdict value serializer: enums to their value, mappings to dicts."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    return value


def machine_to_doc(machine: Machine) -> dict[str, Any]:
    """A machine as a JSON-ready dict."""
    return attrs.asdict(machine, value_serializer=_plain)


def machine_from_doc(doc: Mapping[str, Any]) -> Machine:
    """The inverse of :func:`machine_to_doc` (keys it does not know are ignored)."""
    values = {key: value for key, value in doc.items() if key in _MACHINE_FIELDS}
    values["state"] = MachineState(values["state"])
    price_type = values.get("price_type")
    values["price_type"] = None if price_type is None else PriceType(price_type)
    return Machine(**values)


def request_to_doc(record: RequestRecord) -> dict[str, Any]:
    """A request as a JSON-ready dict."""
    doc = attrs.asdict(record, value_serializer=_plain)
    doc["machine_ids"] = list(record.machine_ids)
    return doc


def request_from_doc(doc: Mapping[str, Any]) -> RequestRecord:
    """The inverse of :func:`request_to_doc`; fields a newer version added default."""
    names = {f.name for f in attrs.fields(RequestRecord)}
    values = {key: value for key, value in doc.items() if key in names}
    values["kind"] = RequestKind(values["kind"])
    values["status"] = RequestStatus(values.get("status", RequestStatus.RUNNING.value))
    values["machine_ids"] = tuple(values.get("machine_ids", ()))
    return RequestRecord(**values)


def machine_record_to_doc(record: MachineRecord) -> dict[str, Any]:
    """A machine record as a JSON-ready dict (the machine nested)."""
    doc = attrs.asdict(record, recurse=False, value_serializer=_plain)
    doc["machine"] = machine_to_doc(record.machine)
    return doc


def machine_record_from_doc(doc: Mapping[str, Any]) -> MachineRecord:
    """The inverse of :func:`machine_record_to_doc`."""
    names = {f.name for f in attrs.fields(MachineRecord)}
    values = {key: value for key, value in doc.items() if key in names}
    values["machine"] = machine_from_doc(values["machine"])
    values["result"] = MachineResult(values.get("result", MachineResult.EXECUTING.value))
    return MachineRecord(**values)

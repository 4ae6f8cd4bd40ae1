"""The request store: what core remembers between Host Factory calls.

Every HF call is a new process and calls overlap, so the store is the only memory and it
must be safe for concurrent writers. Backends implement :class:`Storage` and are registered
through the ``ohfp_register_storage`` hook; the embedded default is SQLite
(:mod:`ohfp_core.sqlite`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from attrs import define, field

from ohfp_core.models import Machine, MachineResult, RequestKind, RequestStatus


@define
class RequestRecord:
    """One acquire (``req-…``) or return (``ret-…``) request.

    ``handle`` is None until the provider's provisioning call has returned. A record left
    without a handle past Host Factory's action timeout belongs to a call that died before
    HF got its id: the next status call terminates whatever the cloud made for it and ends
    it ``complete_with_error``. For a return
    request ``machine_ids`` are the machines being returned and ``errors`` the termination
    errors per machine id.
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


@define
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


class Storage(Protocol):
    """A request store. All methods are safe under concurrent processes.

    Reads and writes outside :meth:`transaction` are each atomic on their own.
    """

    def transaction(self) -> AbstractContextManager[None]:
        """Hold an exclusive write lock for a read-modify-write; commit on exit, roll back on
        error. Not re-entrant."""
        ...

    def put_request(self, record: RequestRecord) -> None:
        """Insert or replace a request."""
        ...

    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        """Requests by id; unknown ids are absent from the result."""
        ...

    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        """Requests whose status is still ``running``, oldest first."""
        ...

    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        """Insert or replace machines by machine id."""
        ...

    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        """Machines of acquire requests, by request id (every id present, maybe empty)."""
        ...

    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        """Machines whose id is in ``machine_ids`` or whose name is in ``names``."""
        ...

    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        """Machines Host Factory holds: not failed and not in a return request."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


StorageFactory = Callable[[Path], Storage]


def iter_chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Split ``items`` into slices of at most ``size`` (for bounded IN lists)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]

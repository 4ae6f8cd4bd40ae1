"""One DEBUG line per committed store transaction, whatever the backend.

:func:`ohfp_core.storage_backends.open_backend` wraps every store it opens in
:class:`LoggedStore`: a :meth:`~ohfp_core.storage.Storage.transaction` that commits, and
each write made outside one (atomic on its own, so a transaction of its own), logs at DEBUG
``store transaction`` with the backend, the duration in ms and what was written: request,
machine and value rows put, value rows deleted. A transaction that rolls back logs nothing.
Values are never logged, only counts (the log masks secrets anyway).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ohfp_core.deadline import Deadline
from ohfp_core.logs import get_logger
from ohfp_core.models import RequestKind
from ohfp_core.storage import Lease, MachineRecord, RequestRecord, Storage, StoredValue

log = get_logger("ohfp.storage")


class LoggedStore:
    """``store`` (the backend registered as ``backend``), its commits logged at DEBUG."""

    def __init__(self, store: Storage, backend: str) -> None:
        self.store = store
        self.backend = backend
        self.threadsafe = store.threadsafe
        self.lease_owner = store.lease_owner
        self._written: Counter[str] | None = None  # inside transaction(): the rows written so far

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)  # a backend's own attributes (its path, its dialect …)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        started = time.monotonic()
        self._written = Counter()
        try:
            with self.store.transaction():
                yield
            self._committed(started, self._written)
        finally:
            self._written = None

    def _wrote(self, started: float, **rows: int) -> None:
        if self._written is not None:
            self._written.update(rows)
        else:
            self._committed(started, Counter(rows))

    def _committed(self, started: float, rows: Counter[str]) -> None:
        log.debug(
            "store transaction",
            backend=self.backend,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            requests=rows["requests"],
            machines=rows["machines"],
            values=rows["values"],
            values_deleted=rows["values_deleted"],
        )

    # writes --------------------------------------------------------------------------
    def put_request(self, record: RequestRecord) -> None:
        started = time.monotonic()
        self.store.put_request(record)
        self._wrote(started, requests=1)

    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        started = time.monotonic()
        self.store.put_machines(records)
        if records:
            self._wrote(started, machines=len(records))

    def put_values(self, values: Sequence[StoredValue]) -> None:
        started = time.monotonic()
        self.store.put_values(values)
        if values:
            self._wrote(started, values=len(values))

    def delete_values(self, keys: Sequence[str]) -> None:
        started = time.monotonic()
        self.store.delete_values(keys)
        if keys:
            self._wrote(started, values_deleted=len(set(keys)))

    # everything else, as the backend does it -----------------------------------------
    def use_deadline(self, deadline: Deadline) -> None:
        self.store.use_deadline(deadline)

    def hold_lease(self, request_id: str) -> Lease:
        return self.store.hold_lease(request_id)

    def take_lease(self, request_id: str) -> Lease | None:
        return self.store.take_lease(request_id)

    def sees_leases_of(self, owner: str) -> bool:
        return self.store.sees_leases_of(owner)

    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        return self.store.get_requests(request_ids)

    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        return self.store.open_requests(kind)

    def undelivered_requests(self) -> list[RequestRecord]:
        return self.store.undelivered_requests()

    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        return self.store.machines_of(request_ids)

    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        return self.store.find_machines(machine_ids, names)

    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        return self.store.held_machines(template_id)

    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]:
        return self.store.get_values(keys, now)

    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]:
        return self.store.values_with_prefix(prefix, now)

    def iter_requests(self) -> Iterator[RequestRecord]:
        return self.store.iter_requests()

    def iter_machines(self) -> Iterator[MachineRecord]:
        return self.store.iter_machines()

    def iter_values(self) -> Iterator[StoredValue]:
        return self.store.iter_values()

    def check(self) -> dict[str, Any]:
        return self.store.check()

    def close(self) -> None:
        self.store.close()

"""The simulated cloud: requests and machines kept in one SQLite file in the provider's work dir.

Every Host Factory call is a new process and calls overlap, so the cloud lives in
``<workdir>/mock-cloud.sqlite3`` (WAL, a busy timeout, mode 0600); every change runs in a
``BEGIN IMMEDIATE`` transaction.

A machine's state is never stored: it follows from its timestamps and the simulated clock
(``time.time()`` plus a stored offset that :meth:`MockCloud.advance` moves), so reads never
write and time can be skipped in tests. Every random choice comes from a
``random.Random`` seeded with the seed and a stored counter: the same seed and the same
sequence of calls give the same machines, failures and interruptions.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from attrs import frozen

from ohfp_core.errors import CapacityError, CloudError, ThrottledError
from ohfp_core.files import ensure_private, private_dir
from ohfp_core.models import (
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    MachineState,
    PriceType,
    Provisioned,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    Template,
)
from ohfp_mock.knobs import Knobs

DB_NAME = "mock-cloud.sqlite3"
SCHEMA_VERSION = 1
DEFAULT_INSTANCE_TYPE = "mock.small"
RECLAIM_WINDOW_SECONDS = 3600.0
"""A spot machine chosen for interruption gets its notice within this long of running."""
HANDLE_KEY = "cloudRequestId"
REQUEST_TAG = "ohfp:request-id"
TEMPLATE_TAG = "ohfp:template-id"
_FIRST_IP = (0 << 16) | (1 << 8) | 4  # 10.0.1.4: the offset inside 10.0.0.0/8
_CHUNK = 500  # ids per IN (...) clause, far below SQLite's variable limit

_STOP_MESSAGES = {
    "returned": "terminated: returned by Host Factory",
    "console": "terminated outside Host Factory (console)",
    "cancelled": "terminated: its request was cancelled",
}
_RECLAIM_MESSAGE = "spot instance interrupted: reclaimed by the cloud"
_NOTICE_MESSAGE = "spot interruption notice"
_FAIL_MESSAGE = "instance failed while pending: Server.InternalError (simulated)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    cloud_request_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    template_id TEXT NOT NULL,
    units INTEGER NOT NULL,
    created_at REAL NOT NULL,
    closed INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS machines (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    private_ip TEXT NOT NULL UNIQUE,
    cloud_request_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    template_id TEXT NOT NULL,
    instance_type TEXT NOT NULL,
    price_type TEXT NOT NULL,
    weight INTEGER NOT NULL,
    launch_at REAL NOT NULL,
    ready_at REAL NOT NULL,
    terminate_seconds REAL NOT NULL,
    fail_message TEXT NOT NULL,
    stop_at REAL,
    stop_reason TEXT,
    notice_at REAL,
    reclaim_at REAL
);
CREATE INDEX IF NOT EXISTS machines_by_request ON machines (cloud_request_id);
"""


@frozen
class CloudMachine:
    """A machine as the mock cloud stores it. Its state at a time follows from the timestamps:
    pending until ``ready_at``, then running, until the earliest of failing (at ``ready_at``),
    being stopped (``stop_at``) or reclaimed (``reclaim_at``); then shutting-down for
    ``terminate_seconds`` (a failed machine is terminated at once), then terminated."""

    machine_id: str
    name: str
    private_ip: str
    cloud_request_id: str
    request_id: str
    template_id: str
    instance_type: str
    price_type: str
    weight: int
    launch_at: float
    ready_at: float
    terminate_seconds: float
    fail_message: str
    stop_at: float | None
    stop_reason: str | None
    notice_at: float | None
    reclaim_at: float | None

    def end(self) -> tuple[float, float, str] | None:
        """(going away at, gone at, why) or None while nothing will end the machine."""
        ends: list[tuple[float, float, str]] = []
        if self.fail_message:
            ends.append((self.ready_at, self.ready_at, self.fail_message))
        if self.stop_at is not None:
            message = _STOP_MESSAGES.get(self.stop_reason or "", "terminated")
            ends.append((self.stop_at, self.stop_at + self.terminate_seconds, message))
        if self.reclaim_at is not None:
            ends.append((self.reclaim_at, self.reclaim_at + self.terminate_seconds, _RECLAIM_MESSAGE))
        return min(ends) if ends else None

    def state(self, now: float) -> MachineState:
        end = self.end()
        if end is not None and now >= end[0]:
            return MachineState.SHUTTING_DOWN if now < end[1] else MachineState.TERMINATED
        return MachineState.PENDING if now < self.ready_at else MachineState.RUNNING

    def message(self, now: float) -> str:
        end = self.end()
        return end[2] if end is not None and now >= end[0] else ""

    def grace(self, now: float) -> int | None:
        """Seconds before the cloud takes the machine (0 when gone); None when it is not
        being taken."""
        if self.state(now).is_lost:
            return 0
        if self.notice_at is not None and self.reclaim_at is not None and now >= self.notice_at:
            return max(0, math.ceil(self.reclaim_at - now))
        return None

    def to_machine(self, now: float) -> Machine:
        return Machine(
            machine_id=self.machine_id,
            name=self.name,
            state=self.state(now),
            private_ip=self.private_ip,
            launch_time=int(self.launch_at),
            instance_type=self.instance_type,
            price_type=PriceType(self.price_type),
            weight=self.weight,
            message=self.message(now),
            tags={REQUEST_TAG: self.request_id, TEMPLATE_TAG: self.template_id},
        )

    def as_json(self, now: float) -> dict[str, Any]:
        """Everything about the machine, for the control CLI."""
        return {
            "machineId": self.machine_id,
            "name": self.name,
            "privateIpAddress": self.private_ip,
            "state": self.state(now).value,
            "message": self.message(now),
            "requestId": self.request_id,
            "cloudRequestId": self.cloud_request_id,
            "templateId": self.template_id,
            "instanceType": self.instance_type,
            "priceType": self.price_type,
            "weight": self.weight,
            "launchtime": int(self.launch_at),
            "readyAt": self.ready_at,
            "reclaimNoticeAt": self.notice_at,
            "reclaimAt": self.reclaim_at,
            "gracePeriod": self.grace(now),
        }


@frozen
class _Launch:
    instance_type: str
    price_type: PriceType
    weight: int


def plan_launch(template: Template, count: int) -> list[_Launch]:
    """The machines a request for ``count`` units of ``template`` launches.

    The type is ``vmType``, else the first of ``vmTypes``, else ``mock.small``; its weight
    comes from ``vmTypes``. ``heterogeneous`` launches spot first and ``percentOnDemand``
    (default 50) of the machines on demand.
    """
    fields = template.fields
    vm_types = fields.get("vmTypes")
    weights: Mapping[str, Any] = vm_types if isinstance(vm_types, Mapping) else {}
    vm_type = fields.get("vmType")
    if isinstance(vm_type, str) and vm_type:
        instance_type = vm_type
    elif weights:
        instance_type = str(next(iter(weights)))
    else:
        instance_type = DEFAULT_INSTANCE_TYPE
    raw_weight = weights.get(instance_type, 1)
    weight = raw_weight if isinstance(raw_weight, int) and raw_weight >= 1 else 1
    machines = math.ceil(count / weight)
    price = str(fields.get("priceType") or "ondemand")
    if price == "spot":
        on_demand = 0
    elif price == "heterogeneous":
        percent = fields.get("percentOnDemand", 50)
        percent = percent if isinstance(percent, int | float) else 50
        on_demand = round(machines * percent / 100)
    else:
        on_demand = machines
    return [
        _Launch(
            instance_type,
            PriceType.SPOT if index < machines - on_demand else PriceType.ONDEMAND,
            weight,
        )
        for index in range(machines)
    ]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _cloud_call(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A database failure (locked past the busy timeout, disk full) is the cloud failing."""

    @wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise CloudError(
                f"mock cloud unavailable: {exc}", code="MockCloudUnavailable", retryable=True
            ) from exc

    return call


def _ip(offset: int) -> str:
    return f"10.{(offset >> 16) & 255}.{(offset >> 8) & 255}.{offset & 255}"


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _marks(values: Sequence[str]) -> str:
    return ",".join("?" * len(values))


class MockCloud:
    """A simulated cloud in ``<workdir>/mock-cloud.sqlite3``; safe across processes.

    Cloud calls (:meth:`provision`, :meth:`status`, :meth:`terminate`, :meth:`cancel`,
    :meth:`reclaimed`) raise
    :class:`CloudError` like a throttled API when ``api_error_rate`` says so or after
    :meth:`inject_errors` (:meth:`health` reports it as a failed check). The control calls
    (:meth:`advance`, :meth:`reclaim`, :meth:`console_terminate`, :meth:`machines`,
    :meth:`resources`) never fail that way.
    """

    def __init__(self, workdir: Path, knobs: Knobs | None = None) -> None:
        self.path = Path(workdir) / DB_NAME
        self.knobs = knobs or Knobs()
        self._db = _connect(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MockCloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transactions and shared state ---------------------------------------------------
    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, db: sqlite3.Connection, key: str) -> str:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else ""

    def _set_meta(self, db: sqlite3.Connection, key: str, value: object) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def _now(self, db: sqlite3.Connection) -> float:
        return time.time() + float(self._meta(db, "offset") or 0)

    def _rng(self, db: sqlite3.Connection) -> random.Random:
        """A generator for one operation: the seed plus a counter bumped on every use."""
        counter = int(self._meta(db, "rng_counter") or 0) + 1
        self._set_meta(db, "rng_counter", counter)
        seed = self.knobs.seed if self.knobs.seed is not None else int(self._meta(db, "seed"))
        return random.Random(f"{seed}:{counter}")  # noqa: S311 - a simulation, not security

    def _api_call(self, operation: str) -> None:
        """Fail like a throttled or unavailable API when injected or by ``api_error_rate``."""
        injected = int(self._meta(self._db, "fail_next") or 0)
        if not injected and not self.knobs.api_error_rate:
            return
        error: CloudError | None = None
        with self._transaction(write=True) as db:
            injected = int(self._meta(db, "fail_next") or 0)
            if injected:
                self._set_meta(db, "fail_next", injected - 1)
                error = ThrottledError(f"mock cloud: {operation}: Rate exceeded", code="RequestLimitExceeded")
            elif self.knobs.api_error_rate:
                rng = self._rng(db)
                if rng.random() < self.knobs.api_error_rate:
                    error = rng.choice(
                        [
                            ThrottledError(
                                f"mock cloud: {operation}: Rate exceeded", code="RequestLimitExceeded"
                            ),
                            CloudError(
                                f"mock cloud: {operation}: service unavailable",
                                code="Unavailable",
                                retryable=True,
                            ),
                        ]
                    )
        if error is not None:
            raise error

    def _rows(
        self, db: sqlite3.Connection, table: str, column: str, values: Iterable[str]
    ) -> list[sqlite3.Row]:
        """Rows of ``table`` whose ``column`` is one of ``values``, in insertion order."""
        wanted = list(dict.fromkeys(values))
        found: list[sqlite3.Row] = []
        for chunk in _chunks(wanted):
            found.extend(
                db.execute(
                    f"SELECT * FROM {table} WHERE {column} IN ({_marks(chunk)}) ORDER BY rowid",  # noqa: S608
                    tuple(chunk),
                )
            )
        return found

    def _select(self, db: sqlite3.Connection, column: str, values: Iterable[str]) -> list[CloudMachine]:
        return [_row_machine(row) for row in self._rows(db, "machines", column, values)]

    def _find(self, db: sqlite3.Connection, id_or_name: str) -> CloudMachine:
        row = db.execute(
            "SELECT * FROM machines WHERE machine_id = ? OR name = ?", (id_or_name, id_or_name)
        ).fetchone()
        if row is None:
            raise LookupError(f"no machine {id_or_name!r} in the mock cloud")
        return _row_machine(row)

    def _active_count(self, db: sqlite3.Connection, now: float) -> int:
        """Machines pending or running at ``now`` (what counts against capacity)."""
        row = db.execute(
            "SELECT count(*) FROM machines WHERE (stop_at IS NULL OR stop_at > :now)"
            " AND (reclaim_at IS NULL OR reclaim_at > :now)"
            " AND NOT (fail_message != '' AND ready_at <= :now)",
            {"now": now},
        ).fetchone()
        return int(row[0])

    # cloud calls -------------------------------------------------------------------------
    @_cloud_call
    def provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        """Launch machines for ``count`` units; idempotent on ``request_id``.

        :raises CapacityError: when the cloud has no room for even one machine (nothing is
            created). Less room than asked launches what fits and closes the request with a
            shortfall message.
        """
        self._api_call("RunInstances")
        with self._transaction(write=True) as db:
            row = db.execute(
                "SELECT cloud_request_id, message FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                cloud_request_id, message = self._launch(db, request_id, template, count)
            else:
                cloud_request_id, message = str(row[0]), str(row[1])
            machines = self._select(db, "cloud_request_id", [cloud_request_id])
            now = self._now(db)
        return Provisioned(
            handle={HANDLE_KEY: cloud_request_id},
            machines=tuple(machine.to_machine(now) for machine in machines),
            message=message,
        )

    def _launch(
        self, db: sqlite3.Connection, request_id: str, template: Template, count: int
    ) -> tuple[str, str]:
        now = self._now(db)
        plan = plan_launch(template, count)
        launch = plan
        if self.knobs.capacity >= 0:
            free = max(0, self.knobs.capacity - self._active_count(db, now))
            launch = plan[:free]
            if not launch:
                raise CapacityError(
                    f"mock cloud: insufficient capacity: {self.knobs.capacity} machines already running "
                    "(MOCK_CAPACITY)",
                    code="InsufficientInstanceCapacity",
                )
        message = ""
        if len(launch) < len(plan):
            message = (
                f"insufficient capacity: launched {len(launch)} of {len(plan)} machines "
                f"(the mock cloud runs at most {self.knobs.capacity}, MOCK_CAPACITY)"
            )
        rng = self._rng(db)
        cloud_request_id = f"mr-{rng.getrandbits(68):017x}"
        db.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?)",
            (cloud_request_id, request_id, template.template_id, count, now, int(bool(message)), message),
        )
        ip_next = int(self._meta(db, "ip_next") or _FIRST_IP)
        knobs = self.knobs
        for item in launch:
            machine_id = f"i-{rng.getrandbits(68):017x}"
            while db.execute("SELECT 1 FROM machines WHERE machine_id = ?", (machine_id,)).fetchone():
                machine_id = f"i-{rng.getrandbits(68):017x}"
            while ip_next & 255 in (0, 255):
                ip_next += 1
            ip = _ip(ip_next)
            ip_next += 1
            ready_at = now + knobs.boot_seconds
            fails = rng.random() < knobs.failure_rate
            interrupted = rng.random() < knobs.spot_reclaim_rate and item.price_type is PriceType.SPOT
            notice_at = ready_at + rng.uniform(0, RECLAIM_WINDOW_SECONDS)
            db.execute(
                "INSERT INTO machines (machine_id, name, private_ip, cloud_request_id, request_id,"
                " template_id, instance_type, price_type, weight, launch_at, ready_at, terminate_seconds,"
                " fail_message, notice_at, reclaim_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    machine_id,
                    f"ip-{ip.replace('.', '-')}.mock.internal",
                    ip,
                    cloud_request_id,
                    request_id,
                    template.template_id,
                    item.instance_type,
                    item.price_type.value,
                    item.weight,
                    now,
                    ready_at,
                    knobs.terminate_seconds,
                    _FAIL_MESSAGE if fails else "",
                    notice_at if interrupted else None,
                    notice_at + knobs.reclaim_grace_seconds if interrupted else None,
                ),
            )
        self._set_meta(db, "ip_next", ip_next)
        return cloud_request_id, message

    @_cloud_call
    def status(self, requests: Sequence[CloudRequest]) -> dict[str, RequestSnapshot]:
        """Snapshots of acquire requests (found by handle, else by request id) and return
        requests (their machines the cloud still knows). Unknown requests are left out."""
        self._api_call("DescribeInstances")
        acquire = [request for request in requests if request.kind is RequestKind.ACQUIRE]
        returns = [request for request in requests if request.kind is RequestKind.RETURN]
        handles = {r.request_id: r.handle[HANDLE_KEY] for r in acquire if HANDLE_KEY in r.handle}
        unhandled = [r for r in acquire if r.request_id not in handles]
        with self._transaction(write=False) as db:
            now = self._now(db)
            by_handle = {
                str(row["cloud_request_id"]): row
                for row in self._rows(db, "requests", "cloud_request_id", [str(h) for h in handles.values()])
            }
            by_request = {
                str(row["request_id"]): row
                for row in self._rows(db, "requests", "request_id", [r.request_id for r in unhandled])
            }
            cloud_requests: dict[str, sqlite3.Row] = {}
            for request in acquire:
                found = (
                    by_handle.get(str(handles[request.request_id]))
                    if request.request_id in handles
                    else by_request.get(request.request_id)
                )
                if found is not None:
                    cloud_requests[request.request_id] = found
            launched: dict[str, list[CloudMachine]] = {}
            cloud_ids = [str(row["cloud_request_id"]) for row in cloud_requests.values()]
            for machine in self._select(db, "cloud_request_id", cloud_ids):
                launched.setdefault(machine.cloud_request_id, []).append(machine)
            returned = {
                machine.machine_id: machine
                for machine in self._select(db, "machine_id", [i for r in returns for i in r.machine_ids])
            }
        snapshots: dict[str, RequestSnapshot] = {}
        for request in acquire:
            if request.request_id not in cloud_requests:
                continue
            row = cloud_requests[request.request_id]
            machines = tuple(machine.to_machine(now) for machine in launched.get(row["cloud_request_id"], []))
            pending = any(machine.state is MachineState.PENDING for machine in machines)
            snapshots[request.request_id] = RequestSnapshot(
                machines=machines, open=pending and not row["closed"], message=str(row["message"])
            )
        for request in returns:
            snapshots[request.request_id] = RequestSnapshot(
                machines=tuple(
                    returned[machine_id].to_machine(now)
                    for machine_id in request.machine_ids
                    if machine_id in returned
                )
            )
        return snapshots

    @_cloud_call
    def terminate(self, machine_ids: Sequence[str], names: Sequence[str] = ()) -> dict[str, str]:
        """Begin terminating machines by id (or by name). Unknown or already stopping machines
        are no error; returns the errors per machine id (the mock has none)."""
        self._api_call("TerminateInstances")
        with self._transaction(write=True) as db:
            now = self._now(db)
            for column, values in (("machine_id", list(machine_ids)), ("name", list(names))):
                for chunk in _chunks(values):
                    db.execute(
                        f"UPDATE machines SET stop_at = ?, stop_reason = 'returned'"  # noqa: S608
                        f" WHERE {column} IN ({_marks(chunk)}) AND stop_at IS NULL",
                        (now, *chunk),
                    )
        return {}

    @_cloud_call
    def cancel(self, request_id: str) -> None:
        """Terminate every machine launched for ``request_id`` and close its cloud request,
        found by the request id alone. Idempotent; a request the cloud never saw is no error."""
        self._api_call("CancelRequest")
        with self._transaction(write=True) as db:
            now = self._now(db)
            db.execute(
                "UPDATE machines SET stop_at = ?, stop_reason = 'cancelled'"
                " WHERE request_id = ? AND stop_at IS NULL",
                (now, request_id),
            )
            db.execute(
                "UPDATE requests SET closed = 1, message = 'cancelled' WHERE request_id = ? AND closed = 0",
                (request_id,),
            )

    @_cloud_call
    def reclaimed(self, refs: Sequence[MachineRef]) -> list[Reclaim]:
        """The hosts of ``refs`` the cloud is taking: under a spot notice (grace left), gone
        (stopped, terminated, failed: grace 0) or unknown (grace 0)."""
        self._api_call("DescribeInstances")
        with self._transaction(write=False) as db:
            now = self._now(db)
            by_id = {
                m.machine_id: m
                for m in self._select(db, "machine_id", [r.machine_id for r in refs if r.machine_id])
            }
            by_name = {
                m.name: m for m in self._select(db, "name", [r.name for r in refs if not r.machine_id])
            }
        reclaims: list[Reclaim] = []
        for ref in refs:
            machine = by_id.get(ref.machine_id) if ref.machine_id else by_name.get(ref.name)
            if machine is None:
                reclaims.append(
                    Reclaim(
                        name=ref.name,
                        grace_period=0,
                        machine_id=ref.machine_id,
                        reason="unknown to the mock cloud",
                    )
                )
                continue
            grace = machine.grace(now)
            if grace is not None:
                reason = machine.message(now) or _NOTICE_MESSAGE
                reclaims.append(
                    Reclaim(name=ref.name, grace_period=grace, machine_id=machine.machine_id, reason=reason)
                )
        return reclaims

    def health(self) -> HealthCheck:
        """Whether the cloud answers (a cloud call: it fails when errors are injected or by
        ``api_error_rate``) and its database can be read and written. Never raises."""
        name = "mock cloud database"
        try:
            self._api_call("DescribeHealth")
            with self._transaction(write=True) as db:
                now = self._now(db)
                self._set_meta(db, "checked_at", now)
                count = db.execute("SELECT count(*) FROM machines").fetchone()[0]
        except CloudError as exc:
            return HealthCheck(name=name, ok=False, detail=f"{self.path}: {exc.message}")
        except sqlite3.Error as exc:
            return HealthCheck(name=name, ok=False, detail=f"{self.path}: {exc}")
        return HealthCheck(name=name, ok=True, detail=f"{self.path}: readable and writable, {count} machines")

    # control calls (tests, admins) --------------------------------------------------------
    def now(self) -> float:
        """The simulated clock."""
        return self._now(self._db)

    def advance(self, seconds: float) -> float:
        """Move the simulated clock forward; returns the new time."""
        if seconds < 0 or not math.isfinite(seconds):
            raise ValueError(f"seconds must be ≥ 0, got {seconds}")
        with self._transaction(write=True) as db:
            self._set_meta(db, "offset", repr(float(self._meta(db, "offset") or 0) + seconds))
            return self._now(db)

    def inject_errors(self, count: int = 1) -> None:
        """Make the next ``count`` cloud calls fail like a throttled API."""
        with self._transaction(write=True) as db:
            self._set_meta(db, "fail_next", int(self._meta(db, "fail_next") or 0) + count)

    def reclaim(self, id_or_name: str, grace: int | None = None) -> CloudMachine:
        """Give a machine a spot interruption notice: it is lost ``grace`` seconds from now
        (default ``reclaim_grace_seconds``). An earlier deadline already given stands.

        :raises LookupError: for an unknown machine.
        """
        grace = self.knobs.reclaim_grace_seconds if grace is None else grace
        if grace < 0:
            raise ValueError(f"grace must be ≥ 0, got {grace}")
        with self._transaction(write=True) as db:
            now = self._now(db)
            machine = self._find(db, id_or_name)
            if (
                machine.notice_at is None
                or machine.notice_at > now
                or (machine.reclaim_at or 0) > now + grace
            ):
                db.execute(
                    "UPDATE machines SET notice_at = ?, reclaim_at = ? WHERE machine_id = ?",
                    (now, now + grace, machine.machine_id),
                )
            return self._find(db, machine.machine_id)

    def console_terminate(self, id_or_name: str) -> CloudMachine:
        """Terminate a machine outside Host Factory, as from the cloud console.

        :raises LookupError: for an unknown machine.
        """
        with self._transaction(write=True) as db:
            now = self._now(db)
            machine = self._find(db, id_or_name)
            db.execute(
                "UPDATE machines SET stop_at = ?, stop_reason = 'console' WHERE machine_id = ? AND"
                " (stop_at IS NULL OR stop_at > ?)",
                (now, machine.machine_id, now),
            )
            return self._find(db, machine.machine_id)

    def resources(self) -> dict[str, str]:
        """What the cloud holds that still costs: each machine not on its way out, by id, with
        its state (a cloud request costs nothing once its machines are gone)."""
        with self._transaction(write=False) as db:
            now = self._now(db)
            machines = [_row_machine(row) for row in db.execute("SELECT * FROM machines ORDER BY seq")]
        states = {machine.machine_id: machine.state(now) for machine in machines}
        return {machine_id: state.value for machine_id, state in states.items() if not state.is_ending}

    def machines(self) -> list[CloudMachine]:
        """Every machine the cloud has launched, oldest first."""
        with self._transaction(write=False) as db:
            return [_row_machine(row) for row in db.execute("SELECT * FROM machines ORDER BY seq")]


def _row_machine(row: sqlite3.Row) -> CloudMachine:
    values = dict(row)
    values.pop("seq")
    return CloudMachine(**values)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating when needed) the cloud's database: WAL, busy timeout, mode 0600."""
    private_dir(path.parent)
    ensure_private(path, "mock cloud database")
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 30000")
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return db
    for attempt in range(100):
        # Switching to WAL takes an exclusive lock without waiting on the busy handler.
        try:
            if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                break
        except sqlite3.OperationalError:
            if attempt == 99:
                raise
        time.sleep(0.02)
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('seed', ?)",
                (str(int.from_bytes(os.urandom(4), "big")),),
            )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return db

"""The embedded SQLite request store: round trips, queries, transactions, files, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core.errors import ConfigError
from ohfp_core.models import (
    Machine,
    MachineResult,
    MachineState,
    PriceType,
    RequestKind,
    RequestStatus,
)
from ohfp_core.sqlite import CHUNK, DB_NAME, SCHEMA_VERSION, SQLiteStorage, open_sqlite
from ohfp_core.storage import MachineRecord, RequestRecord, StorageFactory

# mypy checks that the class satisfies the Storage protocol through the factory type.
FACTORY: StorageFactory = open_sqlite

COUNTER_ID = "req-counter"
WORKERS = 8
ROUNDS = 50


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def store(workdir: Path) -> Iterator[SQLiteStorage]:
    opened = SQLiteStorage(workdir)
    yield opened
    opened.close()


def machine(machine_id: str, name: str | None = None, **changes: Any) -> Machine:
    return Machine(
        machine_id=machine_id, name=name or f"ip-{machine_id}", state=MachineState.RUNNING, **changes
    )


def mrec(machine_id: str, request_id: str = "req-1", **changes: Any) -> MachineRecord:
    name = changes.pop("name", None)
    return MachineRecord(machine=machine(machine_id, name), request_id=request_id, **changes)


def assert_no_defaults(obj: attrs.AttrsInstance) -> None:
    """Guard for round-trip tests: every field is set, so a field the store drops shows up."""
    for f in attrs.fields(type(obj)):
        factory = getattr(f.default, "factory", None)
        default = factory() if factory is not None else f.default
        assert getattr(obj, f.name) != default, f"{type(obj).__name__}.{f.name} left at its default"


# -- round trips -----------------------------------------------------------------------------


def test_request_round_trip_keeps_every_field(workdir: Path) -> None:
    record = RequestRecord(
        request_id="ret-7",
        kind=RequestKind.RETURN,
        status=RequestStatus.COMPLETE_WITH_ERROR,
        template_id="tpl-a",
        machine_count=3,
        handle={"fleet": "sfr-1", "ids": [1, 2], "nested": {"a": None, "b": True}},
        machine_ids=("i-2", "i-1", "i-3"),
        errors={"i-1": "InvalidInstanceID.NotFound"},
        message="déjà terminated",
        created_at=1_700_000_000,
        updated_at=1_700_000_050,
        delivered=True,
        owner="host-a:/var/ohfp/work",
    )
    assert_no_defaults(record)
    first = SQLiteStorage(workdir)
    first.put_request(record)
    first.put_request(RequestRecord(request_id="req-nohandle", kind=RequestKind.ACQUIRE))
    first.close()

    reopened = SQLiteStorage(workdir)
    got = reopened.get_requests(["ret-7", "req-nohandle"])
    reopened.close()

    assert got["ret-7"] == record
    assert isinstance(got["ret-7"].machine_ids, tuple)
    assert got["req-nohandle"] == RequestRecord(request_id="req-nohandle", kind=RequestKind.ACQUIRE)
    assert got["req-nohandle"].handle is None


def test_machine_round_trip_keeps_every_field(workdir: Path) -> None:
    full = Machine(
        machine_id="i-0abc",
        name="ip-10-0-0-1.ec2.internal",
        state=MachineState.SHUTTING_DOWN,
        private_ip="10.0.0.1",
        public_ip="3.3.3.3",
        launch_time=1_700_000_000,
        instance_type="m5.large",
        price_type=PriceType.SPOT,
        weight=4,
        message="Server.SpotInstanceTermination",
        cloud_host_id="h-123",
        tags={"ohfp:request": "req-1", "Name": "grid"},
    )
    record = MachineRecord(
        machine=full,
        request_id="req-1",
        template_id="tpl-a",
        result=MachineResult.FAIL,
        return_request_id="ret-2",
        reclaimed_at=1_700_000_100,
        updated_at=1_700_000_200,
    )
    assert_no_defaults(full)
    assert_no_defaults(record)
    bare = MachineRecord(
        machine=Machine(machine_id="i-bare", name="", state=MachineState.PENDING), request_id="req-2"
    )
    first = SQLiteStorage(workdir)
    first.put_machines([record, bare])
    first.close()

    reopened = SQLiteStorage(workdir)
    got = reopened.find_machines(["i-0abc", "i-bare"])
    reopened.close()

    assert got == [record, bare]
    assert got[0].machine.state is MachineState.SHUTTING_DOWN
    assert got[0].machine.price_type is PriceType.SPOT
    assert got[1].machine.price_type is None


# -- upserts and queries ---------------------------------------------------------------------


def test_put_request_replaces_the_stored_request(store: SQLiteStorage) -> None:
    store.put_request(
        RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, machine_count=2, created_at=10)
    )
    changed = RequestRecord(
        request_id="req-1",
        kind=RequestKind.ACQUIRE,
        status=RequestStatus.COMPLETE,
        machine_count=2,
        handle={"fleet": "f-1"},
        machine_ids=("i-1", "i-2"),
        created_at=10,
        updated_at=20,
    )
    store.put_request(changed)

    assert store.get_requests(["req-1"]) == {"req-1": changed}
    assert store.open_requests() == []


def test_put_machines_replaces_by_machine_id_and_keeps_first_stored_order(store: SQLiteStorage) -> None:
    store.put_machines([mrec("i-1"), mrec("i-2"), mrec("i-3")])
    updated = mrec("i-1", name="host-1", result=MachineResult.SUCCEED, updated_at=5)
    store.put_machines([updated])

    machines = store.machines_of(["req-1"])["req-1"]
    assert [m.machine_id for m in machines] == ["i-1", "i-2", "i-3"]
    assert machines[0] == updated
    assert store.find_machines(names=["ip-i-1"]) == []
    assert store.find_machines(names=["host-1"]) == [updated]


def test_open_requests_are_running_only_oldest_first_and_filter_by_kind(store: SQLiteStorage) -> None:
    store.put_request(RequestRecord(request_id="req-c", kind=RequestKind.ACQUIRE, created_at=30))
    store.put_request(RequestRecord(request_id="ret-a", kind=RequestKind.RETURN, created_at=10))
    store.put_request(RequestRecord(request_id="req-b", kind=RequestKind.ACQUIRE, created_at=20))
    store.put_request(RequestRecord(request_id="req-a", kind=RequestKind.ACQUIRE, created_at=20))
    store.put_request(
        RequestRecord(
            request_id="req-done", kind=RequestKind.ACQUIRE, status=RequestStatus.COMPLETE, created_at=1
        )
    )
    store.put_request(
        RequestRecord(
            request_id="ret-err",
            kind=RequestKind.RETURN,
            status=RequestStatus.COMPLETE_WITH_ERROR,
            created_at=2,
        )
    )

    assert [r.request_id for r in store.open_requests()] == ["ret-a", "req-a", "req-b", "req-c"]
    assert [r.request_id for r in store.open_requests(RequestKind.ACQUIRE)] == ["req-a", "req-b", "req-c"]
    assert [r.request_id for r in store.open_requests(RequestKind.RETURN)] == ["ret-a"]


def test_held_machines_are_not_failed_and_not_returned(store: SQLiteStorage) -> None:
    store.put_machines(
        [
            mrec("i-exec", template_id="t1"),
            mrec("i-ok", template_id="t2", result=MachineResult.SUCCEED),
            mrec("i-fail", template_id="t1", result=MachineResult.FAIL),
            mrec("i-returning", template_id="t1", result=MachineResult.SUCCEED, return_request_id="ret-1"),
            mrec("i-reclaimed", template_id="t1", result=MachineResult.SUCCEED, reclaimed_at=99),
        ]
    )

    assert [m.machine_id for m in store.held_machines()] == ["i-exec", "i-ok", "i-reclaimed"]
    assert [m.machine_id for m in store.held_machines("t1")] == ["i-exec", "i-reclaimed"]
    assert store.held_machines("t-unknown") == []

    store.put_machines([mrec("i-exec", template_id="t1", return_request_id="ret-2")])
    assert [m.machine_id for m in store.held_machines("t1")] == ["i-reclaimed"]


def test_find_machines_by_ids_and_names_returns_each_once(store: SQLiteStorage) -> None:
    store.put_machines([mrec("i-1"), mrec("i-2"), mrec("i-3"), mrec("i-4")])

    def ids(found: list[MachineRecord]) -> list[str]:
        return [m.machine_id for m in found]

    assert ids(store.find_machines(["i-3", "i-1", "i-missing"])) == ["i-3", "i-1"]
    assert ids(store.find_machines(names=["ip-i-4", "nobody"])) == ["i-4"]
    assert ids(store.find_machines(["i-2", "i-2"], names=["ip-i-2", "ip-i-1"])) == ["i-2", "i-1"]
    assert store.find_machines() == []


def test_get_requests_omits_unknown_and_machines_of_lists_every_id(store: SQLiteStorage) -> None:
    store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
    store.put_machines([mrec("i-1", "req-1"), mrec("i-2", "req-1"), mrec("i-3", "req-3")])

    assert list(store.get_requests(["req-1", "req-unknown"])) == ["req-1"]
    assert store.get_requests([]) == {}
    found = store.machines_of(["req-1", "req-2", "req-3"])
    assert {k: [m.machine_id for m in v] for k, v in found.items()} == {
        "req-1": ["i-1", "i-2"],
        "req-2": [],
        "req-3": ["i-3"],
    }


class QueryRecorder:
    """Stands in for the store's connection and records every SELECT with its parameters."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.selects: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql.lstrip().startswith("SELECT"):
            self.selects.append((sql, tuple(params)))
        return self.conn.execute(sql, params)


def test_lookups_over_1000_ids_use_bounded_indexed_queries(
    store: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 1203
    request_ids = [f"req-{n:05d}" for n in range(count)]
    machine_ids = [f"i-{n:05d}" for n in range(count)]
    with store.transaction():
        for request_id in request_ids:
            store.put_request(RequestRecord(request_id=request_id, kind=RequestKind.ACQUIRE))
    store.put_machines([mrec(m, r, template_id="t1") for m, r in zip(machine_ids, request_ids, strict=True)])
    recorder = QueryRecorder(store._conn)
    monkeypatch.setattr(store, "_conn", recorder)

    assert len(store.get_requests([*request_ids, "req-unknown"])) == count
    machines = store.machines_of(request_ids)
    assert len(machines) == count
    assert all(len(found) == 1 for found in machines.values())
    assert [m.machine_id for m in store.find_machines(machine_ids)] == machine_ids
    assert len(store.find_machines(names=[f"ip-{m}" for m in machine_ids])) == count
    assert len(store.held_machines("t1")) == count
    assert len(store.held_machines()) == count
    assert len(store.open_requests(RequestKind.ACQUIRE)) == count

    assert len(recorder.selects) == 4 * 3 + 3  # three chunks for each of the four id lookups
    for sql, params in recorder.selects:
        assert len(params) <= CHUNK
        plan = [row[3] for row in store._conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        scans = [step for step in plan if step.startswith("SCAN") and "INDEX" not in step]
        assert scans == [], f"{sql} scans a table: {plan}"


# -- transactions ----------------------------------------------------------------------------


def test_transaction_rolls_back_on_exception(store: SQLiteStorage) -> None:
    store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, message="before"))

    with pytest.raises(ValueError, match="boom"), store.transaction():
        store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, message="after"))
        store.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
        store.put_machines([mrec("i-1"), mrec("i-2")])
        raise ValueError("boom")

    assert store.get_requests(["req-1", "req-2"]) == {
        "req-1": RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, message="before")
    }
    assert store.find_machines(["i-1", "i-2"]) == []

    with store.transaction():
        store.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
    assert list(store.get_requests(["req-2"])) == ["req-2"]


def test_transaction_commits_for_other_connections_and_is_not_reentrant(
    store: SQLiteStorage, workdir: Path
) -> None:
    other = SQLiteStorage(workdir)
    try:
        with store.transaction():
            store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
            assert other.get_requests(["req-1"]) == {}
            with pytest.raises(RuntimeError, match="re-entrant"), store.transaction():
                pass
        assert list(other.get_requests(["req-1"])) == ["req-1"]
    finally:
        other.close()


# -- files and schema ------------------------------------------------------------------------


def test_files_are_private_to_the_owner(tmp_path: Path) -> None:
    workdir = tmp_path / "deep" / "work"
    old_umask = os.umask(0o002)
    try:
        opened = SQLiteStorage(workdir)
        opened.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
        names = sorted(p.name for p in workdir.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in workdir.iterdir()}
        opened.close()
    finally:
        os.umask(old_umask)

    assert names == [DB_NAME, f"{DB_NAME}-shm", f"{DB_NAME}-wal"]
    assert modes == dict.fromkeys(names, 0o600)
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700


def test_schema_version_and_wal_are_recorded(store: SQLiteStorage, workdir: Path) -> None:
    raw = sqlite3.connect(workdir / DB_NAME)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
    assert SCHEMA_VERSION >= 1


def test_a_newer_schema_version_is_refused(workdir: Path) -> None:
    SQLiteStorage(workdir).close()
    raw = sqlite3.connect(workdir / DB_NAME)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()

    with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1}.*newer"):
        SQLiteStorage(workdir)


def test_a_file_that_is_not_a_database_is_a_config_error(workdir: Path) -> None:
    workdir.mkdir()
    (workdir / DB_NAME).write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(ConfigError, match="cannot open the state database"):
        SQLiteStorage(workdir)


# -- concurrency -----------------------------------------------------------------------------


def _open_and_insert(workdir: str, index: int, barrier: Any) -> None:
    barrier.wait(60)
    opened = SQLiteStorage(Path(workdir))
    opened.put_request(RequestRecord(request_id=f"req-{index}", kind=RequestKind.ACQUIRE))
    opened.close()


def _increment(workdir: str, rounds: int, barrier: Any) -> None:
    opened = SQLiteStorage(Path(workdir))
    barrier.wait(60)
    for _ in range(rounds):
        with opened.transaction():
            record = opened.get_requests([COUNTER_ID])[COUNTER_ID]
            opened.put_request(attrs.evolve(record, message=str(int(record.message) + 1)))
    opened.close()


def _run_workers(target: Any, args: list[tuple[Any, ...]]) -> list[int | None]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args))
    processes = [ctx.Process(target=target, args=(*a, barrier)) for a in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    return [process.exitcode for process in processes]


def test_processes_opening_a_new_database_at_once_all_succeed(workdir: Path) -> None:
    exitcodes = _run_workers(_open_and_insert, [(str(workdir), n) for n in range(WORKERS)])

    assert exitcodes == [0] * WORKERS
    opened = SQLiteStorage(workdir)
    try:
        assert len(opened.get_requests([f"req-{n}" for n in range(WORKERS)])) == WORKERS
    finally:
        opened.close()


def test_concurrent_read_modify_write_loses_no_update(workdir: Path) -> None:
    opened = SQLiteStorage(workdir)
    opened.put_request(RequestRecord(request_id=COUNTER_ID, kind=RequestKind.ACQUIRE, message="0"))
    opened.close()

    exitcodes = _run_workers(_increment, [(str(workdir), ROUNDS)] * WORKERS)

    assert exitcodes == [0] * WORKERS
    opened = SQLiteStorage(workdir)
    try:
        assert opened.get_requests([COUNTER_ID])[COUNTER_ID].message == str(WORKERS * ROUNDS)
    finally:
        opened.close()

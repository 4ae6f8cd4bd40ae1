"""The embedded SQLite request store: the storage kit, bounded queries, files, schema, and the
journal mode on network file systems."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ohfp_core import mounts, sqlite
from ohfp_core.errors import ConfigError, StorageError, StorageFailure
from ohfp_core.models import RequestKind
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sql_rows import machine_row, request_row
from ohfp_core.sql_schema import SCHEMA_VERSION
from ohfp_core.sqlite import DB_NAME, DIALECT, SQLiteStorage
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, StorageContext, StoredValue
from ohfp_core.storage_contract import StoreOpener, mrec
from ohfp_core.testing import StorageContract
from tests.store_support import MACHINES, REQUESTS, VALUES, assert_nothing_lost

# ohfp-core 0.2's schema, version by version, as it wrote databases (kept verbatim: a store it
# wrote must open and migrate with nothing lost).
VERSION_1 = (
    "CREATE TABLE requests (request_id TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,"
    " template_id TEXT, machine_count INTEGER NOT NULL, handle TEXT, machine_ids TEXT NOT NULL,"
    " errors TEXT NOT NULL, message TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE INDEX requests_status ON requests (status, created_at)",
    "CREATE TABLE machines (machine_id TEXT PRIMARY KEY NOT NULL, request_id TEXT NOT NULL, template_id TEXT,"
    " name TEXT NOT NULL, result TEXT NOT NULL, return_request_id TEXT, reclaimed_at INTEGER,"
    " updated_at INTEGER NOT NULL, machine TEXT NOT NULL)",
    "CREATE INDEX machines_request ON machines (request_id)",
    "CREATE INDEX machines_name ON machines (name)",
    "CREATE INDEX machines_return ON machines (return_request_id)",
    "CREATE INDEX machines_held ON machines (template_id)"
    " WHERE return_request_id IS NULL AND result != 'fail'",
)
VERSION_2 = (
    "ALTER TABLE requests ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE requests ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
    "UPDATE requests SET delivered = 0 WHERE status = 'running' AND handle IS NULL",
    "CREATE INDEX requests_undelivered ON requests (created_at) WHERE delivered = 0 AND status = 'running'",
    "CREATE TABLE stored_values (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL)",
)


def write_version_2(
    path: Path,
    requests: Sequence[RequestRecord],
    machines: Sequence[MachineRecord],
    values: Sequence[StoredValue] = (),
) -> None:
    """A database as ohfp-core 0.2 wrote it (schema version 2), holding these records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(path)
    for statement in (*VERSION_1, *VERSION_2):
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 2")
    raw.executemany(
        "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", map(request_row, requests)
    )
    raw.executemany("INSERT INTO machines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", map(machine_row, machines))
    raw.executemany(
        "INSERT INTO stored_values VALUES (?, ?, ?)",
        [(v.key, json.dumps(v.value), v.expires_at) for v in values],
    )
    raw.commit()
    raw.close()


def _is_a_store(workdir: Path) -> Storage:
    return SQLiteStorage(workdir)  # mypy checks that the class satisfies the Storage protocol


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def store(workdir: Path) -> Iterator[SQLiteStorage]:
    opened = SQLiteStorage(workdir)
    yield opened
    opened.close()


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


def plan_scans(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[str]:
    """The steps of ``sql``'s query plan that scan a table without an index."""
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    return [step for step in plan if step.startswith("SCAN") and "INDEX" not in step]


class TestSQLiteContract(StorageContract):
    """The storage kit against the embedded store."""

    @pytest.fixture
    def opener(self, tmp_path: Path) -> StoreOpener:
        return functools.partial(SQLiteStorage, tmp_path / "work")

    def assert_indexed(self, store: Storage, lookup: Callable[[], object]) -> None:
        assert isinstance(store, SQLiteStorage)
        recorder = QueryRecorder(store._conn)
        store._conn = recorder
        try:
            lookup()
        finally:
            store._conn = recorder.conn
        assert recorder.selects, "the lookup read nothing"
        for sql, params in recorder.selects:
            assert plan_scans(store._conn, sql, params) == [], f"{sql} scans a table"

    def write_previous_version(
        self, opener: StoreOpener, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        assert isinstance(opener, functools.partial)
        write_version_2(Path(opener.args[0]) / DB_NAME, requests, machines)

    def bump_schema_version(self, opener: StoreOpener) -> None:
        assert isinstance(opener, functools.partial)
        raw = sqlite3.connect(Path(opener.args[0]) / DB_NAME)
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        raw.close()


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
        assert len(params) <= DIALECT.chunk
        assert plan_scans(recorder.conn, sql, params) == [], f"{sql} scans a table"


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


def test_a_database_of_ohfp_0_2_migrates_with_nothing_lost(workdir: Path) -> None:
    """Schema version 2, as ohfp-core 0.2 wrote it, with every kind of record: opened by
    this ohfp, every record reads back as it was and the indexes are the shared SQL layer's."""
    write_version_2(workdir / DB_NAME, REQUESTS, MACHINES, VALUES)

    store = SQLiteStorage(workdir)
    try:
        assert_nothing_lost(store)
        indexes = {
            row[0] for row in store._conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    finally:
        store.close()
    assert not indexes & {"requests_status", "machines_return"}, "the indexes nothing reads are gone"
    assert {"requests_open", "requests_undelivered", "machines_held", "machines_held_all"} <= indexes


def test_schema_version_and_wal_are_recorded(store: SQLiteStorage, workdir: Path) -> None:
    raw = sqlite3.connect(workdir / DB_NAME)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()
    assert SCHEMA_VERSION >= 1


def test_a_file_that_is_not_a_database_is_a_corrupt_store(workdir: Path) -> None:
    workdir.mkdir()
    (workdir / DB_NAME).write_bytes(b"this is not sqlite" * 100)

    with pytest.raises(StorageError, match=r"the state database .*: file is not a database") as error:
        SQLiteStorage(workdir)
    assert error.value.kind is StorageFailure.CORRUPT


# -- network file systems --------------------------------------------------------------------


def fake_mountinfo(tmp_path: Path, mount_point: Path, fstype: str) -> Path:
    """A mountinfo table with a local root and ``fstype`` mounted at ``mount_point``."""
    table = tmp_path / "mountinfo"
    point = str(mount_point).replace(" ", "\\040")
    table.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        f"40 22 0:50 / {point} rw,relatime shared:9 - {fstype} filer:/export rw,vers=4.2\n"
        f"41 40 0:51 / {point}/local rw,relatime shared:10 - tmpfs tmpfs rw\n",
        encoding="utf-8",
    )
    return table


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory the (fake) mount table puts on NFS."""
    directory = tmp_path / "on nfs"
    directory.mkdir()
    monkeypatch.setattr(mounts, "MOUNT_TABLES", (fake_mountinfo(tmp_path, directory.resolve(), "nfs4"),))
    return directory


def journal_mode(path: Path) -> str:
    raw = sqlite3.connect(path)
    try:
        return str(raw.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        raw.close()


def test_the_longest_mount_point_prefix_of_the_resolved_path_decides(tmp_path: Path) -> None:
    base = tmp_path.resolve()
    table = fake_mountinfo(tmp_path, base / "nfs", "nfs4")
    (base / "nfs" / "local").mkdir(parents=True)
    (base / "nfs-not").mkdir()
    (base / "link").symlink_to(base / "nfs")
    assert mounts.filesystem_type(base / "nfs" / "work" / "new", [table]) == "nfs4"
    assert mounts.filesystem_type(base / "link" / "work", [table]) == "nfs4", "symbolic links are resolved"
    assert mounts.filesystem_type(base / "nfs" / "local" / "x", [table]) == "tmpfs"
    assert mounts.filesystem_type(base / "nfs-not", [table]) == "ext4"
    (base / "gpfs").mkdir()
    proc_mounts = tmp_path / "mounts"
    proc_mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nfiler:/x {base}/gpfs gpfs rw 0 0\n")
    assert mounts.filesystem_type(base / "gpfs" / "w", [proc_mounts]) == "gpfs"
    assert mounts.filesystem_type(base, [tmp_path / "missing"]) is None


@pytest.mark.parametrize(
    "fstype, shared",
    [("nfs", True), ("nfs4", True), ("cifs", True), ("smb3", True), ("lustre", True), ("gpfs", True),
     ("beegfs", True), ("glusterfs", True), ("ceph", True), ("fuse.sshfs", True), ("ext4", False),
     ("xfs", False), ("tmpfs", False), ("overlay", False), (None, False)],
)  # fmt: skip
def test_network_and_cluster_file_systems_are_shared(fstype: str | None, shared: bool) -> None:
    assert mounts.is_shared(fstype) is shared


def test_on_a_network_file_system_the_store_uses_a_rollback_journal_and_says_so(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(sqlite.log, "info", lambda event, **kw: logged.append((event, kw)))
    monkeypatch.setattr(sqlite, "_said", set())
    workdir = shared_dir / "work"
    for _ in range(2):
        store = SQLiteStorage(workdir)
        store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
        assert store.check()["journalMode"] == "delete"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        store.close()
    assert journal_mode(workdir / DB_NAME) == "delete"
    assert sorted(p.name for p in workdir.iterdir()) == [DB_NAME], "no -wal or -shm file"
    assert len(logged) == 1, "said once per process"
    event, fields = logged[0]
    assert "network" in event and fields["filesystem"] == "nfs4" and fields["journal_mode"] == "delete"


def test_an_existing_wal_database_moved_to_nfs_leaves_wal_with_its_data(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = shared_dir / "work"
    monkeypatch.setattr(mounts, "MOUNT_TABLES", ())  # not detected: as on a local disk
    store = SQLiteStorage(workdir)
    assert store.check()["journalMode"] == "wal"
    store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
    # Still open, with the record in the -wal file only: a crash or a copy of the directory.
    assert (workdir / f"{DB_NAME}-wal").stat().st_size > 0
    monkeypatch.undo()
    monkeypatch.setattr(
        mounts, "MOUNT_TABLES", (fake_mountinfo(shared_dir.parent, shared_dir.resolve(), "nfs"),)
    )
    store.close()
    again = SQLiteStorage(workdir)
    try:
        assert again.check()["journalMode"] == "delete"
        assert list(again.get_requests(["req-1"])) == ["req-1"]
    finally:
        again.close()
    assert journal_mode(workdir / DB_NAME) == "delete"
    assert not (workdir / f"{DB_NAME}-wal").exists()


def test_the_setting_overrides_the_detection(shared_dir: Path, tmp_path: Path) -> None:
    def opened(workdir: Path, settings: dict[str, Any]) -> str:
        factory = Hooks(make_manager()).storage_factories()["sqlite"]
        store = factory(StorageContext(instance="i", workdir=workdir, settings=settings))
        try:
            return str(store.check()["journalMode"])
        finally:
            store.close()

    assert opened(shared_dir / "a", {"journalMode": "WAL"}) == "wal"
    assert opened(shared_dir / "b", {"journalMode": "truncate"}) == "truncate"
    assert opened(shared_dir / "c", {}) == "delete"
    assert opened(shared_dir / "a", {"journalMode": "auto"}) == "delete", "auto leaves WAL on NFS"
    with pytest.raises(ConfigError) as error:
        opened(tmp_path / "d", {"journalMode": "memory", "other": 1})
    assert set(error.value.problems) == {
        '$.sqlite.journalMode: must be one of auto, wal, delete, truncate, got "memory"',
        "$.sqlite.other: unknown key; known: journalMode",
    }


def test_checking_the_files_keeps_the_process_locks(tmp_path: Path) -> None:
    """Checking the database files must not close a descriptor of them: that drops every
    POSIX lock the process holds on them, SQLite's among them (a long-lived process, the
    resident service, opens stores while others are in a transaction)."""
    import sqlite3
    import subprocess
    import sys

    from ohfp_core.files import ensure_private, tighten_if_present

    path = tmp_path / "db.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    ensure_private(path, "state database")
    for suffix in ("-wal", "-shm", "-journal"):
        tighten_if_present(path.with_name(path.name + suffix), "state database file")
    probe = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "try:\n"
        "    db.execute('BEGIN IMMEDIATE')\n"
        "except sqlite3.OperationalError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('got the write lock')\n"
    )
    command = [sys.executable, "-c", probe, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "database is locked", done.stdout
    holder.execute("COMMIT")
    holder.close()

"""The PostgreSQL store: the storage kit against a live server, settings, secrets, errors."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import psycopg
import pytest

from ohfp_core.deadline import Deadline
from ohfp_core.errors import ConfigError, StorageError, StorageFailure
from ohfp_core.models import RequestKind
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sql_rows import MACHINE_COLUMNS, REQUEST_COLUMNS, machine_row, request_row
from ohfp_core.sql_schema import SCHEMA_VERSION
from ohfp_core.storage import (
    MachineRecord,
    RequestRecord,
    Storage,
    StorageContext,
    StorageFactory,
    StoredValue,
    dumps,
)
from ohfp_core.storage_contract import StoreOpener
from ohfp_core.testing import StorageContract
from ohfp_postgresql import plugin
from ohfp_postgresql.settings import PostgresSettings, mask_dsn
from ohfp_postgresql.store import PostgresStorage
from testbeds.postgresql import FreezableProxy, PgOpener, PostgresServer, copy_load
from tests.store_support import MACHINES, REQUESTS, VALUES, assert_nothing_lost

# ohfp-postgresql 0.2's schema (version 1), as it wrote it (kept verbatim: a schema it wrote
# must open and migrate with nothing lost).
VERSION_1 = (
    """CREATE TABLE {s}.requests (request_id text COLLATE "C" PRIMARY KEY, kind text NOT NULL,
    status text NOT NULL, template_id text, machine_count integer NOT NULL, handle text,
    machine_ids text NOT NULL, errors text NOT NULL, message text NOT NULL, created_at bigint NOT NULL,
    updated_at bigint NOT NULL, delivered boolean NOT NULL, owner text NOT NULL)""",
    "CREATE INDEX requests_open ON {s}.requests (created_at, request_id) WHERE status = 'running'",
    "CREATE INDEX requests_undelivered ON {s}.requests (created_at, request_id)"
    " WHERE status = 'running' AND NOT delivered",
    """CREATE TABLE {s}.machines (machine_id text COLLATE "C" PRIMARY KEY,
    seq bigint GENERATED ALWAYS AS IDENTITY, request_id text COLLATE "C" NOT NULL,
    template_id text COLLATE "C", name text COLLATE "C" NOT NULL, result text NOT NULL,
    return_request_id text, reclaimed_at bigint, updated_at bigint NOT NULL, machine text NOT NULL)""",
    "CREATE INDEX machines_request ON {s}.machines (request_id, seq)",
    "CREATE INDEX machines_name ON {s}.machines (name, seq)",
    "CREATE INDEX machines_seq ON {s}.machines (seq)",
    "CREATE INDEX machines_held ON {s}.machines (template_id, seq)"
    " WHERE return_request_id IS NULL AND result <> 'fail'",
    "CREATE INDEX machines_held_all ON {s}.machines (seq)"
    " WHERE return_request_id IS NULL AND result <> 'fail'",
    """CREATE TABLE {s}.stored_values (key text COLLATE "C" PRIMARY KEY, value text NOT NULL,
    expires_at bigint NOT NULL)""",
)


def write_version_1(
    dsn: str,
    schema: str,
    instance: str,
    requests: Sequence[RequestRecord],
    machines: Sequence[MachineRecord],
    values: Sequence[StoredValue] = (),
) -> None:
    """A schema as ohfp-postgresql 0.2 wrote it (version 1), holding these records."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction(), conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
        cursor.execute(f"CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text NOT NULL)")
        for statement in VERSION_1:
            cursor.execute(statement.format(s=schema))
        cursor.executemany(
            f"INSERT INTO {schema}.meta VALUES (%s, %s)", [("schema_version", "1"), ("instance", instance)]
        )
        cursor.executemany(
            f"INSERT INTO {schema}.requests ({REQUEST_COLUMNS}) VALUES ({', '.join(['%s'] * 13)})",
            [request_row(r) for r in requests],
        )
        cursor.executemany(
            f"INSERT INTO {schema}.machines ({MACHINE_COLUMNS}) VALUES ({', '.join(['%s'] * 9)})",
            [machine_row(m) for m in machines],
        )
        cursor.executemany(
            f"INSERT INTO {schema}.stored_values VALUES (%s, %s, %s)",
            [(v.key, dumps(v.value), v.expires_at) for v in values],
        )


def _is_a_store(settings: PostgresSettings) -> Storage:
    return PostgresStorage(settings, "i")  # mypy checks that the class satisfies the Storage protocol


def factory() -> StorageFactory:
    """The ``postgresql`` backend as the plugin registers it."""
    return Hooks(make_manager(extensions=[("pg", plugin)])).storage_factories()["postgresql"]


class StatementRecorder:
    """Stands in for the store's connection and records every statement with its parameters."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, sql: str, params: Any = None) -> Any:
        self.statements.append((sql, params))
        return self.conn.execute(sql, params)


def seq_scans(plan: Any) -> list[str]:
    """Relations a JSON query plan reads with a sequential scan."""
    found = []
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan":
            found.append(str(plan.get("Relation Name")))
        for value in plan.values():
            found += seq_scans(value)
    elif isinstance(plan, list):
        for item in plan:
            found += seq_scans(item)
    return found


class TestPostgresContract(StorageContract):
    """The storage kit against the server, one fresh schema per test."""

    @pytest.fixture
    def opener(self, postgres_server: PostgresServer) -> StoreOpener:
        return PgOpener(postgres_server.dsn, postgres_server.new_schema("kit"))

    def assert_indexed(self, store: Storage, lookup: Callable[[], object]) -> None:
        assert isinstance(store, PostgresStorage)
        recorder = StatementRecorder(store._conn)
        store._conn = recorder
        try:
            lookup()
        finally:
            store._conn = recorder.conn
        selects = [(sql, params) for sql, params in recorder.statements if sql.startswith("SELECT")]
        assert selects, "the lookup read nothing"
        for sql, params in selects:
            [(plan,)] = store._conn.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchall()
            assert seq_scans(plan) == [], f"{sql} scans a table: {plan}"

    def bulk_load(
        self, store: Storage, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        copy_load(store, requests, machines)

    def bump_schema_version(self, opener: StoreOpener) -> None:
        assert isinstance(opener, PgOpener)
        with psycopg.connect(opener.dsn, autocommit=True) as conn:
            conn.execute(
                f"UPDATE {opener.schema}.meta SET value = %s WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION + 1),),
            )

    def write_previous_version(
        self, opener: StoreOpener, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        assert isinstance(opener, PgOpener)
        write_version_1(opener.dsn, opener.schema, opener.instance, requests, machines)


@pytest.fixture
def pg_store(postgres_server: PostgresServer) -> Iterator[PostgresStorage]:
    store = PgOpener(postgres_server.dsn, postgres_server.new_schema("unit"))()
    yield store
    store.close()


def test_the_plugin_registers_postgresql_without_importing_psycopg() -> None:
    code = (
        "import sys; from ohfp_core.plugins import Hooks, make_manager; import ohfp_postgresql.plugin as p;"
        "print('postgresql' in Hooks(make_manager(extensions=[('pg', p)])).storage_factories(),"
        " 'psycopg' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]


def test_the_factory_reads_its_section_and_libpq_environment(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    schema = postgres_server.new_schema("env")
    if postgres_server.dsn:
        params = psycopg.conninfo.conninfo_to_dict(postgres_server.dsn)
        for name, env in (
            ("host", "PGHOST"),
            ("port", "PGPORT"),
            ("dbname", "PGDATABASE"),
            ("user", "PGUSER"),
        ):
            if name in params:
                monkeypatch.setenv(env, str(params[name]))
    store = factory()(StorageContext(instance="inst", workdir=tmp_path, settings={"schema": schema}))
    try:
        report = store.check()
    finally:
        store.close()
    assert report["ok"] is True, report
    assert report["schema"] == schema and report["instance"] == "inst"
    assert report["schemaVersion"] == SCHEMA_VERSION


def test_a_schema_of_another_instance_is_refused(postgres_server: PostgresServer) -> None:
    opener = PgOpener(postgres_server.dsn, postgres_server.new_schema("inst"), instance="awsinst")
    opener().close()
    with pytest.raises(ConfigError, match="holds the state of provider instance 'awsinst', not 'other'"):
        attrs.evolve(opener, instance="other")()


def test_bad_settings_name_the_field(tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as error:
        factory()(
            StorageContext(
                instance="i",
                workdir=tmp_path,
                settings={"schema": "Bad-Name", "connectTimeout": 0, "pasword": "x"},
            )
        )
    problems = set(error.value.problems)
    assert any(p.startswith("$.postgresql.schema: must be 1 to 63 characters") for p in problems), problems
    assert "$.postgresql.connectTimeout: must be 1..300, got 0.0" in problems
    assert any(p.startswith("$.postgresql.pasword: unknown key") for p in problems)


def test_an_unreachable_server_is_a_storage_error(tmp_path: Any) -> None:
    dsn = "postgresql://ohfp:s3cret-pw@127.0.0.1:1/nowhere"  # refused at once
    with pytest.raises(StorageError) as error:
        factory()(StorageContext(instance="i", workdir=tmp_path, settings={"dsn": dsn, "connectTimeout": 2}))
    assert "s3cret-pw" not in str(error.value)
    assert "cannot connect to the PostgreSQL state store" in str(error.value)


def test_a_server_that_never_answers_is_a_storage_error_at_the_connect_timeout(
    postgres_server: PostgresServer, tmp_path: Any
) -> None:
    """A server that takes the connection and says nothing: ``connectTimeout`` ends the wait,
    as the error's cause shows (no time is measured); without it the store would wait on,
    caught by a hang guard of ten times the configured bound."""
    connect_timeout = 2
    failed: list[BaseException] = []

    def connect(dsn: str) -> None:
        settings = {"dsn": dsn, "connectTimeout": connect_timeout}
        try:
            factory()(StorageContext(instance="i", workdir=tmp_path, settings=settings)).close()
        except BaseException as exc:  # the test's thread reports whatever ended it
            failed.append(exc)

    with FreezableProxy(postgres_server.dsn) as proxy:
        proxy.freeze()
        dsn = psycopg.conninfo.make_conninfo(proxy.dsn, password="s3cret-pw")
        waiting = threading.Thread(target=connect, args=(dsn,), daemon=True)
        waiting.start()
        waiting.join(connect_timeout * 10)
        assert not waiting.is_alive(), "still waiting for a silent server: connectTimeout is not applied"
    (error,) = failed
    assert isinstance(error, StorageError), repr(error)
    assert "cannot connect to the PostgreSQL state store: connection timeout expired" in str(error)
    assert "s3cret-pw" not in str(error)


def test_passwords_are_masked_in_every_spelling() -> None:
    assert mask_dsn("host=db password=s3cret user=me") == "host=db password=*** user=me"
    assert mask_dsn("host=db password='with space' user=me") == "host=db password=*** user=me"
    assert mask_dsn("failed: postgresql://me:s3cret@db/x") == "failed: postgresql://***@db/x"


def test_check_shows_the_server_but_never_the_password(
    postgres_server: PostgresServer, tmp_path: Any
) -> None:
    schema = postgres_server.new_schema("check")
    dsn = psycopg.conninfo.make_conninfo(postgres_server.dsn, password="n0t-used-by-trust")
    store = factory()(StorageContext(instance="i", workdir=tmp_path, settings={"dsn": dsn, "schema": schema}))
    assert isinstance(store, PostgresStorage)
    try:
        report = store.check()
        with store._conn.cursor() as cursor:
            cursor.execute(f"DROP INDEX {schema}.machines_held")
        broken = store.check()
    finally:
        store.close()
    assert "n0t-used-by-trust" not in repr(report)
    assert set(report["server"]) == {"host", "port", "database", "user", "version"}
    assert broken["ok"] is False and broken["problems"] == [f"index {schema}.machines_held is missing"]


def _waits_for_a_lock(observer: psycopg.Connection[Any], store: PostgresStorage) -> bool:
    """Whether ``store``'s connection waits for a lock another session holds."""
    pid = store._conn.info.backend_pid
    rows = observer.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [pid])
    return bool(rows.fetchone() == (1,))


def test_a_write_waits_for_another_connections_transaction(
    pg_store: PostgresStorage, postgres_server: PostgresServer
) -> None:
    """Another connection's write waits for the transaction holding the write lock and goes
    on once it commits, or, held past its ``lockTimeout``, fails naming the lock; shown by
    order (PostgreSQL's own lock table), not by time."""

    def store(lock_timeout: float) -> PostgresStorage:
        settings = PostgresSettings(
            dsn=postgres_server.dsn, schema=pg_store.schema, lock_timeout=lock_timeout
        )
        return PostgresStorage(settings, "kit")

    impatient, patient = store(1), store(3600)
    observer = psycopg.connect(postgres_server.dsn, autocommit=True)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            patient.put_request(RequestRecord(request_id="req-3", kind=RequestKind.ACQUIRE))
            outcome.append(None)
        except BaseException as exc:  # the test's thread reports whatever ended it
            outcome.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    try:
        with pg_store.transaction():
            pg_store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
            with pytest.raises(StorageError, match="held the write lock"):
                impatient.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
            writer.start()
            bound = time.monotonic() + 60  # a hang guard, not a measure
            while not _waits_for_a_lock(observer, patient):
                assert writer.is_alive() and time.monotonic() < bound, f"the write did not wait: {outcome}"
                time.sleep(0.02)
            assert outcome == []  # still waiting, while the transaction holds the lock
        writer.join(60)
        assert outcome == [None]
        impatient.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
        assert sorted(pg_store.get_requests(["req-1", "req-2", "req-3"])) == ["req-1", "req-2", "req-3"]
    finally:
        observer.close()
        impatient.close()
        patient.close()


def test_a_schema_of_ohfp_postgresql_0_2_migrates_with_nothing_lost(postgres_server: PostgresServer) -> None:
    """Version 1, as ohfp-postgresql 0.2 wrote it, with every kind of record: opened by this
    ohfp, every record reads back as it was, and it still belongs to its instance."""
    opener = PgOpener(postgres_server.dsn, postgres_server.new_schema("v1"), instance="inst")
    write_version_1(opener.dsn, opener.schema, opener.instance, REQUESTS, MACHINES, VALUES)

    store = opener()
    try:
        assert_nothing_lost(store)
        report = store.check()
    finally:
        store.close()
    assert report["instance"] == "inst"
    with pytest.raises(ConfigError, match="holds the state of provider instance 'inst', not 'other'"):
        attrs.evolve(opener, instance="other")()


def test_a_server_that_stops_answering_cannot_hold_a_call_past_its_deadline(
    postgres_server: PostgresServer,
) -> None:
    """The server goes silent mid-call (a proxy stops forwarding, as a frozen or cut-off
    server would look): the round trip ends at the call's deadline, as TIMED_OUT, and the
    lease the call held is free once the server hears the connection close."""
    schema = postgres_server.new_schema("frozen")
    with FreezableProxy(postgres_server.dsn) as proxy:
        store = PostgresStorage(PostgresSettings(dsn=proxy.dsn, schema=schema), "kit")
        store.hold_lease("req-frozen")
        store.put_request(RequestRecord(request_id="req-frozen", kind=RequestKind.ACQUIRE))
        proxy.freeze()
        store.use_deadline(Deadline.after(1.0))
        with pytest.raises(StorageError) as error:
            store.get_requests(["req-frozen"])
        assert error.value.kind is StorageFailure.TIMED_OUT, error.value
        store.close()
        proxy.thaw()  # the connection's end reaches the server
        other = PgOpener(postgres_server.dsn, schema)()
        try:
            bound = time.monotonic() + 30
            lease = other.take_lease("req-frozen")
            while lease is None and time.monotonic() < bound:
                time.sleep(0.1)
                lease = other.take_lease("req-frozen")
            assert lease is not None, "the dead call's lease outlived its connection"
            lease.release()
        finally:
            other.close()

"""The request store in PostgreSQL (psycopg 3): one schema per provider instance.

Every write — a :meth:`PostgresStorage.transaction` or one write method on its own — runs
in a database transaction that first takes a transaction-level advisory lock keyed by the
schema (``pg_advisory_xact_lock``). Writers are therefore serialized across processes and
hosts exactly as SQLite's ``BEGIN IMMEDIATE`` serializes them on one host, so a
read-modify-write such as the maxNumber accounting (:mod:`ohfp_core.capacity`) sees every
write committed before it and none can slip in before it commits. PostgreSQL releases the
lock at commit, at rollback and when the session ends (a killed process's socket closes; a
host that vanished is found by the TCP keepalives set below). Readers take no lock and see
committed data. One lock rather than row locks because the accounting reads *absent* rows
(requests not yet recorded); one lock rather than SERIALIZABLE because ohfp's writes are
small and short, so waiting is cheaper than retrying a call's whole read-modify-write.

The schema carries its version and its instance in ``<schema>.meta`` and is created or
migrated on first use, under the same lock. A server error becomes
:class:`~ohfp_core.errors.StorageError` with any password masked.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg import errors as pg_errors

from ohfp_core.errors import ConfigError, StorageError
from ohfp_core.models import RequestKind
from ohfp_core.sql_rows import (
    MACHINE_COLUMNS,
    REQUEST_COLUMNS,
    machine_from_row,
    machine_row,
    request_from_row,
    request_row,
)
from ohfp_core.storage import MachineRecord, RequestRecord, StorageContext, StoredValue, dumps
from ohfp_postgresql.settings import PostgresSettings, mask_dsn, read_settings

P = ParamSpec("P")
R = TypeVar("R")

SCHEMA_VERSION = 1
APPLICATION_NAME = "ohfp"
_LAST_CHAR = "\U0010ffff"


def migrations(schema: str) -> tuple[tuple[str, ...], ...]:
    """The statements taking a schema from version ``n`` to ``n + 1``, for each ``n``.

    Id and key columns use the "C" collation: ordered and compared byte by byte, as in
    SQLite, so ``ORDER BY request_id`` and key prefixes mean the same in every backend.
    """
    s = schema
    return (
        (
            f"""CREATE TABLE {s}.requests (
                request_id text COLLATE "C" PRIMARY KEY,
                kind text NOT NULL,
                status text NOT NULL,
                template_id text,
                machine_count integer NOT NULL,
                handle text,
                machine_ids text NOT NULL,
                errors text NOT NULL,
                message text NOT NULL,
                created_at bigint NOT NULL,
                updated_at bigint NOT NULL,
                delivered boolean NOT NULL,
                owner text NOT NULL
            )""",
            # Exactly the rows open_requests() and undelivered_requests() read.
            f"CREATE INDEX requests_open ON {s}.requests (created_at, request_id) WHERE status = 'running'",
            f"CREATE INDEX requests_undelivered ON {s}.requests (created_at, request_id)"
            " WHERE status = 'running' AND NOT delivered",
            f"""CREATE TABLE {s}.machines (
                machine_id text COLLATE "C" PRIMARY KEY,
                seq bigint GENERATED ALWAYS AS IDENTITY,
                request_id text COLLATE "C" NOT NULL,
                template_id text COLLATE "C",
                name text COLLATE "C" NOT NULL,
                result text NOT NULL,
                return_request_id text,
                reclaimed_at bigint,
                updated_at bigint NOT NULL,
                machine text NOT NULL
            )""",
            f"CREATE INDEX machines_request ON {s}.machines (request_id, seq)",
            f"CREATE INDEX machines_name ON {s}.machines (name, seq)",
            f"CREATE INDEX machines_seq ON {s}.machines (seq)",
            # Exactly the rows held_machines() reads, per template and in all.
            f"CREATE INDEX machines_held ON {s}.machines (template_id, seq)"
            " WHERE return_request_id IS NULL AND result <> 'fail'",
            f"CREATE INDEX machines_held_all ON {s}.machines (seq)"
            " WHERE return_request_id IS NULL AND result <> 'fail'",
            f"""CREATE TABLE {s}.stored_values (
                key text COLLATE "C" PRIMARY KEY,
                value text NOT NULL,
                expires_at bigint NOT NULL
            )""",
        ),
    )


def lock_key(schema: str) -> int:
    """The advisory lock of a schema's store: a signed 64-bit number from its name."""
    return int.from_bytes(hashlib.sha256(f"ohfp-storage:{schema}".encode()).digest()[:8], "big", signed=True)


def _guarded(method: Callable[P, R]) -> Callable[P, R]:
    """Turn a psycopg error into StorageError (its text with passwords masked)."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL state store: {mask_dsn(str(exc).strip())}") from None

    return guarded


class PostgresStorage:
    """A :class:`~ohfp_core.storage.Storage` in one PostgreSQL schema. One instance serves
    one thread; records are stored exactly as given."""

    def __init__(self, settings: PostgresSettings, instance: str, timeout_sec: float = 240.0) -> None:
        self.settings = settings
        self.schema = settings.schema
        self.instance = instance
        self._lock = lock_key(self.schema)
        self._in_transaction = False
        self._sql = _Statements(self.schema)
        connect_timeout = max(2, int(min(settings.connect_timeout, timeout_sec)))
        lock_timeout = max(1.0, min(settings.lock_timeout, timeout_sec))
        try:
            self._conn = psycopg.connect(
                settings.dsn or "",
                autocommit=True,
                connect_timeout=connect_timeout,
                application_name=APPLICATION_NAME,
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot connect to the PostgreSQL state store: {mask_dsn(str(exc).strip())}"
            ) from None
        try:
            # A write waits at most lock_timeout for another call's write; a session stuck in a
            # transaction is ended; keepalives find a vanished host, so its lock goes.
            self._conn.execute(
                f"SET lock_timeout = {int(lock_timeout * 1000)};"
                f" SET idle_in_transaction_session_timeout = {int(lock_timeout * 2000)};"
                " SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10;"
                " SET tcp_keepalives_count = 3"
            )
            self._open_schema()
        except psycopg.Error as exc:
            self._conn.close()
            raise StorageError(f"PostgreSQL state store: {mask_dsn(str(exc).strip())}") from None
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

    def _meta(self) -> dict[str, str] | None:
        try:
            rows = self._conn.execute(self._sql.meta).fetchall()
        except pg_errors.UndefinedTable:
            return None
        return {key: value for key, value in rows}

    def _open_schema(self) -> None:
        meta = self._meta()
        if meta is not None and int(meta.get("schema_version", 0)) == SCHEMA_VERSION:
            self._check_instance(meta)
            return
        with self._begin(write=True):
            # Another process may have created or migrated it while this one waited.
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            exists = self._conn.execute("SELECT to_regclass(%s)", (f"{self.schema}.meta",)).fetchone()
            if exists is None or exists[0] is None:
                self._conn.execute(
                    f"CREATE TABLE {self.schema}.meta (key text PRIMARY KEY, value text NOT NULL)"
                )
                meta = {}
            else:
                meta = dict(self._conn.execute(self._sql.meta).fetchall())
            version = int(meta.get("schema_version", 0))
            self._check_version(version)
            if meta:
                self._check_instance(meta)
            for statements in migrations(self.schema)[version:]:
                for statement in statements:
                    self._conn.execute(statement)
            for key, value in (("schema_version", str(SCHEMA_VERSION)), ("instance", self.instance)):
                self._conn.execute(self._sql.put_meta, (key, value))

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the PostgreSQL schema {self.schema!r} has state schema version {version} but this"
                f" ohfp-postgresql knows versions up to {SCHEMA_VERSION}: it was written by a newer ohfp;"
                " upgrade ohfp-postgresql or use another schema"
            )

    def _check_instance(self, meta: dict[str, str]) -> None:
        self._check_version(int(meta.get("schema_version", 0)))
        owner = meta.get("instance")
        if owner is not None and owner != self.instance:
            raise ConfigError(
                f"the PostgreSQL schema {self.schema!r} holds the state of provider instance {owner!r},"
                f" not {self.instance!r}: give each instance a schema of its own ('schema' setting)"
            )

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN`` and the store's advisory lock … ``COMMIT``; ``ROLLBACK`` and re-raise on
        any exception. Waits up to ``lockTimeout`` for other writers. Not re-entrant."""
        if self._in_transaction:
            raise RuntimeError("PostgresStorage.transaction() is not re-entrant")
        with self._begin(write=True):
            yield

    @contextmanager
    def _atomic(self, write: bool) -> Iterator[None]:
        """Join the caller's transaction, or run one of our own (locked when it writes)."""
        if self._in_transaction:
            yield
            return
        with self._begin(write):
            yield

    @contextmanager
    def _begin(self, write: bool) -> Iterator[None]:
        try:
            self._conn.execute("BEGIN")
            self._in_transaction = True
            if write:
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))
        except psycopg.Error as exc:
            self._rollback()
            if isinstance(exc, pg_errors.LockNotAvailable):
                raise StorageError(
                    f"PostgreSQL state store: another call held the write lock of schema {self.schema!r}"
                    f" longer than {self.settings.lock_timeout:g} s"
                ) from None
            raise StorageError(f"PostgreSQL state store: {mask_dsn(str(exc).strip())}") from None
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        try:
            self._conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._rollback()
            raise StorageError(
                f"PostgreSQL state store: commit failed: {mask_dsn(str(exc).strip())}"
            ) from None
        finally:
            self._in_transaction = False

    def _rollback(self) -> None:
        self._in_transaction = False
        if not self._conn.closed:
            with contextlib.suppress(psycopg.Error):  # the connection is gone: the server rolled back
                self._conn.execute("ROLLBACK")

    # -- requests ----------------------------------------------------------------------------

    @_guarded
    def put_request(self, record: RequestRecord) -> None:
        """Insert or replace a request."""
        with self._atomic(write=True):
            self._conn.execute(self._sql.put_request, request_row(record))

    @_guarded
    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        """Requests by id; unknown ids are absent from the result."""
        ids = list(dict.fromkeys(request_ids))
        if not ids:
            return {}
        rows = self._conn.execute(self._sql.get_requests, (ids,)).fetchall()
        found = {row[0]: request_from_row(row) for row in rows}
        return {request_id: found[request_id] for request_id in ids if request_id in found}

    @_guarded
    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        """Requests whose status is still ``running``, oldest first (then by id)."""
        if kind is None:
            rows = self._conn.execute(self._sql.open_requests).fetchall()
        else:
            rows = self._conn.execute(self._sql.open_requests_of_kind, (kind.value,)).fetchall()
        return [request_from_row(row) for row in rows]

    @_guarded
    def undelivered_requests(self) -> list[RequestRecord]:
        """Running requests Host Factory has not got, oldest first (partial index)."""
        return [request_from_row(row) for row in self._conn.execute(self._sql.undelivered).fetchall()]

    # -- machines ----------------------------------------------------------------------------

    @_guarded
    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        """Insert or replace machines by machine id, all or none (pipelined)."""
        if not records:
            return
        rows = [machine_row(record) for record in records]
        with self._atomic(write=True), self._conn.cursor() as cursor:
            cursor.executemany(self._sql.put_machine, rows)

    @_guarded
    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        """Machines of acquire requests by request id (every id present), first stored first."""
        ids = list(dict.fromkeys(request_ids))
        found: dict[str, list[MachineRecord]] = {request_id: [] for request_id in ids}
        if ids:
            for row in self._conn.execute(self._sql.machines_of, (ids,)).fetchall():
                record = machine_from_row(row)
                found[record.request_id].append(record)
        return found

    @_guarded
    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        """Machines by id (in the order given), then further ones by name (in the order given)."""
        ids = list(dict.fromkeys(machine_ids))
        wanted_names = list(dict.fromkeys(names))
        if not ids and not wanted_names:
            return []
        rows = self._conn.execute(self._sql.find_machines, (ids, wanted_names)).fetchall()
        records = [machine_from_row(row) for row in rows]
        by_id = {r.machine_id: r for r in records}
        by_name: dict[str, list[MachineRecord]] = {}
        for record in records:
            by_name.setdefault(record.name, []).append(record)
        result = [by_id[machine_id] for machine_id in ids if machine_id in by_id]
        seen = {r.machine_id for r in result}
        for name in wanted_names:
            for record in by_name.get(name, ()):
                if record.machine_id not in seen:
                    seen.add(record.machine_id)
                    result.append(record)
        return result

    @_guarded
    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        """Machines Host Factory holds, optionally of one template, first stored first."""
        if template_id is None:
            rows = self._conn.execute(self._sql.held_all).fetchall()
        else:
            rows = self._conn.execute(self._sql.held_of_template, (template_id,)).fetchall()
        return [machine_from_row(row) for row in rows]

    # -- values ------------------------------------------------------------------------------

    @_guarded
    def put_values(self, values: Sequence[StoredValue]) -> None:
        """Insert or replace values by key, all or none."""
        rows = [(v.key, dumps(v.value), v.expires_at) for v in values]
        if rows:
            with self._atomic(write=True), self._conn.cursor() as cursor:
                cursor.executemany(self._sql.put_value, rows)

    @_guarded
    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]:
        """Unexpired values by key."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = self._conn.execute(self._sql.get_values, (wanted, now)).fetchall()
        return {key: json.loads(value) for key, value in rows}

    @_guarded
    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]:
        """Unexpired values whose key starts with ``prefix`` (a range of the key index)."""
        rows = self._conn.execute(self._sql.values_with_prefix, (prefix, prefix + _LAST_CHAR, prefix, now))
        return {key: json.loads(value) for key, value in rows.fetchall()}

    @_guarded
    def delete_values(self, keys: Sequence[str]) -> None:
        """Forget values by key."""
        wanted = list(dict.fromkeys(keys))
        if wanted:
            with self._atomic(write=True):
                self._conn.execute(self._sql.delete_values, (wanted,))

    # -- administration ----------------------------------------------------------------------

    def iter_requests(self) -> Iterator[RequestRecord]:
        """Every request, oldest first."""
        yield from self._iter(self._sql.iter_requests, request_from_row)

    def iter_machines(self) -> Iterator[MachineRecord]:
        """Every machine, in the order first stored."""
        yield from self._iter(self._sql.iter_machines, machine_from_row)

    def iter_values(self) -> Iterator[StoredValue]:
        """Every value, expired ones included."""
        yield from self._iter(
            self._sql.iter_values,
            lambda row: StoredValue(key=row[0], value=json.loads(row[1]), expires_at=row[2]),
        )

    def _iter(self, sql: str, make: Callable[[Any], R]) -> Iterator[R]:
        """Every row of ``sql`` (one snapshot), as records."""
        try:
            rows = self._conn.execute(sql).fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL state store: {mask_dsn(str(exc).strip())}") from None
        for row in rows:
            yield make(row)

    @_guarded
    def check(self) -> dict[str, Any]:
        """Schema version and instance, tables and indexes present, row counts, the server."""
        problems: list[str] = []
        meta = self._meta() or {}
        version = int(meta.get("schema_version", 0))
        if version != SCHEMA_VERSION:
            problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        if meta.get("instance") not in (None, self.instance):
            problems.append(f"the schema belongs to instance {meta.get('instance')!r}")
        present = {
            row[0]
            for row in self._conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (self.schema,)
            ).fetchall()
        }
        for index in _Statements.INDEXES:
            if index not in present:
                problems.append(f"index {self.schema}.{index} is missing")
        counts = self._conn.execute(self._sql.counts).fetchone() or (0, 0, 0)
        info = self._conn.info
        return {
            "backend": "postgresql",
            "schemaVersion": version,
            "ok": not problems,
            "problems": problems,
            "counts": {"requests": counts[0], "machines": counts[1], "values": counts[2]},
            "server": {
                "host": info.host,
                "port": info.port,
                "database": info.dbname,
                "user": info.user,
                "version": info.server_version,
            },
            "schema": self.schema,
            "instance": meta.get("instance"),
        }


class _Statements:
    """Every statement, written once for the schema (its name is validated: safe to inline)."""

    INDEXES = (
        "requests_pkey",
        "requests_open",
        "requests_undelivered",
        "machines_pkey",
        "machines_request",
        "machines_name",
        "machines_seq",
        "machines_held",
        "machines_held_all",
        "stored_values_pkey",
    )
    REQUEST_COLUMNS = REQUEST_COLUMNS
    MACHINE_COLUMNS = MACHINE_COLUMNS

    def __init__(self, s: str) -> None:
        rc, mc = self.REQUEST_COLUMNS, self.MACHINE_COLUMNS
        self.meta = f"SELECT key, value FROM {s}.meta WHERE key IN ('schema_version', 'instance')"  # noqa: S608
        self.put_meta = (
            f"INSERT INTO {s}.meta (key, value) VALUES (%s, %s)"  # noqa: S608
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self.put_request = (
            f"INSERT INTO {s}.requests ({rc}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
            " ON CONFLICT (request_id) DO UPDATE SET kind = excluded.kind, status = excluded.status,"
            " template_id = excluded.template_id, machine_count = excluded.machine_count,"
            " handle = excluded.handle, machine_ids = excluded.machine_ids, errors = excluded.errors,"
            " message = excluded.message, created_at = excluded.created_at, updated_at = excluded.updated_at,"
            " delivered = excluded.delivered, owner = excluded.owner"
        )
        self.get_requests = f"SELECT {rc} FROM {s}.requests WHERE request_id = ANY(%s)"  # noqa: S608
        self.open_requests = (
            f"SELECT {rc} FROM {s}.requests WHERE status = 'running' ORDER BY created_at, request_id"  # noqa: S608
        )
        self.open_requests_of_kind = (
            f"SELECT {rc} FROM {s}.requests WHERE status = 'running' AND kind = %s"  # noqa: S608
            " ORDER BY created_at, request_id"
        )
        self.undelivered = (
            f"SELECT {rc} FROM {s}.requests WHERE status = 'running' AND NOT delivered"  # noqa: S608
            " ORDER BY created_at, request_id"
        )
        self.put_machine = (
            f"INSERT INTO {s}.machines ({mc}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
            " ON CONFLICT (machine_id) DO UPDATE SET request_id = excluded.request_id,"
            " template_id = excluded.template_id, name = excluded.name, result = excluded.result,"
            " return_request_id = excluded.return_request_id, reclaimed_at = excluded.reclaimed_at,"
            " updated_at = excluded.updated_at, machine = excluded.machine"
        )
        self.machines_of = f"SELECT {mc} FROM {s}.machines WHERE request_id = ANY(%s) ORDER BY seq"  # noqa: S608
        self.find_machines = (
            f"SELECT {mc} FROM {s}.machines WHERE machine_id = ANY(%s) OR name = ANY(%s) ORDER BY seq"  # noqa: S608
        )
        held = "return_request_id IS NULL AND result <> 'fail'"
        self.held_all = f"SELECT {mc} FROM {s}.machines WHERE {held} ORDER BY seq"  # noqa: S608
        self.held_of_template = (
            f"SELECT {mc} FROM {s}.machines WHERE {held} AND template_id = %s ORDER BY seq"  # noqa: S608
        )
        self.put_value = (
            f"INSERT INTO {s}.stored_values (key, value, expires_at) VALUES (%s, %s, %s)"  # noqa: S608
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
        )
        self.get_values = f"SELECT key, value FROM {s}.stored_values WHERE key = ANY(%s) AND expires_at > %s"  # noqa: S608
        self.values_with_prefix = (
            f"SELECT key, value FROM {s}.stored_values WHERE key >= %s AND key < %s"  # noqa: S608
            " AND starts_with(key, %s) AND expires_at > %s"
        )
        self.delete_values = f"DELETE FROM {s}.stored_values WHERE key = ANY(%s)"  # noqa: S608
        self.iter_requests = f"SELECT {rc} FROM {s}.requests ORDER BY created_at, request_id"  # noqa: S608
        self.iter_machines = f"SELECT {mc} FROM {s}.machines ORDER BY seq"  # noqa: S608
        self.iter_values = f"SELECT key, value, expires_at FROM {s}.stored_values ORDER BY key"  # noqa: S608
        self.counts = (
            f"SELECT (SELECT count(*) FROM {s}.requests), (SELECT count(*) FROM {s}.machines),"  # noqa: S608
            f" (SELECT count(*) FROM {s}.stored_values)"
        )


def open_store(context: StorageContext) -> PostgresStorage:
    """The ``postgresql`` storage factory: settings from the ``postgresql`` section."""
    return PostgresStorage(read_settings(context.settings), context.instance, context.timeout_sec)

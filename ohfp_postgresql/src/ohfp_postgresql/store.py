"""The request store in PostgreSQL (psycopg 3): one schema per provider instance.

The statements, the migrations and the transactions are every SQL store's
(:mod:`ohfp_core.sql_store`); :class:`PostgresDialect` spells them for PostgreSQL: ids matched
with ``= ANY(%s)`` (one array parameter), id columns in the "C" collation (ordered and
compared byte by byte, as in SQLite), a ``seq`` identity column keeping the order machines
were first stored in, tables in the instance's schema, and the schema version and the
instance it belongs to in ``<schema>.meta``.

Every write — a :meth:`~ohfp_core.sql_store.SQLStore.transaction` or one write method on
its own — runs in a database transaction that first takes a transaction-level advisory lock
keyed by the schema (``pg_advisory_xact_lock``). Writers are therefore serialized across
processes and hosts exactly as SQLite's ``BEGIN IMMEDIATE`` serializes them on one host, so a
read-modify-write such as the maxNumber accounting (:mod:`ohfp_core.capacity`) sees every
write committed before it and none can slip in before it commits. PostgreSQL releases the
lock at commit, at rollback and when the session ends (a killed process's socket closes; a
host that vanished is found by the TCP keepalives set below). Readers take no lock and see
committed data. One lock rather than row locks because the accounting reads *absent* rows
(requests not yet recorded); one lock rather than SERIALIZABLE because ohfp's writes are
small and short, so waiting is cheaper than retrying a call's whole read-modify-write.

**In-flight leases.** The lease of a request a call is making (:mod:`ohfp_core.reconcile`)
is a session-level advisory lock keyed by the schema and the request id, held on the call's
connection: the server drops it the moment that connection closes, so a call on any host
sees a dead call's request as free at once. Leases are unlocked explicitly when the call is
done with them, so a connection that serves many calls carries none into the next. The
server notices a host that vanished (power, network) by TCP: keepalives after
:data:`KEEPALIVE` seconds idle and a user timeout, on both ends of the connection, end
such a session within about ten seconds; and a session is never ended for being idle
(``idle_session_timeout = 0``), since a call may wait on the cloud for minutes.

**Time.** Connecting waits at most ``connectTimeout`` or what is left of the call's time; a
write waits for another call's at most ``lockTimeout`` or what is left, whichever is less
(``SET LOCAL lock_timeout``), and says which limit applied; and every round trip is bounded
on the client side (:class:`Cutoff`): a server that stops answering (frozen, partitioned)
cannot hold a call past its deadline, where no server-side timeout could fire. A server
error becomes :class:`~ohfp_core.errors.StorageError` with any password masked.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pg_errors

from ohfp_core.deadline import Deadline
from ohfp_core.errors import StorageError
from ohfp_core.inflight import call_owner
from ohfp_core.sql_schema import SQLDialect, SQLSession
from ohfp_core.sql_store import SQLStore
from ohfp_core.storage import StorageContext
from ohfp_postgresql.settings import PostgresSettings, mask_dsn

APPLICATION_NAME = "ohfp"
KEEPALIVE = {"keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""TCP keepalives on both ends: a silent peer is probed after 5 s idle and given up on after
3 probes 2 s apart."""
TCP_USER_TIMEOUT_MS = 10_000
"""Data unacknowledged this long ends the connection (both ends)."""
LEGACY_VERSIONS = {1: 2}
"""ohfp-postgresql 0.2 kept its own schema history: its version 1 holds what version 2 of the
shared SQL layer does (and the indexes version 3 remakes)."""


def lock_key(schema: str, request_id: str | None = None) -> int:
    """An advisory lock's key, a signed 64-bit number: the schema's write lock, or with
    ``request_id`` the lease of that request."""
    name = f"ohfp-storage:{schema}" if request_id is None else f"ohfp-call:{schema}:{request_id}"
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Cutoff:
    """Ends a round trip still running at the deadline: shuts the connection's socket down,
    so the client's wait ends whatever the server does (nothing it sends is needed). One
    thread per connection, started at the first bounded round trip."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._cond = threading.Condition()
        self._until: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.fired = False

    @contextmanager
    def armed(self, until: float) -> Iterator[None]:
        """Watch the round trip run inside until ``until`` (monotonic; inf: not at all)."""
        if math.isinf(until):
            yield
            return
        with self._cond:
            self._until, self.fired = until, False
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="ohfp-pg-cutoff", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._until = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._until is None:
                    self._cond.wait()
                    continue
                left = self._until - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._until, self.fired = None, True
                with contextlib.suppress(OSError, psycopg.Error):  # gone already: nothing to end
                    shut = socket.socket(fileno=os.dup(self._conn.pgconn.socket))
                    shut.shutdown(socket.SHUT_RDWR)
                    shut.close()


class AdvisoryLease:
    """A request's in-flight lease: a session-level advisory lock on the store's connection."""

    def __init__(self, store: PostgresStorage, request_id: str) -> None:
        self.store = store
        self.request_id = request_id

    def release(self) -> None:
        """Unlock (the request is the call's no more)."""
        self.store.end_lease(self.request_id)

    drop = release  # the lock is the lease: letting go is ending it


class PostgresDialect(SQLDialect):
    """PostgreSQL's spelling of the shared SQL (see the module docstring)."""

    name = "postgresql"
    title = "PostgreSQL"
    mark = "%s"
    chunk = 10_000
    types: ClassVar[Mapping[str, str]] = {
        "id": 'text COLLATE "C"',
        "int": "bigint",
        "bool": "boolean",
        "true": "true",
        "false": "false",
        "order": "seq",
        "order_column": ", seq bigint GENERATED ALWAYS AS IDENTITY",
        "order_key": ", seq",
    }

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.prefix = f"{schema}."
        self.lock = lock_key(schema)

    def in_list(self, column: str, count: int) -> str:
        return f"{column} = ANY(%s)"

    def list_params(self, ids: Any) -> list[Any]:
        return [list(ids)]

    def begin(self, write: bool, wait_sec: float) -> list[str]:
        if not write:
            return ["BEGIN"]
        wait_ms = max(1, int(wait_sec * 1000))
        return [f"BEGIN; SET LOCAL lock_timeout = {wait_ms}; SELECT pg_advisory_xact_lock({self.lock})"]

    def read_meta(self, store: SQLSession) -> tuple[int, str | None]:
        if store.fetch("SELECT to_regclass(%s)", [f"{self.schema}.meta"])[0][0] is None:
            return 0, None
        meta = dict(store.fetch(f"SELECT key, value FROM {self.prefix}meta"))  # noqa: S608 -- a validated name
        version = int(meta.get("schema_version", 0))
        return LEGACY_VERSIONS.get(version, version), meta.get("instance")

    def write_meta(self, store: SQLSession, version: int, instance: str) -> None:
        for key, value in (("schema_version", str(version)), ("instance", instance)):
            store.execute(self.upsert("meta", ("key", "value"), "key"), [key, value])

    def prepare(self, store: SQLSession) -> None:
        """The schema (unless an administrator made it: creating needs CREATE on the database)
        and its ``meta`` table."""
        if store.fetch("SELECT to_regnamespace(%s)", [self.schema])[0][0] is None:
            store.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
        store.execute(
            f"CREATE TABLE IF NOT EXISTS {self.prefix}meta (key text PRIMARY KEY, value text NOT NULL)"
        )

    def index_names(self, store: SQLSession) -> set[str]:
        return {
            row[0]
            for row in store.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [self.schema])
        }

    def failure(self, exc: BaseException, store: SQLSession) -> StorageError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        if isinstance(exc, pg_errors.LockNotAvailable):
            return store.lock_timed_out()
        if isinstance(exc, pg_errors.QueryCanceled):
            return store.timed_out()
        return StorageError(f"{store.where}: {mask_dsn(str(exc).strip())}")


class PostgresStorage(SQLStore):
    """A :class:`~ohfp_core.storage.Storage` in one PostgreSQL schema (see the module docstring).

    Connecting waits at most ``connectTimeout`` or what is left of ``deadline``. ``owner``
    names where its calls run (:attr:`~ohfp_core.storage.RequestRecord.owner`).
    """

    def __init__(
        self, settings: PostgresSettings, instance: str, deadline: Deadline | None = None, owner: str = ""
    ) -> None:
        self.settings = settings
        self.schema = settings.schema
        self.lease_owner = owner
        self._leases: dict[str, int] = {}
        deadline = deadline or Deadline.never()
        where = f"the PostgreSQL state store (schema {self.schema!r})"
        given = psycopg.conninfo.conninfo_to_dict(settings.dsn or "")
        tcp = {"keepalives": 1, **KEEPALIVE, "tcp_user_timeout": TCP_USER_TIMEOUT_MS}
        conninfo = psycopg.conninfo.make_conninfo(
            settings.dsn or "", **{key: value for key, value in tcp.items() if key not in given}
        )  # the DSN's own settings win
        try:
            conn = psycopg.connect(
                conninfo,
                autocommit=True,
                connect_timeout=max(2, int(deadline.bound(settings.connect_timeout))),
                application_name=APPLICATION_NAME,
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot connect to the PostgreSQL state store: {mask_dsn(str(exc).strip())}"
            ) from None
        super().__init__(
            conn,
            PostgresDialect(self.schema),
            where=where,
            package="ohfp-postgresql",
            elsewhere="schema",
            instance=instance,
            lock_wait_sec=settings.lock_timeout,
            deadline=deadline,
        )
        self._cutoff = Cutoff(conn)
        try:
            # A session stuck in a transaction is ended, an idle one never (its call may wait on
            # the cloud); the server finds a vanished host by TCP, and its locks go.
            settings_sql = [
                f"SET idle_in_transaction_session_timeout = {int(settings.lock_timeout * 2000)}",
                *(f"SET tcp_{key} = {value}" for key, value in KEEPALIVE.items()),
                f"SET tcp_user_timeout = {TCP_USER_TIMEOUT_MS}",
            ]
            if conn.info.server_version >= 140000:
                settings_sql.append("SET idle_session_timeout = 0")
            self.execute("; ".join(settings_sql))
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- bounds ------------------------------------------------------------------------------

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        with self._cutoff.armed(self.deadline.ends_at):
            yield

    def _failure(self, exc: BaseException) -> StorageError | None:
        if self._cutoff.fired and isinstance(exc, psycopg.Error):
            return self.timed_out()
        return super()._failure(exc)

    def close(self) -> None:
        """Close the connection (the server drops every lock and lease of the session)."""
        self._cutoff.close()
        self._leases.clear()
        super().close()

    # -- in-flight leases ----------------------------------------------------------------------

    def hold_lease(self, request_id: str) -> AdvisoryLease:
        """Lock the new request's advisory lock on this session (see :meth:`Storage.hold_lease`)."""
        lease = self.take_lease(request_id)
        if lease is None:
            raise StorageError(f"{self.where}: the lease of the new request {request_id} is held already")
        return lease

    def take_lease(self, request_id: str) -> AdvisoryLease | None:
        """The request's advisory lock, if no session holds it (this one included: a lock
        this session holds is a live call's)."""
        if request_id in self._leases:
            return None
        key = lock_key(self.schema, request_id)
        if not self.fetch("SELECT pg_try_advisory_lock(%s)", [key])[0][0]:
            return None
        self._leases[request_id] = key
        return AdvisoryLease(self, request_id)

    def sees_leases_of(self, owner: str) -> bool:
        """Every host's: the server holds the leases."""
        return True

    def end_lease(self, request_id: str) -> None:
        """Unlock a lease of this session's. If that fails, or the call's deadline has passed,
        the session is ended instead, which ends every lease it held: a connection never
        carries a lease into the next call."""
        key = self._leases.pop(request_id, None)
        if key is None:
            return
        try:
            self.execute("SELECT pg_advisory_unlock(%s)", [key])
        except StorageError:
            self.close()

    def details(self) -> dict[str, Any]:
        """The server (never the password), the schema and the instance it belongs to."""
        info = self._conn.info
        return {
            "server": {
                "host": info.host,
                "port": info.port,
                "database": info.dbname,
                "user": info.user,
                "version": info.server_version,
            },
            "schema": self.schema,
            "instance": self.dialect.read_meta(self)[1],
        }


def open_store(settings: PostgresSettings, context: StorageContext) -> PostgresStorage:
    """The ``postgresql`` backend's opener (:func:`ohfp_core.storage_backends.backend`)."""
    return PostgresStorage(settings, context.instance, context.deadline, call_owner(context.workdir))

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

A write waits for another call's at most ``lockTimeout`` or what is left of the call's time,
whichever is less (``SET LOCAL lock_timeout``), and says which limit applied. A server error
becomes :class:`~ohfp_core.errors.StorageError` with any password masked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pg_errors

from ohfp_core.deadline import Deadline
from ohfp_core.errors import StorageError
from ohfp_core.sql_schema import SQLDialect, SQLSession
from ohfp_core.sql_store import SQLStore
from ohfp_core.storage import StorageContext
from ohfp_postgresql.settings import PostgresSettings, mask_dsn

APPLICATION_NAME = "ohfp"
LEGACY_VERSIONS = {1: 2}
"""ohfp-postgresql 0.2 kept its own schema history: its version 1 holds what version 2 of the
shared SQL layer does (and the indexes version 3 remakes)."""


def lock_key(schema: str) -> int:
    """The advisory lock of a schema's store: a signed 64-bit number from its name."""
    return int.from_bytes(hashlib.sha256(f"ohfp-storage:{schema}".encode()).digest()[:8], "big", signed=True)


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

    Connecting waits at most ``connectTimeout`` or what is left of ``deadline``.
    """

    def __init__(self, settings: PostgresSettings, instance: str, deadline: Deadline | None = None) -> None:
        self.settings = settings
        self.schema = settings.schema
        deadline = deadline or Deadline.never()
        where = f"the PostgreSQL state store (schema {self.schema!r})"
        try:
            conn = psycopg.connect(
                settings.dsn or "",
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
        try:
            # A session stuck in a transaction is ended; keepalives find a vanished host, so
            # its lock goes.
            self.execute(
                f"SET idle_in_transaction_session_timeout = {int(settings.lock_timeout * 2000)};"
                " SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10;"
                " SET tcp_keepalives_count = 3"
            )
            self._migrate()
        except BaseException:
            self.close()
            raise

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
    return PostgresStorage(settings, context.instance, context.deadline)

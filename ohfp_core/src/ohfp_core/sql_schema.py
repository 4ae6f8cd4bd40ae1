"""The SQL every SQL store runs: one migration list and one statement set, spelled by a dialect.

:class:`SQLDialect` holds what differs between databases, as SQLite speaks it; a database
that speaks otherwise overrides it (PostgreSQL: ``ohfp_postgresql.store``):

- the parameter mark (``?``, ``%s``) and how a list of ids is matched (``IN (?, ?)`` in
  chunks of :attr:`~SQLDialect.chunk`, or ``= ANY(%s)`` with the list as one parameter);
- the upsert (``INSERT … ON CONFLICT (key) DO UPDATE``, the default);
- the column types in :attr:`~SQLDialect.types`: an id's type (with a binary collation, so
  ids order and compare byte by byte everywhere), integers, booleans, and the column that
  keeps the order machines were first stored in (SQLite's own ``rowid``; elsewhere a
  ``seq`` identity column, added to the indexes that return machines in that order);
- where the schema version is kept, how a write transaction begins (and so how writers
  across processes and hosts are serialized) and which driver errors mean what
  (:class:`~ohfp_core.errors.StorageFailure`).

Tables live under :attr:`SQLDialect.prefix` (``""``, or ``"<schema>."``), which is
validated by its backend and safe to inline; values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

from ohfp_core.errors import StorageError
from ohfp_core.sql_rows import MACHINE_COLUMNS, MACHINE_FIELDS, REQUEST_COLUMNS, REQUEST_FIELDS

HELD = "return_request_id IS NULL AND result <> 'fail'"
"""The held rule (:func:`ohfp_core.storage_rules.is_held`) in SQL: the predicate of index
``machines_held`` and of every query that reads held machines, spelled once."""
RUNNING = "status = 'running'"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: requests and the machines seen for them.
    (
        "CREATE TABLE {p}requests (request_id {id} PRIMARY KEY NOT NULL, kind TEXT NOT NULL,"
        " status TEXT NOT NULL, template_id TEXT, machine_count {int} NOT NULL, handle TEXT,"
        " machine_ids TEXT NOT NULL, errors TEXT NOT NULL, message TEXT NOT NULL,"
        " created_at {int} NOT NULL, updated_at {int} NOT NULL)",
        "CREATE INDEX requests_status ON {p}requests (status, created_at)",
        "CREATE TABLE {p}machines (machine_id {id} PRIMARY KEY NOT NULL{order_column},"
        " request_id {id} NOT NULL, template_id {id}, name {id} NOT NULL, result TEXT NOT NULL,"
        " return_request_id TEXT, reclaimed_at {int}, updated_at {int} NOT NULL, machine TEXT NOT NULL)",
        "CREATE INDEX machines_request ON {p}machines (request_id{order_key})",
        "CREATE INDEX machines_name ON {p}machines (name{order_key})",
        "CREATE INDEX machines_return ON {p}machines (return_request_id)",
        f"CREATE INDEX machines_held ON {{p}}machines (template_id{{order_key}}) WHERE {HELD}",
    ),
    # 2: whether Host Factory got the reply naming a request, and where its call holds its
    # lock; values cached by providers and plugins. Requests stored before this version were
    # answered, except those whose provisioning call died (running without a handle).
    (
        "ALTER TABLE {p}requests ADD COLUMN delivered {bool} NOT NULL DEFAULT {true}",
        "ALTER TABLE {p}requests ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        f"UPDATE {{p}}requests SET delivered = {{false}} WHERE {RUNNING} AND handle IS NULL",  # noqa: S608
        "CREATE INDEX requests_undelivered ON {p}requests (created_at)"
        f" WHERE delivered = {{false}} AND {RUNNING}",
        "CREATE TABLE {p}stored_values (key {id} PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
        " expires_at {int} NOT NULL)",
    ),
    # 3: one index set for every SQL store (ohfp-postgresql 0.2 had its own; its version 1
    # holds what version 2 does here): exactly the running, the undelivered and the held
    # requests and machines, in the order they are read; no index that nothing reads.
    (
        "DROP INDEX IF EXISTS {p}requests_status",
        "DROP INDEX IF EXISTS {p}machines_return",
        "DROP INDEX IF EXISTS {p}machines_seq",
        "DROP INDEX IF EXISTS {p}machines_held_all",
        "DROP INDEX IF EXISTS {p}requests_undelivered",
        f"CREATE INDEX IF NOT EXISTS requests_open ON {{p}}requests (created_at, request_id) WHERE {RUNNING}",
        "CREATE INDEX requests_undelivered ON {p}requests (created_at, request_id)"
        f" WHERE {RUNNING} AND delivered = {{false}}",
        f"CREATE INDEX machines_held_all ON {{p}}machines (return_request_id{{order_key}}) WHERE {HELD}",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
INDEXES = (
    "requests_open", "requests_undelivered",
    "machines_request", "machines_name", "machines_held", "machines_held_all",
)  # fmt: skip
"""The indexes the queries rely on, checked by :meth:`~ohfp_core.storage.Storage.check`."""
TABLES = ("requests", "machines", "stored_values")


class SQLSession(Protocol):
    """What a dialect may use of its store (:class:`ohfp_core.sql_store.SQLStore`)."""

    where: str
    """The store as messages name it."""

    def fetch(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]: ...

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None: ...

    def timed_out(self) -> StorageError:
        """The error of a round trip the call's deadline cut short."""
        ...

    def lock_timed_out(self) -> StorageError:
        """The error of a write that waited for another call's as long as it could."""
        ...


class SQLDialect:
    """What differs between SQL databases (see the module docstring); SQLite's spelling."""

    name = "sqlite"
    title = "SQLite"
    prefix = ""
    mark = "?"
    chunk = 500
    """Most ids matched by one statement."""
    types: ClassVar[Mapping[str, str]] = {
        "id": "TEXT",
        "int": "INTEGER",
        "bool": "INTEGER",
        "true": "1",
        "false": "0",
        "order": "rowid",
        "order_column": "",
        "order_key": "",
    }

    def in_list(self, column: str, count: int) -> str:
        """A condition: ``column`` is one of ``count`` ids (see :meth:`list_params`)."""
        return f"{column} IN ({', '.join([self.mark] * count)})"

    def list_params(self, ids: Sequence[str]) -> list[Any]:
        """The parameters of :meth:`in_list` for ``ids``."""
        return list(ids)

    def upsert(self, table: str, columns: Sequence[str], key: str) -> str:
        """Insert a row, or replace every column of the row with the same ``key``."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        marks = ", ".join([self.mark] * len(columns))
        return (
            f"INSERT INTO {self.prefix}{table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 -- names only
            f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )

    def migration(self, version: int) -> list[str]:
        """The statements taking the schema from ``version`` to ``version + 1``."""
        return [s.format(p=self.prefix, **self.types) for s in MIGRATIONS[version]]

    # -- what needs the store ------------------------------------------------------------------

    def begin(self, write: bool, wait_sec: float) -> list[str]:
        """The statements starting a transaction; a write one takes the store's write lock,
        waiting up to ``wait_sec`` for another call's."""
        return [f"PRAGMA busy_timeout = {int(wait_sec * 1000)}", "BEGIN IMMEDIATE" if write else "BEGIN"]

    def read_meta(self, store: SQLSession) -> tuple[int, str | None]:
        """The schema version (0: no schema yet) and the instance the store belongs to (None:
        not recorded)."""
        return int(store.fetch("PRAGMA user_version")[0][0]), None

    def write_meta(self, store: SQLSession, version: int, instance: str) -> None:
        """Record the schema version and the instance (inside the migrating transaction)."""
        store.execute(f"PRAGMA user_version = {int(version)}")

    def prepare(self, store: SQLSession) -> None:
        """Make what the migrations need before the first (inside the write transaction)."""

    def index_names(self, store: SQLSession) -> set[str]:
        """The names of the indexes of the store's tables."""
        return {row[0] for row in store.fetch("SELECT name FROM sqlite_master WHERE type = 'index'")}

    def failure(self, exc: BaseException, store: SQLSession) -> StorageError | None:
        """``exc`` (the driver's) as a StorageError, or None when it is not the driver's (a bug)."""
        return None


class Statements:
    """Every query of :class:`~ohfp_core.sql_store.SQLStore`, spelled once for a dialect."""

    def __init__(self, dialect: SQLDialect) -> None:
        d, p, m = dialect, dialect.prefix, dialect.mark
        self.dialect = dialect
        order = d.types["order"]
        rc, mc = REQUEST_COLUMNS, MACHINE_COLUMNS
        self.put_request = d.upsert("requests", REQUEST_FIELDS, "request_id")
        self.put_machine = d.upsert("machines", MACHINE_FIELDS, "machine_id")
        self.put_value = d.upsert("stored_values", ("key", "value", "expires_at"), "key")
        self._requests = f"SELECT {rc} FROM {p}requests"  # noqa: S608 -- constant names
        self._machines = f"SELECT {mc} FROM {p}machines"  # noqa: S608 -- constant names
        self._values = f"SELECT key, value FROM {p}stored_values"  # noqa: S608 -- constant names
        oldest = " ORDER BY created_at, request_id"
        self.open_requests = f"{self._requests} WHERE {RUNNING}{oldest}"
        self.open_requests_of_kind = f"{self._requests} WHERE {RUNNING} AND kind = {m}{oldest}"
        self.undelivered = f"{self._requests} WHERE {RUNNING} AND delivered = {d.types['false']}{oldest}"
        self.held = f"{self._machines} WHERE {HELD} ORDER BY {order}"
        self.held_of_template = f"{self._machines} WHERE {HELD} AND template_id = {m} ORDER BY {order}"
        self.values_with_prefix = f"{self._values} WHERE key >= {m} AND key < {m} AND expires_at > {m}"
        self.iter_requests = f"{self._requests}{oldest}"
        self.iter_machines = f"{self._machines} ORDER BY {order}"
        self.iter_values = f"SELECT key, value, expires_at FROM {p}stored_values ORDER BY key"  # noqa: S608
        self.count = {t: f"SELECT count(*) FROM {p}{t}" for t in TABLES}  # noqa: S608 -- constant names
        self._order = order

    def requests_by_id(self, count: int) -> str:
        return f"{self._requests} WHERE {self.dialect.in_list('request_id', count)}"

    def machines_of(self, count: int) -> str:
        return f"{self._machines} WHERE {self.dialect.in_list('request_id', count)} ORDER BY {self._order}"

    def machines_by_id(self, count: int) -> str:
        return f"{self._machines} WHERE {self.dialect.in_list('machine_id', count)}"

    def machines_by_name(self, count: int) -> str:
        return f"{self._machines} WHERE {self.dialect.in_list('name', count)} ORDER BY {self._order}"

    def values_by_key(self, count: int) -> str:
        return (
            f"{self._values} WHERE {self.dialect.in_list('key', count)} AND expires_at > {self.dialect.mark}"
        )

    def delete_values(self, count: int) -> str:
        return f"DELETE FROM {self.dialect.prefix}stored_values WHERE {self.dialect.in_list('key', count)}"  # noqa: S608

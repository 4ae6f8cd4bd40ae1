"""A request store in a SQL database: :class:`~ohfp_core.storage.Storage` once for every SQL backend.

A backend connects (:class:`ohfp_core.sqlite.SQLiteStorage`,
``ohfp_postgresql.store.PostgresStorage``) and hands :class:`SQLStore` a DB-API connection
in autocommit mode with its :class:`~ohfp_core.sql_schema.SQLDialect`; the statements and
the migrations are :mod:`ohfp_core.sql_schema`'s.

- **Transactions.** :meth:`SQLStore.transaction` and every write method called on its own
  run in a transaction the dialect begins by taking the store's write lock, so a
  read-modify-write (the maxNumber accounting, :mod:`ohfp_core.capacity`) sees every write
  committed before it and none can slip in before it commits. A lookup that needs several
  statements (ids in chunks) reads one snapshot in a read transaction.
- **Schema.** Opening reads the version (and, where kept, the instance the store belongs to),
  refuses a newer one or another instance's (:mod:`ohfp_core.storage_rules`), and runs the
  missing migrations under the write lock: processes opening a new store at once migrate it
  once.
- **Errors and time.** Every driver call is one round trip through :meth:`SQLStore._round_trip`:
  refused once the call's deadline (:class:`~ohfp_core.deadline.Deadline`) has passed,
  bounded while it runs (a backend adds its own bound in :meth:`SQLStore._bounded`), and
  its driver errors become :class:`~ohfp_core.errors.StorageError` (the dialect says of
  which kind). No driver exception leaves the store.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ohfp_core.deadline import LOCK_SPARE_SEC, Deadline
from ohfp_core.errors import StorageError
from ohfp_core.models import RequestKind
from ohfp_core.sql_rows import machine_from_row, machine_row, request_from_row, request_row
from ohfp_core.sql_schema import INDEXES, SCHEMA_VERSION, TABLES, SQLDialect, Statements
from ohfp_core.storage import MachineRecord, RequestRecord, StoredValue, dumps
from ohfp_core.storage_rules import (
    chunks,
    in_find_order,
    lock_held_too_long,
    out_of_time,
    refuse_newer,
    refuse_other_instance,
    unique,
)

R = TypeVar("R")
LAST_CHAR = "\U0010ffff"
"""Above every character: ``key < prefix + LAST_CHAR`` bounds a prefix's key range."""


class SQLStore:
    """The :class:`~ohfp_core.storage.Storage` of a SQL backend (see the module docstring).

    One instance serves one thread at a time (:attr:`threadsafe`); records are stored exactly
    as given (callers set their timestamps).

    :param where: the store as messages name it (``the state database /var/…``).
    :param lock_wait_sec: how long a write waits for another call's write, at most.
    """

    threadsafe = False
    """Whether threads may share one store object: no (a process running calls in threads
    opens one per thread)."""

    def __init__(
        self,
        conn: Any,
        dialect: SQLDialect,
        *,
        where: str,
        package: str,
        elsewhere: str,
        instance: str,
        lock_wait_sec: float,
        deadline: Deadline,
    ) -> None:
        self._conn = conn
        self.dialect = dialect
        self.where = where
        self.instance = instance
        self.lock_wait_sec = lock_wait_sec
        self.deadline = deadline
        self._package, self._elsewhere = package, elsewhere
        self._sql = Statements(dialect)
        self._in_transaction = False
        self._lock_wait = lock_wait_sec
        """The wait for the write lock the last transaction was allowed (for its message)."""

    # -- round trips ---------------------------------------------------------------------------

    def use_deadline(self, deadline: Deadline) -> None:
        """Bound every round trip from now on by ``deadline`` (each call brings its own)."""
        self.deadline = deadline

    def timed_out(self) -> StorageError:
        """The error of a round trip the call's deadline cut short (or did not allow)."""
        return out_of_time(self.where, self.deadline)

    def lock_timed_out(self) -> StorageError:
        """The error of a write that waited the longest it was allowed for another call's."""
        return lock_held_too_long(self.where, self._lock_wait)

    @contextmanager
    def _bounded(self) -> Iterator[None]:
        """Bound a round trip by the deadline while it runs (a backend's own means)."""
        yield

    @contextmanager
    def _round_trip(self) -> Iterator[None]:
        if self.deadline.passed:
            raise self.timed_out()
        try:
            with self._bounded():
                yield
        except StorageError:
            raise
        except Exception as exc:
            failure = self._failure(exc)
            if failure is None:
                raise
            raise failure from None

    def _failure(self, exc: BaseException) -> StorageError | None:
        """``exc`` of a round trip as a StorageError (the dialect says which), or None."""
        return self.dialect.failure(exc, self)

    def fetch(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """The rows of one statement (without ``params``, the text may hold several)."""
        with self._round_trip():
            cursor = self._conn.execute(sql) if params is None else self._conn.execute(sql, params)
            return list(cursor.fetchall())

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement (without ``params``, the text may hold several)."""
        with self._round_trip():
            if params is None:
                self._conn.execute(sql)
            else:
                self._conn.execute(sql, params)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows``."""
        if rows:
            with self._round_trip(), contextlib.closing(self._conn.cursor()) as cursor:
                cursor.executemany(sql, rows)

    # -- lifecycle -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Check the schema and bring it up to date (see the module docstring); call once connected."""
        version, owner = self.dialect.read_meta(self)
        self._check(version, owner)
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            self.dialect.prepare(self)
            # Another process may have migrated while this one waited for the write lock.
            version, owner = self.dialect.read_meta(self)
            self._check(version, owner)
            for step in range(version, SCHEMA_VERSION):
                for statement in self.dialect.migration(step):
                    self.execute(statement)
            self.dialect.write_meta(self, SCHEMA_VERSION, self.instance)

    def _check(self, version: int, owner: str | None) -> None:
        refuse_newer(self.where, version, SCHEMA_VERSION, self._package, self._elsewhere)
        refuse_other_instance(self.where, owner, self.instance, self._elsewhere)

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with contextlib.suppress(Exception):  # closing a connection the server dropped
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Begin with the store's write lock (waiting up to the lock wait, or the deadline) …
        ``COMMIT``; ``ROLLBACK`` and re-raise on any exception. Not re-entrant (RuntimeError)."""
        if self._in_transaction:
            raise RuntimeError(f"{type(self).__name__}.transaction() is not re-entrant")
        with self._begin(write=True):
            yield

    @contextmanager
    def _atomic(self, write: bool, statements: int = 2) -> Iterator[None]:
        """Join the caller's transaction, or run one of our own: always to write, to read
        only when the lookup takes several ``statements`` (one snapshot)."""
        if self._in_transaction or (not write and statements < 2):
            yield
            return
        with self._begin(write):
            yield

    @contextmanager
    def _begin(self, write: bool) -> Iterator[None]:
        self._lock_wait = self.deadline.bound(self.lock_wait_sec, spare=LOCK_SPARE_SEC)
        try:
            for statement in self.dialect.begin(write, self._lock_wait):
                self.execute(statement)
        except BaseException:
            self._rollback()
            raise
        self._in_transaction = True
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        finally:
            self._in_transaction = False

    def _rollback(self) -> None:
        self._in_transaction = False
        with contextlib.suppress(Exception):  # no transaction, or the connection is gone
            self._conn.execute("ROLLBACK")

    # -- requests ------------------------------------------------------------------------------

    def _by_ids(self, statement: Callable[[int], str], ids: Sequence[str], *extra: Any) -> Iterator[Any]:
        """The rows of ``statement`` for ``ids``, chunk by chunk (``extra`` parameters after each)."""
        for chunk in chunks(ids, self.dialect.chunk):
            yield from self.fetch(statement(len(chunk)), [*self.dialect.list_params(chunk), *extra])

    def _statements(self, *id_lists: Sequence[str]) -> int:
        return sum(-(-len(ids) // self.dialect.chunk) for ids in id_lists)

    def put_request(self, record: RequestRecord) -> None:
        """Insert or replace a request."""
        with self._atomic(write=True):
            self.execute(self._sql.put_request, request_row(record))

    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        """Requests by id, in the order asked; unknown ids are absent from the result."""
        ids = unique(request_ids)
        with self._atomic(write=False, statements=self._statements(ids)):
            found = {row[0]: row for row in self._by_ids(self._sql.requests_by_id, ids)}
        return {i: request_from_row(found[i]) for i in ids if i in found}

    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        """Requests whose status is still ``running``, oldest first (then by id)."""
        if kind is None:
            rows = self.fetch(self._sql.open_requests)
        else:
            rows = self.fetch(self._sql.open_requests_of_kind, [kind.value])
        return [request_from_row(row) for row in rows]

    def undelivered_requests(self) -> list[RequestRecord]:
        """Running requests Host Factory has not got, oldest first (index ``requests_undelivered``)."""
        return [request_from_row(row) for row in self.fetch(self._sql.undelivered)]

    # -- machines ------------------------------------------------------------------------------

    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        """Insert or replace machines by machine id, all or none (a replaced machine keeps its
        place in the order first stored)."""
        if records:
            with self._atomic(write=True):
                self.execute_many(self._sql.put_machine, [machine_row(r) for r in records])

    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        """Machines of acquire requests by request id (every id present, maybe empty), each
        list in the order first stored."""
        ids = unique(request_ids)
        found: dict[str, list[MachineRecord]] = {request_id: [] for request_id in ids}
        with self._atomic(write=False, statements=self._statements(ids)):
            for row in self._by_ids(self._sql.machines_of, ids):
                record = machine_from_row(row)
                found[record.request_id].append(record)
        return found

    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        """Machines by id (in the order given), then further ones by name (in the order given):
        :func:`ohfp_core.storage_rules.in_find_order`."""
        ids, wanted = unique(machine_ids), unique(names)
        with self._atomic(write=False, statements=self._statements(ids, wanted)):
            by_id = [machine_from_row(row) for row in self._by_ids(self._sql.machines_by_id, ids)]
            by_name = [machine_from_row(row) for row in self._by_ids(self._sql.machines_by_name, wanted)]
        return in_find_order(ids, wanted, by_id, by_name)

    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        """Machines Host Factory holds, optionally of one template, in the order first stored
        (index ``machines_held``)."""
        if template_id is None:
            rows = self.fetch(self._sql.held)
        else:
            rows = self.fetch(self._sql.held_of_template, [template_id])
        return [machine_from_row(row) for row in rows]

    # -- values --------------------------------------------------------------------------------

    def put_values(self, values: Sequence[StoredValue]) -> None:
        """Insert or replace values by key, all or none."""
        if values:
            with self._atomic(write=True):
                self.execute_many(
                    self._sql.put_value, [(v.key, dumps(v.value), v.expires_at) for v in values]
                )

    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]:
        """Values by key that have not expired at ``now``."""
        wanted = unique(keys)
        with self._atomic(write=False, statements=self._statements(wanted)):
            return {
                key: json.loads(value) for key, value in self._by_ids(self._sql.values_by_key, wanted, now)
            }

    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]:
        """Unexpired values whose key starts with ``prefix`` (a range of the key's index)."""
        rows = self.fetch(self._sql.values_with_prefix, [prefix, prefix + LAST_CHAR, now])
        return {key: json.loads(value) for key, value in rows}

    def delete_values(self, keys: Sequence[str]) -> None:
        """Forget values by key."""
        wanted = unique(keys)
        if wanted:
            with self._atomic(write=True):
                for chunk in chunks(wanted, self.dialect.chunk):
                    self.execute(self._sql.delete_values(len(chunk)), self.dialect.list_params(chunk))

    # -- administration ------------------------------------------------------------------------

    def iter_requests(self) -> Iterator[RequestRecord]:
        """Every request, oldest first."""
        yield from map(request_from_row, self.fetch(self._sql.iter_requests))

    def iter_machines(self) -> Iterator[MachineRecord]:
        """Every machine, in the order first stored."""
        yield from map(machine_from_row, self.fetch(self._sql.iter_machines))

    def iter_values(self) -> Iterator[StoredValue]:
        """Every value, expired ones included, by key."""
        for key, value, expires_at in self.fetch(self._sql.iter_values):
            yield StoredValue(key=key, value=json.loads(value), expires_at=expires_at)

    def check(self) -> dict[str, Any]:
        """The schema version (and instance), the indexes the queries need, the row counts,
        and what :meth:`details` adds."""
        version, owner = self.dialect.read_meta(self)
        problems = self.integrity()
        if version != SCHEMA_VERSION:
            problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        if owner not in (None, self.instance):
            problems.append(f"the store belongs to instance {owner!r}")
        present = self.dialect.index_names(self)
        problems += [f"index {self.dialect.prefix}{i} is missing" for i in INDEXES if i not in present]
        counts = {table: int(self.fetch(self._sql.count[table])[0][0]) for table in TABLES}
        return {
            "backend": self.dialect.name,
            "schemaVersion": version,
            "ok": not problems,
            "problems": problems,
            "counts": {
                "requests": counts["requests"],
                "machines": counts["machines"],
                "values": counts["stored_values"],
            },
            **self.details(),
        }

    def integrity(self) -> list[str]:
        """Problems the database itself finds (a backend's own check; none by default)."""
        return []

    def details(self) -> dict[str, Any]:
        """What :meth:`check` adds for this backend (never a password)."""
        return {}

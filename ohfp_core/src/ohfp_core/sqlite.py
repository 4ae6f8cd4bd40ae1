"""The embedded request store: one SQLite file in the instance's work directory.

Every Host Factory call is a new process and calls overlap, so the file is opened in WAL mode
with a busy timeout: readers never block, writers queue for up to :data:`BUSY_TIMEOUT_MS`
instead of failing. WAL needs shared memory that a network or cluster file system (NFS,
CIFS, Lustre, GPFS …) does not give across hosts: on one (:mod:`ohfp_core.mounts`) the file
uses a rollback journal (``DELETE``) with ``synchronous = FULL`` instead, and says so in the
log once per process. The ``journalMode`` setting overrides the detection. The schema
version lives in ``PRAGMA user_version`` and is brought up to date by :data:`_MIGRATIONS`
when the store is opened. The file holds request handles and host
names, so it and its directory are readable by the owner only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attrs import field, frozen

from ohfp_core import mounts
from ohfp_core.errors import ConfigError
from ohfp_core.files import ensure_private, private_dir, tighten_if_present
from ohfp_core.logs import get_logger
from ohfp_core.models import RequestKind, RequestStatus
from ohfp_core.parsing import key as setting_key
from ohfp_core.parsing import one_of, rule
from ohfp_core.sql_rows import (
    MACHINE_COLUMNS,
    REQUEST_COLUMNS,
    machine_from_row,
    machine_row,
    request_from_row,
    request_row,
)
from ohfp_core.storage import (
    MachineRecord,
    RequestRecord,
    StorageContext,
    StoredValue,
    dumps,
    iter_chunks,
    read_section,
)

DB_NAME = "ohfp-state.sqlite3"
BUSY_TIMEOUT_MS = 30_000
CHUNK = 500
"""Most ids bound in one ``IN (…)`` list."""
JOURNAL_MODES = ("auto", "wal", "delete", "truncate")
SHARED_JOURNAL_MODE = "delete"
"""The journal mode ``auto`` picks on a network or cluster file system."""

log = get_logger("ohfp.sqlite")
_said: set[tuple[str, str]] = set()


def _lower(value: str) -> str:
    return value.lower()


@frozen(kw_only=True)
class SQLiteSettings:
    """The ``sqlite`` section of ``ohfp.json``.

    ``journalMode``: ``auto`` (default: WAL on a local file system, DELETE on a network or
    cluster one), ``wal``, ``delete`` or ``truncate``.
    """

    journal_mode: str = field(
        default="auto",
        metadata=setting_key("journalMode"),
        converter=_lower,
        validator=rule(one_of(JOURNAL_MODES)),
    )


def choose_journal_mode(workdir: Path, setting: str = "auto") -> tuple[str, str | None]:
    """The journal mode for a database in ``workdir`` and the file system type seen there.

    ``auto`` gives ``wal`` on a local file system and :data:`SHARED_JOURNAL_MODE` on a
    network or cluster one (:func:`ohfp_core.mounts.is_shared`); any other setting wins.
    """
    fstype = mounts.filesystem_type(workdir)
    if setting != "auto":
        return setting, fstype
    return (SHARED_JOURNAL_MODE if mounts.is_shared(fstype) else "wal"), fstype


_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: requests and the machines seen for them.
    (
        """CREATE TABLE requests (
            request_id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            template_id TEXT,
            machine_count INTEGER NOT NULL,
            handle TEXT,
            machine_ids TEXT NOT NULL,
            errors TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        "CREATE INDEX requests_status ON requests (status, created_at)",
        """CREATE TABLE machines (
            machine_id TEXT PRIMARY KEY NOT NULL,
            request_id TEXT NOT NULL,
            template_id TEXT,
            name TEXT NOT NULL,
            result TEXT NOT NULL,
            return_request_id TEXT,
            reclaimed_at INTEGER,
            updated_at INTEGER NOT NULL,
            machine TEXT NOT NULL
        )""",
        "CREATE INDEX machines_request ON machines (request_id)",
        "CREATE INDEX machines_name ON machines (name)",
        "CREATE INDEX machines_return ON machines (return_request_id)",
        # Exactly the rows held_machines() returns, so it reads only those.
        "CREATE INDEX machines_held ON machines (template_id)"
        " WHERE return_request_id IS NULL AND result != 'fail'",
    ),
    # 2: whether Host Factory got the reply naming a request, and where its call holds its
    # lock; values cached by providers and plugins. Requests stored before this version were
    # answered, except those whose provisioning call died (running without a handle).
    (
        "ALTER TABLE requests ADD COLUMN delivered INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE requests ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        "UPDATE requests SET delivered = 0 WHERE status = 'running' AND handle IS NULL",
        # Exactly the rows undelivered_requests() returns, so it reads only those.
        "CREATE INDEX requests_undelivered ON requests (created_at)"
        " WHERE delivered = 0 AND status = 'running'",
        """CREATE TABLE stored_values (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_PUT_REQUEST = (
    "INSERT INTO requests (request_id, kind, status, template_id, machine_count, handle, machine_ids,"
    " errors, message, created_at, updated_at, delivered, owner)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (request_id) DO UPDATE SET kind = excluded.kind, status = excluded.status,"
    " template_id = excluded.template_id, machine_count = excluded.machine_count,"
    " handle = excluded.handle, machine_ids = excluded.machine_ids, errors = excluded.errors,"
    " message = excluded.message, created_at = excluded.created_at, updated_at = excluded.updated_at,"
    " delivered = excluded.delivered, owner = excluded.owner"
)
_PUT_MACHINE = (
    "INSERT INTO machines (machine_id, request_id, template_id, name, result, return_request_id,"
    " reclaimed_at, updated_at, machine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (machine_id) DO UPDATE SET request_id = excluded.request_id,"
    " template_id = excluded.template_id, name = excluded.name, result = excluded.result,"
    " return_request_id = excluded.return_request_id, reclaimed_at = excluded.reclaimed_at,"
    " updated_at = excluded.updated_at, machine = excluded.machine"
)
_PUT_VALUE = (
    "INSERT INTO stored_values (key, value, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)


class SQLiteStorage:
    """A :class:`~ohfp_core.storage.Storage` in ``workdir / "ohfp-state.sqlite3"``.

    Opening creates ``workdir`` (0700) and the file (0600) when missing and migrates the
    schema; a file written by a newer ohfp raises :class:`ConfigError`. One instance serves
    one thread. Records are stored exactly as given: callers set their timestamps.
    """

    def __init__(self, workdir: Path, journal_mode: str = "auto") -> None:
        self.path = workdir / DB_NAME
        if journal_mode not in JOURNAL_MODES:
            raise ConfigError(
                f"sqlite journalMode must be one of {', '.join(JOURNAL_MODES)}, got {journal_mode!r}"
            )
        _create_private(self.path)
        self.journal_mode, fstype = choose_journal_mode(workdir, journal_mode)
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the state database {self.path}: {exc}") from exc
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._set_journal_mode()
            # WAL is durable enough with NORMAL; a rollback journal needs FULL.
            self._conn.execute(f"PRAGMA synchronous = {'NORMAL' if self.journal_mode == 'wal' else 'FULL'}")
            self._migrate()
        except sqlite3.Error as exc:
            self._conn.close()
            raise ConfigError(f"cannot open the state database {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise
        if journal_mode == "auto" and self.journal_mode != "wal":
            said = (str(self.path), self.journal_mode)
            if said not in _said:
                _said.add(said)
                log.info(
                    "state database on a network or cluster file system: rollback journal, not WAL",
                    path=str(self.path),
                    filesystem=fstype,
                    journal_mode=self.journal_mode,
                    synchronous="FULL",
                )

    # -- lifecycle ---------------------------------------------------------------------------

    def _set_journal_mode(self) -> None:
        """Switch the file to :attr:`journal_mode` when it differs (a new file, a file moved
        to or from a network file system); WAL then persists in the file, a rollback journal
        is the default of every connection. Leaving WAL checkpoints the log into the file.

        The switch needs an exclusive lock and SQLite does not call the busy handler for it, so
        processes opening a file at once retry here until the busy timeout.
        """
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] == self.journal_mode:
            return
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            try:
                mode = self._conn.execute(f"PRAGMA journal_mode = {self.journal_mode.upper()}").fetchone()[0]
                if mode == self.journal_mode:
                    return
                # SQLite answers with the old mode when another connection keeps WAL open.
                raise sqlite3.OperationalError(f"journal mode stays {mode}: the database is in use")
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_BUSY)
                busy = code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _user_version(self) -> int:
        row = self._conn.execute("PRAGMA user_version").fetchone()
        return int(row[0])

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the state database {self.path} has schema version {version} but this ohfp-core"
                f" knows versions up to {SCHEMA_VERSION}: it was written by a newer ohfp;"
                " upgrade ohfp-core or use another HF_PROVIDER_WORKDIR"
            )

    def _migrate(self) -> None:
        version = self._user_version()
        self._check_version(version)
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            # Another process may have migrated while this one waited for the write lock.
            version = self._user_version()
            self._check_version(version)
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` and re-raise on any exception.

        Waits up to the busy timeout for other writers. Not re-entrant (raises RuntimeError).
        """
        if self._conn.in_transaction:
            raise RuntimeError("SQLiteStorage.transaction() is not re-entrant")
        with self._begin("BEGIN IMMEDIATE"):
            yield

    @contextmanager
    def _atomic(self, write: bool) -> Iterator[None]:
        """Group several statements: join the caller's transaction or run one of our own."""
        if self._conn.in_transaction:
            yield
            return
        with self._begin("BEGIN IMMEDIATE" if write else "BEGIN"):
            yield

    @contextmanager
    def _begin(self, begin: str) -> Iterator[None]:
        self._conn.execute(begin)
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # -- requests ----------------------------------------------------------------------------

    def put_request(self, record: RequestRecord) -> None:
        """Insert or replace a request."""
        self._conn.execute(_PUT_REQUEST, request_row(record))

    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        """Requests by id; unknown ids are absent from the result."""
        ids = list(dict.fromkeys(request_ids))
        found: dict[str, RequestRecord] = {}
        with self._atomic(write=False):
            for chunk in iter_chunks(ids, CHUNK):
                sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id IN ({_marks(chunk)})"  # noqa: S608 -- only "?" marks are interpolated
                for row in self._conn.execute(sql, chunk):
                    record = request_from_row(row)
                    found[record.request_id] = record
        return found

    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        """Requests whose status is still ``running``, oldest first (then by id)."""
        sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE status = ?"  # noqa: S608 -- constant columns
        params: list[str] = [RequestStatus.RUNNING.value]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind.value)
        sql += " ORDER BY created_at, request_id"
        return [request_from_row(row) for row in self._conn.execute(sql, params)]

    def undelivered_requests(self) -> list[RequestRecord]:
        """Running requests Host Factory has not got the reply for, oldest first (index
        ``requests_undelivered`` holds exactly these)."""
        sql = (
            f"SELECT {REQUEST_COLUMNS} FROM requests"  # noqa: S608 -- constant columns
            " WHERE delivered = 0 AND status = 'running' ORDER BY created_at, request_id"
        )
        return [request_from_row(row) for row in self._conn.execute(sql)]

    # -- machines ----------------------------------------------------------------------------

    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        """Insert or replace machines by machine id, all or none."""
        if not records:
            return
        rows = [machine_row(record) for record in records]
        with self._atomic(write=True):
            self._conn.executemany(_PUT_MACHINE, rows)

    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        """Machines of acquire requests by request id (every id present, maybe empty), each
        list in the order the machines were first stored."""
        ids = list(dict.fromkeys(request_ids))
        found: dict[str, list[MachineRecord]] = {request_id: [] for request_id in ids}
        with self._atomic(write=False):
            for chunk in iter_chunks(ids, CHUNK):
                sql = (
                    f"SELECT {MACHINE_COLUMNS} FROM machines"  # noqa: S608 -- only "?" marks are interpolated
                    f" WHERE request_id IN ({_marks(chunk)}) ORDER BY rowid"
                )
                for row in self._conn.execute(sql, chunk):
                    record = machine_from_row(row)
                    found[record.request_id].append(record)
        return found

    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        """Machines whose id is in ``machine_ids`` or whose name is in ``names``, each once:
        matches by id in the order given, then further matches by name in the order given."""
        ids = list(dict.fromkeys(machine_ids))
        wanted_names = list(dict.fromkeys(names))
        by_id: dict[str, MachineRecord] = {}
        by_name: dict[str, list[MachineRecord]] = {}
        with self._atomic(write=False):
            for chunk in iter_chunks(ids, CHUNK):
                sql = f"SELECT {MACHINE_COLUMNS} FROM machines WHERE machine_id IN ({_marks(chunk)})"  # noqa: S608 -- only "?" marks are interpolated
                for row in self._conn.execute(sql, chunk):
                    record = machine_from_row(row)
                    by_id[record.machine_id] = record
            for chunk in iter_chunks(wanted_names, CHUNK):
                sql = (
                    f"SELECT {MACHINE_COLUMNS} FROM machines"  # noqa: S608 -- only "?" marks are interpolated
                    f" WHERE name IN ({_marks(chunk)}) ORDER BY rowid"
                )
                for row in self._conn.execute(sql, chunk):
                    record = machine_from_row(row)
                    by_name.setdefault(record.name, []).append(record)
        result = [by_id[machine_id] for machine_id in ids if machine_id in by_id]
        seen = set(by_id)
        for name in wanted_names:
            for record in by_name.get(name, ()):
                if record.machine_id not in seen:
                    seen.add(record.machine_id)
                    result.append(record)
        return result

    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        """Machines Host Factory holds (result not ``fail``, in no return request), optionally
        of one template, in the order they were first stored."""
        sql = (
            f"SELECT {MACHINE_COLUMNS} FROM machines"  # noqa: S608 -- constant columns
            " WHERE return_request_id IS NULL AND result != 'fail'"
        )
        params: list[str] = []
        if template_id is not None:
            sql += " AND template_id = ?"
            params.append(template_id)
        sql += " ORDER BY rowid"
        return [machine_from_row(row) for row in self._conn.execute(sql, params)]

    # -- values ------------------------------------------------------------------------------

    def put_values(self, values: Sequence[StoredValue]) -> None:
        """Insert or replace values by key, all or none."""
        rows = [(v.key, dumps(v.value), v.expires_at) for v in values]
        if rows:
            with self._atomic(write=True):
                self._conn.executemany(_PUT_VALUE, rows)

    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]:
        """Unexpired values by key."""
        found: dict[str, Any] = {}
        with self._atomic(write=False):
            for chunk in iter_chunks(list(dict.fromkeys(keys)), CHUNK):
                sql = (
                    "SELECT key, value FROM stored_values"  # noqa: S608 -- only "?" marks are interpolated
                    f" WHERE key IN ({_marks(chunk)}) AND expires_at > ?"
                )
                for key, value in self._conn.execute(sql, [*chunk, now]):
                    found[key] = json.loads(value)
        return found

    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]:
        """Unexpired values whose key starts with ``prefix`` (a range scan of the key index)."""
        sql = "SELECT key, value FROM stored_values WHERE key >= ? AND key < ? AND expires_at > ?"
        rows = self._conn.execute(sql, (prefix, prefix + "\U0010ffff", now))
        return {key: json.loads(value) for key, value in rows}

    def delete_values(self, keys: Sequence[str]) -> None:
        """Forget values by key."""
        with self._atomic(write=True):
            for chunk in iter_chunks(list(dict.fromkeys(keys)), CHUNK):
                sql = f"DELETE FROM stored_values WHERE key IN ({_marks(chunk)})"  # noqa: S608 -- only "?" marks
                self._conn.execute(sql, chunk)

    # -- administration ----------------------------------------------------------------------

    def iter_requests(self) -> Iterator[RequestRecord]:
        """Every request, oldest first."""
        sql = f"SELECT {REQUEST_COLUMNS} FROM requests ORDER BY created_at, request_id"  # noqa: S608 -- constant columns
        for row in self._conn.execute(sql).fetchall():
            yield request_from_row(row)

    def iter_machines(self) -> Iterator[MachineRecord]:
        """Every machine, in the order first stored."""
        sql = f"SELECT {MACHINE_COLUMNS} FROM machines ORDER BY rowid"  # noqa: S608 -- constant columns
        for row in self._conn.execute(sql).fetchall():
            yield machine_from_row(row)

    def iter_values(self) -> Iterator[StoredValue]:
        """Every value, expired ones included."""
        for key, value, expires_at in self._conn.execute(
            "SELECT key, value, expires_at FROM stored_values ORDER BY key"
        ).fetchall():
            yield StoredValue(key=key, value=json.loads(value), expires_at=expires_at)

    def check(self) -> dict[str, Any]:
        """Schema version, ``PRAGMA quick_check``, journal mode and row counts."""
        problems = [
            str(row[0]) for row in self._conn.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"
        ]
        version = self._user_version()
        if version != SCHEMA_VERSION:
            problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
        counts = {
            table: int(self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 -- constant names
            for table in ("requests", "machines", "stored_values")
        }
        return {
            "backend": "sqlite",
            "path": str(self.path),
            "schemaVersion": version,
            "journalMode": self._conn.execute("PRAGMA journal_mode").fetchone()[0],
            "filesystem": mounts.filesystem_type(self.path),
            "ok": not problems,
            "problems": problems,
            "counts": {
                "requests": counts["requests"],
                "machines": counts["machines"],
                "values": counts["stored_values"],
            },
        }


def open_sqlite(context: StorageContext) -> SQLiteStorage:
    """The ``sqlite`` storage factory: the store in the instance's work directory, with the
    ``sqlite`` section of ``ohfp.json`` (:class:`SQLiteSettings`)."""
    settings = read_section("sqlite", SQLiteSettings, context.settings)
    return SQLiteStorage(context.workdir, journal_mode=settings.journal_mode)


def _create_private(path: Path) -> None:
    """Make the database file and its directory owner-only (:mod:`ohfp_core.files`): created
    0600/0700, loose modes of existing ones tightened, symbolic links and other users' files
    refused. SQLite gives new -wal and -shm files the database file's mode; existing ones
    are checked too."""
    private_dir(path.parent)
    ensure_private(path, "state database")
    for suffix in ("-wal", "-shm", "-journal"):
        tighten_if_present(path.with_name(path.name + suffix), "state database file")


def _marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" * len(chunk))

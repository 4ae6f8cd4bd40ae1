"""The embedded request store: one SQLite file in the instance's work directory.

The SQL, the migrations and the transactions are every SQL store's (:mod:`ohfp_core.sql_store`,
:mod:`ohfp_core.sql_schema`), in SQLite's spelling; this module opens the file. Every Host
Factory call is a new process and calls overlap, so the file is opened in WAL mode with a busy
timeout: readers never block, writers queue for up to :data:`LOCK_WAIT_SEC` instead of
failing. WAL needs shared memory that a network or cluster file system (NFS, CIFS, Lustre,
GPFS …) does not give across hosts: on one (:mod:`ohfp_core.mounts`) the file uses a rollback
journal (``DELETE``) with ``synchronous = FULL`` instead, and says so in the log once per
process. The ``journalMode`` setting overrides the detection. The schema version lives in
``PRAGMA user_version``. The file holds request handles and host names, so it and its
directory are readable by the owner only.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from attrs import field, frozen

from ohfp_core import mounts
from ohfp_core.deadline import Deadline
from ohfp_core.errors import ConfigError, StorageError, StorageFailure
from ohfp_core.files import ensure_private, private_dir, tighten_if_present
from ohfp_core.inflight import CallLock, CallLocks
from ohfp_core.logs import get_logger
from ohfp_core.parsing import key as setting_key
from ohfp_core.parsing import one_of, rule
from ohfp_core.sql_schema import SQLDialect, SQLSession
from ohfp_core.sql_store import SQLStore
from ohfp_core.storage import StorageContext

DB_NAME = "ohfp-state.sqlite3"
LOCK_WAIT_SEC = 30.0
"""The longest a write waits for another call's (SQLite's busy timeout)."""
PROGRESS_STEPS = 10_000
"""SQLite virtual machine steps between two looks at the deadline."""
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


class SQLiteDialect(SQLDialect):
    """SQLite's spelling is :class:`~ohfp_core.sql_schema.SQLDialect`'s own; this adds its
    errors: a busy database is a lock wait that ran out, an interrupt the deadline
    (:meth:`SQLiteStorage._interrupt`), a damaged file corrupt, the rest unavailable
    (disk full, read-only, I/O errors). Misuse (integrity, programming errors) is a bug
    and passes through."""

    def failure(self, exc: BaseException, store: SQLSession) -> StorageError | None:
        if type(exc) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
            return None
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == sqlite3.SQLITE_INTERRUPT:
            return store.timed_out()
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return store.lock_timed_out()
        kind = StorageFailure.UNAVAILABLE
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or type(exc) is sqlite3.DatabaseError:
            kind = StorageFailure.CORRUPT
        return StorageError(f"{store.where}: {exc}", kind=kind)


DIALECT = SQLiteDialect()


class SQLiteStorage(SQLStore):
    """A :class:`~ohfp_core.storage.Storage` in ``workdir / "ohfp-state.sqlite3"``.

    Opening creates ``workdir`` (0700) and the file (0600) when missing and migrates the
    schema; a file written by a newer ohfp is refused. One instance serves one thread. The
    leases of calls in flight are file locks in ``workdir / "calls"``.
    Round trips are bounded by ``deadline``: a write waits for another call's at most
    :data:`LOCK_WAIT_SEC` or what is left of it, and a statement still running when it
    passes is interrupted.
    """

    def __init__(self, workdir: Path, journal_mode: str = "auto", deadline: Deadline | None = None) -> None:
        self.path = workdir / DB_NAME
        self._locks = CallLocks(workdir)
        self.lease_owner = self._locks.owner
        if journal_mode not in JOURNAL_MODES:
            raise ConfigError(
                f"sqlite journalMode must be one of {', '.join(JOURNAL_MODES)}, got {journal_mode!r}"
            )
        _create_private(self.path)
        self.journal_mode, fstype = choose_journal_mode(workdir, journal_mode)
        where = f"the state database {self.path}"
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            raise StorageError(f"{where}: {exc}") from None
        super().__init__(
            conn,
            DIALECT,
            where=where,
            package="ohfp-core",
            elsewhere="HF_PROVIDER_WORKDIR",
            instance="",
            lock_wait_sec=LOCK_WAIT_SEC,
            deadline=deadline or Deadline.never(),
        )
        conn.set_progress_handler(self._interrupt, PROGRESS_STEPS)
        try:
            self.execute(f"PRAGMA busy_timeout = {int(self.deadline.bound(LOCK_WAIT_SEC) * 1000)}")
            with self._round_trip():
                self._set_journal_mode()
            # WAL is durable enough with NORMAL; a rollback journal needs FULL.
            self.execute(f"PRAGMA synchronous = {'NORMAL' if self.journal_mode == 'wal' else 'FULL'}")
            self._migrate()
        except BaseException:
            self.close()
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

    # -- in-flight leases: file locks in the work directory (:mod:`ohfp_core.inflight`) ------------

    def hold_lease(self, request_id: str) -> CallLock:
        """Lock the request's file in ``<workdir>/calls`` (see :meth:`Storage.hold_lease`)."""
        return self._locks.hold(request_id)

    def take_lease(self, request_id: str) -> CallLock | None:
        """The request's file lock, if no living process holds it."""
        return self._locks.try_take(request_id)

    def sees_leases_of(self, owner: str) -> bool:
        """Only this work directory's requests: a lock lives on one host."""
        return self._locks.covers(owner)

    def _interrupt(self) -> int:
        """SQLite's progress handler: non-zero (interrupt the statement) once the deadline passed."""
        return int(self.deadline.passed)

    def _set_journal_mode(self) -> None:
        """Switch the file to :attr:`journal_mode` when it differs (a new file, a file moved
        to or from a network file system); WAL then persists in the file, a rollback journal
        is the default of every connection. Leaving WAL checkpoints the log into the file.

        The switch needs an exclusive lock and SQLite does not call the busy handler for it, so
        processes opening a file at once retry here until the lock wait runs out.
        """
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] == self.journal_mode:
            return
        deadline = time.monotonic() + self.deadline.bound(LOCK_WAIT_SEC)
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

    def integrity(self) -> list[str]:
        """``PRAGMA quick_check``'s findings."""
        return [str(row[0]) for row in self.fetch("PRAGMA quick_check") if row[0] != "ok"]

    def details(self) -> dict[str, Any]:
        """The file, its journal mode and the file system it is on."""
        return {
            "path": str(self.path),
            "journalMode": self.fetch("PRAGMA journal_mode")[0][0],
            "filesystem": mounts.filesystem_type(self.path),
        }


def open_sqlite(settings: SQLiteSettings, context: StorageContext) -> SQLiteStorage:
    """The ``sqlite`` backend's opener (:func:`ohfp_core.storage_backends.backend_factory`):
    the store in the instance's work directory."""
    return SQLiteStorage(context.workdir, journal_mode=settings.journal_mode, deadline=context.deadline)


def _create_private(path: Path) -> None:
    """Make the database file and its directory owner-only (:mod:`ohfp_core.files`): created
    0600/0700, loose modes of existing ones tightened, symbolic links and other users' files
    refused. SQLite gives new -wal and -shm files the database file's mode; existing ones
    are checked too."""
    private_dir(path.parent)
    ensure_private(path, "state database")
    for suffix in ("-wal", "-shm", "-journal"):
        tighten_if_present(path.with_name(path.name + suffix), "state database file")

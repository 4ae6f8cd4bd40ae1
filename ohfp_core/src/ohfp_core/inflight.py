"""SQLite's in-flight leases: one OS lock per request a call makes (:mod:`ohfp_core.reconcile`).

The lease of a request is an exclusive ``flock`` on ``<workdir>/calls/<request id>.lock``,
taken before the request is recorded and held until the reply naming it is written (then
the record is marked delivered and the file removed). The kernel drops the lock when the
process ends, however it ends. So a later call that finds a request not delivered can take
its lock only if the call that made it is gone.

A lock lives in one work directory on one host: :attr:`CallLocks.owner` names it, and a
request recorded by another owner (a failover host sharing a database on shared storage) is
judged by its age instead. Where ``fcntl`` is missing (Windows) every request is judged by
its age. The shared stores keep leases every host sees (``ohfp_postgresql``, ``ohfp_dynamodb``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from pathlib import Path
from types import ModuleType

from ohfp_core.files import private_dir

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_DIR = "calls"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def call_owner(workdir: Path, host: str | None = None) -> str:
    """Who records a request (``<host>:<work directory>``): :attr:`RequestRecord.owner
    <ohfp_core.storage.RequestRecord.owner>`."""
    return f"{host or socket.gethostname()}:{os.path.abspath(workdir)}"


class CallLock:
    """A held lock (a :class:`~ohfp_core.storage.Lease`); :meth:`release` drops it and
    removes its file."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    def drop(self) -> None:
        """Let go of the lock but keep its file, as a process that dies does: the request
        is left for a later call to reconcile."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order: whoever opens the path
        afterwards makes a new file and sees the request's state as this call left it)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


class CallLocks:
    """The locks of one work directory.

    :param host: the host name in :attr:`owner` (default: this host's).
    """

    def __init__(self, workdir: Path, host: str | None = None) -> None:
        self.directory = workdir / LOCK_DIR
        self.owner = call_owner(workdir, host)

    def covers(self, owner: str) -> bool:
        """Whether the locks tell a live call of ``owner`` from a dead one: only this work
        directory's, and only where the OS has ``flock``."""
        return fcntl is not None and owner == self.owner

    def _path(self, request_id: str) -> Path:
        name = request_id if _SAFE_ID.match(request_id) else hashlib.sha256(request_id.encode()).hexdigest()
        return self.directory / f"{name}.lock"

    def _open(self, request_id: str, exclusive_create: bool) -> tuple[Path, int]:
        private_dir(self.directory, "lock directory")
        path = self._path(request_id)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        if exclusive_create:
            flags |= os.O_EXCL
        return path, os.open(path, flags, 0o600)

    def hold(self, request_id: str) -> CallLock:
        """Lock a request this call is about to record (its id is new: nobody else holds it).

        :raises OSError: when the lock file cannot be made (the work directory is unusable).
        """
        if fcntl is None:
            return CallLock(self._path(request_id), None)
        path, fd = self._open(request_id, exclusive_create=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return CallLock(path, fd)

    def try_take(self, request_id: str) -> CallLock | None:
        """The request's lock if no living process holds it, else None.

        The caller must read the request again after taking the lock: its maker may have
        finished (marked it delivered) just before letting go.
        """
        if fcntl is None:
            return CallLock(self._path(request_id), None)
        path, fd = self._open(request_id, exclusive_create=False)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError:
            os.close(fd)
            raise
        return CallLock(path, fd)

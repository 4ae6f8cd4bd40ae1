"""Files that hold state, logs and locks: owner-only whatever the umask, links refused.

The work directory, the state database (with its ``-wal``/``-shm``/``-journal`` files), lock
files and the log file hold request handles and host names. The rules, the same for all:

- created owner-only (directories 0700, files 0600), whatever the process umask;
- an existing one this user owns with looser modes is **repaired** (tightened);
- a file that is a symbolic link, or is owned by another user, is **refused**
  (:class:`ConfigError`): following it would write where someone else chose;
- a directory owned by another user is used only if nobody else can write to it.

A directory may itself be reached through a symbolic link (an administrator's choice of
where the work directory lives): its target is what is checked.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ohfp_core.errors import ConfigError

DIR_MODE = 0o700
FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _uid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def private_dir(path: Path, what: str = "work directory") -> Path:
    """Create ``path`` (and parents) 0700, or check and tighten an existing one.

    :raises ConfigError: when it cannot be made or belongs to someone else and is writable
        by others.
    """
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"the {what} {path} is not a directory")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    uid = _uid()
    if uid is None or not loose:
        return path
    if info.st_uid == uid:
        with contextlib.suppress(OSError):  # e.g. a file system that has no modes
            os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077)
    elif stat.S_IMODE(info.st_mode) & 0o022:
        raise ConfigError(
            f"the {what} {path} belongs to another user and others can write to it: refusing to keep"
            " state there (use a directory of this user's)"
        )
    return path


def _loose(info: os.stat_result, path: Path, what: str) -> bool:
    """Refuse a file that is not a regular file of this user's; True when its mode is loose."""
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the {what} {path} is not a regular file")
    uid = _uid()
    if uid is not None and info.st_uid != uid:
        raise ConfigError(
            f"the {what} {path} belongs to another user (uid {info.st_uid}): refusing to use it"
        )
    return bool(stat.S_IMODE(info.st_mode) & 0o077)


def _check_open(fd: int, path: Path, what: str) -> None:
    if _loose(os.fstat(fd), path, what):
        os.fchmod(fd, FILE_MODE)


def open_private(path: Path, flags: int, what: str, create: bool = True) -> int:
    """Open (creating 0600 when missing, if ``create``) a private file; repair a loose mode.

    :param flags: extra ``os.open`` flags (``os.O_RDWR``, ``os.O_WRONLY | os.O_APPEND`` …).
    :raises ConfigError: for a symbolic link, a non-regular file, a file of another user,
        or a file that cannot be opened.
    :raises FileNotFoundError: when ``create`` is False and there is no file.
    """
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0) | os.O_CLOEXEC | _NOFOLLOW, FILE_MODE)
    except FileNotFoundError:
        if create:
            raise ConfigError(f"cannot create the {what} {path}: its directory is missing") from None
        raise
    except OSError as exc:
        if path.is_symlink():
            raise ConfigError(f"the {what} {path} is a symbolic link: refusing to follow it") from None
        raise ConfigError(f"cannot open the {what} {path}: {exc.strerror or exc}") from None
    try:
        _check_open(fd, path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_private(path: Path, what: str) -> None:
    """Create ``path`` 0600 if missing, or check and tighten it (the rules of
    :func:`open_private`), never closing a descriptor of a file that already exists.

    Closing *any* descriptor of a file drops every POSIX lock the process holds on it, and
    SQLite locks its database, ``-wal`` and ``-shm`` files so: in a process that keeps
    connections open while it opens more (the resident service, :mod:`ohfp_core.serve`),
    opening and closing the file to check it would let go of another connection's locks in
    the middle of its transaction. So an existing file is checked by its path (``lstat``,
    ``chmod``), which is as safe here: its directory is owner-only.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW, FILE_MODE))
        return
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise ConfigError(f"cannot create the {what} {path}: its directory is missing") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    _check_path(path, what)


def tighten_if_present(path: Path, what: str) -> None:
    """Check and tighten a file that may exist (SQLite's ``-wal``/``-shm``/``-journal``), by
    its path (see :func:`ensure_private`)."""
    try:
        _check_path(path, what)
    except FileNotFoundError:
        return


def _check_path(path: Path, what: str) -> None:
    """:func:`_check_open`'s rules for a file not opened."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"the {what} {path} is a symbolic link: refusing to follow it")
    if _loose(info, path, what):
        os.chmod(path, FILE_MODE)

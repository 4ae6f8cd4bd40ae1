"""Where this user's service lives on this host, how it is found alive, and which code it runs.

The **runtime directory** is ``$OHFP_RUNTIME_DIR``, else ``/tmp/ohfp-<uid>``: owned by the
user, no group or other bits (a directory that is not is refused, never repaired: someone
else could have made it). Each installation (a virtualenv: ``sys.prefix``) has a service of
its own there, its files named by the installation's :data:`TAG`, so the scripts of one
installation never reach another's code:

- ``serve-<tag>.sock``: the service's socket (owner-only);
- ``serve-<tag>.lock``: held (``flock``) by the service as long as it accepts calls: liveness
  is this lock, never a pid;
- ``start-<tag>.lock``: held while a service is being started, so many calls that find none
  start one;
- ``ohfp-serve-<tag>.log``: the service's own log (per-call lines go to the instance's log).

The **build id** names the installed code: the interpreter and its installation (``sys.prefix``:
one virtualenv), and every ohfp distribution and
plugin distribution with its version and the hash of its file list (``RECORD``, which
holds each file's hash). The scripts carry the id they were written for; a service whose
own id is no longer the installation's answers "restart" and exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

from attrs import frozen

from ohfp_core.errors import ConfigError

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no service
    fcntl = None

RUNTIME_ENV = "OHFP_RUNTIME_DIR"
SERVICE_ENV = "OHFP_SERVICE"


def installation_tag(prefix: str | None = None) -> str:
    """12 hex digits naming an installation (its ``sys.prefix``) in the runtime directory."""
    return hashlib.sha256(os.path.realpath(prefix or sys.prefix).encode()).hexdigest()[:12]


TAG = installation_tag()
SOCKET_NAME = f"serve-{TAG}.sock"
SERVE_LOCK = f"serve-{TAG}.lock"
START_LOCK = f"start-{TAG}.lock"
LOG_INSTANCE = f"serve-{TAG}"
START_FD_ENV = "OHFP_SERVE_START_FD"
"""The descriptor of ``start.lock`` a starting service inherits, closed once it serves."""
MAX_SOCKET_PATH = 107
"""Bytes of a Unix socket path (``sun_path`` is 108 with its terminating NUL)."""


def runtime_dir(environ: dict[str, str] | None = None) -> Path:
    """``$OHFP_RUNTIME_DIR``, else ``/tmp/ohfp-<uid>`` (the scripts compute the same)."""
    env = os.environ if environ is None else environ
    return Path(env.get(RUNTIME_ENV) or f"/tmp/ohfp-{os.getuid()}")  # noqa: S108 - per-uid, checked owner-only


def private_runtime_dir(path: Path) -> Path:
    """Create ``path`` 0700 if missing; refuse one that is not a directory of this user's with
    no group or other bits, or whose socket path would not fit.

    :raises ConfigError: naming what is wrong and how to fix it.
    """
    if len(os.fsencode(path / SOCKET_NAME)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"the runtime directory {path} is too long for a socket path ({MAX_SOCKET_PATH} bytes at"
            f" most with {SOCKET_NAME!r}): set {RUNTIME_ENV} to a shorter one"
        )
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"cannot use the runtime directory {path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"the runtime directory {path} is not a directory of this user's with mode 0700"
            f" (owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}): refusing to use it;"
            f" remove it or set {RUNTIME_ENV} to another"
        )
    return path


def socket_path(directory: Path) -> Path:
    return directory / SOCKET_NAME


class FileLock:
    """An exclusive ``flock`` on a file of the runtime directory, taken without waiting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        if fcntl is None:
            return False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def serving(directory: Path) -> bool:
    """True while a service holds ``serve.lock`` in ``directory`` (it accepts calls)."""
    probe = FileLock(directory / SERVE_LOCK)
    if probe.acquire():
        probe.release()
        return False
    return fcntl is not None


def start_detached(environ: Mapping[str, str] | None = None) -> bool:
    """Start a service in the background unless one serves or is starting; True when this
    call started one. Never raises: the call that asked goes on in its own process."""
    import subprocess

    try:
        directory = private_runtime_dir(runtime_dir(dict(environ or os.environ)))
        starter = FileLock(directory / START_LOCK)
        if not starter.acquire():
            return False
        try:
            if serving(directory):
                return False
            held = starter.fd if starter.fd is not None else -1
            env = {**(environ or os.environ), START_FD_ENV: str(held)}
            subprocess.Popen(
                [sys.executable, "-I", "-m", "ohfp_core", "serve", "--from-call"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(held,),
                start_new_session=True,
                close_fds=True,
            )
            return True
        finally:
            starter.release()
    except (OSError, ConfigError):
        return False


# --------------------------------------------------------------------------------------
# The build id.
# --------------------------------------------------------------------------------------


@frozen
class Build:
    """The installed code: its id, and the files whose change means the id may have changed."""

    id: str
    watched: tuple[Path, ...]

    def fingerprint(self) -> tuple[tuple[int, int], ...]:
        """(inode, mtime) of every watched file and directory; (0, 0) for one that is gone."""
        return tuple(_stat(path) for path in self.watched)


def _stat(path: Path) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_ino, info.st_mtime_ns)


def _distributions() -> Iterator[tuple[str, str, Path | None, str]]:
    """ohfp-core and every distribution of a provider or plugin entry point: (name, version,
    RECORD path, RECORD text)."""
    from importlib import metadata

    from ohfp_core.plugins import PLUGIN_GROUP, PROVIDER_GROUP, entry_points_of

    found: dict[str, metadata.Distribution] = {"ohfp-core": metadata.distribution("ohfp-core")}
    for group in (PROVIDER_GROUP, PLUGIN_GROUP):
        for ep in entry_points_of(group):
            if ep.dist is not None:
                found.setdefault(ep.dist.name, ep.dist)
    for name in sorted(found):
        dist = found[name]
        record = next((f for f in dist.files or () if f.name == "RECORD"), None)
        yield (
            name,
            dist.version,
            Path(str(record.locate())) if record else None,
            dist.read_text("RECORD") or "",
        )


def current_build() -> Build:
    """The build id of the installation this interpreter runs (reads every distribution's
    metadata: a few milliseconds)."""
    digest = hashlib.sha256()
    digest.update(f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{sys.version}\0".encode())
    watched: list[Path] = []
    for name, version, record, text in _distributions():
        digest.update(f"{name}\0{version}\0{hashlib.sha256(text.encode()).hexdigest()}\0".encode())
        if record is not None:
            watched += [record, record.parent.parent]  # a change of it, or of what is installed
    return Build(digest.hexdigest()[:20], tuple(dict.fromkeys(watched)))

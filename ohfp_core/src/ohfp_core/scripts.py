"""Writing the five Host Factory scripts that run this installation's ohfp.

Host Factory runs ``<script dir>/<call>.sh -f <input.json>`` with a bare environment (no
virtualenv activated, a minimal PATH), so each script calls this installation's interpreter
by absolute path in isolated mode (``-I``: no PYTHONPATH or user site can change what runs).
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path

from ohfp_core.errors import ConfigError

CALLS = (
    "getAvailableTemplates",
    "requestMachines",
    "requestReturnMachines",
    "getRequestStatus",
    "getReturnRequests",
)


def _sh(python: str, call: str, provider: str) -> str:
    command = " ".join(
        shlex.quote(part) for part in (python, "-I", "-m", "ohfp_core", "hf", call, "--provider", provider)
    )
    return (
        "#!/bin/sh\n"
        f"# Host Factory provider script written by 'ohfp hf scripts' for provider {provider!r}.\n"
        f"# Host Factory runs it as: {call}.sh -f <input.json>\n"
        f'exec {command} "$@"\n'
    )


def _bat(python: str, call: str, provider: str) -> str:
    return (
        "@echo off\r\n"
        f"rem Host Factory provider script written by 'ohfp hf scripts' for provider {provider}.\r\n"
        f'"{python}" -I -m ohfp_core hf {call} --provider {provider} %*\r\n'
    )


SCRIPT_DIR_MODE = 0o755
MODES = {".sh": 0o755, ".bat": 0o644}
"""Script modes, whatever the umask: Host Factory (maybe another user) runs them; only
their owner may change them."""


def _script_dir(directory: Path) -> None:
    """Create the script directory 0755; refuse one others can write to (they could replace
    what Host Factory runs)."""
    try:
        existed = directory.is_dir()
        directory.mkdir(parents=True, exist_ok=True)
        if not existed:
            os.chmod(directory, SCRIPT_DIR_MODE)
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"cannot create the script directory {directory}: {exc.strerror or exc}") from None
    if mode & 0o022:
        raise ConfigError(
            f"the script directory {directory} is writable by group or others (mode {mode:04o}): anyone"
            f" could replace what Host Factory runs; run 'chmod go-w {directory}' or choose another"
        )


def _write(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically with ``content`` at its mode: a new file renamed over the
    old one, so a symbolic link in its place is replaced, never followed."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            os.fchmod(handle.fileno(), MODES[path.suffix])
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_scripts(directory: Path, provider: str, python: str | None = None) -> list[Path]:
    """Write ``<call>.sh`` (0755) and ``<call>.bat`` (0644) for the five calls into
    ``directory`` (created 0755), whatever the umask.

    :raises ConfigError: when ``provider`` is not installed or the name is unsafe, or the
        directory is writable by group or others.
    """
    from ohfp_core.plugins import PROVIDER_GROUP, names_of

    names = names_of(PROVIDER_GROUP)
    if provider not in names:
        raise ConfigError(
            f"provider {provider!r} is not installed (installed providers: {', '.join(names) or 'none'})"
        )
    if not provider.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"provider name {provider!r} must be letters, digits, '-' or '_'")
    interpreter = str(Path(python or sys.executable).absolute())
    _script_dir(directory)
    written: list[Path] = []
    for call in CALLS:
        sh = directory / f"{call}.sh"
        _write(sh, _sh(interpreter, call, provider).encode("utf-8"))
        bat = directory / f"{call}.bat"
        _write(bat, _bat(interpreter, call, provider).encode("utf-8"))
        written += [sh, bat]
    return written

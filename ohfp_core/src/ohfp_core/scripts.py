"""Writing the five Host Factory scripts that run this installation's ohfp.

Host Factory runs ``<script dir>/<call>.sh -f <input.json>`` with a bare environment (no
virtualenv activated, a minimal PATH), so each script calls this installation's interpreter
by absolute path in isolated mode (``-I``: no PYTHONPATH or user site can change what runs).
"""

from __future__ import annotations

import os
import shlex
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


def write_scripts(directory: Path, provider: str, python: str | None = None) -> list[Path]:
    """Write ``<call>.sh`` (mode 0755) and ``<call>.bat`` for the five calls into ``directory``.

    :raises ConfigError: when ``provider`` is not installed or the name is unsafe.
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
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for call in CALLS:
        sh = directory / f"{call}.sh"
        sh.write_text(_sh(interpreter, call, provider), encoding="utf-8")
        os.chmod(sh, 0o755)  # noqa: S103 - Host Factory (maybe another user) must run it; it holds no secret
        bat = directory / f"{call}.bat"
        bat.write_bytes(_bat(interpreter, call, provider).encode("utf-8"))
        written += [sh, bat]
    return written

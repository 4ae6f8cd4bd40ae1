"""Writing the five Host Factory scripts that run this installation's ohfp.

Host Factory runs ``<script dir>/<call>.sh -f <input.json>`` with a bare environment (no
virtualenv activated, a minimal PATH), so each script calls this installation's interpreter
by absolute path in isolated mode (``-I``: no PYTHONPATH or user site can change what runs).

A ``.sh`` script first asks this user's resident service (``ohfp serve``,
:mod:`ohfp_core.serve`) over its private socket, with ``curl --unix-socket`` when a curl
that can (7.40 or later, built with Unix sockets) and an ``env`` that prints ``-0`` are
found at generation time, else with the thin client ``ohfp_core/serve/client.py`` run by
``python -I -S``. It runs the call in its own process, as before, when ``OHFP_SERVICE=off``
or when the request provably never reached a service (:mod:`ohfp_core.serve.wire`), and then
starts one. The build id of the installation is written into the scripts. ``--no-service``
writes scripts that always run the call in their own process; ``.bat`` scripts always do.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from pathlib import Path
from typing import NamedTuple

from ohfp_core.errors import ConfigError
from ohfp_core.serve.wire import CALLS


def _here(python: str, call: str, provider: str) -> str:
    return " ".join(
        shlex.quote(part) for part in (python, "-I", "-m", "ohfp_core", "hf", call, "--provider", provider)
    )


def _head(call: str, provider: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# Host Factory provider script written by 'ohfp hf scripts' for provider {provider!r}.\n"
        f"# Host Factory runs it as: {call}.sh -f <input.json>\n"
    )


def _sh(python: str, call: str, provider: str) -> str:
    """The script that always runs the call in its own process."""
    return _head(call, provider) + f'exec {_here(python, call, provider)} "$@"\n'


class Service(NamedTuple):
    """What a script that asks the service needs: the build id, and curl (with ``env`` and
    ``id``) or else the thin client. (Every call imports this module:
    it imports nothing heavy at the top.)"""

    build: str
    client: str
    tag: str
    curl: str | None = None
    env: str | None = None
    id: str | None = None


def _printf_format(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "%%").replace("\n", "\\n")


def _no_answer_printf(call: str) -> str:
    """A ``printf`` that writes :func:`~ohfp_core.serve.wire.no_answer_reply` byte for byte
    as the service would (``$rc``: curl's exit code)."""
    from ohfp_core.converter import dumps
    from ohfp_core.serve.wire import no_answer_reply

    marker = "@RC@"
    text = dumps(no_answer_reply(call, f"curl exit {marker}")) + "\n"
    if "'" in text:
        raise AssertionError("the no-answer reply must not hold a single quote")
    arguments = " ".join(['"$rc"'] * text.count(marker))
    return "printf '" + _printf_format(text).replace(marker, "%s") + "' " + arguments


def _sh_curl(python: str, call: str, provider: str, service: Service) -> str:
    """The script that asks the service with curl (see the module docstring)."""
    from ohfp_core.serve.wire import BUILD_HEADER, CURL_NOT_SENT, EXIT_NO_ANSWER, HF_PATH, STATUS_REPLY

    if not (service.curl and service.env and service.id):
        raise ValueError("a curl script needs curl, env and id")
    url = f"http://ohfp{HF_PATH}{call}?provider={provider}"
    not_sent = " | ".join(str(code) for code in CURL_NOT_SENT)
    return _head(call, provider) + (
        "# It asks this user's ohfp service over its private socket and runs the call in its\n"
        "# own process when none answers (or OHFP_SERVICE=off); see the service guide.\n"
        f'run_here() {{\n  exec {_here(python, call, provider)} "$@"\n}}\n'
        '[ "${OHFP_SERVICE-}" != off ] && [ $# -eq 2 ] && [ "$1" = -f ] && [ -f "$2" ] || run_here "$@"\n'
        'case $2 in *[\\;,\\"\\\\]* | *\'\n\'*) run_here "$@" ;; esac\n'
        "t=${HF_PROVIDER_ACTION_TIMEOUT:-240}\n"
        "case $t in '' | *[!0-9]* | 0* | 1 | 2 | ??????*) run_here \"$@\" ;; esac\n"
        # The writer's uid saves an 'id -u' per call; another user's falls back to asking.
        f"sock=${{OHFP_RUNTIME_DIR:-/tmp/ohfp-{os.getuid()}}}/serve-{service.tag}.sock\n"
        '[ -S "$sock" ] && [ -O "$sock" ] || [ -n "${OHFP_RUNTIME_DIR-}" ] ||\n'
        f"  sock=/tmp/ohfp-$({shlex.quote(service.id)} -u)/serve-{service.tag}.sock\n"
        '[ -S "$sock" ] && [ -O "$sock" ] || run_here --start-service "$@"\n'
        f"out=$({shlex.quote(service.env)} -0 | {shlex.quote(service.curl)} -q -s --noproxy '*'"
        ' --unix-socket "$sock" --max-time $((t - 1)) \\\n'
        f"  -H 'Expect:' -H '{BUILD_HEADER}: {service.build}' -F 'env=@-;type=application/octet-stream' \\\n"
        '  --form-string "file=$2" -F "input=@$2;type=application/octet-stream" -w \'%{http_code}\' \\\n'
        f'  {shlex.quote(url)} 2>/dev/null; echo " $?")\n'
        "rc=${out##* }\n"
        "out=${out% *}\n"
        f'case $rc in\n0) ;;\n{not_sent}) run_here --start-service "$@" ;;\n'
        f"*)\n  {_no_answer_printf(call)}\n  exit {EXIT_NO_ANSWER}\n  ;;\nesac\n"
        f'[ "${{out#"${{out%???}}"}}" = {STATUS_REPLY} ] || run_here --start-service "$@"\n'
        "out=${out%???}\n"
        "code=${out%%'\n'*}\n"
        "printf '%s' \"${out#*'\n'}\"\n"
        'exit "$code"\n'
    )


def _sh_client(python: str, call: str, provider: str, service: Service) -> str:
    """The script that asks the service with the thin Python client."""
    parts = (python, "-I", "-S", service.client, call, provider, service.build, service.tag, python)
    return _head(call, provider) + (
        "# It asks this user's ohfp service over its private socket and runs the call in its\n"
        "# own process when none answers (or OHFP_SERVICE=off); see the service guide.\n"
        f'exec {" ".join(shlex.quote(part) for part in parts)} "$@"\n'
    )


CURL_PLACES = ("/usr/bin/curl", "/bin/curl", "/usr/local/bin/curl")
MIN_CURL = (7, 40)


def _first(*places: str) -> str | None:
    return next((place for place in places if os.access(place, os.X_OK)), None)


def _curl_fits(curl: str) -> bool:
    """curl 7.40 or later built with Unix sockets."""
    import re
    import subprocess

    try:
        done = subprocess.run([curl, "--version"], capture_output=True, text=True, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return False
    found = re.match(r"curl (\d+)\.(\d+)", done.stdout)
    if found is None:
        return False
    return (int(found[1]), int(found[2])) >= MIN_CURL and "UnixSockets" in done.stdout


def _env_fits(env: str) -> bool:
    """An ``env`` that prints the environment NUL-separated (``-0``)."""
    import subprocess

    try:
        done = subprocess.run([env, "-0"], capture_output=True, env={"A": "1"}, timeout=10, check=False)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout == b"A=1\0"


def find_service(python: str, curl: bool = True) -> Service:
    """The build id and client of the installation ``python`` runs, and the tools found."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        from ohfp_core.serve.runtime import TAG, current_build

        build, client, tag = current_build().id, str(Path(__file__).parent / "serve" / "client.py"), TAG
    else:
        import json
        import subprocess

        done = subprocess.run(  # noqa: S603 - the interpreter the scripts will run
            [python, "-I", "-m", "ohfp_core", "serve", "--describe"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            described = json.loads(done.stdout)
            build, client, tag = described["build"], described["client"], described["tag"]
        except (ValueError, KeyError):
            raise ConfigError(
                f"{python} cannot describe its ohfp installation: {done.stdout}{done.stderr}"
            ) from None
    found_curl = _first(*CURL_PLACES) if curl else None
    env, ident = _first("/usr/bin/env", "/bin/env"), _first("/usr/bin/id", "/bin/id")
    if found_curl and env and ident and _curl_fits(found_curl) and _env_fits(env):
        return Service(build, client, tag, found_curl, env, ident)
    return Service(build, client, tag)


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


def write_scripts(
    directory: Path, provider: str, python: str | None = None, service: str = "curl"
) -> list[Path]:
    """Write ``<call>.sh`` (0755) and ``<call>.bat`` (0644) for the five calls into
    ``directory`` (created 0755), whatever the umask.

    :param service: ``curl`` (default: ask the service with curl where one fits, else with
        the thin client), ``client`` (always the thin client) or ``off`` (never ask).

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
    found = None if service == "off" else find_service(interpreter, curl=service == "curl")
    _script_dir(directory)
    written: list[Path] = []
    for call in CALLS:
        sh = directory / f"{call}.sh"
        if found is None:
            text = _sh(interpreter, call, provider)
        elif found.curl is not None:
            text = _sh_curl(interpreter, call, provider, found)
        else:
            text = _sh_client(interpreter, call, provider, found)
        _write(sh, text.encode("utf-8"))
        bat = directory / f"{call}.bat"
        _write(bat, _bat(interpreter, call, provider).encode("utf-8"))
        written += [sh, bat]
    return written

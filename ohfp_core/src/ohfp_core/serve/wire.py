"""What a script sends the service, and what it gets back.

A Host Factory call is ``POST /v1/hf/<call>?provider=<type>`` with the header
``Ohfp-Build: <build id the script was written for>`` and a ``multipart/form-data`` body:

- ``env``: the script's environment as ``env -0`` prints it (``NAME=value`` NUL-terminated);
- ``file``: the path of Host Factory's input file (it names the file in error messages);
- ``input``: the file's content.

The answer is one of:

- **200**: the call ran (or ran out of time and was answered as failed). The body is the exit
  code on a line of its own, then exactly the bytes the call wrote on stdout.
- **any other status**: the call was **not** run, and nothing of it was: the script runs it
  in its own process. The service answers so only before any work: 503 when it is
  restarting (its code changed) or stopping, 421 when the call's environment is one it
  cannot serve (see :func:`foreign_keys`), 400/404/413 for a request it cannot read.

A script that sent a request and got no answer (the service died or hung) never runs the call
again: requestMachines could launch twice. It prints :func:`no_answer_reply` and exits with
:data:`EXIT_NO_ANSWER`; the next call reconciles what the lost one left.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CALLS = (
    "getAvailableTemplates",
    "requestMachines",
    "requestReturnMachines",
    "getRequestStatus",
    "getReturnRequests",
)
"""The five Host Factory calls, in the order Host Factory documents them."""
HF_PATH = "/v1/hf/"
BUILD_HEADER = "Ohfp-Build"
FIELD_ENV, FIELD_FILE, FIELD_INPUT = "env", "file", "input"
STATUS_REPLY = 200
STATUS_RESTART = 503
STATUS_ELSEWHERE = 421
CURL_NOT_SENT = (2, 7, 26)
"""curl's exit codes for a request that never left it: failed to start, could not connect,
could not read the input file."""
EXIT_NO_ANSWER = 3
PER_CALL_PREFIXES = ("HF_", "OHFP_")
"""Variables each call brings along (core reads them through :mod:`ohfp_core.environment`)."""
SHELL_NOISE = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
"""Variables a shell sets on its own, which no plugin reads."""
COERCED_CTYPES = frozenset({"C.UTF-8", "C.utf8", "UTF-8"})
"""What Python sets ``LC_CTYPE`` to in its own environment when started in the C locale
(PEP 538): a process started so and one that was not differ by that alone."""
MAX_BODY = 16 * 1024 * 1024 + 1024 * 1024
"""An input file at the in-process limit plus room for the environment."""


def no_answer_reply(call: str, detail: str) -> dict[str, Any]:
    """The reply of a script whose request got no answer (``detail`` says what happened)."""
    return {
        "message": f"{call} failed: the ohfp service took the call and gave no answer ({detail});"
        " the call is not run again: the next call reconciles whatever it left",
        "errors": [f"no answer from the ohfp service: {detail}"],
    }


def frame(code: int, stdout: bytes) -> bytes:
    """The body of a 200 answer."""
    return f"{code}\n".encode() + stdout


def parse_env(raw: bytes) -> dict[str, str]:
    """``env -0`` output as a mapping (bytes kept through ``surrogateescape``)."""
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def per_call(name: str) -> bool:
    return name.startswith(PER_CALL_PREFIXES)


def foreign_keys(call_env: Mapping[str, str], own_env: Mapping[str, str]) -> list[str]:
    """The variables, other than the per-call ``HF_*``/``OHFP_*`` ones, whose value differs
    between a call's environment and the service's: libraries (botocore, libpq) read those
    from the process environment, so a call that differs cannot be answered here."""
    names = (set(call_env) | set(own_env)) - SHELL_NOISE
    differ = {n for n in names if not per_call(n) and call_env.get(n) != own_env.get(n)}
    ctypes = {call_env.get("LC_CTYPE"), own_env.get("LC_CTYPE")}
    if "LC_CTYPE" in differ and None in ctypes and ctypes - {None} <= COERCED_CTYPES:
        differ.discard("LC_CTYPE")
    return sorted(differ)


def parse_form(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body, by name, content exact.

    :raises ValueError: for a body that is not one.
    """
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ValueError(f"expected multipart/form-data, got {kind.strip()!r}")
    boundary = ""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    parts = body.split(b"\r\n" + delimiter)
    first = parts[0]
    if not first.startswith(delimiter):
        raise ValueError("multipart body does not start with its boundary")
    fields: dict[str, bytes] = {}
    for part in [first[len(delimiter) :], *parts[1:]]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without headers")
        name = _field_name(head.decode("latin-1"))
        if name:
            fields[name] = content
    return fields


def _field_name(head: str) -> str | None:
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        for param in value.split(";"):
            pkey, _, pvalue = param.strip().partition("=")
            if pkey.lower() == "name":
                return pvalue.strip('"')
    return None

"""The thin client a Host Factory script runs where no suitable curl was found.

Run as ``python -I -S client.py CALL PROVIDER BUILD TAG PYTHON -f FILE`` (standard library only: with
``-S`` nothing else is importable, and nothing of ohfp is imported). It does what the curl
scripts do, by the same rules (:mod:`ohfp_core.serve.wire`, duplicated here on purpose and
checked equal by the tests):

- it runs the call in its own process (``python -I -m ohfp_core hf …``) when the service is
  off (``OHFP_SERVICE=off``), the arguments are not ``-f FILE`` of a regular file, or the
  request provably never reached a service: no socket of this user's, a connection refused,
  a server of another uid, a request it could not send whole, or any answer but 200 (the
  service answers otherwise only before any work); then it asks for a service to be started;
- with a 200 it writes the reply's bytes to stdout and exits with its code;
- a request sent whole that gets no answer in time is never run again: it writes the
  no-answer reply and exits 3.

It imports only modules that load in microseconds: ``_socket``, not ``socket`` (its ``enum``
and ``selectors`` cost milliseconds), no ``typing``, and ``json`` (with ``re``) only for the
no-answer reply. The interpreter's start is then most of its time.
"""

from __future__ import annotations

import _socket
import os
import stat
import struct
import sys

CURL_LIKE_PATH = "/v1/hf/"
BUILD_HEADER = "Ohfp-Build"
EXIT_NO_ANSWER = 3
BOUNDARY = "ohfp-form-boundary-7c1f0e"


def no_answer_reply(call: str, detail: str) -> dict[str, object]:
    return {
        "message": f"{call} failed: the ohfp service took the call and gave no answer ({detail});"
        " the call is not run again: the next call reconciles whatever it left",
        "errors": [f"no answer from the ohfp service: {detail}"],
    }


def run_here(python: str, call: str, provider: str, args: list[str], start: bool) -> None:
    command = [python, "-I", "-m", "ohfp_core", "hf", call, "--provider", provider]
    command += ["--start-service"] if start else []
    os.execv(python, command + args)  # noqa: S606 - this installation's own interpreter


def form(fields: list[tuple[str, bytes]]) -> bytes:
    body = b""
    for name, content in fields:
        body += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    return body + f"--{BOUNDARY}--\r\n".encode()


def read_answer(sock: _socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in the middle of the answer")
        body += chunk
    return status, body[:length]


def main(argv: list[str]) -> int:
    call, provider, build, tag, python, args = argv[1], argv[2], argv[3], argv[4], argv[5], argv[6:]
    if os.environ.get("OHFP_SERVICE") == "off" or len(args) != 2 or args[0] != "-f":
        run_here(python, call, provider, args, False)
    path = args[1]
    timeout = os.environ.get("HF_PROVIDER_ACTION_TIMEOUT", "240")
    if not timeout.isdigit() or timeout.startswith("0") or int(timeout) < 3:
        run_here(python, call, provider, args, False)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            run_here(python, call, provider, args, False)
        with open(path, "rb") as handle:
            content = handle.read()
    except OSError:
        run_here(python, call, provider, args, False)
    directory = os.environ.get("OHFP_RUNTIME_DIR") or f"/tmp/ohfp-{os.getuid()}"  # noqa: S108 - per-uid, its socket checked as this user's
    sock_path = f"{directory}/serve-{tag}.sock"
    try:
        info = os.stat(sock_path)
    except OSError:
        run_here(python, call, provider, args, True)
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        run_here(python, call, provider, args, True)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(sock_path)
        raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", raw)[1] != os.getuid():
            run_here(python, call, provider, args, False)
        env = b"".join(key + b"=" + value + b"\0" for key, value in os.environb.items())
        body = form([("env", env), ("file", os.fsencode(path)), ("input", content)])
        query = "provider=" + "".join(c if c.isalnum() or c in "-_" else "" for c in provider)
        head = (
            f"POST {CURL_LIKE_PATH}{call}?{query} HTTP/1.1\r\nHost: ohfp\r\n"
            f"{BUILD_HEADER}: {build}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
    except OSError:  # never sent whole: the service did nothing
        sock.close()
        run_here(python, call, provider, args, True)
    sock.settimeout(int(timeout) - 1)
    try:
        status, answer = read_answer(sock)
    except (OSError, ValueError, IndexError) as exc:
        import json

        detail = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
        reply = json.dumps(no_answer_reply(call, detail), indent=2, ensure_ascii=False) + "\n"
        sys.stdout.buffer.write(reply.encode())
        return EXIT_NO_ANSWER
    finally:
        sock.close()
    if status != 200:
        run_here(python, call, provider, args, True)
    code, _, stdout = answer.partition(b"\n")
    sys.stdout.buffer.write(stdout)
    sys.stdout.buffer.flush()
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

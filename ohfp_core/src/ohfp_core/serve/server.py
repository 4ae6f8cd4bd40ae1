"""HTTP/1.1 over the service's Unix socket, and the read-only API on an optional TCP port.

Every connection to the Unix socket is checked with ``SO_PEERCRED``: a peer of another user
is dropped before a byte is read (the socket is also owner-only in an owner-only
directory). The TCP listener, when configured, serves only ``GET`` of the read-only
documents and page; Host Factory calls and ``/v1/stop`` are refused there.
"""

from __future__ import annotations

import os
import socket
import socketserver
import struct
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote

from ohfp_core.logs import get_logger
from ohfp_core.serve.wire import (
    BUILD_HEADER,
    CALLS,
    FIELD_ENV,
    FIELD_FILE,
    FIELD_INPUT,
    HF_PATH,
    MAX_BODY,
    STATUS_REPLY,
    STATUS_RESTART,
    parse_env,
    parse_form,
)

if TYPE_CHECKING:
    from ohfp_core.serve.state import ServiceState

STOP_PATH = "/v1/stop"
log = get_logger("ohfp.serve")


def peer_uid(connection: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux ``SO_PEERCRED``)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


class Handler(BaseHTTPRequestHandler):
    """One request: a Host Factory call (``POST /v1/hf/<call>``) or a read-only document."""

    protocol_version = "HTTP/1.1"
    server_version = "ohfp"
    sys_version = ""

    @property
    def listener(self) -> _Listener:
        return cast(_Listener, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the service logs calls itself

    def _respond(
        self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8"
    ) -> bool:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            return False
        finally:
            self.close_connection = True
        return True

    def do_GET(self) -> None:
        from ohfp_core.serve import routes

        path, _, query = self.path.partition("?")
        status, content_type, body = routes.route(self.listener.service, unquote(path), parse_qs(query))
        self._respond(status, body, content_type)

    def do_POST(self) -> None:
        service = self.listener.service
        path, _, query = self.path.partition("?")
        if not self.listener.private:
            self._respond(403, b"read-only listener\n")
            return
        if path == STOP_PATH:
            self._respond(202, b"stopping\n")
            service.stop("asked to stop")
            return
        call = path.removeprefix(HF_PATH) if path.startswith(HF_PATH) else ""
        if call not in CALLS:
            self._respond(404, b"no such call\n")
            return
        length = int(self.headers.get("Content-Length") or -1)
        if length < 0 or length > MAX_BODY:
            self._respond(413 if length > MAX_BODY else 411, b"body missing or too large\n")
            return
        body = self.rfile.read(length)
        try:
            if len(body) != length:
                raise ValueError("body cut short")
            fields = parse_form(self.headers.get("Content-Type", ""), body)
            env, file, content = fields[FIELD_ENV], fields[FIELD_FILE], fields[FIELD_INPUT]
        except (ValueError, KeyError) as exc:
            self._respond(400, f"unreadable request: {exc}\n".encode())
            return
        request_env = parse_env(env)
        try:
            refused = service.admit(self.headers.get(BUILD_HEADER, ""), request_env)
        except Exception as exc:  # before any work: the script runs the call itself
            log.exception("call not admitted", error=str(exc))
            refused = STATUS_RESTART
        if refused is not None:
            self._respond(refused, b"")
            return
        provider = parse_qs(query).get("provider", [None])[0]
        from ohfp_core.serve.calls import CallRequest

        request = CallRequest(call, provider, request_env, file.decode("utf-8", "surrogateescape"), content)
        service.calls.answer(request, lambda answer: self._respond(STATUS_REPLY, answer))


class _Listener(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False
    service: ServiceState
    private: bool


class UnixListener(_Listener, socketserver.UnixStreamServer):
    """The private socket: Host Factory calls and every document, for this user only."""

    private = True

    def __init__(self, path: Path, service: ServiceState) -> None:
        self.service = service
        self.path = path
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        super().__init__(str(temporary), Handler, bind_and_activate=False)
        try:
            old_umask = os.umask(0o177)
            try:
                self.server_bind()
            finally:
                os.umask(old_umask)
            os.chmod(temporary, 0o600)
            self.server_activate()
            os.replace(temporary, path)  # atomic: a stale socket is replaced, never followed
        except BaseException:
            self.server_close()
            temporary.unlink(missing_ok=True)
            raise
        info = os.stat(path)
        self.identity = (info.st_dev, info.st_ino)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return peer_uid(request) == os.getuid()

    def still_ours(self) -> bool:
        """False once the socket path is gone or is another service's."""
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.identity

    def remove(self) -> None:
        if self.still_ours():
            self.path.unlink(missing_ok=True)


class TcpListener(_Listener, socketserver.TCPServer):
    """The optional read-only listener (documents and page, ``GET`` only)."""

    private = False
    allow_reuse_address = True

    def __init__(self, host: str, port: int, service: ServiceState) -> None:
        self.service = service
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)

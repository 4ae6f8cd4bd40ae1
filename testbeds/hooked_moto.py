"""A moto server whose every AWS request passes a hook first: to kill the calling process at a
chosen request (crash injection), or to answer with an error AWS gives (throttling, no
capacity) instead of moto.

moto runs in this test process (its backends are this process's), served by werkzeug from a
thread on 127.0.0.1; Host Factory calls reach it as separate processes.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import parse_qs

_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Response = tuple[str, list[tuple[str, str]], bytes]
"""What a client gets: (status, headers, body)."""


class Forward(Protocol):
    """Let moto answer the request (``body``: a rewritten request body instead of the
    client's); returns (status, headers, body)."""

    def __call__(self, body: bytes | None = None) -> Response: ...


Hook = Callable[[str, Forward], Response]
"""``hook(api, forward)``: ``api`` is ``service:Action``; ``forward()`` lets moto answer and
returns (status, headers, body); the hook returns what the client gets. The request's form
parameters are in :attr:`HookedApp.params` and its raw body in :attr:`HookedApp.body` while the
hook runs (one request at a time)."""


def api_name(environ: dict[str, Any], body: bytes) -> str:
    """``service:Action`` of one AWS request (query protocols: ``Action=``; JSON protocols:
    ``X-Amz-Target``)."""
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    query = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
    return f"{service}:{query.get('Action', ['?'])[0]}"


def error_response(
    code: str, message: str, status: int = 400, service: str = "ec2"
) -> tuple[str, list[tuple[str, str]], bytes]:
    """An XML error as AWS sends it: EC2's own shape, or the query protocol's
    (``ErrorResponse``) for the other services (Auto Scaling, STS …)."""
    if service == "ec2":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>ohfp-test</RequestID></Response>"
        ).encode()
    else:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>ohfp-test</RequestId></ErrorResponse>"
        ).encode()
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    return f"{status} {reason}", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))], body


class HookedApp:
    """WSGI middleware: each AWS request goes through ``hook`` (none: straight to moto)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.hook: Hook | None = None
        self.lock = threading.Lock()
        self.params: dict[str, list[str]] = {}
        self.body = b""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        hook = self.hook
        if hook is None or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)

        def forward(body: bytes | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
            if body is not None:
                environ["wsgi.input"] = io.BytesIO(body)
                environ["CONTENT_LENGTH"] = str(len(body))
            answer: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answer["status"], answer["headers"] = status, headers
                return lambda data: None

            content = b"".join(self.app(environ, capture))
            return answer["status"], answer["headers"], content

        with self.lock:
            self.params = parse_qs(raw.decode("utf-8", "replace"))
            self.body = raw
            status, headers, content = hook(api_name(environ, raw), forward)
        start_response(status, headers)
        return [content]


class HookedMotoServer:
    """moto's server app behind :class:`HookedApp`, served from a thread on 127.0.0.1."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.app = HookedApp(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

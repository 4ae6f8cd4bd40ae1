"""The read-only API's paths: each ``GET`` answered with a document
(:mod:`~ohfp_core.serve.api`), the page (:mod:`~ohfp_core.serve.page`) or the metrics.

=============================  ==================================================================
``GET /v1/health``             the service answers: ``{"status": "ok", "pid": …}``
``GET /v1/ready``              every instance's health checks (``ohfp_health_check``, the store's):
                               ``ready``, or ``degraded`` with the failed checks (still 200:
                               degraded is not down)
``GET /v1/status``             version, build id, pid, uptime, calls served with p50/p95 per Host
                               Factory call, calls in flight, the last error, instances, plugins
``GET /v1/requests``           requests by instance (``?instance=``, ``?state=running`` (default),
                               ``complete``, ``complete_with_error`` or ``all``; newest 200)
``GET /v1/requests/{id}``      one request (``?instance=``, else every instance is asked): record,
                               machines, timeline, the provider's explanation (``ohfp requests show``)
``GET /v1/templates``          each instance's templates with ``availableNumber``
``GET /metrics``               Prometheus text format (:mod:`ohfp_core.serve.metrics`)
``GET /``, ``/requests/{id}``  the HTML status page (:mod:`ohfp_core.serve.page`)
=============================  ==================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ohfp_core.errors import OhfpError
from ohfp_core.serve import api, page

if TYPE_CHECKING:
    from ohfp_core.serve.state import ServiceState

JSON_TYPE = "application/json"
Reply = tuple[int, str, bytes]


def _json(status: int, document: Any) -> Reply:
    return status, JSON_TYPE, (json.dumps(document, indent=2, default=str) + "\n").encode()


def route(service: ServiceState, path: str, query: Mapping[str, list[str]]) -> Reply:
    """The answer to ``GET path?query``."""
    one = {name: values[-1] for name, values in query.items() if values}
    try:
        if path == "/":
            return 200, page.HTML_TYPE, page.overview(service).encode()
        if path.startswith("/requests/"):
            return (
                200,
                page.HTML_TYPE,
                page.request_page(service, path.removeprefix("/requests/"), one.get("instance")).encode(),
            )
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return 200, CONTENT_TYPE_LATEST, service.metrics.render()
        documents: dict[str, Callable[[], Any]] = {
            "/v1/health": lambda: api.health(service),
            "/v1/ready": lambda: api.ready(service),
            "/v1/status": lambda: api.status(service),
            "/v1/requests": lambda: api.requests(service, one.get("instance"), one.get("state", "running")),
            "/v1/templates": lambda: api.templates(service, one.get("instance")),
        }
        if path in documents:
            return _json(200, documents[path]())
        if path.startswith("/v1/requests/"):
            return _json(200, api.request(service, path.removeprefix("/v1/requests/"), one.get("instance")))
    except api.NotFound as exc:
        return _json(404, {"message": str(exc)})
    except (OhfpError, TimeoutError) as exc:
        return _json(503, {"message": f"{type(exc).__name__}: {exc}"})
    return _json(404, {"message": f"no document at {path}"})

"""The HTML status page: server-rendered from the same documents as the API, no script.

``/`` shows the service (version, build, pid, uptime), the calls per Host Factory call with
p50/p95, the calls in flight, the last error, and per instance its running requests with
their machines; each request links to ``/requests/{id}?instance=…`` (its machines and
timeline) and every section to its JSON document.
"""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ohfp_core.errors import OhfpError

if TYPE_CHECKING:
    from ohfp_core.serve.state import ServiceState

HTML_TYPE = "text/html; charset=utf-8"
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;font-size:.9rem}
th{background:#f3f3f3} .bad{color:#b00} .ok{color:#070} code{font-size:.85rem}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def _table(headers: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    lines = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not rows:
        lines = f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>'


def _when(stamp: Any) -> str:
    if not isinstance(stamp, int | float) or not stamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def overview(service: ServiceState) -> str:
    """The page at ``/``."""
    from ohfp_core.serve import api

    state = api.status(service)
    parts = [
        '<p id="service">'
        f"ohfp {escape(state['version'])} · build <code>{escape(state['build'])}</code> · pid {state['pid']}"
        f" · up {state['uptimeSec']:.0f} s · {escape(state['state'])}</p>",
        '<p>JSON: <a href="/v1/status">status</a> · <a href="/v1/requests">requests</a> ·'
        ' <a href="/v1/templates">templates</a> · <a href="/v1/ready">ready</a> ·'
        ' <a href="/metrics">metrics</a></p>',
        "<h2>Calls</h2>",
        _table(
            ["call", "served", "p50 ms", "p95 ms", "exit codes"],
            [
                [
                    escape(call),
                    str(c["served"]),
                    str(c["p50Ms"]),
                    str(c["p95Ms"]),
                    escape(", ".join(f"exit {code}: {n}" for code, n in c["exitCodes"].items())),
                ]
                for call, c in state["calls"].items()
            ],
            "calls",
        ),
        "<h2>In flight</h2>",
        _table(
            ["call", "instance", "running s"],
            [[escape(f["call"]), escape(f["instance"]), str(f["runningSec"])] for f in state["inFlight"]],
            "in-flight",
        ),
    ]
    error = state["lastError"]
    if error:
        parts.append(
            '<h2>Last error</h2><p class="bad" id="last-error">'
            f"{escape(error['call'])} on {escape(error['instance'])}"
            f" (exit {error['exitCode']}, {_when(error['at'])})</p><pre>{escape(error['reply'])}</pre>"
        )
    parts.append("<h2>Instances</h2>")
    parts.append(
        _table(
            ["instance", "provider", "work directory"],
            [
                [
                    f'<a href="#instance-{escape(i["name"])}">{escape(i["name"])}</a>',
                    escape(str(i["provider"])),
                    escape(str(i["workdir"])),
                ]
                for i in state["instances"]
            ],
            "instances",
        )
    )
    for instance in state["instances"]:
        parts.append(_instance_section(service, instance["name"]))
    return _page("ohfp service", "".join(parts))


def _instance_section(service: ServiceState, name: str) -> str:
    from ohfp_core.serve import api

    heading = f'<h2 id="instance-{escape(name)}">{escape(name)}: running requests</h2>'
    link = f'<p><a href="/v1/requests?instance={quote(name)}">JSON</a></p>'
    try:
        listed = api.requests(service, name, "running")["instances"][name]
    except (OhfpError, TimeoutError, api.NotFound) as exc:
        return heading + f'<p class="bad">{escape(str(exc))}</p>'
    rows = [
        [
            f'<a class="request" href="{_request_href(r["request_id"], name)}">{escape(r["request_id"])}</a>',
            escape(r["kind"]),
            escape(str(r.get("template_id") or "")),
            str(r["machineCount"]),
            escape(r["status"]),
            _when(r["created_at"]),
        ]
        for r in listed
    ]
    return (
        heading
        + link
        + _table(["request", "kind", "template", "machines", "status", "created"], rows, f"requests-{name}")
    )


def _request_href(request_id: str, instance: str) -> str:
    return f"/requests/{quote(request_id)}?instance={quote(instance)}"


def request_page(service: ServiceState, request_id: str, instance: str | None) -> str:
    """The page at ``/requests/{id}``: the request, its machines and timeline."""
    from ohfp_core.serve import api

    try:
        shown = api.request(service, request_id, instance)
    except (OhfpError, TimeoutError, api.NotFound) as exc:
        return _page(
            f"request {request_id}", f'<p class="bad">{escape(str(exc))}</p><p><a href="/">back</a></p>'
        )
    record = shown["request"]
    machines = [
        [
            escape(str(m["machine"].get("machine_id"))),
            escape(str(m["machine"].get("name"))),
            escape(str(m["machine"].get("state"))),
            escape(str(m.get("result"))),
            escape(str(m["machine"].get("private_ip") or "")),
        ]
        for m in shown["machines"]
    ]
    events = [[_when(e["at"]), escape(e["event"])] for e in shown["timeline"]]
    json_href = "/v1" + _request_href(request_id, shown["instance"])
    body = (
        f'<p><a id="back" href="/">all instances</a> · <a href="{json_href}">JSON</a></p>'
        f'<p id="summary">{escape(record["kind"])} request of instance {escape(shown["instance"])}:'
        f" <strong>{escape(record['status'])}</strong> {escape(record.get('message') or '')}</p>"
        "<h2>Machines</h2>"
        + _table(["machine id", "name", "state", "result", "private IP"], machines, "machines")
        + "<h2>Timeline</h2>"
        + _table(["when", "what"], events, "timeline")
    )
    details = shown.get("details")
    if details:
        body += f"<h2>Provider's explanation</h2><pre>{escape(str(details))}</pre>"
    return _page(f"request {request_id}", body)

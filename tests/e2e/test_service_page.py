"""The service's status page in a real browser (headless Chromium), and its read-only API.

The service runs in the foreground as under systemd (``ohfp serve --listen``), with a mock
instance holding a running request. In Chromium the page loads, shows the service, the
calls, the instance and its request; the request's link opens its page with its machines
and timeline, and the way back works. Then the JSON documents and the Prometheus metrics.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import MOCK_CONFIG, HostFactory, Installation, make_instance
from .devtools import Browser, find_chromium
from .service_support import stop_service, wait_serving

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(
    installation: Installation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HostFactory, str, str]]:
    """A service in the foreground with a TCP listener, a mock instance with a running
    request of 3 machines: (instance, base URL, request id)."""
    root = tmp_path_factory.mktemp("page")
    scripts = installation.scripts("mock", root / "scripts")
    hf = make_instance(installation, scripts, root / "inst", "pageinst")
    hf.write_config("config", MOCK_CONFIG)
    hf.env_extra["OHFP_RUNTIME_DIR"] = str(root / "rt")
    port = _free_port()
    service = subprocess.Popen(
        [str(installation.ohfp), "serve", "--listen", f"127.0.0.1:{port}"],
        env=hf.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_serving(hf)
        request_id = hf.call(
            "requestMachines", {"template": {"templateId": "mock-small", "machineCount": 3}}
        ).ok()["requestId"]
        hf.status(request_id)
        yield hf, f"http://127.0.0.1:{port}", request_id
    finally:
        stop_service(hf)
        out, _ = service.communicate(timeout=60)
    assert service.returncode == 0
    assert json.loads(out)["message"].startswith("ohfp service stopped")


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback
        return answer.status, answer.headers.get("Content-Type", ""), answer.read()


def test_the_status_page_in_a_browser(served: tuple[HostFactory, str, str], tmp_path: Path) -> None:
    _hf, base, request_id = served
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's chromium for the status page test (.ci/run installs it)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    browser = Browser(binary)
    try:
        browser.open(base + "/")
        assert browser.evaluate("document.title") == "ohfp service"
        assert "serving" in browser.evaluate("document.querySelector('#service').textContent")
        calls = browser.evaluate(
            "[...document.querySelectorAll('#calls tbody tr td:first-child')].map(e => e.textContent)"
        )
        assert {"requestMachines", "getRequestStatus"} <= set(calls)
        assert "pageinst" in browser.evaluate("document.querySelector('#instances').textContent")
        links = browser.evaluate("[...document.querySelectorAll('a.request')].map(e => e.textContent)")
        assert links == [request_id]
        browser.screenshot(tmp_path / "overview.png")

        browser.click("a.request")
        assert browser.evaluate("location.pathname") == f"/requests/{request_id}"
        assert "running" in browser.evaluate("document.querySelector('#summary').textContent")
        machines = browser.evaluate("document.querySelectorAll('#machines tbody tr').length")
        assert machines == 3
        events = browser.evaluate(
            "[...document.querySelectorAll('#timeline tbody tr')].map(e => e.textContent)"
        )
        assert any("created" in e for e in events)
        browser.screenshot(tmp_path / "request.png")

        browser.click("#back")
        assert browser.evaluate("location.pathname") == "/"
        hrefs: list[str] = browser.evaluate("[...document.querySelectorAll('a')].map(e => e.href)")
    finally:
        browser.close()
    for href in hrefs:  # every link on the page answers
        status, _, _ = _get(href)
        assert status == 200, href
    assert (tmp_path / "overview.png").stat().st_size > 1000


def test_the_read_only_api(served: tuple[HostFactory, str, str]) -> None:
    _hf, base, request_id = served

    def document(path: str) -> Any:
        status, kind, body = _get(base + path)
        assert status == 200 and kind == "application/json", path
        return json.loads(body)

    assert document("/v1/health")["status"] == "ok"
    state = document("/v1/status")
    assert state["build"] and state["pid"] > 0 and state["calls"]["requestMachines"]["served"] == 1
    assert state["calls"]["requestMachines"]["p50Ms"] > 0
    assert {p["name"] for p in state["plugins"]} >= {"mock", "aws"}
    assert [i["name"] for i in state["instances"]] == ["pageinst"]
    running = document("/v1/requests?instance=pageinst")["instances"]["pageinst"]
    assert [r["request_id"] for r in running] == [request_id]
    shown = document(f"/v1/requests/{request_id}")
    assert shown["instance"] == "pageinst" and len(shown["machines"]) == 3 and shown["timeline"]
    templates = document("/v1/templates")["instances"]["pageinst"]["templates"]
    small = next(t for t in templates if t["templateId"] == "mock-small")
    assert small["availableNumber"] == small["maxNumber"] - 3
    assert document("/v1/ready")["status"] in ("ready", "degraded")
    status, kind, body = _get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    text = body.decode()
    assert 'ohfp_hf_calls_total{call="requestMachines",exit_code="0",instance="pageinst"} 1.0' in text
    assert 'ohfp_hook_calls_total{error_code="",hook="ohfp_provision"} 1.0' in text
    with pytest.raises(urllib.error.HTTPError) as refused:  # nothing but GET over TCP
        urllib.request.urlopen(urllib.request.Request(base + "/v1/stop", method="POST"), timeout=30)  # noqa: S310
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(base + "/v1/requests/req-nosuch")
    assert missing.value.code == 404

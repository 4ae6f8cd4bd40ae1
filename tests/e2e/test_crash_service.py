"""Crash injection with the resident service: the service killed at every point of a call.

The same points as ``test_crash.py`` (the test-only crash plugin, before and after every
cloud call and state write), reached in the service: the kill is the service's, with the
call's script waiting on it. The script never runs the call again: it answers with the
no-answer reply (exit 3), or with the reply it had already got when the kill came after the
answer. Then the next ordinary call (in its own process, since the socket is stale, and
starting a new service) must leave the cloud as Host Factory knows it: 0 orphans, 0
duplicates, maxNumber never exceeded (:func:`test_crash.check_clean`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import HostFactory, Installation, make_instance
from .service_support import stop_service, wait_serving
from .test_crash import Figures, Killed, crash_requests, crash_returns, mock_template, run_script

pytestmark = [pytest.mark.e2e, pytest.mark.system]


@pytest.fixture
def service_hf(crash_installation: Installation, tmp_path: Path) -> Iterator[HostFactory]:
    scripts = crash_installation.scripts("mock", tmp_path / "scripts")
    hf = make_instance(crash_installation, scripts, tmp_path / "inst", "mockinst")
    hf.env_extra["OHFP_RUNTIME_DIR"] = str(tmp_path / "rt")
    hf.write_config("config", {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 5})
    hf.write_config("templates", {"templates": [mock_template()]})
    (hf.confdir / "ohfp.json").write_text(json.dumps({"storage": "crashy"}))
    hf.call("getAvailableTemplates").ok()  # the store exists, and a service starts
    yield hf
    stop_service(hf)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def kill_service_at(hf: HostFactory, call: str, payload: Any, point: str) -> Killed:
    """Run ``call`` through a running service and have the service killed at ``point``."""
    pid = wait_serving(hf)["pid"]
    done = run_script(hf, call, payload, OHFP_CRASH_AT=point)
    assert _gone(pid), f"the service was not killed at {point}: {done.stdout}{done.stderr}"
    reply = json.loads(done.stdout)
    if done.returncode == 3:
        assert "gave no answer" in reply["message"] and "requestId" not in reply, reply
        return Killed(time.monotonic(), None)
    assert done.returncode == 0, f"{call} killed at {point}: exit {done.returncode}: {done.stdout}"
    return Killed(time.monotonic(), reply)  # the answer was out before the kill


def test_service_killed_at_every_point_of_requests(
    service_hf: HostFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = Figures()
    crash_requests(service_hf, figures, kill_service_at)
    assert figures.killed >= 8, figures
    with capsys.disabled():
        print("\n" + figures.line("service killed in requestMachines"))


def test_service_killed_at_every_point_of_returns(
    service_hf: HostFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = Figures()
    crash_returns(service_hf, figures, kill_service_at)
    assert figures.killed >= 6, figures
    with capsys.disabled():
        print("\n" + figures.line("service killed in requestReturnMachines"))

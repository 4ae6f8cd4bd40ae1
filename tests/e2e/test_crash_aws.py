"""Crash injection on AWS under a moto server: every point of requestMachines and
requestReturnMachines, for each AWS API, then the next call, then the account is checked.

Points are those of the test-only crash plugin (before/after each provider hook and each
state write, see ``test_crash.py``) plus each AWS request of the call, killed **before** moto
sees it or **during** it (moto has done the work, the process dies before it reads the
answer: the case a client token and tags exist for). After the kill, the next ordinary call
runs; then the account must hold exactly what Host Factory knows: no live instance, EC2
fleet, spot fleet request, Auto Scaling group or launch template of a request Host Factory
never got, no request with more instances than asked, never more live instances of a
template than its maxNumber.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from typing import Any

import attrs
import pytest

from testbeds.hooked_moto import Forward, error_response

from .aws_account import (
    APIS,
    MAX_NUMBER,
    Account,
    instances,
    leftovers,
    live,
    tag,
    templates_for,
)
from .conftest import HostFactory, Installation, make_instance
from .test_crash import ASK, Figures, Killed, record_points, recorded, run_script

pytestmark = [pytest.mark.e2e, pytest.mark.system]


@pytest.fixture(scope="module")
def crash_aws_hf(
    crash_installation: Installation, account: Account, tmp_path_factory: pytest.TempPathFactory
) -> HostFactory:
    root = tmp_path_factory.mktemp("crash-aws")
    scripts = crash_installation.scripts("aws", root / "scripts")
    hf = make_instance(crash_installation, scripts, root / "inst", "awsinst")
    hf.env_extra["OHFP_SERVICE"] = "off"  # the kill is of the call's own process
    hf.write_aws_config(account.server.endpoint, AWS_REQUEST_RETRY_ATTEMPTS=0)
    hf.write_config("templates", {"templates": templates_for(account)})
    (hf.confdir / "ohfp.json").write_text(json.dumps({"storage": "crashy"}))
    hf.call("getAvailableTemplates").ok()
    return hf


# -- killing at an AWS request -------------------------------------------------------------------


@attrs.define
class Killer:
    """A hook for the moto server: note the AWS requests of one call; kill the caller at the
    n-th one, before moto sees it or once moto has answered (``during``)."""

    victim: int = 0
    target: int = 0
    mode: str = ""
    seen: list[str] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __call__(self, api: str, forward: Forward) -> tuple[str, list[tuple[str, str]], bytes]:
        with self.lock:
            self.seen.append(api)
            n = len(self.seen)
        if n == self.target and self.mode == "before" and self.victim:
            os.kill(self.victim, signal.SIGKILL)
            return error_response("InternalError", "the caller was killed", 500)
        answer = forward()
        if n == self.target and self.mode == "during" and self.victim:
            os.kill(self.victim, signal.SIGKILL)
        return answer


def http_points(hf: HostFactory, account: Account, call: str, payload: Any) -> tuple[list[str], Any]:
    """``http:<mode>:<n>:<api>`` for every AWS request the call makes, and its reply."""
    killer = Killer()
    account.server.app.hook = killer
    try:
        done = run_script(hf, call, payload)
    finally:
        account.server.app.hook = None
    assert done.returncode == 0, done.stdout + done.stderr
    points = [
        f"http:{mode}:{n}:{api}" for n, api in enumerate(killer.seen, 1) for mode in ("before", "during")
    ]
    return points, json.loads(done.stdout)


def kill_aws(hf: HostFactory, account: Account, call: str, payload: Any, point: str) -> Killed:
    """Run ``call`` killed at ``point`` (an ``http:…`` point or a crash-plugin point)."""
    env = {} if point.startswith("http:") else {"OHFP_CRASH_AT": point}
    killer = Killer()
    if point.startswith("http:"):
        _, mode, n, _ = point.split(":", 3)
        killer = Killer(target=int(n), mode=mode)
        account.server.app.hook = killer
    try:
        process = subprocess.Popen(
            hf.command(call, payload),
            env={**hf.env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=hf.root,
        )
        killer.victim = process.pid
        stdout, stderr = process.communicate(timeout=120)
    finally:
        account.server.app.hook = None
    assert process.returncode == -signal.SIGKILL, f"{call} was not killed at {point}: {stdout}{stderr}"
    try:
        reply = json.loads(stdout)
    except json.JSONDecodeError:
        reply = None
    return Killed(time.monotonic(), reply)


# -- the account as Host Factory must find it ------------------------------------------------------


def check_account(account: Account, held: set[str], extra: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    alive = live(account) - extra
    assert alive == held, f"live {sorted(alive)}, Host Factory holds {sorted(held)}"
    per_request = Counter(tag(i, "ohfp:request-id") for i in instances(account))
    assert all(n <= ASK for n in per_request.values()), f"duplicates: {per_request}"
    per_template = Counter(
        tag(i, "ohfp:template-id") for i in instances(account) if i["State"]["Name"] in ("pending", "running")
    )
    assert all(n <= MAX_NUMBER for n in per_template.values()), per_template
    if not held:
        assert leftovers(account) == {"launch_templates": [], "fleets": [], "groups": [], "spot_fleets": []}


def poll(hf: HostFactory, request_id: str) -> dict[str, Any]:
    for _ in range(30):
        [entry] = hf.status(request_id)
        if entry["status"] != "running":
            return entry
        time.sleep(0.2)
    raise AssertionError(f"{request_id} still running: {entry}")


def settle_acquire(hf: HostFactory, reply: Any) -> set[str]:
    """Host Factory got this reply: it polls the request, then hands back what it got."""
    entry = poll(hf, reply["requestId"])
    if entry["status"] == "complete_with_error" and "abandoned" in entry["message"]:
        return set()
    hosts = [
        {"name": m["name"], "machineId": m["machineId"]}
        for m in entry["machines"]
        if m["result"] == "succeed"
    ]
    if hosts:
        returned = hf.call("requestReturnMachines", {"machines": hosts}).ok()
        poll(hf, returned["requestId"])
    return {h["machineId"] for h in hosts}


def acquire(hf: HostFactory, template_id: str) -> list[dict[str, str]]:
    reply = hf.call("requestMachines", {"template": {"templateId": template_id, "machineCount": ASK}}).ok()
    entry = poll(hf, reply["requestId"])
    assert entry["status"] == "complete", entry
    return [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]


EVERY_POINT = os.environ.get("OHFP_CRASH_EVERY_POINT") == "1"
"""``nox -s crash`` kills at every point. ``nox -s system`` (CI) kills at the points only AWS has:
each AWS request that changes the account, killed once moto has done it (a kill during a
describe is a kill before the next request, which the crash plugin's points and the mock's
test cover), and right after the provider hook returned."""
SAMPLE = ("after:ohfp_provision#1", "after:ohfp_terminate_machines#1")
READ_ONLY = ("Describe", "Get", "List")


def _sampled(point: str) -> bool:
    if point.startswith("http:during:"):
        action = point.rsplit(":", 1)[-1]
        return not action.startswith(READ_ONLY)
    return point in SAMPLE


def points_of(hf: HostFactory, account: Account, call: str, payload: Any) -> tuple[list[str], list[Any]]:
    """The points of ``call`` to kill at: its AWS requests (two runs: HTTP, then the crash
    plugin), and the replies of those two real runs."""
    http, first = http_points(hf, account, call, payload())
    plugin, second = record_points(hf, call, payload())
    points = [*http, *plugin]
    if not EVERY_POINT:
        points = [p for p in points if _sampled(p)]
    return points, [first, second]


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_aws_requests_killed_at_every_point(
    api: str, crash_aws_hf: HostFactory, account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = crash_aws_hf
    figures = Figures()
    ask = {"template": {"templateId": api, "machineCount": ASK}}
    points, replies = points_of(hf, account, "requestMachines", lambda: ask)
    for reply in replies:
        settle_acquire(hf, reply)
    check_account(account, set())
    for point in points:
        killed = kill_aws(hf, account, "requestMachines", ask, point)
        figures.runs += 1
        figures.killed += 1
        figures.points.append(point)
        orphaned = bool(live(account)) or any(leftovers(account).values())
        hf.call("getReturnRequests").ok()  # what Host Factory runs next reconciles first
        got: set[str] = set()
        if killed.reply is not None and "requestId" in killed.reply:
            got = settle_acquire(hf, killed.reply)
        elif orphaned:
            figures.orphans += 1
            figures.longest_orphan_sec = max(figures.longest_orphan_sec, time.monotonic() - killed.at)
        try:
            check_account(account, set(), extra=got)
        except AssertionError as exc:
            raise AssertionError(f"after requestMachines was killed at {point}: {exc}") from None
    with capsys.disabled():
        print("\n" + figures.line(f"AWS {api} requestMachines"))


@pytest.mark.parametrize("api", APIS)
def test_aws_returns_killed_at_every_point(
    api: str, crash_aws_hf: HostFactory, account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = crash_aws_hf
    figures = Figures()
    hosts = acquire(hf, api)
    points, replies = points_of(hf, account, "requestReturnMachines", lambda: {"machines": hosts})
    for reply in replies:
        poll(hf, reply["requestId"])
    for point in points:
        hosts = acquire(hf, api)
        before = recorded(hf, "return")
        killed = kill_aws(hf, account, "requestReturnMachines", {"machines": hosts}, point)
        figures.runs += 1
        figures.killed += 1
        figures.points.append(point)
        returned = recorded(hf, "return") > before  # else the call failed: Host Factory still holds them
        held = set() if returned else {h["machineId"] for h in hosts}
        orphaned = returned and bool(live(account))
        hf.call("getReturnRequests").ok()
        if killed.reply is not None and "requestId" in killed.reply:
            poll(hf, killed.reply["requestId"])
        elif orphaned:
            figures.orphans += 1
            figures.longest_orphan_sec = max(figures.longest_orphan_sec, time.monotonic() - killed.at)
        try:
            check_account(account, held)
        except AssertionError as exc:
            raise AssertionError(f"after requestReturnMachines was killed at {point}: {exc}") from None
        if held:  # Host Factory tries the return again
            again = hf.call("requestReturnMachines", {"machines": hosts}).ok()
            poll(hf, again["requestId"])
            check_account(account, set())
    with capsys.disabled():
        print("\n" + figures.line(f"AWS {api} requestReturnMachines"))

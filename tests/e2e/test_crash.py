"""Crash injection: a Host Factory call killed at every point, then the calls HF makes next.

A test-only plugin (``tests/e2e/crashkit``, installed into a virtualenv of these tests' own)
names every point of a call: before and after each cloud call (provider hook) and each state
write (the ``crashy`` storage backend, SQLite underneath). A first run records the points a
call reaches; then the call is run once per point and killed there with SIGKILL, as a crash
or an administrator's ``kill -9`` would. The next ordinary call (what Host Factory runs next
anyway) must leave the cloud as Host Factory knows it:

- 0 orphaned machines (nothing live that Host Factory never got, no returned machine live);
- 0 duplicates (no request with more machines than asked);
- maxNumber never exceeded (live machines of the template ≤ maxNumber);
- the longest orphan lifetime — from the kill until the next call had removed what the dead
  call made — is printed with the figures.

The AWS APIs are crashed the same way against a moto server in ``test_crash_aws.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from .aws_account import MAX_NUMBER
from .conftest import HostFactory, Installation, make_instance

pytestmark = [pytest.mark.e2e, pytest.mark.system]

ASK = 2


@attrs.define
class Figures:
    """What a crash run measured, printed at the end of each test."""

    runs: int = 0
    killed: int = 0
    orphans: int = 0
    longest_orphan_sec: float = 0.0
    points: list[str] = attrs.field(factory=list)

    def line(self, what: str) -> str:
        return (
            f"{what}: {self.killed} kills at {len(set(self.points))} points ({', '.join(self.points)})"
            f" in {self.runs} runs;"
            f" {self.orphans} calls left cloud resources behind until the next call;"
            f" longest orphan lifetime {self.longest_orphan_sec:.2f} s; 0 left after it"
        )


def run_script(hf: HostFactory, call: str, payload: Any, **env: str) -> subprocess.CompletedProcess[str]:
    """One HF call through its script with extra environment; no reply checks (it may die)."""
    return subprocess.run(
        hf.command(call, payload),
        env={**hf.env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=hf.root,
    )


def record_points(hf: HostFactory, call: str, payload: Any) -> tuple[list[str], Any]:
    """The points ``call`` reaches, in order, and its reply (the call runs for real)."""
    log = hf.root / f"points-{time.monotonic_ns()}.txt"
    done = run_script(hf, call, payload, OHFP_CRASH_RECORD=str(log))
    assert done.returncode == 0, done.stdout + done.stderr
    points = log.read_text().split() if log.exists() else []
    return points, json.loads(done.stdout)


@attrs.frozen
class Killed:
    """A call killed at a point: when, and the reply it had written in full before (if any:
    then Host Factory got it, whatever happened after)."""

    at: float
    reply: Any


def kill_at(hf: HostFactory, call: str, payload: Any, point: str) -> Killed:
    """Run ``call`` and have it killed at ``point``."""
    done = run_script(hf, call, payload, OHFP_CRASH_AT=point)
    assert done.returncode == -signal.SIGKILL, f"{call} was not killed at {point}: {done.stdout}{done.stderr}"
    try:
        reply = json.loads(done.stdout)
    except json.JSONDecodeError:
        reply = None
    return Killed(time.monotonic(), reply)


# -- the mock provider --------------------------------------------------------------------------------


def mock_template() -> dict[str, Any]:
    return {
        "templateId": "tight",
        "maxNumber": MAX_NUMBER,
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "512"]},
    }


@pytest.fixture
def crash_hf(crash_installation: Installation, tmp_path: Path) -> Iterator[HostFactory]:
    scripts = crash_installation.scripts("mock", tmp_path / "scripts")
    hf = make_instance(crash_installation, scripts, tmp_path / "inst", "mockinst")
    hf.env_extra["OHFP_SERVICE"] = (
        "off"  # the kill is of the call's own process (the service's: test_crash_service.py)
    )
    hf.write_config("config", {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 3})
    hf.write_config("templates", {"templates": [mock_template()]})
    (hf.confdir / "ohfp.json").write_text(json.dumps({"storage": "crashy"}))
    hf.call("getAvailableTemplates").ok()  # the store exists: every later call takes one path
    yield hf


def live_machines(hf: HostFactory) -> list[dict[str, Any]]:
    return [m for m in hf.mock("list")["machines"] if m["state"] in ("pending", "running")]


def check_clean(hf: HostFactory, held: set[str], extra: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Live machines are exactly those Host Factory holds (``extra``: those it held and has
    handed back since, which may still be on their way out); capacity is whole again."""
    live = live_machines(hf)
    assert {m["machineId"] for m in live} - extra == held, live
    per_request: dict[str, int] = {}
    for machine in hf.mock("list")["machines"]:
        per_request[machine["requestId"]] = per_request.get(machine["requestId"], 0) + 1
    assert all(n <= ASK for n in per_request.values()), f"duplicates: {per_request}"
    assert len(live) <= MAX_NUMBER
    [template] = hf.call("getAvailableTemplates").ok()["templates"]
    assert template["availableNumber"] == MAX_NUMBER - len(held), template


def acquire(hf: HostFactory) -> list[dict[str, str]]:
    """A request Host Factory gets, run to completion: its hosts."""
    ask = {"template": {"templateId": "tight", "machineCount": ASK}}
    return hosts_of(hf, hf.call("requestMachines", ask).ok()["requestId"])


def hosts_of(hf: HostFactory, request_id: str) -> list[dict[str, str]]:
    """The hosts of a complete request."""
    [entry] = hf.status(request_id)
    assert entry["status"] == "complete", entry
    return [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]


def settle_acquire(hf: HostFactory, reply: Any) -> set[str]:
    """Host Factory got this requestMachines reply: it polls the request and hands back what it
    got. A call killed after writing its reply but before recording that it had is treated as
    dead: its request was cancelled, and Host Factory sees it end with no machine."""
    [entry] = hf.status(reply["requestId"])
    if entry["status"] == "complete_with_error":
        assert "abandoned" in entry["message"] and all(m["result"] == "fail" for m in entry["machines"])
        return set()
    assert entry["status"] == "complete", entry
    hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]
    give_back(hf, hosts)
    return {h["machineId"] for h in hosts}


def settle_return(hf: HostFactory, reply: Any) -> set[str]:
    """Host Factory got this requestReturnMachines reply: it polls the return to its end."""
    [entry] = hf.status(reply["requestId"])
    assert entry["status"] == "complete", entry
    return set()


def give_back(hf: HostFactory, hosts: list[dict[str, str]]) -> None:
    return_id = hf.call("requestReturnMachines", {"machines": hosts}).ok()["requestId"]
    hf.status(return_id)


def crash_each_point(
    hf: HostFactory,
    figures: Figures,
    call: str,
    payload: Callable[[], Any],
    prepare: Callable[[], None],
    held: Callable[[], set[str]],
    made: Callable[[], bool],
    settle: Callable[[Any], set[str]],
    cleanup: Callable[[set[str]], None] = lambda held: None,
    kill: Callable[[HostFactory, str, Any, str], Killed] = kill_at,
) -> None:
    """Kill ``call`` at every point it reaches; after each kill run the next call and check.

    ``prepare`` readies a run; ``held`` says, after the kill, which machines Host Factory
    still holds (it got no reply); ``made`` tells whether the dead call left anything live in
    the cloud. ``settle`` takes a reply Host Factory got in full (the recording run's, or one
    written before the kill) and returns the machines that reply gave Host Factory, after
    handing them back. ``cleanup`` hands back what Host Factory still held (as it would retry).
    ``kill`` runs the call and kills what answers it (the call's process, or the service).
    """
    prepare()
    points, reply = record_points(hf, call, payload())
    settle(reply)  # the recording run was a real call: undo what it did
    for point in points:
        prepare()
        killed = kill(hf, call, payload(), point)
        figures.runs += 1
        figures.killed += 1
        figures.points.append(point)
        still = held()
        orphaned = made()
        hf.call("getReturnRequests").ok()  # whatever HF runs next reconciles first
        got: set[str] = set()
        if killed.reply is not None and "requestId" in killed.reply:
            got = settle(killed.reply)  # written in full before the kill: Host Factory has it
        elif orphaned:
            figures.orphans += 1
            figures.longest_orphan_sec = max(figures.longest_orphan_sec, time.monotonic() - killed.at)
        try:
            check_clean(hf, still, extra=got)
        except AssertionError as exc:
            raise AssertionError(f"after {call} was killed at {point}: {exc}") from None
        cleanup(still)


def recorded(hf: HostFactory, kind: str) -> int:
    """How many requests of ``kind`` the state store holds."""
    with contextlib.closing(sqlite3.connect(hf.workdir / "ohfp-state.sqlite3")) as db:
        return int(db.execute("SELECT count(*) FROM requests WHERE kind = ?", (kind,)).fetchone()[0])


def crash_requests(
    hf: HostFactory, figures: Figures, kill: Callable[[HostFactory, str, Any, str], Killed]
) -> None:
    """requestMachines killed (by ``kill``) at every point, each kill checked."""
    ask = {"template": {"templateId": "tight", "machineCount": ASK}}
    crash_each_point(
        hf,
        figures,
        "requestMachines",
        lambda: ask,
        prepare=lambda: None,
        held=set,  # Host Factory got no id: it holds nothing of the request
        made=lambda: bool(live_machines(hf)),
        settle=lambda reply: settle_acquire(hf, reply),
        kill=kill,
    )


def crash_returns(
    hf: HostFactory, figures: Figures, kill: Callable[[HostFactory, str, Any, str], Killed]
) -> None:
    """requestReturnMachines killed (by ``kill``) at every point, each kill checked."""
    hosts: list[dict[str, str]] = []
    returns = [0]

    def prepare() -> None:
        hosts[:] = acquire(hf)
        returns[0] = recorded(hf, "return")

    def held() -> set[str]:
        """Once the return is recorded every machine must go, though Host Factory never got
        the reply; before that the call failed and Host Factory still holds them all."""
        if recorded(hf, "return") > returns[0]:
            return set()
        return {h["machineId"] for h in hosts}

    crash_each_point(
        hf,
        figures,
        "requestReturnMachines",
        lambda: {"machines": hosts},
        prepare=prepare,
        held=held,
        made=lambda: not held() and bool(live_machines(hf)),
        settle=lambda reply: settle_return(hf, reply),
        cleanup=lambda still: give_back(hf, hosts) if still else None,
        kill=kill,
    )


def test_mock_requests_killed_at_every_point(
    crash_hf: HostFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = Figures()
    crash_requests(crash_hf, figures, kill_at)
    assert figures.killed >= 8, figures
    with capsys.disabled():
        print("\n" + figures.line("mock requestMachines"))


def test_mock_returns_killed_at_every_point(
    crash_hf: HostFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = Figures()
    crash_returns(crash_hf, figures, kill_at)
    assert figures.killed >= 6, figures
    with capsys.disabled():
        print("\n" + figures.line("mock requestReturnMachines"))


def test_mock_reconciling_call_killed_at_every_point(
    crash_hf: HostFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The call that cleans up after a dead call may die too: the one after it finishes."""
    figures = Figures()
    ask = {"template": {"templateId": "tight", "machineCount": ASK}}
    kill_at(crash_hf, "requestMachines", ask, "after:ohfp_provision#1")
    points, _ = record_points(crash_hf, "getReturnRequests", {})
    assert "before:ohfp_cancel_request#1" in points, points
    for point in points:
        kill_at(crash_hf, "requestMachines", ask, "after:ohfp_provision#1")
        died = kill_at(crash_hf, "getReturnRequests", {}, point).at
        figures.runs += 2
        figures.killed += 1
        figures.points.append(point)
        crash_hf.call("getReturnRequests").ok()
        figures.orphans += 1
        figures.longest_orphan_sec = max(figures.longest_orphan_sec, time.monotonic() - died)
        check_clean(crash_hf, set())
    with capsys.disabled():
        print("\n" + figures.line("mock reconciling getReturnRequests"))


def test_crash_points_are_inert_without_the_switch(crash_hf: HostFactory) -> None:
    """The crash plugin changes nothing unless asked (so the other checks mean something)."""
    assert os.environ.get("OHFP_CRASH_AT") is None
    hosts = acquire(crash_hf)
    check_clean(crash_hf, {h["machineId"] for h in hosts})
    give_back(crash_hf, hosts)
    check_clean(crash_hf, set())

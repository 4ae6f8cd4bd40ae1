"""AWS having a bad day: half of all AWS requests throttled, one subnet short of capacity.

Each AWS API serves a request's whole life through the generated scripts (request, poll,
return, poll) while a moto server in this process answers every other AWS request with the
throttling error AWS sends (a seeded choice, so a run repeats) and RunInstances in the first
subnet with InsufficientInstanceCapacity. Every Host Factory call must end within its time
(``HF_PROVIDER_ACTION_TIMEOUT``, plus the seconds a process needs to start) with a true
answer: a request is never ``complete`` with fewer machines than asked, a refusal is said
as IBM's failure reply or a status message, and once everything is handed back nothing is
left in the account. The figures are printed.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import attrs
import pytest

from testbeds.hooked_moto import Forward, error_response

from .aws_account import APIS, Account, leftovers, live, templates_for
from .conftest import HostFactory, Installation, make_instance
from .test_crash import ASK

pytestmark = [pytest.mark.e2e, pytest.mark.system]

TIMEOUT_SEC = 30
START_MARGIN_SEC = 5
"""A call may take its action timeout plus this for the interpreter to start and stop."""
THROTTLE_CODES = {"ec2": "RequestLimitExceeded", "autoscaling": "Throttling"}


@attrs.define
class BadDay:
    """Throttle about half of the AWS requests; no capacity for RunInstances in one subnet."""

    short_subnet: str
    rng: random.Random = attrs.field(factory=lambda: random.Random(7))  # noqa: S311 -- a fault pattern
    requests: Counter[str] = attrs.field(factory=Counter)
    throttled: Counter[str] = attrs.field(factory=Counter)
    short: int = 0
    params: dict[str, list[str]] = attrs.field(factory=dict)

    def __call__(self, api: str, forward: Forward) -> tuple[str, list[tuple[str, str]], bytes]:
        service, _, action = api.partition(":")
        self.requests[api] += 1
        if self.rng.random() < 0.5:
            self.throttled[api] += 1
            status = 503 if service == "ec2" else 400
            code = THROTTLE_CODES.get(service, "Throttling")
            return error_response(code, "Rate exceeded", status, service)
        if action == "RunInstances" and self.params.get("SubnetId") == [self.short_subnet]:
            self.short += 1
            return error_response("InsufficientInstanceCapacity", "no t3.micro capacity in this zone")
        return forward()


@attrs.define
class Timed:
    durations: list[float] = attrs.field(factory=list)

    def call(self, hf: HostFactory, call: str, payload: Any = None) -> Any:
        start = time.monotonic()
        reply = hf.call(call, payload)
        took = time.monotonic() - start
        self.durations.append(took)
        assert took <= TIMEOUT_SEC + START_MARGIN_SEC, f"{call} took {took:.1f} s: {reply.doc}"
        return reply.ok()


def _final(hf: HostFactory, timed: Timed, request_id: str) -> dict[str, Any]:
    for _ in range(40):
        reply = timed.call(hf, "getRequestStatus", {"requests": [{"requestId": request_id}]})
        entry: dict[str, Any] = reply["requests"][0]
        if entry["status"] != "running":
            return entry
        time.sleep(0.5)
    raise AssertionError(f"{request_id} still running: {entry}")


@pytest.fixture(scope="module")
def faults_hf(
    installation: Installation, account: Account, tmp_path_factory: pytest.TempPathFactory
) -> HostFactory:
    """An ``awsinst`` instance with IBM's default retries (3) and a 30 s action timeout."""
    root = tmp_path_factory.mktemp("faults-aws")
    scripts = installation.scripts("aws", root / "scripts")
    hf = make_instance(installation, scripts, root / "inst", "awsinst")
    hf.write_aws_config(account.server.endpoint, AWS_REQUEST_RETRY_ATTEMPTS=3)
    hf.write_config("templates", {"templates": templates_for(account)})
    hf.env_extra["HF_PROVIDER_ACTION_TIMEOUT"] = str(TIMEOUT_SEC)
    return hf


@pytest.mark.parametrize("api", APIS)
def test_every_call_ends_in_time_with_a_true_answer(
    api: str, faults_hf: HostFactory, account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    hf = faults_hf
    bad = BadDay(account.subnet_ids[0])
    timed = Timed()
    outcomes: list[str] = []

    def hook(api_: str, forward: Forward) -> tuple[str, list[tuple[str, str]], bytes]:
        bad.params = account.server.app.params
        return bad(api_, forward)

    account.server.app.hook = hook
    try:
        held: list[dict[str, str]] = []
        for _ in range(2):  # two requests (maxNumber holds two): some refused outright, some served
            reply = timed.call(hf, "requestMachines", {"template": {"templateId": api, "machineCount": ASK}})
            if "requestId" not in reply:
                assert "failed" in reply["message"], reply  # IBM's failure reply, nothing to poll
                outcomes.append("refused")
                continue
            entry = _final(hf, timed, reply["requestId"])
            succeeded = [m for m in entry["machines"] if m["result"] == "succeed"]
            if entry["status"] == "complete":
                assert len(succeeded) == ASK, entry  # never complete with fewer than asked
            else:
                assert entry["message"], entry  # a shortfall says why
            outcomes.append(entry["status"])
            held += [{"name": m["name"], "machineId": m["machineId"]} for m in succeeded]
        for _ in range(10):  # Host Factory hands everything back, retrying a refused return
            if not held:
                break
            reply = timed.call(hf, "requestReturnMachines", {"machines": held})
            if "requestId" in reply:
                entry = _final(hf, timed, reply["requestId"])
                held = [
                    {"name": m["name"], "machineId": m["machineId"]}
                    for m in entry["machines"]
                    if m["result"] == "fail"
                ]
        assert not held, held
    finally:
        account.server.app.hook = None
    timed.call(hf, "getReturnRequests")  # and the next call tidies whatever a refusal left
    assert live(account) == set()
    left = leftovers(account)
    if any(left.values()):  # say whose they are
        import sqlite3

        with sqlite3.connect(hf.workdir / "ohfp-state.sqlite3") as db:
            rows = db.execute("SELECT request_id, kind, status, message, handle FROM requests").fetchall()
        log = (hf.logdir / "ohfp-awsinst.log").read_text()[-6000:]
        raise AssertionError(f"left in the account: {left}\nrequests: {rows}\nlog tail: {log}")
    total, throttled = sum(bad.requests.values()), sum(bad.throttled.values())
    with capsys.disabled():
        print(
            f"\nAWS {api} on a bad day: {len(timed.durations)} HF calls, longest"
            f" {max(timed.durations):.1f} s (timeout {TIMEOUT_SEC} s); {total} AWS requests,"
            f" {throttled} throttled, {bad.short} without capacity; requests: {', '.join(outcomes)}"
        )

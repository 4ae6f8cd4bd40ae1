"""A PostgreSQL server that stops answering mid-call: no call outlives its action timeout.

One host of the mock provider keeps its state in PostgreSQL behind a proxy that can stop
forwarding (:class:`~testbeds.postgresql.FreezableProxy`: a server frozen, or cut off by
the network, as its clients see it; the server other tests use is never stopped). With
``HF_PROVIDER_ACTION_TIMEOUT`` at :data:`ACTION_TIMEOUT_SEC`:

- calls already connected and at work (held at a point of the test-only crash plugin, then
  let go the moment the server goes silent) run into the silence mid-call;
- calls started during the silence cannot even connect;
- the silence lasts :data:`FROZEN_SEC`, longer than the action timeout.

Every call must end before its action timeout with exactly one JSON reply (exit 3 for the
calls the silence caught; a return whose remaining work was only to mark its reply delivered
answers, exit 0, and leaves that to the next call), and once the server answers again the
next calls reconcile what the interrupted calls left.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from testbeds.postgresql import FreezableProxy, PostgresServer
from tests.store_servers import postgres_server

from .conftest import HostFactory, Installation, Reply, make_instance

__all__ = ["postgres_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.system]

ACTION_TIMEOUT_SEC = 20
FROZEN_SEC = 25
TEMPLATE = {
    "templateId": "frozen",
    "maxNumber": 20,
    "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "512"]},
}


def start(hf: HostFactory, call: str, payload: Any, **env: str) -> tuple[str, float, subprocess.Popen[str]]:
    return call, time.monotonic(), hf.start_with(call, payload, **env)


def test_every_call_ends_within_its_action_timeout_while_the_server_is_silent(
    crash_installation: Installation,
    postgres_server: PostgresServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripts = crash_installation.scripts("mock", tmp_path / "scripts")
    hf = make_instance(crash_installation, scripts, tmp_path / "host", "mockinst")
    hf.env_extra["HF_PROVIDER_ACTION_TIMEOUT"] = str(ACTION_TIMEOUT_SEC)
    hf.env_extra["OHFP_SERVICE"] = "off"  # each call its own process, as Host Factory runs it
    # Machines boot slowly: the request stays running, so every status poll asks the cloud.
    hf.write_config("config", {"MOCK_BOOT_SECONDS": 3600, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 5})
    hf.write_config("templates", {"templates": [TEMPLATE]})
    pause = tmp_path / "pause"
    pause.mkdir()
    ask = {"template": {"templateId": "frozen", "machineCount": 2}}
    held = {"OHFP_CRASH_PAUSE_DIR": str(pause)}
    with FreezableProxy(postgres_server.dsn) as proxy:
        section = {"dsn": proxy.dsn, "schema": postgres_server.new_schema("frozen")}
        (hf.confdir / "ohfp.json").write_text(json.dumps({"storage": "postgresql", "postgresql": section}))
        known = hf.call("requestMachines", ask).ok()["requestId"]
        [entry] = hf.status(known)
        hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]
        assert entry["status"] == "running" and len(hosts) == 2, entry

        at_work = [  # each held where its next step is a store write
            start(hf, "requestMachines", ask, OHFP_CRASH_PAUSE="after:ohfp_provision#1", **held),
            start(hf, "requestReturnMachines", {"machines": hosts},
                  OHFP_CRASH_PAUSE="after:ohfp_terminate_machines#1", **held),
            start(hf, "getRequestStatus", {"requests": [{"requestId": known}]},
                  OHFP_CRASH_PAUSE="after:ohfp_machine_status#1", **held),
        ]  # fmt: skip
        bound = time.monotonic() + 60
        while len(list(pause.glob("*.paused"))) < len(at_work):
            gone = [call for call, _, process in at_work if process.poll() is not None]
            assert not gone and time.monotonic() < bound, f"calls did not reach their points: {gone}"
            time.sleep(0.1)
        proxy.freeze()
        silent_at = time.monotonic()
        (pause / "go").touch()
        new = [
            start(hf, call, payload)
            for call, payload in (
                ("getAvailableTemplates", {}),
                ("requestMachines", ask),
                ("getRequestStatus", {"requests": [{"requestId": known}]}),
                ("getReturnRequests", {}),
            )
        ]
        ended: dict[int, float] = {}  # when each call ended
        running = [*at_work, *new]
        while len(ended) < len(running):
            assert time.monotonic() - silent_at < ACTION_TIMEOUT_SEC * 3, "calls hang"  # a hang guard
            for index, (_, _, process) in enumerate(running):
                if index not in ended and process.poll() is not None:
                    ended[index] = time.monotonic()
            time.sleep(0.02)
        replies: list[tuple[str, float, Reply]] = []
        for index, (call, started, process) in enumerate(running):
            stdout, stderr = process.communicate()
            reply = Reply.of(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
            replies.append((call, ended[index] - started, reply))
        time.sleep(max(0.0, FROZEN_SEC - (time.monotonic() - silent_at)))
        proxy.thaw()

        for call, took, reply in replies:
            assert took < ACTION_TIMEOUT_SEC, f"{call} took {took:.1f} s, over the action timeout"
            # A call whose last need of the store was behind it answers (exit 0); the rest fail.
            assert reply.code in (0, 3), f"{call}: exit {reply.code}: {reply.doc}"
            assert reply.code == 0 or "failed" in reply.doc["message"], reply.doc
        failed = sum(reply.code == 3 for _, _, reply in replies)
        assert failed >= len(replies) - 1, "the silence caught nearly every call"
        # The server answers again: the next calls reconcile what the interrupted ones left
        # (the server ends their sessions, and their leases, as it hears them closed).
        bound = time.monotonic() + 30
        while live := [m for m in hf.mock("list")["machines"] if m["state"] in ("pending", "running")]:
            assert time.monotonic() < bound, f"left running after the server came back: {live}"
            hf.call("getAvailableTemplates").ok()
            time.sleep(0.5)
    with capsys.disabled():
        longest = max(took for _, took, _ in replies)
        print(
            f"\nPostgreSQL silent for {FROZEN_SEC} s, action timeout {ACTION_TIMEOUT_SEC} s:"
            f" {len(replies)} calls ({len(at_work)} at work, {len(new)} new) each ended with one JSON reply"
            f" ({failed} exit 3); the longest took {longest:.1f} s"
        )

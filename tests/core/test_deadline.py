"""A call's deadline: what it leaves for the reply, and the last resort that answers Host Factory
when something no bound reaches holds the call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ohfp_core.deadline import RESERVE_SEC, Deadline, call_deadline, reserve
from ohfp_core.models import RequestKind
from ohfp_core.sqlite import SQLiteStorage
from tests.core.distributions import make_distribution

HANGING_PLUGIN = """
import time

from ohfp_core import hookimpl


@hookimpl(tryfirst=True)
def ohfp_provision(request_id, template, count):
    time.sleep(600)  # a cloud call outside every bound
"""


def test_the_deadline_leaves_a_reserve_to_answer_in() -> None:
    assert reserve(240) == RESERVE_SEC and reserve(10) == 2.0
    deadline = call_deadline(240)
    assert deadline.budget == 240 - RESERVE_SEC
    assert 0 < deadline.remaining() <= deadline.budget
    assert deadline.bound(5) == 5 and 0 < deadline.bound(1e9) <= deadline.budget
    assert deadline.bound(5, spare=deadline.budget) == 0
    assert Deadline(0.0, 1.0).passed and Deadline(0.0, 1.0).bound(5) == 0
    assert not Deadline.never().passed


def test_a_call_held_past_its_deadline_answers_host_factory_itself(tmp_path: Path) -> None:
    """A provider that never returns: the call still ends before HF_PROVIDER_ACTION_TIMEOUT
    with one JSON reply (exit 3), and the request it recorded is left to the next call,
    which cancels it (its lease died with the process)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hanging_mod.py").write_text(HANGING_PLUGIN)
    make_distribution(site, "ohfp-hanging", "1.0", {"ohfp.plugins": {"hanging": "hanging_mod"}})
    conf, work = tmp_path / "conf", tmp_path / "work"
    conf.mkdir()
    (conf / "mockinstprov_config.json").write_text(json.dumps({"MOCK_BOOT_SECONDS": 0}))
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"template": {"templateId": "mock-small", "machineCount": 1}}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
        "HF_PROVIDER_NAME": "mockinst",
        "HF_PROVIDER_CONFDIR": str(conf),
        "HF_PROVIDER_WORKDIR": str(work),
        "HF_PROVIDER_LOGDIR": str(tmp_path / "log"),
        "HF_PROVIDER_ACTION_TIMEOUT": "4",
    }
    env.pop("OHFP_LOAD_PLUGINS", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ohfp_core",
            "hf",
            "requestMachines",
            "-f",
            str(request),
            "--provider",
            "mock",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard: the call itself must end long before
        check=False,
    )
    reply = json.loads(done.stdout)  # exactly one JSON document
    assert done.returncode == 3, done.stdout + done.stderr
    assert reply["message"].startswith("requestMachines failed: no reply within the 3.2 s this call may take")
    store = SQLiteStorage(work)
    try:
        [left] = store.undelivered_requests()
        assert left.kind is RequestKind.ACQUIRE and left.status.value == "running"
        lease = store.take_lease(left.request_id)
        assert lease is not None, "the lease died with the process"
        lease.release()
    finally:
        store.close()


def test_a_calls_deadline_counts_from_the_start_of_its_process() -> None:
    from ohfp_core.deadline import process_age

    age = process_age()
    assert 0 < age < 3600, "this test process started a while ago, not in the future"
    assert call_deadline(60, begun_sec=10).remaining() <= call_deadline(60).remaining() - 9


def test_a_call_run_inside_a_long_lived_process_has_its_whole_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a call that is a process of its own (``main()`` without arguments) counts its
    time from the process's start; one run in-process with its arguments has all of it."""
    from ohfp_core import deadline
    from ohfp_core.cli import main
    from ohfp_core.logs import reset_logging

    monkeypatch.setattr(deadline, "process_age", lambda: 3600.0)  # a process an hour old
    conf = tmp_path / "conf"
    conf.mkdir()
    for name, value in (
        ("NAME", "mockinst"),
        ("CONFDIR", conf),
        ("WORKDIR", tmp_path / "w"),
        ("LOGDIR", tmp_path),
    ):
        monkeypatch.setenv(f"HF_PROVIDER_{name}", str(value))
    request = tmp_path / "in.json"
    request.write_text("{}")
    try:
        assert main(["hf", "getAvailableTemplates", "-f", str(request), "--provider", "mock"]) == 0
    finally:
        reset_logging()
    assert "templates" in json.loads(capsys.readouterr().out)

"""The audit plugin: one JSON line per cloud change, who and what, in a 0600 file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.errors import ConfigError, InputError
from ohfp_core.models import CloudRequest, RequestKind
from ohfp_core.operations import Operations
from ohfp_mock.cloud import MockCloud

from .conftest import MakeOps, request, status

AUDIT = {"audit": {"enabled": True}}


def lines(ops: Operations, name: str = "ohfp-audit-mockinst.jsonl") -> list[dict[str, Any]]:
    assert ops.context.logdir is not None
    return [json.loads(line) for line in (ops.context.logdir / name).read_text().splitlines()]


def test_each_cloud_change_is_one_line(make_ops: MakeOps) -> None:
    ops = make_ops(AUDIT)
    made = request(ops, 2)["requestId"]
    machines = status(ops, made)["machines"]
    ops.request_return_machines(
        {"machines": [{"name": m["name"], "machineId": m["machineId"]} for m in machines]}
    )
    ops.hooks.cancel_request(CloudRequest(request_id="req-gone", kind=RequestKind.ACQUIRE))
    provision, terminate, cancel = lines(ops)
    who = {key: provision[key] for key in ("user", "uid", "host", "pid", "instance", "provider")}
    assert who["uid"] == os.geteuid() and who["pid"] == os.getpid() and who["instance"] == "mockinst"
    assert provision["action"] == "provision" and provision["requestIds"] == [made]
    assert (provision["templateId"], provision["count"], provision["outcome"]) == ("mock-small", 2, "ok")
    assert sorted(provision["machines"]) == sorted(m["machineId"] for m in machines)
    assert terminate["action"] == "terminate" and terminate["requestIds"] == [made]
    assert terminate["outcome"] == "ok"
    assert {m["machineId"] for m in terminate["machines"]} == {m["machineId"] for m in machines}
    assert (cancel["action"], cancel["requestIds"], cancel["outcome"]) == ("cancel", ["req-gone"], "ok")
    assert ops.context.logdir is not None
    path = ops.context.logdir / "ohfp-audit-mockinst.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refusals_are_recorded_with_the_cloud_error(make_ops: MakeOps) -> None:
    ops = make_ops(AUDIT)
    with MockCloud(ops.context.workdir) as cloud:
        cloud.inject_errors(1)
    reply = request(ops, 1)
    assert "requestId" not in reply
    [line] = lines(ops)
    assert line["outcome"] == "failed" and line["code"] == "RequestLimitExceeded"
    assert "Rate exceeded" in line["error"]


def test_dry_runs_are_recorded_and_budget_refusals_mutate_nothing(make_ops: MakeOps) -> None:
    budget = {"enabled": True, "templates": {"mock-small": {"unitCost": 1, "maxHourlyCost": 1}}}
    ops = make_ops({**AUDIT, "budget": budget})
    with pytest.raises(InputError, match="budget"):  # refused by core before any cloud call
        request(ops, 2)
    ops = make_ops({**AUDIT, "dry-run": {"enabled": True}})
    request(ops, 1)
    [dry] = lines(ops)
    assert dry["outcome"] == "dry-run"


def test_an_absolute_file_and_no_symlinks(make_ops: MakeOps, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    with pytest.raises(ConfigError) as raised:
        make_ops({"audit": {"enabled": True, "file": str(link)}})
    assert raised.value.problems[0].startswith(f"$.audit.file: cannot append to {str(link)!r}")
    assert not target.exists()
    ops = make_ops({"audit": {"enabled": True, "file": str(target)}})
    request(ops, 1)
    assert [line["action"] for line in map(json.loads, target.read_text().splitlines())] == ["provision"]


def test_disabled_writes_nothing(make_ops: MakeOps) -> None:
    ops = make_ops({})
    request(ops, 1)
    logdir = ops.context.logdir
    assert logdir is not None
    assert not logdir.exists() or not list(logdir.glob("ohfp-audit*"))


def test_a_relative_file_needs_a_log_directory(make_ops: MakeOps) -> None:
    with pytest.raises(ConfigError) as raised:
        make_ops({"audit": {"enabled": True, "file": ""}})
    assert raised.value.problems == ("$.audit.file: must be a file name, got ''",)

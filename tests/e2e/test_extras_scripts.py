"""ohfp-extras end to end: plugins enabled in ohfp.json, through the generated HF scripts.

Every other end-to-end test runs with ohfp-extras installed and not enabled, which shows that
installing it changes nothing.
"""

from __future__ import annotations

import json

import pytest

from .conftest import HostFactory

pytestmark = pytest.mark.e2e


def test_dry_run_and_audit_through_the_scripts(mock_hf: HostFactory) -> None:
    settings = {"dry-run": {"enabled": True}, "audit": {"enabled": True}}
    (mock_hf.confdir / "ohfp.json").write_text(json.dumps(settings))
    payload = {"template": {"templateId": "mock-small", "machineCount": 2}}
    reply = mock_hf.call("requestMachines", payload).ok()
    assert reply["message"].startswith("Dry run: 2 machines of template 'mock-small' were not requested")
    [entry] = mock_hf.status(reply["requestId"])
    assert entry["status"] == "complete_with_error" and entry["message"].startswith("dry run:")
    assert mock_hf.mock("list")["machines"] == []
    [line] = (mock_hf.logdir / "ohfp-audit-mockinst.jsonl").read_text().splitlines()
    audit = json.loads(line)
    assert (audit["action"], audit["outcome"], audit["requestIds"]) == (
        "provision",
        "dry-run",
        [reply["requestId"]],
    )

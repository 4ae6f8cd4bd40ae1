"""ohfp-extras installed, through the ``ohfp`` command as Host Factory runs it: its entry points
load with every call, and nothing changes until ``ohfp.json`` enables a plugin."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.cli import main

pytestmark = pytest.mark.skipif(
    "audit" not in {ep.name for ep in metadata.entry_points(group="ohfp.plugins")},
    reason="ohfp-extras is not installed (pip install ./ohfp_extras)",
)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mockinstprov_config.json").write_text(json.dumps({"MOCK_BOOT_SECONDS": 0}))
    for name, sub in (("CONFDIR", "conf"), ("WORKDIR", "work"), ("LOGDIR", "log")):
        monkeypatch.setenv(f"HF_PROVIDER_{name}", str(tmp_path / sub))
    monkeypatch.setenv("HF_PROVIDER_NAME", "mockinst")
    monkeypatch.delenv("OHFP_LOAD_PLUGINS", raising=False)
    return tmp_path


def request_machines(root: Path, capsys: pytest.CaptureFixture[str], count: int = 2) -> tuple[int, Any]:
    path = root / "request.json"
    path.write_text(json.dumps({"template": {"templateId": "mock-small", "machineCount": count}}))
    code = main(["hf", "requestMachines", "-f", str(path), "--provider", "mock"])
    return code, json.loads(capsys.readouterr().out)


def test_installed_changes_nothing_until_enabled(instance: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, reply = request_machines(instance, capsys)
    assert (code, reply["message"]) == (0, "Request VM success from mock.")
    assert not list((instance / "log").glob("ohfp-audit*"))


def test_enabled_in_ohfp_json(instance: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = {
        "dry-run": {"enabled": True},
        "audit": {"enabled": True},
        "budget": {"enabled": True, "default": {"unitCost": 1, "maxHourlyCost": 2}},
    }
    (instance / "conf" / "ohfp.json").write_text(json.dumps(settings))
    code, reply = request_machines(instance, capsys)
    assert code == 0 and reply["message"].startswith("Dry run: 2 machines")
    code, reply = request_machines(instance, capsys, 3)  # 2 units may cost 2 an hour in all
    assert code == 2 and "requestId" not in reply and "maxHourlyCost 2 allows 2 units" in reply["message"]
    audit = (instance / "log" / "ohfp-audit-mockinst.jsonl").read_text().splitlines()
    assert [json.loads(line)["outcome"] for line in audit] == ["dry-run"]  # nothing reached the cloud


def test_bad_settings_exit_3(instance: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (instance / "conf" / "ohfp.json").write_text(json.dumps({"budget": {"enabled": "on"}}))
    code, reply = request_machines(instance, capsys)
    assert code == 3
    assert reply["errors"] == ['$.budget.enabled: expected true or false, got "on"']

"""Fixtures for core tests: an instance layout on disk and Operations over the fake provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.cli import main
from ohfp_core.models import ProviderContext
from ohfp_core.operations import Operations
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sqlite import SQLiteStorage
from tests.core.fake_provider import FakeCloud, template_entry


class Instance:
    """A provider instance on disk (conf/work dirs) served by a :class:`FakeCloud`."""

    def __init__(self, root: Path) -> None:
        self.confdir = root / "conf"
        self.workdir = root / "work"
        self.confdir.mkdir()
        self.cloud = FakeCloud()
        self.write_templates([template_entry("T1", 10), template_entry("T2", -1)])
        self.context = ProviderContext(
            instance="fakeinst",
            provider_type="fake",
            confdir=self.confdir,
            workdir=self.workdir,
            timeout_sec=60,
        )
        self.hooks = Hooks(make_manager(self.cloud, provider_name="fake"), "fake")
        self.store = SQLiteStorage(self.workdir)
        self.ops = Operations(self.hooks, self.store, self.context)

    def write_templates(self, entries: list[dict[str, Any]]) -> None:
        (self.confdir / "fakeinstprov_templates.json").write_text(json.dumps({"templates": entries}))

    def request(self, count: int, template_id: str = "T1") -> str:
        reply = self.ops.request_machines({"template": {"templateId": template_id, "machineCount": count}})
        return str(reply["requestId"])

    def status(self, *request_ids: str) -> list[dict[str, Any]]:
        reply = self.ops.get_request_status({"requests": [{"requestId": r} for r in request_ids]})
        return list(reply["requests"])


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    return Instance(tmp_path)


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "mockinstprov_config.json").write_text(json.dumps({"MOCK_BOOT_SECONDS": 0}))
    monkeypatch.setenv("HF_PROVIDER_NAME", "mockinst")
    monkeypatch.setenv("HF_PROVIDER_CONFDIR", str(conf))
    monkeypatch.setenv("HF_PROVIDER_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("HF_PROVIDER_LOGDIR", str(tmp_path / "log"))
    monkeypatch.delenv("OHFP_PROVIDER", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], tmp: Path, call: str, data: Any) -> tuple[int, Any]:
    path = tmp / f"{call}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    code = main(["hf", call, "-f", str(path), "--provider", "mock"])
    out = capsys.readouterr().out
    return code, json.loads(out)  # exactly one JSON document, nothing else

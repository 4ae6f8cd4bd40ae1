"""The work and log directories are owner-only with every store, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ohfp_core.cli import main
from ohfp_core.logs import reset_logging
from testbeds.dynamodb import SerialMotoServer
from testbeds.postgresql import PostgresServer
from tests.store_support import shared_sections


@pytest.mark.parametrize("backend", ["postgresql", "dynamodb"])
def test_a_shared_store_leaves_the_work_directory_owner_only(
    backend: str,
    postgres_server: PostgresServer,
    dynamo_server: SerialMotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conf, work, logs = tmp_path / "conf", tmp_path / "hf" / "work", tmp_path / "hf" / "log"
    conf.mkdir()
    # The simulated cloud elsewhere: nothing of the provider's makes the work directory.
    (conf / "mockinstprov_config.json").write_text(json.dumps({"MOCK_CLOUD_DIR": str(tmp_path / "cloud")}))
    sections = shared_sections(postgres_server, dynamo_server, "umask")
    (conf / "ohfp.json").write_text(json.dumps({"storage": backend, backend: sections[backend]}))
    for name, value in (("NAME", "mockinst"), ("CONFDIR", conf), ("WORKDIR", work), ("LOGDIR", logs)):
        monkeypatch.setenv(f"HF_PROVIDER_{name}", str(value))
    request = tmp_path / "in.json"
    request.write_text(json.dumps({"template": {"templateId": "mock-small", "machineCount": 1}}))
    old = os.umask(0)
    try:
        code = main(["hf", "requestMachines", "-f", str(request), "--provider", "mock"])
    finally:
        os.umask(old)
        reset_logging()  # the CLI configured logging for this process
    reply = json.loads(capsys.readouterr().out)
    assert code == 0 and reply["requestId"], reply
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    loose = [p for p in work.rglob("*") if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert loose == [], "files of the work directory others can read"

"""``ohfp storage migrate`` between the three backends, both directions, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.cli import main
from ohfp_core.logs import reset_logging
from ohfp_core.models import RequestKind
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.storage import RequestRecord, StoredValue
from ohfp_core.storage_contract import full_machine, full_request, mrec
from testbeds.dynamodb import SerialMotoServer
from testbeds.postgresql import PostgresServer
from tests.store_support import shared_sections


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--provider", "mock"])
    return code, json.loads(capsys.readouterr().out)


def test_sqlite_to_postgresql_to_dynamodb_and_back_to_sqlite(
    postgres_server: PostgresServer,
    dynamo_server: SerialMotoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conf, first, second = tmp_path / "conf", tmp_path / "work-1", tmp_path / "work-2"
    conf.mkdir()
    monkeypatch.setenv("HF_PROVIDER_NAME", "mockinst")
    monkeypatch.setenv("HF_PROVIDER_CONFDIR", str(conf))
    monkeypatch.setenv("HF_PROVIDER_WORKDIR", str(first))
    monkeypatch.setenv("HF_PROVIDER_LOGDIR", str(tmp_path / "log"))
    sections = shared_sections(postgres_server, dynamo_server, "migrate")

    def use(storage: str) -> None:
        (conf / "ohfp.json").write_text(json.dumps({"storage": storage, **sections}))

    original = SQLiteStorage(first)
    original.put_request(full_request())
    original.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE, template_id="t"))
    original.put_machines([mrec("i-2", "req-2", template_id="t"), full_machine(), mrec("i-1", "req-2")])
    original.put_values([StoredValue(key="k", value={"v": 1}, expires_at=5)])
    state = (list(original.iter_requests()), list(original.iter_machines()), list(original.iter_values()))
    original.close()

    use("sqlite")
    for step, (target, nxt) in enumerate((("postgresql", "postgresql"), ("dynamodb", "dynamodb"))):
        code, report = cli(capsys, "storage", "migrate", "--to", target)
        assert code == 0, report
        assert report["copied"] == {"requests": 2, "machines": 3, "values": 1}, step
        assert report["target"]["backend"] == target and report["target"]["ok"] is True
        code, again = cli(capsys, "storage", "migrate", "--to", target)
        assert code == 3 and "not empty" in again["message"], "a second copy is refused"
        use(nxt)
        code, checked = cli(capsys, "storage", "check")
        assert code == 0 and checked["counts"] == {"requests": 2, "machines": 3, "values": 1}
    monkeypatch.setenv("HF_PROVIDER_WORKDIR", str(second))
    code, report = cli(capsys, "storage", "migrate", "--to", "sqlite")
    assert code == 0, report
    back = SQLiteStorage(second)
    try:
        assert (list(back.iter_requests()), list(back.iter_machines()), list(back.iter_values())) == state
    finally:
        back.close()
        reset_logging()  # the CLI configured logging for this process

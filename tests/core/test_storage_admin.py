"""``ohfp storage migrate`` and ``ohfp storage check`` on the embedded store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core import storage_admin
from ohfp_core.cli import main
from ohfp_core.errors import ConfigError, StorageError
from ohfp_core.logs import reset_logging
from ohfp_core.models import MachineResult, RequestKind, RequestStatus
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.storage import RequestRecord, Storage, StoredValue
from ohfp_core.storage_contract import full_machine, full_request, mrec


def fill(store: Storage) -> None:
    store.put_request(full_request())
    store.put_request(
        RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE, template_id="t", created_at=3)
    )
    store.put_machines(
        [mrec("i-9", "req-2", template_id="t"), full_machine(), mrec("i-1", "req-2", template_id="t")]
    )
    store.put_values(
        [
            StoredValue(key="aws/x", value={"a": [1]}, expires_at=10),
            StoredValue(key="gone", value=1, expires_at=1),
        ]
    )


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SQLiteStorage, SQLiteStorage]]:
    source, target = SQLiteStorage(tmp_path / "a"), SQLiteStorage(tmp_path / "b")
    yield source, target
    source.close()
    target.close()


def test_migrate_copies_everything_in_order_and_verifies_it(
    stores: tuple[SQLiteStorage, SQLiteStorage],
) -> None:
    source, target = stores
    fill(source)
    report = storage_admin.migrate(source, target, source_name="sqlite", target_name="other", force=False)
    assert report["copied"] == {"requests": 2, "machines": 3, "values": 2}
    assert report["verified"] is True and report["target"]["ok"] is True
    assert 'set "storage": "other"' in report["message"]
    assert list(target.iter_requests()) == list(source.iter_requests())
    assert [m.machine_id for m in target.machines_of(["req-2"])["req-2"]] == ["i-9", "i-1"]
    assert list(target.iter_values()) == list(source.iter_values()), "expired values are copied too"


def test_a_target_that_is_not_empty_is_refused_unless_forced(
    stores: tuple[SQLiteStorage, SQLiteStorage],
) -> None:
    source, target = stores
    fill(source)
    target.put_request(RequestRecord(request_id="req-other", kind=RequestKind.ACQUIRE))
    with pytest.raises(ConfigError, match=r"not empty .* --force"):
        storage_admin.migrate(source, target, source_name="sqlite", target_name="other", force=False)
    assert [r.request_id for r in target.iter_requests()] == ["req-other"]
    report = storage_admin.migrate(source, target, source_name="sqlite", target_name="other", force=True)
    assert report["copied"]["requests"] == 2
    assert report["target"]["counts"]["requests"] == 3


class Lossy:
    """A target that drops a field it is given (a broken backend)."""

    def __init__(self, store: SQLiteStorage) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def put_request(self, record: RequestRecord) -> None:
        self.store.put_request(attrs.evolve(record, owner=""))


def test_a_copy_that_differs_from_its_source_fails_naming_the_record(
    stores: tuple[SQLiteStorage, SQLiteStorage],
) -> None:
    source, target = stores
    fill(source)
    with pytest.raises(StorageError) as error:
        storage_admin.migrate(source, Lossy(target), source_name="sqlite", target_name="lossy", force=False)
    assert error.value.problems == ("request ret-7 differs in the target: owner",)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(args)
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def instance_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("conf", "work"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HF_PROVIDER_NAME", "mockinst")
    monkeypatch.setenv("HF_PROVIDER_CONFDIR", str(tmp_path / "conf"))
    monkeypatch.setenv("HF_PROVIDER_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("HF_PROVIDER_LOGDIR", str(tmp_path / "log"))
    yield tmp_path
    reset_logging()  # the CLI configured logging for this process


def test_storage_check_prints_the_report(instance_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = SQLiteStorage(instance_env / "work")
    store.put_request(
        RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, status=RequestStatus.COMPLETE)
    )
    store.put_machines([mrec("i-1", "req-1", result=MachineResult.SUCCEED)])
    store.close()
    code, report = run_cli(["storage", "check", "--provider", "mock"], capsys)
    assert code == 0
    assert report["message"] == "sqlite state store: ok"
    assert report["counts"] == {"requests": 1, "machines": 1, "values": 0}
    assert report["schemaVersion"] >= 2


def test_storage_migrate_refuses_the_backend_in_use_and_unknown_ones(
    instance_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, reply = run_cli(["storage", "migrate", "--to", "sqlite", "--provider", "mock"], capsys)
    assert code == 3 and "already uses 'sqlite'" in reply["message"]
    code, reply = run_cli(["storage", "migrate", "--to", "etcd", "--provider", "mock"], capsys)
    assert code == 3 and "storage backend 'etcd' is not registered (registered: " in reply["message"]

"""Hostile input, odd settings, files and links: a clear error, nothing changed, nothing leaked.

Each bad input goes through the ``ohfp`` command in-process on the mock provider, as Host
Factory's file: exactly one JSON reply, exit 2 (input) or 3 (configuration) with the field
named, and neither the state store nor the simulated cloud changed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.cli import main
from ohfp_core.converter import MAX_INPUT_BYTES
from tests.core.conftest import run


def _state(hf_env: Path) -> tuple[int, int]:
    """(requests stored, machines in the simulated cloud): what a bad call must not change."""
    counts = []
    for name, table in (("ohfp-state.sqlite3", "requests"), ("mock-cloud.sqlite3", "machines")):
        path = hf_env / "work" / name
        if not path.exists():
            counts.append(0)
            continue
        with sqlite3.connect(path) as db:
            counts.append(int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))
    return counts[0], counts[1]


def _call_raw(capsys: pytest.CaptureFixture[str], hf_env: Path, call: str, payload: bytes) -> tuple[int, Any]:
    path = hf_env / "in.json"
    path.write_bytes(payload)
    code = main(["hf", call, "-f", str(path), "--provider", "mock"])
    out = capsys.readouterr().out
    out.encode("utf-8")  # what a real stdout does: a reply it cannot encode never reaches HF
    return code, json.loads(out)


REQUEST = "requestMachines"
RETURN = "requestReturnMachines"
STATUS = "getRequestStatus"
RECLAIMS = "getReturnRequests"
HOSTILE: dict[str, tuple[str, bytes, str]] = {
    "not UTF-8": (REQUEST, b'{"template": {"templateId": "mock-small\xff", "machineCount": 1}}', "not UTF-8"),
    "deep nesting": (STATUS, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "huge integer": (
        REQUEST,
        b'{"template": {"templateId": "t", "machineCount": 1' + b"0" * 5000 + b"}}",
        "digits",
    ),
    "NaN": (REQUEST, b'{"template": {"templateId": "t", "machineCount": NaN}}', "NaN is not a JSON number"),
    "lone surrogate in a template id": (
        REQUEST,
        b'{"template": {"templateId": "\\ud800", "machineCount": 1}}',
        "$.template.templateId",
    ),
    "lone surrogate as a machine count": (
        REQUEST,
        b'{"template": {"templateId": "mock-small", "machineCount": "\\ud800"}}',
        "$.template.machineCount: expected an integer",
    ),
    "lone surrogate in a host name": (RETURN, b'{"machines": [{"name": "\\ud800"}]}', "$.machines[0].name"),
    "count beyond 64 bits": (
        REQUEST,
        b'{"template": {"templateId": "mock-small", "machineCount": 9223372036854775808}}',
        "$.template.machineCount: integer out of range",
    ),
    "count of 2**63-1": (
        REQUEST,
        b'{"template": {"templateId": "mock-unlimited", "machineCount": 9223372036854775807}}',
        "$.template.machineCount: must be at most 50000 per request",
    ),
    "a string where machines belong": (
        RETURN,
        b'{"machines": "' + b"A" * 100_000 + b'"}',
        "$.machines: expected a list",
    ),
    "a string where requests belong": (
        STATUS,
        b'{"requests": "' + b"A" * 100_000 + b'"}',
        "$.requests: expected a list",
    ),
    "machines of strings": (RECLAIMS, b'{"machines": ["a", "b"]}', "$.machines[0]: expected an object"),
    "a number as a name": (RETURN, b'{"machines": [{"name": 7}]}', "$.machines[0].name: expected a string"),
    "boolean count": (
        REQUEST,
        b'{"template": {"templateId": "mock-small", "machineCount": true}}',
        "$.template.machineCount",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_refused_naming_the_problem(
    case: str, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call, payload, expected = HOSTILE[case]
    run(capsys, hf_env, "getAvailableTemplates", {})  # the instance exists, its state too
    before = _state(hf_env)
    code, reply = _call_raw(capsys, hf_env, call, payload)
    assert code == 2, reply
    assert expected in json.dumps(reply, ensure_ascii=False), reply
    assert len(json.dumps(reply)) < 10_000, "the reply must not echo a huge input"
    assert _state(hf_env) == before


def test_a_malformed_id_among_good_ones_is_answered_on_its_own(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, reply = _call_raw(
        capsys, hf_env, STATUS, b'{"requests": [{"requestId": "\\udc00"}, {"requestId": "req-nope"}]}'
    )
    assert code == 0
    assert [e["status"] for e in reply["requests"]] == ["complete_with_error"] * 2
    assert "$.requests[0].requestId" in reply["requests"][0]["message"]


def test_an_input_file_beyond_the_size_limit_is_refused(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hf_env / "big.json"
    with path.open("wb") as handle:
        handle.truncate(MAX_INPUT_BYTES + 1)
    code = main(["hf", STATUS, "-f", str(path), "--provider", "mock"])
    reply = json.loads(capsys.readouterr().out)
    assert code == 2 and f"at most {MAX_INPUT_BYTES} are read" in reply["message"]


def test_an_input_that_is_not_a_file_is_refused(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = hf_env / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, hf_env):
        code = main(["hf", STATUS, "-f", str(path), "--provider", "mock"])
        reply = json.loads(capsys.readouterr().out)
        assert code == 2 and "not a regular file" in reply["message"]


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1", "0", "abc", "86401"])
def test_an_action_timeout_out_of_range_is_a_configuration_error(
    value: str, hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_PROVIDER_ACTION_TIMEOUT", value)
    code, reply = run(capsys, hf_env, STATUS, {"requests": []})
    assert code == 3
    assert "HF_PROVIDER_ACTION_TIMEOUT must be a number of seconds from 1 to 86400" in reply["message"]


def test_large_templates_are_not_refused(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = {
        "templateId": "big",
        "maxNumber": 20000,
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "512"]},
    }
    (hf_env / "conf" / "mockinstprov_templates.json").write_text(json.dumps({"templates": [entry]}))
    code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
    assert code == 0 and reply["templates"][0]["availableNumber"] == 20000


# -- secrets --------------------------------------------------------------------------------------


def test_credentials_in_urls_never_reach_the_reply_or_the_log(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (hf_env / "conf" / "ohfp.json").write_text(json.dumps({"storage": "https://admin:s3cr3t@db.example/"}))
    code, reply = run(capsys, hf_env, STATUS, {"requests": []})
    assert code == 3 and "https://***@db.example/" in reply["message"]
    assert "s3cr3t" not in json.dumps(reply)
    log = (hf_env / "log" / "ohfp-mockinst.log").read_text()
    assert "s3cr3t" not in log and "***@db.example" in log


# -- files and links ------------------------------------------------------------------------------


def test_files_are_owner_only_whatever_the_umask(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(0)
    try:
        run(capsys, hf_env, "getAvailableTemplates", {})
        code, _ = run(capsys, hf_env, REQUEST, {"template": {"templateId": "mock-small", "machineCount": 1}})
        assert code == 0
        scripts = hf_env / "scripts"
        assert main(["hf", "scripts", "--provider", "mock", str(scripts)]) == 0
        capsys.readouterr()
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (hf_env / "work").rglob("*")}
    assert modes and all(mode in (0o600, 0o700) for mode in modes.values()), modes
    assert stat.S_IMODE((hf_env / "log" / "ohfp-mockinst.log").stat().st_mode) == 0o600
    assert stat.S_IMODE(scripts.stat().st_mode) == 0o755
    for script in scripts.iterdir():
        assert stat.S_IMODE(script.stat().st_mode) == (0o755 if script.suffix == ".sh" else 0o644), script


def test_loose_modes_of_our_own_files_are_tightened(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, hf_env, "getAvailableTemplates", {})
    work = hf_env / "work"
    os.chmod(work, 0o777)  # noqa: S103 -- the loose mode under test
    os.chmod(work / "ohfp-state.sqlite3", 0o644)
    os.chmod(hf_env / "log" / "ohfp-mockinst.log", 0o666)  # noqa: S103
    code, _ = run(capsys, hf_env, STATUS, {"requests": []})
    assert code == 0
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert stat.S_IMODE((work / "ohfp-state.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((hf_env / "log" / "ohfp-mockinst.log").stat().st_mode) == 0o600


def test_a_symlinked_log_file_is_refused(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = hf_env / "elsewhere.txt"
    target.write_text("someone else's file\n")
    (hf_env / "log").mkdir()
    (hf_env / "log" / "ohfp-mockinst.log").symlink_to(target)
    code, reply = run(capsys, hf_env, STATUS, {"requests": []})
    assert code == 3 and "symbolic link" in reply["message"]
    assert target.read_text() == "someone else's file\n"


def test_a_dangling_database_symlink_is_refused_not_created(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (hf_env / "work").mkdir(mode=0o700)
    target = hf_env / "planted.sqlite3"
    (hf_env / "work" / "ohfp-state.sqlite3").symlink_to(target)
    code, reply = run(capsys, hf_env, STATUS, {"requests": []})
    assert code == 3 and "symbolic link" in reply["message"]
    assert not target.exists()


def test_a_script_directory_others_can_write_is_refused(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scripts = hf_env / "shared"
    scripts.mkdir()
    os.chmod(scripts, 0o777)  # noqa: S103
    code = main(["hf", "scripts", "--provider", "mock", str(scripts)])
    reply = json.loads(capsys.readouterr().out)
    assert code == 3 and "writable by group or others" in reply["message"]
    assert list(scripts.iterdir()) == []


def test_a_full_disk_is_an_environment_error_and_the_next_call_reconciles(
    hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ohfp_core import sqlite

    run(capsys, hf_env, "getAvailableTemplates", {})
    connect = sqlite3.connect

    class FullDisk:
        """The state database's connection, whose write after the cloud call fails (the
        request is provisioned, not stored) as SQLite fails on a full disk."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

        def execute(self, sql: str, *params: Any) -> Any:
            if sql.startswith("INSERT INTO requests") and params and params[0][5] is not None:
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *params)

    def full_disk(path: Any, **kwargs: Any) -> Any:
        conn = connect(path, **kwargs)
        return FullDisk(conn) if str(path).endswith(sqlite.DB_NAME) else conn

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    code, reply = run(capsys, hf_env, REQUEST, {"template": {"templateId": "mock-small", "machineCount": 2}})
    assert code == 3 and "database or disk is full" in reply["message"]
    assert "requestId" not in reply
    monkeypatch.setattr(sqlite3, "connect", connect)

    run(capsys, hf_env, STATUS, {"requests": []})  # the disk has room again: the next call

    with sqlite3.connect(hf_env / "work" / "mock-cloud.sqlite3") as db:
        reasons = [row[0] for row in db.execute("SELECT stop_reason FROM machines")]
    assert reasons == ["cancelled", "cancelled"]
    with sqlite3.connect(hf_env / "work" / "ohfp-state.sqlite3") as db:
        rows = db.execute("SELECT status, message FROM requests").fetchall()
    assert rows == [("complete_with_error", rows[0][1])] and "abandoned" in rows[0][1]

"""The ``ohfp`` command in-process: one JSON reply on stdout, documented exit codes."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from ohfp_core.cli import main
from ohfp_core.models import RequestKind
from tests.core.conftest import run


def test_call_round_trip(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
    assert code == 0
    template = reply["templates"][0]["templateId"]
    code, reply = run(
        capsys, hf_env, "requestMachines", {"template": {"templateId": template, "machineCount": 1}}
    )
    assert code == 0 and reply["requestId"].startswith("req-")
    code, reply = run(capsys, hf_env, "getRequestStatus", {"requests": [{"requestId": reply["requestId"]}]})
    assert code == 0 and reply["requests"][0]["status"] in ("running", "complete")
    log = hf_env / "log" / "ohfp-mockinst.log"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line.get("operation") == "requestMachines" and line.get("request_id") for line in lines)
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    for state in (hf_env / "work").glob("*.sqlite3"):
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o600


def test_bad_input_exit_2_naming_the_field(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, reply = run(capsys, hf_env, "requestMachines", {"template": {"templateId": "x", "machineCount": 0}})
    assert code == 2
    assert "$.template.machineCount: must be ≥ 1" in reply["message"]
    assert reply["errors"] == ["$.template.machineCount: must be ≥ 1, got 0"]
    code, reply = run(capsys, hf_env, "getRequestStatus", "{not json")
    assert code == 2 and "not valid JSON" in reply["message"]


def test_bad_config_exit_3(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (hf_env / "conf" / "ohfp.json").write_text(json.dumps({"colour": "blue"}))
    code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
    assert code == 3
    assert "$.colour: unknown setting" in reply["message"]


@pytest.mark.parametrize("unset", ["HF_PROVIDER_WORKDIR", "HF_PROVIDER_CONFDIR"])
def test_a_failure_before_the_call_runs_is_logged_where_the_docs_say(
    unset: str, hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule for the log file: ohfp-<HF_PROVIDER_NAME or the provider type>.log, also
    when the call fails before the instance's context exists."""
    monkeypatch.delenv("HF_PROVIDER_NAME")
    monkeypatch.delenv(unset)
    if unset == "HF_PROVIDER_CONFDIR":
        monkeypatch.setenv(unset, str(hf_env / "no-such-dir"))
    code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
    assert code == 3, reply
    logs = sorted(p.name for p in (hf_env / "log").iterdir())
    assert logs == ["ohfp-mock.log"]
    lines = [json.loads(line) for line in (hf_env / "log" / "ohfp-mock.log").read_text().splitlines()]
    assert any(line["event"] == "call failed" and "directory" in line["error"] for line in lines)


def test_unknown_provider_lists_installed(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = hf_env / "in.json"
    path.write_text("{}")
    code = main(["hf", "getAvailableTemplates", "-f", str(path), "--provider", "nosuch"])
    reply = json.loads(capsys.readouterr().out)
    assert code == 3
    assert "'nosuch' is not installed" in reply["message"] and "mock" in reply["message"]


def test_internal_error_exit_1_no_traceback_on_stdout(
    hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ohfp_core import operations

    def boom(self: object, data: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(operations.Operations, "get_return_requests", boom)
    code, reply = run(capsys, hf_env, "getReturnRequests", {})
    assert code == 1
    assert "internal error (RuntimeError: kaboom)" in reply["message"]
    assert "Traceback" not in json.dumps(reply)
    log = (hf_env / "log" / "ohfp-mockinst.log").read_text()
    assert "Traceback" in log  # the details go to the log


def test_scripts_are_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["hf", "scripts", "--provider", "mock", str(tmp_path / "scripts")])
    reply = json.loads(capsys.readouterr().out)
    assert code == 0 and len(reply["scripts"]) == 10
    sh = (tmp_path / "scripts" / "requestMachines.sh").read_text()
    assert sh.startswith("#!/bin/sh\n")
    assert '-I -m ohfp_core hf requestMachines --provider mock "$@"' in sh
    assert os.access(tmp_path / "scripts" / "requestMachines.sh", os.X_OK)
    bat = (tmp_path / "scripts" / "getRequestStatus.bat").read_bytes()
    assert b"hf getRequestStatus --provider mock %*\r\n" in bat
    code = main(["hf", "scripts", "--provider", "nosuch", str(tmp_path / "x")])
    assert code == 3 and not (tmp_path / "x").exists()
    capsys.readouterr()


def test_templates_validate_and_health(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "validate", "--provider", "mock"]) == 0
    assert "templates valid" in json.loads(capsys.readouterr().out)["message"]
    (hf_env / "conf" / "mockinstprov_templates.json").write_text(
        json.dumps(
            {"templates": [{"templateId": "A", "maxNumber": 1, "attributes": {"ncpus": ["Numeric", "many"]}}]}
        )
    )
    assert main(["templates", "validate", "--provider", "mock"]) == 3
    reply = json.loads(capsys.readouterr().out)
    templates_file = hf_env / "conf" / "mockinstprov_templates.json"
    assert (
        f"{templates_file}: $.templates[A].attributes.ncpus: must be a number, got 'many'" in reply["errors"]
    )
    assert str(templates_file) in reply["message"]
    assert main(["health", "--provider", "mock"]) == 0
    assert json.loads(capsys.readouterr().out)["message"] == "healthy"


def test_templates_validate_online_says_when_the_provider_has_no_online_checks(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["templates", "validate", "--provider", "mock", "--online"]) == 3
    reply = json.loads(capsys.readouterr().out)
    assert "the mock provider has no online checks: run without --online" in reply["message"], reply


def test_templates_validate_names_the_files_read_and_warns_of_a_shadowed_one(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = hf_env / "conf"
    entry = {"templateId": "A", "maxNumber": 1, "attributes": {"type": ["String", "X86_64"]}}
    (conf / "mockinstprov_templates.json").write_text(json.dumps({"templates": [entry]}))
    (conf / "mockprov_templates.json").write_text(json.dumps({"templates": []}))
    assert main(["templates", "validate", "--provider", "mock"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["files"] == {
        "config": str(conf / "mockinstprov_config.json"),
        "templates": str(conf / "mockinstprov_templates.json"),
        "settings": None,
    }
    ignored = conf / "mockprov_templates.json"
    read = "mockinstprov_templates.json"
    assert reply["warnings"] == [f"{ignored} is ignored: {read} beside it is read instead"]
    entry["attributes"] = {"ncpus": ["Numeric", "x"]}
    (conf / "mockinstprov_templates.json").write_text(json.dumps({"templates": [entry]}))
    code, reply = run(capsys, hf_env, "requestMachines", {"template": {"templateId": "A", "machineCount": 1}})
    assert code == 3
    assert f"template 'A' is invalid in {conf / 'mockinstprov_templates.json'}" in reply["message"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ohfp 0.")


STORAGE_PLUGIN = '''
from ohfp_core import hookimpl
from ohfp_core.sqlite import SQLiteStorage


class MarkedStorage(SQLiteStorage):
    """SQLite under another name, leaving a mark that it was the one used."""

    def __init__(self, context):
        super().__init__(context.workdir)
        (context.workdir / "marked-storage-used").write_text("yes")


@hookimpl
def ohfp_register_storage(register):
    register("marked", MarkedStorage)
'''


def test_storage_backend_from_a_plugin(
    hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 'storage' setting picks a backend an extension plugin registered."""
    from ohfp_core import plugins
    from tests.core.distributions import make_distribution

    site = hf_env / "site"
    site.mkdir()
    (site / "marked_storage_mod.py").write_text(STORAGE_PLUGIN)
    make_distribution(
        site, "ohfp-marked-storage", "1.0", {plugins.PLUGIN_GROUP: {"marked": "marked_storage_mod"}}
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(plugins.LOAD_PLUGINS_ENV, raising=False)
    plugins.entry_points_of.cache_clear()
    try:
        (hf_env / "conf" / "ohfp.json").write_text(json.dumps({"storage": "marked"}))
        code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
        assert code == 0 and reply["templates"]
        assert (hf_env / "work" / "marked-storage-used").read_text() == "yes"
        (hf_env / "conf" / "ohfp.json").write_text(json.dumps({"storage": "nosuch"}))
        code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
        assert code == 3
        assert "storage backend 'nosuch' is not registered (registered: " in reply["message"]
        assert {"marked", "sqlite"} <= set(
            reply["message"].split("registered: ")[1].split(")")[0].split(", ")
        )
    finally:
        plugins.entry_points_of.cache_clear()


def test_a_missing_config_directory_is_reported(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (hf_env / "conf" / "mockinstprov_config.json").unlink()
    (hf_env / "conf").rmdir()
    code, reply = run(capsys, hf_env, "getAvailableTemplates", {})
    assert code == 3
    assert f"the config directory {hf_env / 'conf'} does not exist" in reply["message"]
    assert reply["errors"]


def test_failures_before_the_settings_are_read_reach_the_instance_log(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = hf_env / "log" / "ohfp-mockinst.log"
    code, reply = run(capsys, hf_env, "getRequestStatus", "{not json")
    assert code == 2 and reply["errors"] == [
        "line 1 column 2: Expecting property name enclosed in double quotes"
    ]
    (hf_env / "conf" / "ohfp.json").write_text('{"colour": "blue"}')
    code, reply = run(capsys, hf_env, "getRequestStatus", {"requests": []})
    assert code == 3
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    failures = [line for line in lines if line["event"] == "call failed"]
    assert len(failures) == 2
    assert "is not valid JSON" in failures[0]["error"] and "$.colour" in failures[1]["error"]


@pytest.mark.parametrize(
    "argv",
    [
        ["hf", "requestMachines"],
        ["hf", "noSuchCall", "-f", "x"],
        ["templates"],
        ["--bogus"],
        [],
    ],
)
def test_argument_errors_give_one_json_reply(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    reply = json.loads(captured.out)
    assert code == 2 and reply["message"] and reply["errors"], reply
    assert "usage:" in captured.err


def test_health_reports_an_unusable_work_directory_as_a_failed_check(
    hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = hf_env / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("HF_PROVIDER_WORKDIR", str(blocker / "work"))
    code = main(["health", "--provider", "mock"])
    reply = json.loads(capsys.readouterr().out)
    assert code == 4 and reply["message"] == "unhealthy"
    checks = {c["name"]: c for c in reply["checks"]}
    assert not checks["ohfp.workdir"]["ok"] and not checks["ohfp.state"]["ok"]


@pytest.mark.parametrize(
    ("variable", "value", "detail"),
    [
        ("HF_PROVIDER_CONFDIR", "no-such-dir", "does not exist"),
        ("HF_PROVIDER_WORKDIR", "", "no work directory"),
    ],
)
def test_health_reports_an_instance_that_cannot_be_set_up_as_a_failed_check(
    variable: str,
    value: str,
    detail: str,
    hf_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing config directory (or work directory) is the same report with a failed
    ohfp.config check and exit 4, not only an error reply."""
    monkeypatch.setenv(variable, str(hf_env / value) if value else "")
    code = main(["health", "--provider", "mock"])
    reply = json.loads(capsys.readouterr().out)
    assert code == 4 and reply["message"] == "unhealthy", reply
    assert (reply["provider"], reply["instance"]) == ("mock", "mockinst")
    checks = {c["name"]: c for c in reply["checks"]}
    assert not checks["ohfp.config"]["ok"] and detail in checks["ohfp.config"]["detail"]
    assert not checks["ohfp.provider"]["ok"]


def test_the_log_tells_each_requests_story_at_info(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One INFO line per finished request, reclaim and finished return; a warning for an
    abandoned request: enough for an administrator to reconstruct what happened."""
    import time

    from ohfp_core.sqlite import SQLiteStorage
    from ohfp_core.storage import RequestRecord
    from ohfp_mock.cloud import MockCloud

    config = {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0}
    (hf_env / "conf" / "mockinstprov_config.json").write_text(json.dumps(config))
    _, reply = run(
        capsys, hf_env, "requestMachines", {"template": {"templateId": "mock-spot", "machineCount": 2}}
    )
    request_id = reply["requestId"]
    _, reply = run(capsys, hf_env, "getRequestStatus", {"requests": [{"requestId": request_id}]})
    [entry] = reply["requests"]
    assert entry["status"] == "complete", entry
    first, second = ({"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"])
    with MockCloud(hf_env / "work") as cloud:
        cloud.reclaim(second["machineId"], grace=90)
    run(capsys, hf_env, "getReturnRequests", {})
    _, reply = run(capsys, hf_env, "requestReturnMachines", {"machines": [first]})
    run(capsys, hf_env, "getRequestStatus", {"requests": [{"requestId": reply["requestId"]}]})
    store = SQLiteStorage(hf_env / "work")  # a request whose call died long ago, on another host
    store.put_request(
        RequestRecord(
            request_id="req-abandoned",
            kind=RequestKind.ACQUIRE,
            template_id="mock-small",
            machine_count=1,
            created_at=int(time.time()) - 3600,
            owner="elsewhere:/work",
        )
    )
    store.close()
    run(capsys, hf_env, "getAvailableTemplates", {})

    lines = [json.loads(line) for line in (hf_env / "log" / "ohfp-mockinst.log").read_text().splitlines()]
    events = [(line["level"], line["event"]) for line in lines]
    assert ("info", "request finished") in events
    assert ("info", "host reclaimed") in events
    assert ("info", "return finished") in events
    assert ("warning", "abandoned request cancelled") in events
    [finished] = [line for line in lines if line["event"] == "request finished"]
    assert finished["request_id"] == request_id and finished["status"] == "complete"
    [reclaimed] = [line for line in lines if line["event"] == "host reclaimed"]
    assert reclaimed["name"] == second["name"] and reclaimed["grace_period"] <= 90
    assert reclaimed["request_id"] == request_id
    # Grepping the log for one machine's id or host name finds its whole life, each line
    # naming the request it belongs to.
    for needle in (first["machineId"], first["name"]):
        life = [line for line in lines if needle in json.dumps(line)]
        story = [line["event"] for line in life]
        assert story == ["request submitted", "machine ready", "return recorded", "machine returned"]
        assert {line["request_id"] for line in life[:2]} == {request_id}
        assert life[1]["template_id"] == "mock-spot"
        assert life[2]["request_id"] == life[3]["request_id"] != request_id


def _text(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--provider", "mock"])
    return code, capsys.readouterr().out


def test_requests_show_reads_as_text_and_as_json(hf_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, reply = run(
        capsys, hf_env, "requestMachines", {"template": {"templateId": "mock-small", "machineCount": 2}}
    )
    request_id = reply["requestId"]
    run(capsys, hf_env, "getRequestStatus", {"requests": [{"requestId": request_id}]})
    code, text = _text(capsys, "requests", "show", request_id)
    assert code == 0, text
    first, *rest = text.splitlines()
    assert first == f"{request_id}  complete  (acquire request)"
    assert "  template:  mock-small" in rest and "  asked for: 2 machine(s) or units" in rest
    created = next(line for line in rest if line.startswith("  created:"))
    assert re.fullmatch(r"  created:   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)
    machines = text.split("machines (2):\n", 1)[1].splitlines()
    assert machines[0].split() == ["MACHINE", "NAME", "STATE", "RESULT", "ADDRESS", "TYPE", "NOTE"]
    assert [row.split()[2:4] for row in machines[1:3]] == [["running", "succeed"]] * 2
    code, doc = _text(capsys, "requests", "show", request_id, "--json")
    assert code == 0 and json.loads(doc)["request"]["request_id"] == request_id
    code, doc = _text(capsys, "requests", "show", "req-nope")
    assert code == 2 and "no request 'req-nope'" in json.loads(doc)["message"]


def test_requests_list_filters_by_state_and_kind_newest_first(
    hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (hf_env / "conf" / "mockinstprov_config.json").write_text(json.dumps({"MOCK_BOOT_SECONDS": 3600}))
    ids = []
    for _ in range(3):
        _, reply = run(
            capsys, hf_env, "requestMachines", {"template": {"templateId": "mock-small", "machineCount": 1}}
        )
        ids.append(reply["requestId"])
    code, doc = _text(capsys, "requests", "list", "--json")
    assert code == 0
    listed = json.loads(doc)["requests"]
    assert {e["requestId"] for e in listed} == set(ids) and len(listed) == 3
    stamps = [e["createdAt"] for e in listed]
    assert stamps == sorted(stamps, reverse=True)
    code, doc = _text(capsys, "requests", "list", "--state", "complete", "--json")
    assert json.loads(doc)["requests"] == []
    code, doc = _text(capsys, "requests", "list", "--state", "running", "--kind", "return", "--json")
    assert json.loads(doc)["requests"] == []
    code, doc = _text(capsys, "requests", "list", "--state", "running", "--limit", "2", "--json")
    assert len(json.loads(doc)["requests"]) == 2
    code, text = _text(capsys, "requests", "list")
    assert code == 0
    header, *rows = text.splitlines()
    assert header.split() == ["REQUEST", "KIND", "STATUS", "TEMPLATE", "MACHINES", "CREATED", "MESSAGE"]
    assert sorted(row.split()[0] for row in rows) == sorted(ids)
    assert all(row.split()[1:5] == ["acquire", "running", "mock-small", "1"] for row in rows)


def test_debug_logs_one_line_per_hook_call_and_info_none(
    hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = {"template": {"templateId": "mock-small", "machineCount": 1}}
    log = hf_env / "log" / "ohfp-mockinst.log"
    run(capsys, hf_env, "requestMachines", request)
    assert not [line for line in log.read_text().splitlines() if '"hook call"' in line]
    monkeypatch.setenv("OHFP_LOG_LEVEL", "DEBUG")
    log.unlink()
    run(capsys, hf_env, "requestMachines", request)
    calls = [json.loads(line) for line in log.read_text().splitlines() if '"hook call"' in line]
    by_hook = {line["hook"]: line for line in calls}
    assert "provider:mock" in by_hook["ohfp_provision"]["plugins"]
    assert by_hook["ohfp_provision"]["level"] == "debug" and by_hook["ohfp_provision"]["raised"] is None
    assert by_hook["ohfp_provision"]["duration_ms"] >= 0
    assert {"ohfp_available_templates", "ohfp_validate_template", "ohfp_request_submitted"} <= set(by_hook)

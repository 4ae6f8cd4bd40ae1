"""The mock provider end to end: the generated HF scripts, run as Host Factory runs them.

Every call goes through ``<call>.sh -f <input.json>`` in a fresh process with a bare
environment; the ``mock_hf`` fixture's replies are parsed as exactly one JSON document each
(``Reply.of`` fails the test otherwise). Time moves only when a test advances the mock's clock.
"""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .conftest import HostFactory, Installation

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def poll(hf: HostFactory, request_id: str, step: int = 10, tries: int = 12) -> dict[str, Any]:
    """getRequestStatus until the request is no longer running, moving the mock clock between polls."""
    for _ in range(tries):
        [entry] = hf.status(request_id)
        assert entry["requestId"] == request_id
        if entry["status"] != "running":
            return entry
        hf.mock("advance", str(step))
    raise AssertionError(f"{request_id} still running after {tries} polls: {entry}")


def request(hf: HostFactory, template: str, count: int) -> str:
    reply = hf.call("requestMachines", {"template": {"templateId": template, "machineCount": count}}).ok()
    request_id: str = reply["requestId"]
    assert request_id.startswith("req-"), reply
    return request_id


def cloud_machines(hf: HostFactory) -> list[dict[str, Any]]:
    machines: list[dict[str, Any]] = hf.mock("list")["machines"]
    return machines


def test_full_lifecycle_with_a_reclaim(mock_hf: HostFactory) -> None:
    templates = mock_hf.call("getAvailableTemplates").ok()
    assert templates["message"] == "Get available templates success."
    offered = {t["templateId"]: t for t in templates["templates"]}
    small = offered["mock-small"]
    assert {"type", "ncpus", "nram"} <= set(small["attributes"])
    assert all(isinstance(value, str) for _, value in small["attributes"].values())

    request_id = request(mock_hf, "mock-small", 3)
    [first] = mock_hf.status(request_id)
    assert first["status"] == "running"
    assert [m["result"] for m in first["machines"]] == ["executing"] * 3

    done = poll(mock_hf, request_id)
    assert done["status"] == "complete", done
    machines = done["machines"]
    assert len(machines) == 3
    for machine in machines:
        assert machine["result"] == "succeed"
        assert machine["machineId"] and machine["name"] and machine["privateIpAddress"]
        assert isinstance(machine["launchtime"], int)
        assert machine["message"] == ""
    assert len({m["machineId"] for m in machines}) == 3

    kept, *returned = machines
    held = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
    assert mock_hf.call("getReturnRequests", {"machines": held}).ok()["requests"] == []

    reply = mock_hf.call(
        "requestReturnMachines",
        {"machines": [{"name": m["name"], "machineId": m["machineId"]} for m in returned]},
    ).ok()
    return_id = reply["requestId"]
    assert return_id.startswith("ret-")
    [returning] = mock_hf.status(return_id)
    assert returning["status"] == "running"
    assert {m["result"] for m in returning["machines"]} == {"executing"}
    finished = poll(mock_hf, return_id)
    assert finished["status"] == "complete", finished
    assert sorted(m["machineId"] for m in finished["machines"]) == sorted(m["machineId"] for m in returned)
    assert {m["result"] for m in finished["machines"]} == {"succeed"}
    states = {m["machineId"]: m["state"] for m in cloud_machines(mock_hf)}
    assert [states[m["machineId"]] for m in returned] == ["terminated", "terminated"]
    assert states[kept["machineId"]] == "running"

    mock_hf.mock("reclaim", kept["machineId"], "--grace", "60")
    for payload in ({"machines": held}, {}):
        reclaims = mock_hf.call("getReturnRequests", payload).ok()
        [entry] = reclaims["requests"]  # returned machines are HF's own returns, not reclaims
        assert entry["machine"] == kept["name"]
        assert 0 < entry["gracePeriod"] <= 60

    [acquired] = mock_hf.status(request_id)  # a finished request is still answered
    assert acquired["status"] == "complete"


def test_getrequeststatus_accepts_both_input_forms(mock_hf: HostFactory) -> None:
    request_id = request(mock_hf, "mock-small", 1)
    listed = mock_hf.call("getRequestStatus", {"requests": [{"requestId": request_id}]}).ok()
    single = mock_hf.call("getRequestStatus", {"requests": {"requestId": request_id}}).ok()
    assert [e["requestId"] for e in listed["requests"]] == [request_id]
    assert [e["requestId"] for e in single["requests"]] == [request_id]
    assert listed["requests"][0]["status"] == single["requests"][0]["status"] == "running"


def test_unknown_and_malformed_request_ids_are_answered_per_id(mock_hf: HostFactory) -> None:
    request_id = request(mock_hf, "mock-small", 1)
    reply = mock_hf.call(
        "getRequestStatus",
        {"requests": [{"requestId": "req-does-not-exist"}, {"requestId": request_id}, {"requestId": ""}]},
    ).ok()
    unknown, known, empty = reply["requests"]
    assert unknown["requestId"] == "req-does-not-exist"
    assert unknown["status"] == "complete_with_error"
    assert "req-does-not-exist" in unknown["message"]
    assert unknown["machines"] == []
    assert known["requestId"] == request_id and known["status"] == "running"
    assert empty["status"] == "complete_with_error" and "$.requests[2].requestId" in empty["message"]


BAD_REQUESTS = {
    "zero machines": (
        {"template": {"templateId": "mock-small", "machineCount": 0}},
        "$.template.machineCount",
    ),
    "missing template id": ({"template": {"machineCount": 1}}, "$.template.templateId"),
    "unknown template": ({"template": {"templateId": "no-such", "machineCount": 1}}, "$.template.templateId"),
    "more than maxNumber": (
        {"template": {"templateId": "mock-small", "machineCount": 51}},
        "$.template.machineCount",
    ),
    "malformed JSON": ('{"template": {"templateId": "mock-small",', "line 1 column"),
}


@pytest.mark.parametrize("payload, field", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_input_names_the_field_and_provisions_nothing(
    mock_hf: HostFactory, payload: Any, field: str
) -> None:
    reply = mock_hf.call("requestMachines", payload)
    assert reply.code != 0
    assert "requestId" not in reply.doc
    assert reply.doc["message"].startswith("requestMachines failed")
    assert field in json.dumps(reply.doc, ensure_ascii=False), reply.doc
    assert "Traceback" not in reply.stdout
    assert cloud_machines(mock_hf) == []


def test_bad_return_input_is_refused(mock_hf: HostFactory) -> None:
    reply = mock_hf.call("requestReturnMachines", {"machines": "i-123"})
    assert reply.code != 0
    assert "$.machines" in json.dumps(reply.doc)
    assert "requestId" not in reply.doc


def test_state_and_log_files_are_private(mock_hf: HostFactory) -> None:
    request_id = request(mock_hf, "mock-small", 2)
    poll(mock_hf, request_id)
    files = mock_hf.state_files() + sorted(p for p in mock_hf.logdir.iterdir() if p.is_file())
    assert any(p.suffix == ".log" for p in files) and len(files) >= 3
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o600}, modes


def test_eight_overlapping_calls_on_one_work_dir(mock_hf: HostFactory) -> None:
    # Stagger nothing: all eight processes start before any is waited for.
    payload = {"template": {"templateId": "mock-small", "machineCount": 2}}
    replies = [mock_hf.finish(p) for p in [mock_hf.start("requestMachines", payload) for _ in range(8)]]
    assert [r.code for r in replies] == [0] * 8, [r.doc for r in replies]
    request_ids = [r.doc["requestId"] for r in replies]
    assert len(set(request_ids)) == 8

    mock_hf.mock("advance", "60")
    polls = [mock_hf.start("getRequestStatus", {"requests": [{"requestId": i}]}) for i in request_ids]
    entries = []
    for request_id, reply in zip(request_ids, [mock_hf.finish(p) for p in polls], strict=True):
        [entry] = reply.ok()["requests"]
        assert entry["requestId"] == request_id
        assert entry["status"] == "complete", entry
        entries.append(entry)
    machines = [m for e in entries for m in e["machines"]]
    assert len(machines) == 16
    assert len({m["machineId"] for m in machines}) == 16
    assert len({m["name"] for m in machines}) == 16
    assert len(cloud_machines(mock_hf)) == 16

    returns = [
        mock_hf.start(
            "requestReturnMachines", {"machines": [{"name": m["name"], "machineId": m["machineId"]}]}
        )
        for m in machines[:8]
    ]
    return_replies = [mock_hf.finish(p).ok() for p in returns]
    assert all("requestId" in r for r in return_replies), return_replies
    return_ids = [r["requestId"] for r in return_replies]
    assert len(set(return_ids)) == 8
    mock_hf.mock("advance", "60")
    statuses = mock_hf.status(*return_ids)
    assert [s["status"] for s in statuses] == ["complete"] * 8
    states = [m["state"] for m in cloud_machines(mock_hf)]
    assert states.count("terminated") == 8 and states.count("running") == 8


def test_scripts_for_both_platforms_are_written(installation: Installation, mock_scripts: Path) -> None:
    calls = (
        "getAvailableTemplates",
        "requestMachines",
        "requestReturnMachines",
        "getRequestStatus",
        "getReturnRequests",
    )
    for call in calls:
        sh = mock_scripts / f"{call}.sh"
        assert sh.read_text().startswith("#!/bin/sh\n")
        assert stat.S_IMODE(sh.stat().st_mode) & 0o111 == 0o111
        bat = (mock_scripts / f"{call}.bat").read_bytes().decode()
        assert "\r\n" in bat and "\n" not in bat.replace("\r\n", "")
        assert f"-m ohfp_core hf {call} --provider mock %*" in bat
        assert str(installation.python) in bat


def _versions() -> dict[str, str]:
    versions = {}
    for source in ("ohfp_mock", "ohfp_aws"):
        project = tomllib.loads((REPO / source / "pyproject.toml").read_text())["project"]
        versions[project["name"]] = project["version"]
    return versions


IMPORT_PROBE = """
import json, sys
from ohfp_core.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("boto3", "botocore", "ohfp_aws.provider", "libvirt") if m in sys.modules)
sys.stderr.write("\\nIMPORTED " + json.dumps(heavy) + "\\n")
raise SystemExit(code)
"""


@pytest.mark.parametrize(
    "args", [["plugins"], ["plugins", "--provider", "mock"], ["plugins", "--provider", "aws"]]
)
def test_plugins_lists_both_providers_without_importing_boto3(
    installation: Installation, args: list[str]
) -> None:
    done = installation.run(installation.python, "-I", "-c", IMPORT_PROBE, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    listing = json.loads(done.stdout)
    providers = {p["name"]: p for p in listing["providers"]}
    assert {"mock", "aws"} <= set(providers)
    for name, version in _versions().items():
        [entry] = [p for p in providers.values() if p["distribution"] == name]
        assert entry["version"] == version
    imported = json.loads(done.stderr.rsplit("IMPORTED ", 1)[1])
    assert "boto3" not in imported and "botocore" not in imported
    assert "libvirt" not in imported  # listing ohfp-libvirt's entry point loads no libvirt-python
    if args[-1] == "aws":  # the selected provider is imported to list its hooks; boto3 still is not
        assert providers["aws"]["hooks"], providers["aws"]


def test_the_quickstart_runs_and_reclaims_a_spot_machine(installation: Installation, tmp_path: Path) -> None:
    root = tmp_path / "demo"
    done = installation.run(installation.python, REPO / "examples" / "quickstart.py", "--keep", root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 machines acquired, 2 returned, 1 reclaimed by the cloud" in done.stdout
    listing = installation.run(
        installation.python, "-I", "-m", "ohfp_mock", "--workdir", root / "work", "list"
    )
    machines = json.loads(listing.stdout)["machines"]
    [reclaimed] = [m for m in machines if m["reclaimAt"] is not None]
    assert reclaimed["priceType"] == "spot", reclaimed

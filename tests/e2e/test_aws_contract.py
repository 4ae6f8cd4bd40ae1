"""The Host Factory contract (CONTRACT.md), scenario by scenario, for the AWS provider.

A black-box check of a release: IBM's sample ``awsprov_config.json`` and
``awsprov_templates.json`` (copies in ``data/ibm``; only the endpoint, the credentials file and
the subnet and security group ids are replaced by the moto server's), the generated ``.sh``
scripts run with ``-f <input.json>`` in fresh processes with a bare environment, exactly as
Host Factory runs them. The moto server (module scope) lives in this process; see
``test_aws_scripts.py`` for the harness. Every call's stdout must be exactly one JSON
document (:class:`~tests.e2e.conftest.Reply` refuses anything else).

The sample's "Spot-mixed" template keeps its SSM parameter path as ``imageId``: moto's SSM
serves AWS's public ``/aws/service/ami-amazon-linux-latest/…`` parameters, so ohfp resolves it
as it would on AWS. The samples' key pair ``hf-key`` is created on the server. moto gives all of
a fleet's capacity to its first override (MOTO.md), so weighted types (``c5.2xlarge``: 2) are
counted by the test but never launched. Where moto cannot behave like AWS (slow termination,
refusals) its backend, in this process, is patched; each such test says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .aws_account import FAKE_KEYS, leftovers
from .conftest import HostFactory, Installation, make_instance
from .test_aws_scripts import MotoServer, aws_scripts, moto_server, poll, poll_all, poll_payload

pytestmark = pytest.mark.e2e

__all__ = ["aws_scripts", "moto_server"]  # fixtures used here, defined with the harness

DATA = Path(__file__).parent / "data" / "ibm"
SAMPLE_SUBNETS = ("subnet-0a1b2c3d", "subnet-0e1f2a3b")
SAMPLE_GROUP = "sg-0a1b2c3d"
IBM_TEMPLATES = ["OnDemand-t3-micro", "Spot-mixed", "Fleet-heterogeneous", "ASG-ondemand"]
HOST_NAME = re.compile(r"^ip-\d+-\d+-\d+-\d+\.ec2\.internal$")
UNKNOWN_HOST = "ip-10-99-99-99.ec2.internal"


# ------------------------------------------------------------------------------ set-up


def _sample_templates(server: MotoServer) -> dict[str, Any]:
    """IBM's sample templates with the subnet and security group ids replaced by the server's."""
    text = (DATA / "awsprov_templates.json").read_text(encoding="utf-8")
    for sample, real in zip(SAMPLE_SUBNETS, server.subnet_ids, strict=True):
        text = text.replace(sample, real)
    document: dict[str, Any] = json.loads(text.replace(SAMPLE_GROUP, server.security_group_id))
    return document


def _write_ibm_files(hf: HostFactory, server: MotoServer) -> None:
    """IBM's file names (``awsprov_*.json``), IBM's keys, pointing at the moto server."""
    credentials = hf.confdir / "credentials"
    credentials.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in FAKE_KEYS.items()))
    credentials.chmod(0o600)
    config = json.loads((DATA / "awsprov_config.json").read_text(encoding="utf-8"))
    config.update(AWS_ENDPOINT_URL=server.endpoint, AWS_CREDENTIAL_FILE=str(credentials))
    (hf.confdir / "awsprov_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (hf.confdir / "awsprov_templates.json").write_text(
        json.dumps(_sample_templates(server), indent=2), encoding="utf-8"
    )


@pytest.fixture(scope="module")
def cloud(moto_server: MotoServer) -> MotoServer:
    """The moto server with what IBM's samples refer to besides the network: key pair ``hf-key``."""
    moto_server.ec2().create_key_pair(KeyName="hf-key")
    return moto_server


@pytest.fixture
def ibm(installation: Installation, aws_scripts: Path, cloud: MotoServer, tmp_path: Path) -> HostFactory:
    """An ``awsinst`` instance configured with IBM's sample files."""
    hf = make_instance(installation, aws_scripts, tmp_path, "awsinst")
    _write_ibm_files(hf, cloud)
    return hf


# ------------------------------------------------------------------------------ helpers


def request(hf: HostFactory, template_id: str, count: int) -> str:
    reply = hf.call("requestMachines", {"template": {"templateId": template_id, "machineCount": count}}).ok()
    assert isinstance(reply.get("requestId"), str) and reply["requestId"], reply
    assert isinstance(reply.get("message"), str), reply
    request_id: str = reply["requestId"]
    return request_id


def acquire(hf: HostFactory, template_id: str, count: int) -> tuple[str, list[dict[str, Any]]]:
    """requestMachines, then getRequestStatus until it is final; asserts ``complete``."""
    request_id = request(hf, template_id, count)
    done = poll(hf, request_id)
    assert done["status"] == "complete", done
    machines: list[dict[str, Any]] = done["machines"]
    return request_id, machines


def give_back(hf: HostFactory, machines: list[dict[str, Any]]) -> dict[str, Any]:
    reply: dict[str, Any] = hf.call("requestReturnMachines", {"machines": machines}).ok()
    return reply


def refs(machines: list[dict[str, Any]]) -> list[dict[str, str]]:
    """What HF sends for hosts it holds: name and machineId."""
    return [{"name": m["name"], "machineId": m["machineId"]} for m in machines]


def available(hf: HostFactory) -> dict[str, int]:
    reply = hf.call("getAvailableTemplates").ok()
    return {t["templateId"]: t["availableNumber"] for t in reply["templates"]}


def describe(server: MotoServer, ids: list[str]) -> list[dict[str, Any]]:
    reply = server.ec2().describe_instances(InstanceIds=ids)
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def states(server: MotoServer, ids: list[str]) -> dict[str, str]:
    return {i["InstanceId"]: i["State"]["Name"] for i in describe(server, ids)}


def ssm(server: MotoServer) -> Any:
    return server.client("ssm")


def resolve_image(server: MotoServer, image_id: str) -> str:
    if not image_id.startswith("/"):
        return image_id
    value: str = ssm(server).get_parameter(Name=image_id)["Parameter"]["Value"]
    return value


def cloud_state(server: MotoServer) -> dict[str, Any]:
    """Everything a call could have changed: instances and their states, fleets, groups,
    spot fleet requests, launch templates."""
    reply = server.ec2().describe_instances()
    instances = {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}
    return {"instances": instances, **leftovers(server)}


def assert_usable(machine: dict[str, Any]) -> None:
    """A machine of a ``complete`` acquire request, as the contract's table describes it."""
    assert machine["machineId"].startswith("i-"), machine
    assert HOST_NAME.match(machine["name"]), machine
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", machine["privateIpAddress"]), machine
    assert machine["name"] == f"ip-{machine['privateIpAddress'].replace('.', '-')}.ec2.internal"
    assert isinstance(machine["launchtime"], int) and not isinstance(machine["launchtime"], bool)
    assert machine["launchtime"] > 1_500_000_000, machine
    assert (machine["result"], machine["status"], machine["message"]) == ("succeed", "running", ""), machine


# ------------------------------------------------------------------------------ templates


def test_ssm_image_path_of_the_sample_is_resolved_by_moto(cloud: MotoServer) -> None:
    """Why "Spot-mixed" keeps its SSM path: moto's SSM answers it, as AWS's does."""
    [spot] = [t for t in _sample_templates(cloud)["templates"] if t["templateId"] == "Spot-mixed"]
    assert spot["imageId"].startswith("/aws/service/")
    assert resolve_image(cloud, spot["imageId"]).startswith("ami-")


def test_get_available_templates_lists_ibms_four_templates(ibm: HostFactory, cloud: MotoServer) -> None:
    reply = ibm.call("getAvailableTemplates").ok()
    assert isinstance(reply["message"], str)
    templates = {t["templateId"]: t for t in reply["templates"]}
    assert list(templates) == IBM_TEMPLATES
    samples = {t["templateId"]: t for t in _sample_templates(cloud)["templates"]}
    for template_id, template in templates.items():
        assert template["maxNumber"] == samples[template_id]["maxNumber"]
        assert template["availableNumber"] == samples[template_id]["maxNumber"]  # nothing in use yet
        attributes = template["attributes"]
        assert {"type", "ncpus", "nram"} <= set(attributes)
        for pair in attributes.values():
            assert isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair), pair
        assert attributes == samples[template_id]["attributes"]


def _units(template: dict[str, Any], machines: list[dict[str, Any]]) -> int:
    weights = template.get("vmTypes") or {template.get("vmType"): 1}
    return sum(int(weights[m["instanceType"]]) for m in machines)


def test_every_ibm_template_is_served_and_returned_in_one_call(ibm: HostFactory, cloud: MotoServer) -> None:
    """IBM's four sample templates side by side: each request served as asked, a finished
    request keeping its answer, and every machine returned in one requestReturnMachines —
    the Auto Scaling group's by name only, the others by machineId and name."""
    before = leftovers(cloud)
    asked = {template_id: request(ibm, template_id, 3) for template_id in IBM_TEMPLATES}
    done = dict(zip(asked, poll_all(ibm, list(asked.values())), strict=True))
    samples = {t["templateId"]: t for t in _sample_templates(cloud)["templates"]}
    for template_id, entry in done.items():
        assert entry["status"] == "complete", entry
        machines = entry["machines"]
        assert _units(samples[template_id], machines) == 3, machines
        for machine in machines:
            assert_usable(machine)
        ids = [m["machineId"] for m in machines]
        assert len(set(ids)) == len(ids)
        assert set(states(cloud, ids).values()) == {"running"}
        images = {i["ImageId"] for i in describe(cloud, ids)}
        assert images == {resolve_image(cloud, samples[template_id]["imageId"])}, "an SSM path is resolved"

    def same_machines() -> None:  # a finished request keeps its answer
        for template_id, again in zip(asked, ibm.status(*asked.values()), strict=True):
            assert again["status"] == "complete", again
            assert [(m["machineId"], m["name"]) for m in again["machines"]] == [
                (m["machineId"], m["name"]) for m in done[template_id]["machines"]
            ]

    same_machines()
    everything = [m for entry in done.values() for m in entry["machines"]]
    ids = [m["machineId"] for m in everything]
    by_name = done["ASG-ondemand"]["machines"]
    named = [*refs([m for m in everything if m not in by_name]), *({"name": m["name"]} for m in by_name)]
    returned = give_back(ibm, named)
    assert returned["message"] == "Delete VM success.", returned
    assert returned["requestId"].startswith("ret-")
    finished = poll(ibm, returned["requestId"])
    assert finished["status"] == "complete", finished
    assert sorted(m["machineId"] for m in finished["machines"]) == sorted(ids)
    assert {m["result"] for m in finished["machines"]} == {"succeed"}
    assert set(states(cloud, ids).values()) == {"terminated"}
    assert leftovers(cloud) == before, "returning every machine leaves no fleet, group or launch template"
    same_machines()

    again = give_back(ibm, refs(everything))
    assert again["message"] == "No Active VM.", again
    assert poll(ibm, again["requestId"])["status"] == "complete"


# ------------------------------------------------------------------------------ getRequestStatus


def test_get_request_status_answers_every_id_in_input_order(ibm: HostFactory) -> None:
    """Acquire and return ids HF has not polled yet, unknown and malformed ids, in one call."""
    held, machines = acquire(ibm, "OnDemand-t3-micro", 2)
    fresh = request(ibm, "ASG-ondemand", 1)
    returned = give_back(ibm, refs(machines[:1]))["requestId"]
    unknown = "req-00000000-0000-0000-0000-000000000000"
    asked = [
        {"requestId": returned},
        {"requestId": unknown},
        {"requestId": fresh},
        {},
        {"requestId": 7},
        {"requestId": ""},
        {"requestId": held},
    ]
    entries = poll_payload(ibm, {"requests": asked})
    assert [e["requestId"] for e in entries] == [returned, unknown, fresh, "", "7", "", held]
    ret, nope, new, *malformed, old = entries
    assert ret["status"] == "complete", ret
    assert [m["machineId"] for m in ret["machines"]] == [machines[0]["machineId"]]
    assert new["status"] == "complete", new
    [machine] = new["machines"]
    assert_usable(machine)
    assert old["status"] == "complete"
    assert sorted(m["machineId"] for m in old["machines"]) == sorted(m["machineId"] for m in machines)
    for entry in (nope, *malformed):
        assert entry["status"] == "complete_with_error", entry
        assert entry["message"], entry
        assert entry["machines"] == []

    [single] = ibm.call("getRequestStatus", {"requests": {"requestId": fresh}}).ok()["requests"]
    assert single["requestId"] == fresh and single["status"] == "complete"
    assert [m["machineId"] for m in single["machines"]] == [machine["machineId"]]
    poll(ibm, give_back(ibm, refs([*machines[1:], machine]))["requestId"])


# ------------------------------------------------------------------------------ requestReturnMachines


def test_returning_a_host_the_console_terminated_finds_no_active_vm(
    ibm: HostFactory, cloud: MotoServer
) -> None:
    """HF drains a host getReturnRequests reported gone and returns it: nothing is active."""
    _, machines = acquire(ibm, "OnDemand-t3-micro", 2)
    gone, kept = machines
    cloud.ec2().terminate_instances(InstanceIds=[gone["machineId"]])
    reclaims = ibm.call("getReturnRequests", {"machines": refs(machines)}).ok()
    assert reclaims["requests"] == [{"machine": gone["name"], "gracePeriod": 0}]
    returned = give_back(ibm, refs([gone]))
    try:
        assert returned["message"] == "No Active VM.", returned
        assert poll(ibm, returned["requestId"])["status"] == "complete"
    finally:
        give_back(ibm, refs([kept]))


def test_a_host_reported_gone_can_be_returned_by_name(ibm: HostFactory, cloud: MotoServer) -> None:
    """HF's loop for a host AWS does not know: getReturnRequests says it is gone, HF returns it."""
    before = cloud_state(cloud)
    host = [{"name": UNKNOWN_HOST}]
    reclaims = ibm.call("getReturnRequests", {"machines": host}).ok()
    assert reclaims["requests"] == [{"machine": UNKNOWN_HOST, "gracePeriod": 0}]
    returned = give_back(ibm, host)
    assert returned["message"] == "No Active VM.", returned
    finished = poll(ibm, returned["requestId"])
    assert cloud_state(cloud) == before
    assert [(m["name"], m["result"]) for m in finished["machines"]] == [(UNKNOWN_HOST, "succeed")], finished
    assert finished["status"] == "complete", finished


def test_returning_an_instance_aws_does_not_know(ibm: HostFactory, cloud: MotoServer) -> None:
    before = cloud_state(cloud)
    host = {"name": UNKNOWN_HOST, "machineId": "i-0000000000000dead"}
    returned = give_back(ibm, [host])
    assert returned["message"] == "No Active VM.", returned
    finished = poll(ibm, returned["requestId"])
    assert finished["status"] == "complete", finished
    assert [(m["machineId"], m["result"]) for m in finished["machines"]] == [(host["machineId"], "succeed")]
    assert cloud_state(cloud) == before


class SlowTermination:
    """moto terminates at once; AWS shuts an instance down first. While active,
    TerminateInstances leaves instances ``shutting-down`` (moto's backend runs in this
    process) until :meth:`finish` terminates them for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from moto.ec2.models.instances import Instance, InstanceState

        self.real = Instance.terminate
        self.held: list[Any] = []

        def shut_down(instance: Any) -> Any:
            previous = InstanceState(instance._state.name, instance._state.code)
            instance._state = InstanceState("shutting-down", 32)
            self.held.append(instance)
            return previous

        self.monkeypatch = monkeypatch
        self.instance_class: Any = Instance
        monkeypatch.setattr(Instance, "terminate", shut_down)

    def finish(self) -> None:
        """Terminate the instances left shutting down; from now on moto terminates at once."""
        self.monkeypatch.setattr(self.instance_class, "terminate", self.real)
        while self.held:
            self.real(self.held.pop())


@pytest.fixture
def slow_termination(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowTermination]:
    slow = SlowTermination(monkeypatch)
    yield slow
    slow.finish()


def test_a_return_runs_until_aws_has_terminated(
    ibm: HostFactory, cloud: MotoServer, slow_termination: SlowTermination
) -> None:
    _, machines = acquire(ibm, "OnDemand-t3-micro", 2)
    going, kept = machines
    returned = give_back(ibm, refs([going]))["requestId"]
    [entry] = ibm.status(returned)
    assert entry["status"] == "running", entry
    [machine] = entry["machines"]
    assert (machine["machineId"], machine["result"], machine["status"]) == (
        going["machineId"],
        "executing",
        "shutting-down",
    )
    assert [i.id for i in slow_termination.held] == [going["machineId"]]
    slow_termination.finish()
    done = poll(ibm, returned)
    assert done["status"] == "complete", done
    assert [(m["machineId"], m["result"], m["status"]) for m in done["machines"]] == [
        (going["machineId"], "succeed", "terminated")
    ]
    poll(ibm, give_back(ibm, refs([kept]))["requestId"])


# ------------------------------------------------------------------------------ getReturnRequests


def test_get_return_requests_lists_hosts_the_cloud_took(ibm: HostFactory, cloud: MotoServer) -> None:
    _, machines = acquire(ibm, "OnDemand-t3-micro", 4)
    terminated, stopped, returned, healthy = machines
    ec2 = cloud.ec2()
    ec2.terminate_instances(InstanceIds=[terminated["machineId"]])
    ec2.stop_instances(InstanceIds=[stopped["machineId"]])
    give_back(ibm, refs([returned]))

    gone = [{"machine": m["name"], "gracePeriod": 0} for m in (terminated, stopped)]

    def listed(payload: dict[str, Any]) -> list[dict[str, Any]]:
        reply = ibm.call("getReturnRequests", payload).ok()
        assert isinstance(reply["message"], str)
        return sorted(reply["requests"], key=lambda r: str(r["machine"]))

    assert listed({}) == sorted(gone, key=lambda r: str(r["machine"]))
    held = [*refs(machines), {"name": UNKNOWN_HOST, "machineId": "i-0123456789abcdef0"}]
    expected = [*gone, {"machine": UNKNOWN_HOST, "gracePeriod": 0}]
    assert listed({"machines": held}) == sorted(expected, key=lambda r: str(r["machine"]))
    by_name_only = [{"name": m["name"]} for m in machines] + [{"name": UNKNOWN_HOST}]
    assert listed({"machines": by_name_only}) == sorted(expected, key=lambda r: str(r["machine"]))
    rest = [terminated, stopped, healthy]
    assert poll(ibm, give_back(ibm, refs(rest))["requestId"])["status"] == "complete"
    assert set(states(cloud, [m["machineId"] for m in rest]).values()) == {"terminated"}


# ------------------------------------------------------------------------------ maxNumber


def test_max_number_is_enforced_and_available_number_follows_use(ibm: HostFactory, cloud: MotoServer) -> None:
    before = cloud_state(cloud)
    refused = ibm.call(
        "requestMachines", {"template": {"templateId": "OnDemand-t3-micro", "machineCount": 11}}
    )
    assert refused.code != 0, refused
    assert "requestId" not in refused.doc
    assert "$.template.machineCount" in json.dumps(refused.doc), refused.doc
    assert cloud_state(cloud) == before

    assert available(ibm)["OnDemand-t3-micro"] == 10
    _, machines = acquire(ibm, "OnDemand-t3-micro", 4)
    assert available(ibm)["OnDemand-t3-micro"] == 6
    over = ibm.call("requestMachines", {"template": {"templateId": "OnDemand-t3-micro", "machineCount": 7}})
    assert over.code != 0 and "$.template.machineCount" in json.dumps(over.doc), over.doc
    poll(ibm, give_back(ibm, refs(machines))["requestId"])
    assert available(ibm)["OnDemand-t3-micro"] == 10


# ------------------------------------------------------------------------------ cloud errors
# moto never refuses capacity or access: its backend, in this process, is patched to.


def _refuse(monkeypatch: pytest.MonkeyPatch, cls: Any, method: str, code: str) -> None:
    from moto.ec2.exceptions import EC2ClientError

    def refuse(*_: Any, **__: Any) -> Any:
        raise EC2ClientError(code, f"{method} refused by the test ({code})")

    monkeypatch.setattr(cls, method, refuse)


def test_a_capacity_refusal_is_an_ibm_failure_reply_and_leaves_nothing(
    ibm: HostFactory, cloud: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.ec2.responses.fleets import Fleets

    before = cloud_state(cloud)
    _refuse(monkeypatch, Fleets, "create_fleet", "InsufficientInstanceCapacity")
    reply = ibm.call("requestMachines", {"template": {"templateId": "OnDemand-t3-micro", "machineCount": 2}})
    assert reply.code == 0, reply
    assert "requestId" not in reply.doc, reply.doc
    assert "failed" in reply.doc["message"] and "InsufficientInstanceCapacity" in reply.doc["message"]
    assert cloud_state(cloud) == before, "the launch template made for the request is deleted"
    assert available(ibm)["OnDemand-t3-micro"] == 10


def test_a_request_stays_running_while_aws_cannot_be_read(
    ibm: HostFactory, cloud: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never complete_with_error while machines may still come: HF could release them all."""
    from moto.ec2.responses.instances import InstanceResponse

    request_id = request(ibm, "OnDemand-t3-micro", 2)
    with monkeypatch.context() as patch:
        _refuse(patch, InstanceResponse, "describe_instances", "UnauthorizedOperation")
        [entry] = ibm.status(request_id)
    assert entry["status"] == "running", entry
    assert entry["message"], entry
    done = poll(ibm, request_id)
    assert done["status"] == "complete", done
    assert poll(ibm, give_back(ibm, refs(done["machines"]))["requestId"])["status"] == "complete"


# ------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def settled(
    installation: Installation,
    aws_scripts: Path,
    cloud: MotoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HostFactory, str, dict[str, Any]]]:
    """An instance holding one complete request, and that request's status entry."""
    hf = make_instance(installation, aws_scripts, tmp_path_factory.mktemp("settled"), "awsinst")
    _write_ibm_files(hf, cloud)
    request_id, machines = acquire(hf, "OnDemand-t3-micro", 1)
    [entry] = hf.status(request_id)
    yield hf, request_id, entry
    give_back(hf, refs(machines))


BAD_INPUTS: list[tuple[str, str, Any, str]] = [
    (
        "requestMachines",
        "count-0",
        {"template": {"templateId": "OnDemand-t3-micro", "machineCount": 0}},
        "$.template.machineCount",
    ),
    (
        "requestMachines",
        "count-negative",
        {"template": {"templateId": "OnDemand-t3-micro", "machineCount": -2}},
        "$.template.machineCount",
    ),
    (
        "requestMachines",
        "count-text",
        {"template": {"templateId": "OnDemand-t3-micro", "machineCount": "3"}},
        "$.template.machineCount",
    ),
    (
        "requestMachines",
        "no-count",
        {"template": {"templateId": "OnDemand-t3-micro"}},
        "$.template.machineCount",
    ),
    ("requestMachines", "no-template-id", {"template": {"machineCount": 1}}, "$.template.templateId"),
    (
        "requestMachines",
        "unknown-template",
        {"template": {"templateId": "Nope", "machineCount": 1}},
        "$.template.templateId",
    ),
    ("requestMachines", "no-template", {}, "$.template"),
    ("requestMachines", "malformed-json", '{"template": {"templateId": "OnDemand-t3-micro", ', "JSON"),
    ("requestMachines", "not-an-object", "[1, 2]", "$"),
    ("requestReturnMachines", "no-machines", {}, "$.machines"),
    ("requestReturnMachines", "empty-machines", {"machines": []}, "$.machines"),
    (
        "requestReturnMachines",
        "no-name",
        {"machines": [{"machineId": "i-0123456789abcdef0"}]},
        "$.machines[0].name",
    ),
    ("requestReturnMachines", "malformed-json", "{machines: ", "JSON"),
    ("getRequestStatus", "no-requests", {}, "$.requests"),
    ("getRequestStatus", "malformed-json", '{"requests": [', "JSON"),
    ("getReturnRequests", "malformed-json", "{", "JSON"),
]


@pytest.mark.parametrize(
    ("call", "payload", "field"),
    [pytest.param(call, payload, field, id=f"{call}-{name}") for call, name, payload, field in BAD_INPUTS],
)
def test_bad_input_is_refused_with_a_json_reply_and_no_change(
    settled: tuple[HostFactory, str, dict[str, Any]], cloud: MotoServer, call: str, payload: Any, field: str
) -> None:
    hf, request_id, entry = settled
    before = cloud_state(cloud)
    reply = hf.call(call, payload)
    assert reply.code != 0, reply
    assert isinstance(reply.doc, dict) and isinstance(reply.doc.get("message"), str), reply.doc
    assert "requestId" not in reply.doc
    assert field in json.dumps(reply.doc), reply.doc
    assert cloud_state(cloud) == before
    assert hf.status(request_id) == [entry]


# ------------------------------------------------------------------------------ concurrency


def test_eight_overlapping_requests_on_one_work_dir(ibm: HostFactory, cloud: MotoServer) -> None:
    """Eight requestMachines at once, with HF's polls of an earlier request overlapping them."""
    earlier, _ = acquire(ibm, "OnDemand-t3-micro", 1)
    before = set(cloud_state(cloud)["instances"])
    ask = {"template": {"templateId": "OnDemand-t3-micro", "machineCount": 1}}
    started = [ibm.start("requestMachines", ask) for _ in range(8)]
    polls = [ibm.start("getRequestStatus", {"requests": [{"requestId": earlier}]}) for _ in range(3)]
    replies = [ibm.finish(p).ok() for p in started]
    for process in polls:
        [entry] = ibm.finish(process).ok()["requests"]
        assert (entry["requestId"], entry["status"]) == (earlier, "complete"), entry
    request_ids = [r["requestId"] for r in replies]
    assert len(set(request_ids)) == 8
    entries = poll_all(ibm, request_ids)
    assert {e["status"] for e in entries} == {"complete"}, entries
    machines = [m for e in entries for m in e["machines"]]
    ids = [m["machineId"] for m in machines]
    assert len(ids) == 8 and len(set(ids)) == 8
    created = set(cloud_state(cloud)["instances"]) - before
    assert created == set(ids), "every instance made belongs to exactly one request"
    assert available(ibm)["OnDemand-t3-micro"] == 1
    held = [*machines, *poll(ibm, earlier)["machines"]]
    assert poll(ibm, give_back(ibm, refs(held))["requestId"])["status"] == "complete"


def test_overlapping_requests_never_exceed_max_number(ibm: HostFactory, cloud: MotoServer) -> None:
    """Eight requests of 2 at once on a template of maxNumber 10: five fit, three are refused."""
    before = set(cloud_state(cloud)["instances"])
    ask = {"template": {"templateId": "OnDemand-t3-micro", "machineCount": 2}}
    replies = [ibm.finish(p) for p in [ibm.start("requestMachines", ask) for _ in range(8)]]
    accepted = [r.doc["requestId"] for r in replies if r.code == 0]
    refused = [r for r in replies if r.code != 0]
    assert len(accepted) == 5, [r.doc for r in replies]
    assert all("$.template.machineCount" in json.dumps(r.doc) for r in refused), [r.doc for r in refused]
    entries = poll_all(ibm, accepted)
    machines = [m for e in entries for m in e["machines"]]
    assert len(machines) == 10
    assert set(cloud_state(cloud)["instances"]) - before == {m["machineId"] for m in machines}
    assert available(ibm)["OnDemand-t3-micro"] == 0
    assert poll(ibm, give_back(ibm, refs(machines))["requestId"])["status"] == "complete"

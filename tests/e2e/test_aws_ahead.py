"""ohfp-aws ahead of the cloud, end to end through the generated Host Factory scripts, against a
hooked moto server in this process: the interruption queue, quota-aware capacity, instance
types by requirements and why a request fell short.

What moto lacks is emulated at the server, and each test says so: EC2's own events are put on
the default bus with PutEvents (moto's EventBridge then delivers them to the queue through the
rules ``ohfp-aws events setup`` made); GetServiceQuota for EC2 is answered by the hook; moto
cannot resolve instance requirements, so the hook records CreateFleet as ohfp sent it and
hands moto the same call with ``t3.micro`` in place of the requirements (what AWS would pick);
and the hook answers RunInstances in one subnet with AWS's InsufficientInstanceCapacity.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from testbeds.hooked_moto import Forward, error_response

from .aws_account import AMI_ID, Account
from .conftest import HostFactory, Installation, make_instance
from .test_aws_scripts import poll

pytestmark = pytest.mark.e2e

ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "1024"]}
Answer = tuple[str, list[tuple[str, str]], bytes]


@pytest.fixture(scope="module")
def ahead_scripts(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installation.scripts("aws", tmp_path_factory.mktemp("ahead-scripts"))


def instance(
    installation: Installation,
    scripts: Path,
    account: Account,
    root: Path,
    templates: list[dict[str, Any]],
    aws: dict[str, Any] | None = None,
) -> HostFactory:
    """An ``awsinst`` instance on the hooked server with ``templates`` and the ``aws`` settings."""
    hf = make_instance(installation, scripts, root, "awsinst")
    hf.write_aws_config(account.server.endpoint, AWS_REQUEST_RETRY_ATTEMPTS=0)
    common = {
        "imageId": AMI_ID,
        "securityGroupIds": [account.security_group_id],
        "subnetId": list(account.subnet_ids),
    }
    hf.write_config("templates", {"templates": [{**common, **t} for t in templates]})
    (hf.confdir / "ohfp.json").write_text(json.dumps({"aws": aws or {}}))
    return hf


def run_instances(template_id: str, max_number: int) -> dict[str, Any]:
    """An on-demand t3.micro template served by RunInstances."""
    return {
        "templateId": template_id,
        "maxNumber": max_number,
        "attributes": ATTRIBUTES,
        "providerApi": "RunInstances",
        "vmType": "t3.micro",
    }


def give_back(hf: HostFactory, entry: dict[str, Any]) -> None:
    held = [
        {"name": m["name"], "machineId": m["machineId"]}
        for m in entry["machines"]
        if m["result"] == "succeed"
    ]
    if held:
        returned = hf.call("requestReturnMachines", {"machines": held}).ok()
        assert poll(hf, returned["requestId"])["status"] == "complete"


def tagged(account: Account, request_id: str) -> list[str]:
    reply = account.client("ec2").describe_instances(
        Filters=[{"Name": "tag:ohfp:request-id", "Values": [request_id]}]
    )
    return [i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]]


def put_ec2_event(account: Account, detail_type: str, detail: dict[str, Any]) -> None:
    """What EC2 puts on the default bus (moto has no EC2 events of its own)."""
    entry: Any = {
        "Source": "aws.ec2",
        "DetailType": detail_type,
        "Detail": json.dumps(detail),
        "Time": datetime.now(UTC),
    }
    assert account.client("events").put_events(Entries=[entry])["FailedEntryCount"] == 0


def events_setup(installation: Installation, hf: HostFactory, name: str) -> Any:
    """``ohfp-aws events setup --name NAME`` for ``hf``; its settings written to ``ohfp.json``."""
    config = hf.confdir / "awsinstprov_config.json"
    ohfp_aws = installation.venv / "bin" / "ohfp-aws"
    made = installation.run(ohfp_aws, "events", "setup", "--name", name, "--config", config)
    assert made.returncode == 0, made.stdout + made.stderr
    setup = json.loads(made.stdout)
    (hf.confdir / "ohfp.json").write_text(json.dumps(setup["settings"]))
    return setup


def waiting(account: Account, queue_url: str) -> int:
    attributes = account.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_interruption_warnings_reach_host_factory_with_their_real_grace(
    installation: Installation, ahead_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    spot = {**run_instances("Spot", 4), "priceType": "spot"}
    hf = instance(installation, ahead_scripts, hooked, tmp_path, [spot])
    hf.env_extra["OHFP_SERVICE"] = "off"  # the calls drain the queue (the service's listening: below)
    config = hf.confdir / "awsinstprov_config.json"
    ohfp_aws = installation.venv / "bin" / "ohfp-aws"
    setup = events_setup(installation, hf, "e2e")
    queue = setup["queueUrl"]
    assert [r["name"] for r in setup["rules"]] == [
        "e2e-spot-interruption",
        "e2e-rebalance",
        "e2e-state-change",
    ]

    reply = hf.call("requestMachines", {"template": {"templateId": "Spot", "machineCount": 2}}).ok()
    victim, keeper = tagged(hooked, reply["requestId"])
    warning = {"instance-id": victim, "instance-action": "terminate"}
    put_ec2_event(hooked, "EC2 Spot Instance Interruption Warning", warning)
    put_ec2_event(hooked, "EC2 Instance Rebalance Recommendation", {"instance-id": keeper})  # not reported
    stranger = {"instance-id": "i-0f0f0f0f0f0f0f0f0", "state": "stopped"}  # not ohfp's: dropped
    put_ec2_event(hooked, "EC2 Instance State-change Notification", stranger)
    assert waiting(hooked, queue) == 3
    done = poll(hf, reply["requestId"])
    assert done["status"] == "complete"
    assert waiting(hooked, queue) == 3  # getRequestStatus does not read the queue …
    names = {m["machineId"]: m["name"] for m in done["machines"]}
    reclaims = hf.call("getReturnRequests", {}).ok()["requests"]  # … getReturnRequests drains it
    assert waiting(hooked, queue) == 0  # every message deleted once its notice was stored
    assert [r["machine"] for r in reclaims] == [names[victim]]
    assert 100 <= reclaims[0]["gracePeriod"] <= 120, reclaims
    give_back(hf, done)

    removed = installation.run(ohfp_aws, "events", "teardown", "--name", "e2e", "--config", config)
    assert removed.returncode == 0 and json.loads(removed.stdout)["queueUrl"] == queue
    assert hooked.client("events").list_rules(NamePrefix="e2e-")["Rules"] == []


def test_the_service_listens_to_the_queue_between_calls(
    installation: Installation, ahead_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """With the resident service, a warning is taken off the queue and stored while no call
    runs; getReturnRequests then reports it without any API call (the service's first
    getReturnRequests described the hosts in full). Once the service's listener fails to
    receive, the calls drain the queue and describe the hosts themselves."""
    from .service_support import stop_service, wait_serving

    spot = {**run_instances("Spot", 4), "priceType": "spot"}
    hf = instance(installation, ahead_scripts, hooked, tmp_path, [spot])
    hf.env_extra["OHFP_RUNTIME_DIR"] = str(tmp_path / "rt")
    config = hf.confdir / "awsinstprov_config.json"
    ohfp_aws = installation.venv / "bin" / "ohfp-aws"
    queue = events_setup(installation, hf, "listen")["queueUrl"]
    try:
        hf.call("getAvailableTemplates").ok()  # in its own process; starts the service
        wait_serving(hf)
        reply = hf.call("requestMachines", {"template": {"templateId": "Spot", "machineCount": 2}}).ok()
        done = poll(hf, reply["requestId"])
        victim, keeper = tagged(hooked, reply["requestId"])
        assert hf.call("getReturnRequests", {}).ok()["requests"] == []  # describes in full
        put_ec2_event(
            hooked,
            "EC2 Spot Instance Interruption Warning",
            {"instance-id": victim, "instance-action": "terminate"},
        )
        deadline = time.monotonic() + 30
        while waiting(hooked, queue) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert waiting(hooked, queue) == 0, "the service did not take the warning off the queue"
        asked: list[str] = []
        long_polls_failed: list[str] = []
        refuse_long_polls = False

        def count(api: str, forward: Forward) -> Answer:
            body = hooked.server.app.body.decode("utf-8", "replace")
            # The service's own long polls go on meanwhile (WaitTimeSeconds 20): not the call's.
            if api.endswith("ReceiveMessage") and re.search(r"WaitTimeSeconds\W+20\b", body):
                if refuse_long_polls:
                    long_polls_failed.append(api)
                    return error_response("AccessDenied", "injected", service="sqs")
                return forward()
            asked.append(api)
            return forward()

        hooked.server.app.hook = count
        reclaims = hf.call("getReturnRequests", {}).ok()["requests"]
        names = {m["machineId"]: m["name"] for m in done["machines"]}
        assert [r["machine"] for r in reclaims] == [names[victim]]
        assert 100 <= reclaims[0]["gracePeriod"] <= 120, reclaims
        assert asked == [], "getReturnRequests made API calls while the service listens"

        # The listener's receive fails: the next call through the service drains and describes.
        refuse_long_polls = True
        deadline = time.monotonic() + 60
        while not long_polls_failed and time.monotonic() < deadline:
            time.sleep(0.2)
        assert long_polls_failed, "the service's listener did not poll again"
        put_ec2_event(
            hooked, "EC2 Instance State-change Notification", {"instance-id": keeper, "state": "stopping"}
        )
        reclaims = hf.call("getReturnRequests", {}).ok()["requests"]
        hooked.server.app.hook = None
        assert {r["machine"] for r in reclaims} == {names[victim], names[keeper]}
        assert "sqs:ReceiveMessage" in asked and "ec2:DescribeInstances" in asked, asked
        assert waiting(hooked, queue) == 0
        give_back(hf, done)
    finally:
        stop_service(hf)
        installation.run(ohfp_aws, "events", "teardown", "--name", "listen", "--config", config)


def test_quota_lowers_availability_and_a_request_beyond_it_is_refused_naming_it(
    installation: Installation, ahead_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """moto has no EC2 quota: the hook answers GetServiceQuota with 6 vCPUs more than the
    account's running t3.micro instances already use."""
    reservations = hooked.client("ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    running = sum(len(r["Instances"]) for r in reservations)  # t3.micro: 2 vCPUs each
    asked: list[str] = []

    def quotas(api: str, forward: Forward) -> Answer:
        if api != "servicequotas:GetServiceQuota":
            return forward()
        code = json.loads(hooked.server.app.body)["QuotaCode"]
        asked.append(code)
        quota = {"QuotaCode": code, "QuotaName": "Running On-Demand Standard", "Value": 2.0 * running + 6}
        body = json.dumps({"Quota": quota}).encode()
        return (
            "200 OK",
            [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))],
            body,
        )

    hooked.server.app.hook = quotas
    template = run_instances("Quota", 10)
    hf = instance(installation, ahead_scripts, hooked, tmp_path, [template], {"quotas": {"enabled": True}})
    offered = hf.call("getAvailableTemplates").ok()["templates"]
    assert [t["availableNumber"] for t in offered] == [3]
    refused = hf.call("requestMachines", {"template": {"templateId": "Quota", "machineCount": 4}})
    assert refused.code == 2, refused
    (problem,) = refused.doc["errors"]
    assert "4 exceeds the 3 machines available" in problem and "AWS vCPU quota L-1216C47A" in problem, (
        refused.doc
    )
    reply = hf.call("requestMachines", {"template": {"templateId": "Quota", "machineCount": 2}}).ok()
    assert [t["availableNumber"] for t in hf.call("getAvailableTemplates").ok()["templates"]] == [1]
    assert asked == ["L-1216C47A"]  # read once, then from the state store
    give_back(hf, poll(hf, reply["requestId"]))


def test_a_template_by_requirements_reaches_ec2_fleet_as_written(
    installation: Installation, ahead_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """moto cannot resolve InstanceRequirements: the hook keeps CreateFleet's parameters as
    ohfp sent them and gives moto the same call with t3.micro instead of the requirements."""
    sent: list[dict[str, str]] = []

    def fleet(api: str, forward: Forward) -> Answer:
        if api != "ec2:CreateFleet":
            return forward()
        pairs = parse_qsl(hooked.server.app.body.decode())
        sent.append(dict(pairs))
        overrides = sorted(
            {k.split(".InstanceRequirements.")[0] for k, _ in pairs if ".InstanceRequirements." in k}
        )
        kept = [(k, v) for k, v in pairs if ".InstanceRequirements." not in k]
        return forward(urlencode(kept + [(f"{o}.InstanceType", "t3.micro") for o in overrides]).encode())

    hooked.server.app.hook = fleet
    shaped = {
        "templateId": "Shaped",
        "maxNumber": 4,
        "providerApi": "EC2Fleet",
        "fleetType": "instant",
        "vCpusMin": 2,
        "vCpusMax": 4,
        "memoryMiBMin": 1024,
        "instanceRequirements": {"CpuManufacturers": ["intel", "amd"], "BurstablePerformance": "included"},
    }
    run = {**shaped, "templateId": "ShapedRun", "providerApi": "RunInstances", "fleetType": None}
    hf = instance(
        installation,
        ahead_scripts,
        hooked,
        tmp_path,
        [shaped, {k: v for k, v in run.items() if v is not None}],
    )
    offered = hf.call("getAvailableTemplates").ok()
    (template,) = offered["templates"]
    assert template["attributes"] == {
        "type": ["String", "X86_64"],
        "ncpus": ["Numeric", "2"],
        "nram": ["Numeric", "1024"],
    }
    assert "RunInstances cannot choose instance types by requirements" in " ".join(offered["errors"])
    reply = hf.call("requestMachines", {"template": {"templateId": "Shaped", "machineCount": 2}}).ok()
    (params,) = sent
    first = "LaunchTemplateConfigs.1.Overrides.1.InstanceRequirements."
    requirements = {k.removeprefix(first): v for k, v in params.items() if k.startswith(first)}
    assert requirements == {
        "VCpuCount.Min": "2",
        "VCpuCount.Max": "4",
        "MemoryMiB.Min": "1024",
        "CpuManufacturer.1": "intel",  # EC2's query protocol names list members in the singular
        "CpuManufacturer.2": "amd",
        "BurstablePerformance": "included",
    }
    subnets = [params[f"LaunchTemplateConfigs.1.Overrides.{n}.SubnetId"] for n in (1, 2)]
    assert subnets == list(hooked.subnet_ids)
    assert not any(k.endswith(".InstanceType") for k in params)
    done = poll(hf, reply["requestId"])
    assert done["status"] == "complete", done
    give_back(hf, done)


def test_a_short_request_says_why_per_offering_and_the_next_one_avoids_it(
    installation: Installation, ahead_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """moto never runs out of capacity: the hook answers RunInstances in the first subnet with
    AWS's InsufficientInstanceCapacity (moto launches MinCount=1 per call elsewhere)."""
    short, other = hooked.subnet_ids
    subnets: list[str] = []

    def no_capacity(api: str, forward: Forward) -> Answer:
        if api != "ec2:RunInstances":
            return forward()
        subnet = hooked.server.app.params.get("SubnetId", [""])[0]
        subnets.append(subnet)
        if subnet == short:
            return error_response("InsufficientInstanceCapacity", f"No t3.micro capacity in {short}.")
        return forward()

    hooked.server.app.hook = no_capacity
    hf = instance(installation, ahead_scripts, hooked, tmp_path, [run_instances("Short", 4)])
    reply = hf.call("requestMachines", {"template": {"templateId": "Short", "machineCount": 2}}).ok()
    request_id = reply["requestId"]
    done = poll(hf, request_id)
    assert done["status"] == "complete_with_error"
    assert (
        f"by offering: t3.micro in {short} (on-demand): insufficient capacity (InsufficientInstanceCapacity)"
        f" (ohfp requests show {request_id})"
    ) in done["message"], done["message"]
    shown = installation.run(
        installation.ohfp, "requests", "show", request_id, "--json", "--provider", "aws", env=hf.env()
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    details = json.loads(shown.stdout)["details"]
    (shortfall,) = details["shortfalls"]
    assert (shortfall["subnetId"], shortfall["reason"], shortfall["source"]) == (
        short,
        "insufficient-capacity",
        "RunInstances",
    )
    assert details["unavailableOfferings"] == [f"t3.micro:{short}:on-demand"]
    assert subnets[0] == short
    subnets.clear()
    again = hf.call("requestMachines", {"template": {"templateId": "Short", "machineCount": 1}}).ok()
    assert subnets == [other]  # the subnet short of capacity is tried last
    give_back(hf, done)
    give_back(hf, poll(hf, again["requestId"]))

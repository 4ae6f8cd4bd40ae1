"""Why a request fell short, per offering; offerings short of capacity tried last.

moto never reports capacity errors, implements neither DescribeFleetHistory nor
DescribeSpotFleetRequestHistory, and never sets a fleet's ActivityStatus. So AWS's answers
are emulated: at the client boundary (``answer``: a CreateFleet with ``Errors[]``, a fleet
describe saying ``error``, a history, scaling activities) or by making moto's RunInstances
raise AWS's error in one subnet. The history descriptions are shaped like AWS's
(``<type>, <ami>, <platform>, <zone>, <reason>``), which AWS does not document exactly: the
reader looks for an instance type, a zone and an error code anywhere in the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.ec2.models.instances import InstanceBackend

from ohfp_aws.apis.asg import ASGHandler
from ohfp_aws.apis.ec2_fleet import EC2FleetHandler
from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_aws.supply import offerings, shortfalls
from ohfp_aws.vocabulary import Shortfall
from ohfp_core.errors import CapacityError

from .aws_support import acquire_request, hooks_for
from .conftest import REGION, Network, make_context, make_template
from .fleet_support import Calls, acquire, answer, template

FLEET_ID = "fleet-11111111-2222-3333-4444-555555555555"


def capacity_error(
    subnet: str, zone: str, kind: str = "t3.micro", lifecycle: str = "on-demand"
) -> dict[str, Any]:
    return {
        "LaunchTemplateAndOverrides": {
            "LaunchTemplateSpecification": {"LaunchTemplateId": "lt-0a", "Version": "1"},
            "Overrides": {"InstanceType": kind, "SubnetId": subnet, "AvailabilityZone": zone},
        },
        "Lifecycle": lifecycle,
        "ErrorCode": "InsufficientInstanceCapacity",
        "ErrorMessage": f"We currently do not have sufficient {kind} capacity in zone {zone}.",
    }


# -- reading AWS's answers ------------------------------------------------------------------------


def test_reasons_come_from_the_code_else_the_words() -> None:
    assert shortfalls.classify("InsufficientInstanceCapacity", "") == "insufficient-capacity"
    assert shortfalls.classify("VcpuLimitExceeded", "") == "quota"
    assert shortfalls.classify("SpotMaxPriceTooLow", "") == "price"
    assert shortfalls.classify("Unsupported", "") == "unsupported"
    assert (
        shortfalls.classify("", "You have requested more vCPU capacity than your current vCPU limit")
        == "quota"
    )
    assert shortfalls.classify("", "Your Spot request price of 0.001 is lower than the minimum") == "price"
    assert shortfalls.classify("", "c5.large is not supported in your requested zone") == "unsupported"
    assert shortfalls.classify("", "There is no Spot capacity available that matches your request") == (
        "insufficient-capacity"
    )
    assert shortfalls.classify("", "something else") == "other"


def test_fleet_errors_name_their_override_and_repeats_are_counted() -> None:
    errors = [capacity_error("subnet-0a", "us-east-1a")] * 2 + [
        capacity_error("subnet-0b", "us-east-1b", "m5.large")
    ]
    found = shortfalls.merged(shortfalls.from_fleet_errors(errors))
    assert [(s.offering, s.reason, s.count) for s in found] == [
        ("t3.micro in subnet-0a (on-demand)", "insufficient-capacity", 2),
        ("m5.large in subnet-0b (on-demand)", "insufficient-capacity", 1),
    ]
    assert shortfalls.summary(found, "req-1") == (
        "by offering: t3.micro in subnet-0a (on-demand): insufficient capacity"
        " (InsufficientInstanceCapacity) ×2; m5.large in subnet-0b (on-demand): insufficient capacity"
        " (InsufficientInstanceCapacity) (ohfp requests show req-1)"
    )
    many = [
        Shortfall(reason="price", instance_type=f"m5.{n}xlarge", zone="us-east-1a") for n in (2, 4, 8, 12)
    ]
    assert shortfalls.summary(many).endswith("m5.8xlarge in us-east-1a: price; 1 more")


def test_history_records_are_read_for_type_zone_and_code() -> None:
    records = [
        {
            "EventType": "error",
            "EventInformation": {
                "EventSubType": "allLaunchSpecsTemporarilyBlacklisted",
                "EventDescription": "t3.micro, ami-0a, Linux/UNIX, us-east-1b, InsufficientInstanceCapacity",
            },
        },
        {
            "EventType": "information",
            "EventInformation": {
                "EventSubType": "launchSpecUnusable",
                "EventDescription": "c5.large, ami-0123, Linux/UNIX, us-east-1a, Spot price below market",
            },
        },
        {
            "EventType": "instanceChange",
            "EventInformation": {"EventSubType": "launched", "InstanceId": "i-0a"},
        },
        {
            "EventType": "error",
            "EventInformation": {"EventSubType": "spotInstanceCountLimitExceeded", "EventDescription": ""},
        },
    ]
    found = shortfalls.from_history(records, "DescribeSpotFleetRequestHistory", ["t3.micro", "c5.large"])
    assert [(s.instance_type, s.zone, s.reason, s.code) for s in found] == [
        ("t3.micro", "us-east-1b", "insufficient-capacity", "InsufficientInstanceCapacity"),
        ("c5.large", "us-east-1a", "price", "launchSpecUnusable"),
        (None, None, "quota", "spotInstanceCountLimitExceeded"),
    ]


def test_scaling_activities_since_the_last_success() -> None:
    activities = [
        {
            "StatusCode": "Failed",
            "StatusMessage": "We currently do not have sufficient c5.large capacity in the Availability Zone"
            " you requested (us-east-1a). Launching EC2 instance failed.",
        },
        {
            "StatusCode": "Cancelled",
            "Description": "Launching a new EC2 instance. Status Reason: VcpuLimitExceeded",
        },
        {
            "StatusCode": "Successful",
            "StatusMessage": "We currently do not have sufficient m5.large capacity",
        },
    ]
    found = shortfalls.from_activities(activities, ["c5.large"])
    assert [(s.instance_type, s.zone, s.reason) for s in found] == [
        ("c5.large", "us-east-1a", "insufficient-capacity"),
        (None, None, "quota"),
    ]


# -- EC2 Fleet ------------------------------------------------------------------------------------


def test_instant_fleet_errors_reach_the_message_details_and_the_next_fleet(
    provider: AwsProvider, network: Network
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    (a, b) = network.subnet_ids
    launched = ec2.run_instances(ImageId=network.ami_id, MinCount=1, MaxCount=1, InstanceType="m5.large")
    instance_id = launched["Instances"][0]["InstanceId"]
    answer(
        provider.clients.ec2,
        "CreateFleet",
        lambda params: {
            "FleetId": FLEET_ID,
            "Errors": [capacity_error(a, "us-east-1a")],
            "Instances": [
                {"InstanceIds": [instance_id], "InstanceType": "m5.large", "Lifecycle": "on-demand"}
            ],
        },
    )
    calls = Calls(provider.clients.ec2)
    fleet = template(network, fleet_type="instant", vm_types={"t3.micro": 1, "m5.large": 1})
    hooks = hooks_for(provider)
    done = EC2FleetHandler(provider.aws).provision("req-i", fleet, 2)
    request = acquire("req-i", done)
    snapshot = hooks.machine_status([request])["req-i"]
    assert snapshot.message.startswith("InsufficientInstanceCapacity: We currently do not have sufficient")
    assert f"by offering: t3.micro in {a} (on-demand): insufficient capacity" in snapshot.message
    assert snapshot.message.endswith("(ohfp requests show req-i)")
    details = hooks.request_details(request)
    assert details["fleetId"] == FLEET_ID and details["instanceIds"] == [instance_id]
    assert details["shortfalls"] == [
        {
            "offering": f"t3.micro in {a} (on-demand)",
            "reason": "insufficient-capacity",
            "instanceType": "t3.micro",
            "subnetId": a,
            "zone": "us-east-1a",
            "lifecycle": "on-demand",
            "code": "InsufficientInstanceCapacity",
            "message": "We currently do not have sufficient t3.micro capacity in zone us-east-1a.",
            "source": "CreateFleet",
            "count": 1,
        }
    ]
    assert details["unavailableOfferings"] == [f"t3.micro:{a}:on-demand"]
    # The next fleet offers t3.micro in that subnet last, and last in priority.
    prioritized = template(
        network,
        fleet_type="instant",
        vm_types={"t3.micro": 1, "m5.large": 1},
        allocation_strategy_on_demand="prioritized",
    )
    EC2FleetHandler(provider.aws).provision("req-j", prioritized, 2)
    overrides = calls.params("CreateFleet")[-1]["LaunchTemplateConfigs"][0]["Overrides"]
    assert [(o["InstanceType"], o["SubnetId"], o["Priority"]) for o in overrides] == [
        ("t3.micro", b, 0.0),
        ("m5.large", a, 1.0),
        ("m5.large", b, 1.0),
        ("t3.micro", a, 2.0),
    ]


def test_a_retried_create_sends_the_first_attempts_overrides(provider: AwsProvider, network: Network) -> None:
    """What a create call's own errors teach is not used by a retry of that call: the same
    client token must carry the same parameters."""
    answer(
        provider.clients.ec2,
        "CreateFleet",
        lambda params: {
            "FleetId": FLEET_ID,
            "Errors": [capacity_error(network.subnet_ids[0], "us-east-1a")],
            "Instances": [],
        },
    )
    answer(provider.clients.ec2, "DeleteFleets", lambda params: {"SuccessfulFleetDeletions": []})
    calls = Calls(provider.clients.ec2)
    fleet = template(network, fleet_type="instant")
    handler = EC2FleetHandler(provider.aws)
    for _ in range(2):
        with pytest.raises(CapacityError):
            handler.provision("req-r", fleet, 1)
    first, second = (p["LaunchTemplateConfigs"][0]["Overrides"] for p in calls.params("CreateFleet"))
    assert first == second  # (the launch template is new: a refused create deletes its own)


def test_a_fleet_reporting_errors_is_explained_from_its_history(
    provider: AwsProvider, network: Network
) -> None:
    handler = EC2FleetHandler(provider.aws)
    done = handler.provision("req-h", template(network, vm_types={"t3.micro": 1, "m5.large": 1}), 3)
    client = provider.clients.ec2
    real = client.describe_fleets(FleetIds=[done.handle["fleet_id"]])["Fleets"][0]
    answer(
        client,
        "DescribeFleets",
        lambda params: {"Fleets": [{**real, "ActivityStatus": "error", "FulfilledCapacity": 1.0}]},
    )
    history = [
        {
            "EventType": "service-error",
            "EventInformation": {
                "EventSubType": "allLaunchSpecsTemporarilyBlacklisted",
                "EventDescription": "m5.large, ami-0a, Linux/UNIX, us-east-1b, InsufficientInstanceCapacity",
            },
            "Timestamp": "2026-01-01T00:00:00Z",
        }
    ]
    answer(
        client,
        "DescribeFleetHistory",
        lambda params: {"HistoryRecords": history, "FleetId": params["FleetId"]},
    )
    calls = Calls(client)
    request = acquire("req-h", done)
    state = handler.inspect([request])["req-h"]
    assert state.open is True
    assert [(s.offering, s.reason) for s in state.shortfalls] == [
        ("m5.large in us-east-1b", "insufficient-capacity")
    ]
    assert state.handle is not None and state.handle["shortfalls"][0]["zone"] == "us-east-1b"
    assert calls.params("DescribeFleetHistory")[0]["FleetId"] == done.handle["fleet_id"]
    again = handler.inspect([acquire("req-h", type(done)(handle=state.handle))])["req-h"]
    assert again.handle is None and again.shortfalls == state.shortfalls  # nothing new to store
    # The zone is matched to the subnet in it (DescribeSubnets), and that offering goes last.
    short = offerings.unavailable(provider.aws, template(network, vm_types={"t3.micro": 1, "m5.large": 1}))
    assert short("m5.large", network.subnet_ids[1]) and not short("m5.large", network.subnet_ids[0])
    assert not short("t3.micro", network.subnet_ids[1])


# -- Auto Scaling ---------------------------------------------------------------------------------


def test_a_short_group_is_explained_and_its_type_goes_last(provider: AwsProvider, network: Network) -> None:
    handler = ASGHandler(provider.aws, clock=lambda: 1_000.0)
    types = {"c5.large": 1, "m5.large": 1}
    done = handler.provision("req-g", template(network, vm_types=types), 3)
    client = provider.clients.autoscaling
    real = client.describe_auto_scaling_groups(AutoScalingGroupNames=["ohfp-req-g"])["AutoScalingGroups"][0]
    answer(
        client,
        "DescribeAutoScalingGroups",
        lambda params: {"AutoScalingGroups": [{**real, "Instances": real["Instances"][:1]}]},
    )
    message = (
        "We currently do not have sufficient c5.large capacity in the Availability Zone you requested"
        " (us-east-1a)."
    )
    activity = {
        "ActivityId": "a",
        "AutoScalingGroupName": "ohfp-req-g",
        "Cause": "c",
        "StartTime": "2026-01-01T00:00:00Z",
    }
    answer(
        client,
        "DescribeScalingActivities",
        lambda params: {"Activities": [{**activity, "StatusCode": "Failed", "StatusMessage": message}]},
    )
    state = handler.inspect([acquire("req-g", done)])["req-g"]
    assert [(s.offering, s.reason) for s in state.shortfalls] == [
        ("c5.large in us-east-1a", "insufficient-capacity")
    ]
    assert state.handle is not None
    calls = Calls(client)
    ASGHandler(provider.aws).provision("req-g2", template(network, vm_types=types), 2)
    (params,) = calls.params("CreateAutoScalingGroup")
    overrides = params["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == ["m5.large", "c5.large"]


# -- RunInstances ---------------------------------------------------------------------------------


def refuse_in(
    monkeypatch: pytest.MonkeyPatch, subnet: str, code: str = "InsufficientInstanceCapacity"
) -> None:
    """moto's RunInstances raises AWS's ``code`` in ``subnet`` and launches elsewhere."""
    from moto.ec2.exceptions import EC2ClientError

    original = InstanceBackend.run_instances

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("subnet_id") == subnet:
            raise EC2ClientError(code, f"We currently do not have sufficient t3.micro capacity in {subnet}.")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InstanceBackend, "run_instances", run)


def run_provider(tmp_path: Path, **offering_settings: Any) -> AwsProvider:
    settings: dict[str, Any] = {"handlers": {"order": ["RunInstances"], "RunInstances": {"maxPerCall": 1}}}
    if offering_settings:
        settings["offerings"] = offering_settings
    return make_provider(make_context(tmp_path, None, settings))


def test_run_instances_records_each_subnet_and_tries_it_last_next_time(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = network.subnet_ids
    refuse_in(monkeypatch, a)
    provider = run_provider(tmp_path)
    hooks = hooks_for(provider)
    calls = Calls(provider.clients.ec2)
    spec = make_template(network)
    provisioned = hooks.provision("req-r1", spec, 2)
    assert [p["SubnetId"] for p in calls.params("RunInstances")] == [a, b, b]
    assert provisioned.handle["shortfalls"][0]["subnet_id"] == a
    assert len(provisioned.machines) == 2  # the other subnet delivered: not short
    before = len(calls.params("RunInstances"))
    hooks.provision("req-r2", spec, 1)
    assert [p["SubnetId"] for p in calls.params("RunInstances")[before:]] == [b]


def after_one(monkeypatch: pytest.MonkeyPatch, code: str, message: str) -> list[int]:
    """moto's RunInstances launches once, then raises AWS's ``code``; counts its calls."""
    from moto.ec2.exceptions import EC2ClientError

    original = InstanceBackend.run_instances
    runs = [0]

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        runs[0] += 1
        if runs[0] > 1:
            raise EC2ClientError(code, message)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InstanceBackend, "run_instances", run)
    return runs


def test_run_instances_short_everywhere_says_why_per_subnet(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = run_provider(tmp_path, unavailableSeconds=0)
    after_one(monkeypatch, "InsufficientInstanceCapacity", "no t3.micro left")
    spec = make_template(network)
    hooks = hooks_for(provider)
    provisioned = hooks.provision("req-r3", spec, 3)
    snapshot = hooks.machine_status([acquire_request("req-r3", spec, 3, provisioned)])["req-r3"]
    assert snapshot.message.startswith("launched 1 of 3 instances: RunInstances: no t3.micro left")
    assert "by offering: t3.micro in subnet-" in snapshot.message
    assert "(on-demand): insufficient capacity" in snapshot.message
    assert offerings.unavailable(provider.aws, provider.templates.parse(spec)).keys == set()  # 0 s: not kept


def test_a_quota_error_after_some_launched_keeps_them(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = run_provider(tmp_path)
    runs = after_one(
        monkeypatch, "VcpuLimitExceeded", "You have requested more vCPU capacity than your limit"
    )
    provisioned = hooks_for(provider).provision("req-q", make_template(network), 3)
    assert len(provisioned.machines) == 1
    assert runs[0] == 2  # no other subnet tried: the quota is the account's
    (found,) = provisioned.handle["shortfalls"]
    assert (found["reason"], found["code"]) == ("quota", "VcpuLimitExceeded")


@pytest.fixture
def provider(aws_provider: AwsProvider) -> AwsProvider:
    return aws_provider

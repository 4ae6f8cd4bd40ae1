"""Auto Scaling group handler against moto.

moto ignores MixedInstancesPolicy (every instance is the launch template's type, on-demand)
and accepts a duplicate group name silently: the mixed policy is checked on the parameters
ohfp sends (``Calls``), and idempotency on what ohfp does (it looks the group up first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from ohfp_aws.apis.asg import ASGHandler
from ohfp_aws.vocabulary import TAG_REQUEST

from .aws_support import log_lines
from .conftest import REGION, Network
from .fleet_support import Calls, acquire, alive_ids, answer, aws_context, returns, template


@pytest.fixture
def provider(network: Network, tmp_path: Path) -> Any:
    return aws_context(tmp_path)


def group(name: str) -> Any:
    groups = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"]
    return groups[0] if groups else None


def test_provision_inspect_partial_and_full_return(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.autoscaling)
    handler = ASGHandler(provider)
    done = handler.provision("req-1", template(network), 3)
    assert done.handle["api"] == "ASG" and done.handle["group_name"] == "ohfp-req-1"
    created = group("ohfp-req-1")
    assert created is not None
    assert (created["MinSize"], created["MaxSize"], created["DesiredCapacity"]) == (0, 3, 3)
    assert set(created["VPCZoneIdentifier"].split(",")) == set(network.subnet_ids)
    assert created["LaunchTemplate"]["LaunchTemplateId"] == done.handle["launch_template_id"]
    tag = next(t for t in created["Tags"] if t["Key"] == TAG_REQUEST)
    assert tag["Value"] == "req-1" and tag["PropagateAtLaunch"] is True

    request = acquire("req-1", done)
    state = handler.inspect([request])["req-1"]
    ids = list(state.instance_ids)
    assert len(ids) == 3 and state.open is False and state.errors == ()
    ec2 = boto3.client("ec2", region_name=REGION)

    assert handler.release(returns(request, ids[:1])) == {}
    (detach,) = calls.params("DetachInstances")
    assert detach == {
        "AutoScalingGroupName": "ohfp-req-1",
        "InstanceIds": ids[:1],
        "ShouldDecrementDesiredCapacity": True,
    }
    after = group("ohfp-req-1")
    assert after is not None and after["DesiredCapacity"] == 2
    assert {i["InstanceId"] for i in after["Instances"]} == set(ids[1:])
    assert alive_ids(ec2, ids) == set(ids[1:])
    assert handler.inspect([request])["req-1"].open is False

    assert handler.release(returns(request, ids[1:])) == {}
    assert calls.params("DeleteAutoScalingGroup") == [
        {"AutoScalingGroupName": "ohfp-req-1", "ForceDelete": True}
    ]
    assert group("ohfp-req-1") is None
    assert alive_ids(ec2, ids) == set()
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_mixed_instances_policy_for_heterogeneous(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.autoscaling)
    tpl = template(
        network,
        price_type="heterogeneous",
        percent_on_demand=25,
        vm_types={"c5.xlarge": 1, "c5.2xlarge": 2},
        vm_types_on_demand={"m5.xlarge": 1},
        allocation_strategy="capacityOptimized",
        max_spot_price="0.4",
    )
    done = ASGHandler(provider).provision("req-2", tpl, 8)
    (params,) = calls.params("CreateAutoScalingGroup")
    assert "LaunchTemplate" not in params
    policy = params["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": done.handle["launch_template_id"],
        "Version": done.handle["launch_template_version"],
    }
    assert policy["LaunchTemplate"]["Overrides"] == [
        {"InstanceType": "m5.xlarge", "WeightedCapacity": "1"},  # the on-demand type first
        {"InstanceType": "c5.xlarge", "WeightedCapacity": "1"},
        {"InstanceType": "c5.2xlarge", "WeightedCapacity": "2"},
    ]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0,
        "OnDemandPercentageAboveBaseCapacity": 25,
        "OnDemandAllocationStrategy": "prioritized",
        "SpotAllocationStrategy": "capacity-optimized",
        "SpotMaxPrice": "0.4",
    }
    assert (params["MinSize"], params["MaxSize"], params["DesiredCapacity"]) == (0, 8, 8)


def test_spot_diversified_uses_lowest_price_pools(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.autoscaling)
    tpl = template(network, price_type="spot", vm_types={"c5.xlarge": 1}, allocation_strategy="diversified")
    ASGHandler(provider).provision("req-3", tpl, 2)
    distribution = calls.params("CreateAutoScalingGroup")[0]["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["SpotAllocationStrategy"] == "lowest-price"
    assert distribution["SpotInstancePools"] == 1


def test_provision_twice_makes_one_group(provider: Any, network: Network) -> None:
    """A first provisioning asks nothing before it creates; a second one is refused by AWS
    with AlreadyExists (the group is named after the request) and returns the group's handle
    from one describe."""
    calls = Calls(provider.clients.autoscaling)
    handler = ASGHandler(provider)
    first = handler.provision("req-4", template(network), 2)
    assert calls.names() == ["CreateAutoScalingGroup"]
    second = handler.provision("req-4", template(network), 2)
    assert calls.names()[1:] == ["CreateAutoScalingGroup", "DescribeAutoScalingGroups"]
    assert second.message == "group ohfp-req-4 exists"
    for key in (
        "api",
        "group_name",
        "target",
        "weights",
        "launch_template_id",
        "launch_template_created",
        "valid_until",
    ):
        assert second.handle[key] == first.handle[key]
    groups = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups()
    assert [g["AutoScalingGroupName"] for g in groups["AutoScalingGroups"]] == ["ohfp-req-4"]


def test_inspect_one_describe_for_many_groups(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.autoscaling)
    handler = ASGHandler(provider)
    a = acquire("req-5", handler.provision("req-5", template(network), 1))
    b = acquire("req-6", handler.provision("req-6", template(network), 2))
    gone = acquire(
        "req-7", handler.provision("req-7", template(network), 1), machine_ids=("i-0123456789abcdef0",)
    )
    boto3.client("autoscaling", region_name=REGION).delete_auto_scaling_group(
        AutoScalingGroupName="ohfp-req-7", ForceDelete=True
    )
    before = calls.names().count("DescribeAutoScalingGroups")
    states = handler.inspect([a, b, gone])
    assert calls.names().count("DescribeAutoScalingGroups") == before + 1
    assert calls.params("DescribeAutoScalingGroups")[-1]["AutoScalingGroupNames"] == [
        "ohfp-req-5",
        "ohfp-req-6",
        "ohfp-req-7",
    ]
    assert len(states["req-5"].instance_ids) == 1 and len(states["req-6"].instance_ids) == 2
    assert states["req-7"].instance_ids == ("i-0123456789abcdef0",)
    assert states["req-7"].errors == ("Auto Scaling group ohfp-req-7 no longer exists",)


def test_release_lowers_min_size_and_detaches_in_batches_of_20(network: Network, tmp_path: Path) -> None:
    provider = aws_context(tmp_path, {"handlers": {"ASG": {"minSize": 24}}})
    calls = Calls(provider.clients.autoscaling)
    handler = ASGHandler(provider)
    done = handler.provision("req-8", template(network), 25)
    request = acquire("req-8", done)
    ids = list(handler.inspect([request])["req-8"].instance_ids)
    assert len(ids) == 25
    assert handler.release(returns(request, ids[:22])) == {}
    assert calls.params("UpdateAutoScalingGroup") == [{"AutoScalingGroupName": "ohfp-req-8", "MinSize": 3}]
    detached = calls.params("DetachInstances")
    assert [len(d["InstanceIds"]) for d in detached] == [20, 2]
    after = group("ohfp-req-8")
    assert after is not None and after["DesiredCapacity"] == 3 and after["MinSize"] == 3


def test_unsupported(network: Network, tmp_path: Path) -> None:
    from attrs import evolve

    handler = ASGHandler(aws_context(tmp_path))
    assert handler.unsupported(template(network)) is None
    assert "subnetId" in (handler.unsupported(evolve(template(network), subnet_ids=())) or "")
    assert "fleetType" in (handler.unsupported(evolve(template(network), fleet_type="request")) or "")


def test_last_held_machine_deletes_the_group_with_what_hf_never_got(provider: Any, network: Network) -> None:
    """A machine terminated from the console makes the group launch a replacement Host
    Factory never hears of. When HF returns the last machine it holds, the group goes, and
    the replacement with it."""
    handler = ASGHandler(provider)
    done = handler.provision("req-r", template(network), 2)
    ids = list(handler.inspect([acquire("req-r", done)])["req-r"].instance_ids)
    client = boto3.client("autoscaling", region_name=REGION)
    client.set_desired_capacity(AutoScalingGroupName="ohfp-req-r", DesiredCapacity=3)  # the replacement
    everything = {i["InstanceId"] for i in group("ohfp-req-r")["Instances"]}
    assert len(everything) == 3
    ec2 = boto3.client("ec2", region_name=REGION)
    held_both = acquire("req-r", done, tuple(ids))  # core passes the machines HF still holds
    assert handler.release(returns(held_both, ids[:1])) == {}
    assert group("ohfp-req-r") is not None  # HF still holds one
    held_last = acquire("req-r", done, tuple(ids[1:]))
    assert handler.release(returns(held_last, ids[1:])) == {}
    assert group("ohfp-req-r") is None
    assert alive_ids(ec2, list(everything)) == set()
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_a_short_group_waits_until_its_deadline_and_says_why(provider: Any, network: Network) -> None:
    """moto always fills a group at once, so the group's answer is replaced at the client
    boundary (a group short of one instance) and so are its scaling activities."""
    handler = ASGHandler(provider, clock=lambda: 1_000.0)
    done = handler.provision("req-s", template(network), 3)
    assert done.handle["valid_until"] > 1_000  # spotFleetRequestExpiry (30 min) after the request
    request = acquire("req-s", done)
    client = provider.clients.autoscaling
    real = client.describe_auto_scaling_groups(AutoScalingGroupNames=["ohfp-req-s"])["AutoScalingGroups"][0]

    def short_group(params: dict[str, Any]) -> dict[str, Any]:
        return {"AutoScalingGroups": [{**real, "Instances": real["Instances"][:2]}]}

    answer(client, "DescribeAutoScalingGroups", short_group)
    answer(
        client,
        "DescribeScalingActivities",
        lambda params: {
            "Activities": [
                {
                    "ActivityId": "a-1",
                    "AutoScalingGroupName": "ohfp-req-s",
                    "Cause": "capacity",
                    "StartTime": "2026-01-01T00:00:00Z",
                    "StatusCode": "Failed",
                    "StatusMessage": "We currently do not have sufficient t3.micro capacity.",
                }
            ]
        },
    )
    state = handler.inspect([request])["req-s"]
    assert state.open is True  # still within its deadline
    no_capacity = "We currently do not have sufficient t3.micro capacity."
    assert state.errors == (f"Auto Scaling group ohfp-req-s could not launch: {no_capacity}",)
    handler.clock = lambda: float(done.handle["valid_until"])
    state = handler.inspect([request])["req-s"]
    assert state.open is False
    assert state.errors[0] == "Auto Scaling group ohfp-req-s expired with 2 of 3 units"


def test_the_group_and_its_launch_template_are_logged_when_made_and_deleted(
    provider: Any, network: Network
) -> None:
    handler = ASGHandler(provider)
    with log_lines() as logs:
        done = handler.provision("req-log", template(network), 1)
        request = acquire("req-log", done)
        assert (
            handler.release(returns(request, list(handler.inspect([request])["req-log"].instance_ids))) == {}
        )
    lt = done.handle["launch_template_id"]
    told = [(e["event"], e["kind"], e["resource_id"], e.get("made_for")) for e in logs if "kind" in e]
    assert told == [
        ("cloud resource created", "launch template", lt, None),
        ("cloud resource created", "Auto Scaling group", "ohfp-req-log", None),
        ("cloud resource deleted", "Auto Scaling group", "ohfp-req-log", "req-log"),
        ("cloud resource deleted", "launch template", lt, "req-log"),
    ]
    assert all(e["level"] == "info" for e in logs if "kind" in e)

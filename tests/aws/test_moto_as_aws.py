"""The tests' moto does what AWS does where ohfp-aws relies on it (``moto_as_aws``), and each
fix is still needed: moto as it is lacks it. A moto that learns one fails here, and its fix
can go."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError

from testbeds.moto_as_aws import boot_over_time, like_aws

from .conftest import REGION, Network

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import CreateAutoScalingGroupTypeTypeDef
    from mypy_boto3_ec2.type_defs import FilterTypeDef

ROLE = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"


@pytest.fixture
def moto_like_aws() -> None:
    """moto as it is: this module applies the fixes itself."""


def _spot_fleet(network: Network) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    reply = ec2.request_spot_fleet(
        SpotFleetRequestConfig={
            "IamFleetRole": ROLE,
            "TargetCapacity": 1,
            "AllocationStrategy": "lowestPrice",
            "LaunchSpecifications": [
                {"ImageId": network.ami_id, "InstanceType": "t3.micro", "SubnetId": network.subnet_ids[0]}
            ],
            "TagSpecifications": [
                {"ResourceType": "spot-fleet-request", "Tags": [{"Key": "ohfp:request-id", "Value": "req-1"}]}
            ],
        }
    )
    return reply["SpotFleetRequestId"]


def _tagged_spot_fleets() -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    filters: list[FilterTypeDef] = [
        {"Name": "resource-type", "Values": ["spot-fleet-request"]},
        {"Name": "key", "Values": ["ohfp:request-id"]},
    ]
    return [tag["ResourceId"] for tag in ec2.describe_tags(Filters=filters)["Tags"]]


@pytest.mark.parametrize("fixed", [False, True])
def test_describe_tags_lists_spot_fleet_requests(network: Network, fixed: bool) -> None:
    if fixed:
        with like_aws():
            request_id = _spot_fleet(network)
            assert _tagged_spot_fleets() == [request_id]
    else:
        _spot_fleet(network)
        assert _tagged_spot_fleets() == []


@pytest.mark.parametrize("fixed", [False, True])
def test_cancelling_a_spot_fleet_with_nothing_left_to_terminate(network: Network, fixed: bool) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    request_id = _spot_fleet(network)
    (instance,) = ec2.describe_spot_fleet_instances(SpotFleetRequestId=request_id)["ActiveInstances"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    if fixed:
        with like_aws():
            reply = ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[request_id], TerminateInstances=True)
        assert [r["SpotFleetRequestId"] for r in reply["SuccessfulFleetRequests"]] == [request_id]
    else:
        with pytest.raises(ClientError, match="InvalidParameterCombination"):
            ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[request_id], TerminateInstances=True)


@pytest.mark.parametrize("fixed", [False, True])
def test_a_cancelled_spot_fleet_request_stays(network: Network, fixed: bool) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    request_id = _spot_fleet(network)
    (instance,) = ec2.describe_spot_fleet_instances(SpotFleetRequestId=request_id)["ActiveInstances"]
    if fixed:
        with like_aws():
            ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[request_id], TerminateInstances=True)
            (request,) = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[request_id])[
                "SpotFleetRequestConfigs"
            ]
            assert request["SpotFleetRequestState"] == "cancelled_terminating"
            ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])  # again: nothing to say
    else:
        ec2.cancel_spot_fleet_requests(SpotFleetRequestIds=[request_id], TerminateInstances=True)
        assert ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"] == []
        with pytest.raises(AttributeError, match="launch_specs"):
            ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])


@pytest.mark.parametrize("fixed", [False, True])
def test_deleting_a_fleet_with_nothing_left_to_terminate(network: Network, fixed: bool) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    template = ec2.create_launch_template(
        LaunchTemplateName="lt", LaunchTemplateData={"ImageId": network.ami_id, "InstanceType": "t3.micro"}
    )["LaunchTemplate"]
    fleet = ec2.create_fleet(
        Type="instant",
        TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "on-demand"},
        LaunchTemplateConfigs=[
            {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateId": template["LaunchTemplateId"],
                    "Version": "1",
                },
                "Overrides": [{"SubnetId": network.subnet_ids[0]}],
            }
        ],
    )
    ec2.terminate_instances(InstanceIds=[i for group in fleet["Instances"] for i in group["InstanceIds"]])
    if fixed:
        with like_aws():
            reply = ec2.delete_fleets(FleetIds=[fleet["FleetId"]], TerminateInstances=True)
        assert [d["FleetId"] for d in reply["SuccessfulFleetDeletions"]] == [fleet["FleetId"]]
    else:
        with pytest.raises(ClientError, match="InvalidParameterCombination"):
            ec2.delete_fleets(FleetIds=[fleet["FleetId"]], TerminateInstances=True)


@pytest.mark.parametrize("fixed", [False, True])
def test_a_second_group_of_one_name(network: Network, fixed: bool) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    template = ec2.create_launch_template(
        LaunchTemplateName="lt", LaunchTemplateData={"ImageId": network.ami_id, "InstanceType": "t3.micro"}
    )["LaunchTemplate"]
    group: CreateAutoScalingGroupTypeTypeDef = {
        "AutoScalingGroupName": "ohfp-req-1",
        "MinSize": 0,
        "MaxSize": 1,
        "LaunchTemplate": {"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        "VPCZoneIdentifier": network.subnet_ids[0],
    }
    autoscaling.create_auto_scaling_group(**group)
    if fixed:
        with like_aws(), pytest.raises(ClientError, match="AlreadyExists"):
            autoscaling.create_auto_scaling_group(**group)
    else:
        autoscaling.create_auto_scaling_group(**group)  # moto replaces the group without a word


def _states(instance_ids: list[str]) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    reservations = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


@pytest.mark.parametrize("fixed", [False, True])
def test_instances_boot_over_time(network: Network, monkeypatch: pytest.MonkeyPatch, fixed: bool) -> None:
    """Pending until booted, from RunInstances and from an Auto Scaling group alike; one
    terminated while pending stays terminated."""
    ec2 = boto3.client("ec2", region_name=REGION)
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    boots = boot_over_time(monkeypatch) if fixed else None
    launched = ec2.run_instances(
        ImageId=network.ami_id,
        InstanceType="t3.micro",
        MinCount=3,
        MaxCount=3,
        SubnetId=network.subnet_ids[0],
    )["Instances"]
    template = ec2.create_launch_template(
        LaunchTemplateName="lt", LaunchTemplateData={"ImageId": network.ami_id, "InstanceType": "t3.micro"}
    )["LaunchTemplate"]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="ohfp-req-1",
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
        VPCZoneIdentifier=network.subnet_ids[0],
    )
    (group,) = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    ids = [i["InstanceId"] for i in launched] + [i["InstanceId"] for i in group["Instances"]]
    if boots is None:
        assert set(_states(ids).values()) == {"running"}
        return
    assert set(_states(ids).values()) == {"pending"}
    ec2.terminate_instances(InstanceIds=ids[:1])
    assert sorted(boots.boot()) == sorted(ids[1:])
    assert _states(ids) == {ids[0]: "terminated", **dict.fromkeys(ids[1:], "running")}
    assert boots.boot() == []

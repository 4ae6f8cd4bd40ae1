"""An AWS account on a hooked moto server for the crash and fault tests: its network, the
templates of each AWS API, and what it holds."""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from testbeds.hooked_moto import HookedMotoServer

MAX_NUMBER = 4
"""maxNumber of every template: small, so a leak or a duplicate shows."""

REGION = "us-east-1"
AMI_ID = "ami-0123456789abcdef0"  # from testbeds/amis.json (MOTO_AMIS_PATH, set in tests/conftest.py)
FAKE_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ROLE = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"


def client(endpoint: str, service: str) -> Any:
    """A boto3 client of the fake account on the moto server at ``endpoint``."""
    import boto3

    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_KEYS["aws_access_key_id"],
        aws_secret_access_key=FAKE_KEYS["aws_secret_access_key"],
    )


def add_network(endpoint: str, prefix: str, group_name: str) -> tuple[tuple[str, ...], str]:
    """A VPC ``<prefix>.0.0/16`` with a subnet in zones a and b and a security group on the
    moto server at ``endpoint``: the subnets' ids and the group's."""
    ec2 = client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock=f"{prefix}.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for cidr, zone in ((f"{prefix}.0.0/20", f"{REGION}a"), (f"{prefix}.16.0/20", f"{REGION}b"))
    )
    group = ec2.create_security_group(GroupName=group_name, Description=f"ohfp {group_name}", VpcId=vpc)
    return subnets, group["GroupId"]


@attrs.frozen
class Account:
    server: HookedMotoServer
    subnet_ids: tuple[str, ...]
    security_group_id: str

    def client(self, service: str) -> Any:
        return client(self.server.endpoint, service)


def templates_for(account: Account) -> list[dict[str, Any]]:
    attributes = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "1024"]}
    common = {
        "maxNumber": MAX_NUMBER,
        "attributes": attributes,
        "imageId": AMI_ID,
        "securityGroupIds": [account.security_group_id],
        "subnetId": list(account.subnet_ids),
    }
    return [
        {"templateId": "RunInstances", "providerApi": "RunInstances", "vmType": "t3.micro", **common},
        {
            "templateId": "EC2Fleet",
            "providerApi": "EC2Fleet",
            "fleetType": "request",
            "priceType": "spot",
            "vmTypes": {"t3.micro": 1},
            **common,
        },
        {"templateId": "ASG", "providerApi": "ASG", "vmType": "t3.micro", **common},
        {
            "templateId": "SpotFleet",
            "providerApi": "SpotFleet",
            "priceType": "spot",
            "vmTypes": {"t3.micro": 1},
            "fleetRole": ROLE,
            "allocationStrategy": "capacityOptimized",
            **common,
        },
    ]


APIS = ("RunInstances", "EC2Fleet", "ASG", "SpotFleet")


def instances(account: Account) -> list[dict[str, Any]]:
    ec2 = account.client("ec2")
    return [
        i
        for page in ec2.get_paginator("describe_instances").paginate()
        for r in page["Reservations"]
        for i in r["Instances"]
    ]


def tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def live(account: Account) -> set[str]:
    return {i["InstanceId"] for i in instances(account) if i["State"]["Name"] in ("pending", "running")}


class Clients(Protocol):
    """An account or a server that gives boto3 clients of its AWS."""

    def client(self, service: str) -> Any: ...


def leftovers(account: Clients) -> dict[str, list[str]]:
    """What ohfp made besides instances that is still there: launch templates, live EC2
    fleets, Auto Scaling groups and Spot Fleet requests."""
    ec2 = account.client("ec2")
    asg = account.client("autoscaling")
    return {
        "launch_templates": [
            t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
        ],
        "fleets": [
            f["FleetId"]
            for f in ec2.describe_fleets()["Fleets"]
            if f.get("FleetState") not in ("deleted", "deleted_running", "deleted_terminating")
        ],
        "groups": [
            g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]
        ],
        "spot_fleets": [
            c["SpotFleetRequestId"]
            for c in ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
            if not str(c.get("SpotFleetRequestState", "")).startswith("cancelled")
        ],
    }

"""Batched DescribeInstances / TerminateInstances and the instance → Machine mapping."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from ohfp_aws.access.ec2 import Ec2
from ohfp_aws.access.instances import describe_machines, terminate, to_machine
from ohfp_core.models import MachineState, PriceType

from .conftest import REGION, Network

UNKNOWN = "i-0000000000000000f"


def counted_client() -> tuple[Ec2, Counter[str]]:
    """ohfp's EC2 wrapper on a boto3 client and a counter of the operations the client calls
    (one per logical call/page)."""
    client = boto3.client("ec2", region_name=REGION)
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.ec2.*", lambda model, **_: calls.update([model.name]))
    return Ec2(client), calls


def launch(ec2: Ec2, network: Network, count: int) -> list[str]:
    ids: list[str] = []
    for _ in range(count):  # moto launches MinCount instances: one per call
        response = ec2.client.run_instances(
            ImageId=network.ami_id,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            SubnetId=network.subnet_ids[0],
        )
        ids.append(response["Instances"][0]["InstanceId"])
    return ids


def test_to_machine() -> None:
    launched = datetime(2024, 12, 19, 14, 52, 22, tzinfo=UTC)
    machine = to_machine(
        {
            "InstanceId": "i-0721bb06651cad7f1",
            "PrivateDnsName": "ip-10-0-57-22.ec2.internal",
            "PrivateIpAddress": "10.0.57.22",
            "PublicIpAddress": "3.3.3.3",
            "LaunchTime": launched,
            "InstanceType": "m5.large",
            "InstanceLifecycle": "spot",
            "State": {"Name": "shutting-down"},
            "StateReason": {
                "Code": "Server.SpotInstanceTermination",
                "Message": "Server.SpotInstanceTermination: Spot",
            },
            "Tags": [{"Key": "ohfp:weight", "Value": "2"}, {"Key": "team", "Value": "grid"}],
        }
    )
    assert machine.machine_id == "i-0721bb06651cad7f1"
    assert machine.name == "ip-10-0-57-22.ec2.internal"
    assert machine.state is MachineState.SHUTTING_DOWN
    assert (machine.private_ip, machine.public_ip) == ("10.0.57.22", "3.3.3.3")
    assert machine.launch_time == 1734619942
    assert machine.price_type is PriceType.SPOT
    assert machine.weight == 2
    assert machine.message.startswith("Server.SpotInstanceTermination")
    assert machine.tags == {"ohfp:weight": "2", "team": "grid"}


def test_to_machine_before_aws_names_it() -> None:
    machine = to_machine({"InstanceId": "i-1", "PrivateDnsName": "", "State": {"Name": "pending"}})
    assert machine.name == "i-1"
    assert machine.price_type is PriceType.ONDEMAND and machine.weight == 1 and machine.private_ip is None


def test_describe_is_chunked(network: Network) -> None:
    ec2, calls = counted_client()
    ids = launch(ec2, network, 5)
    calls.clear()
    machines = describe_machines(ec2, [*ids, ids[0]], chunk_size=2)  # the duplicate is described once
    assert set(machines) == set(ids)
    assert all(m.state is MachineState.RUNNING for m in machines.values())
    assert calls["DescribeInstances"] == 3


def test_describe_skips_unknown_ids(network: Network) -> None:
    ec2, calls = counted_client()
    ids = launch(ec2, network, 2)
    calls.clear()
    assert set(describe_machines(ec2, [ids[0], UNKNOWN, ids[1]])) == set(ids)
    assert calls["DescribeInstances"] == 2  # the first names the unknown id; the second omits it
    assert describe_machines(ec2, [UNKNOWN]) == {}


def test_describe_retries_ids_not_yet_visible(network: Network) -> None:
    ec2, _ = counted_client()
    (instance_id,) = launch(ec2, network, 1)
    sleeps: list[float] = []
    assert describe_machines(ec2, [UNKNOWN], retries=2, interval_sec=0.5, sleep=sleeps.append) == {}
    assert sleeps == [0.5, 0.5]
    assert set(describe_machines(ec2, [instance_id], retries=2, sleep=sleeps.append)) == {instance_id}
    assert sleeps == [0.5, 0.5]  # nothing missing, no wait


def test_terminate_is_batched_and_tolerates_gone_ids(network: Network) -> None:
    ec2, calls = counted_client()
    ids = launch(ec2, network, 5)
    calls.clear()
    assert terminate(ec2, [*ids, UNKNOWN], chunk_size=2) == {}
    states = {m.state for m in describe_machines(ec2, ids).values()}
    assert states <= {MachineState.SHUTTING_DOWN, MachineState.TERMINATED}
    assert calls["TerminateInstances"] >= 3
    assert terminate(ec2, ids) == {}  # again: already terminated is fine


def test_terminate_reports_other_errors_per_id(network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend

    ec2, _ = counted_client()
    ids = launch(ec2, network, 2)

    def refuse(self: Any, instance_ids: list[str]) -> None:
        raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform this operation.")

    monkeypatch.setattr(InstanceBackend, "terminate_instances", refuse)
    errors = terminate(ec2, ids)
    assert set(errors) == set(ids)
    assert errors[ids[0]] == (
        "TerminateInstances: You are not authorized to perform this operation. (UnauthorizedOperation)"
    )

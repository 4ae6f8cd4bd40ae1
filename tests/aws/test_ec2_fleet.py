"""EC2 Fleet handler against moto.

moto ignores ClientToken, never reports capacity errors and does not implement ModifyFleet:
those paths are checked on the parameters ohfp sends (``Calls``) and with answers injected
at the client (``answer``), as each test says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from ohfp_aws.apis.common import describe_batched, fleet_state
from ohfp_aws.apis.ec2_fleet import EC2FleetHandler
from ohfp_aws.supply.overrides import on_demand_units
from ohfp_aws.vocabulary import TAG_REQUEST, client_token
from ohfp_core.errors import CapacityError, CloudError

from .conftest import REGION, Network
from .fleet_support import (
    Calls,
    acquire,
    alive_ids,
    answer,
    aws_context,
    moto_ec2_backend,
    returns,
    template,
)


@pytest.fixture
def provider(network: Network, tmp_path: Path) -> Any:
    return aws_context(tmp_path)


@pytest.fixture
def calls(provider: Any) -> Calls:
    return Calls(provider.clients.ec2)


def fleet_ids_of(ec2: Any, fleet_id: str) -> list[str]:
    return [i["InstanceId"] for i in ec2.describe_fleet_instances(FleetId=fleet_id)["ActiveInstances"]]


def test_request_fleet_provision_and_inspect(provider: Any, network: Network, calls: Calls) -> None:
    handler = EC2FleetHandler(provider)
    done = handler.provision("req-1", template(network), 3)
    handle = done.handle
    assert handle["api"] == "EC2Fleet" and handle["fleet_type"] == "request" and handle["target"] == 3
    assert handle["launch_template_created"] is True
    ec2 = boto3.client("ec2", region_name=REGION)
    lt = ec2.describe_launch_templates(LaunchTemplateNames=["ohfp-req-1"])["LaunchTemplates"][0]
    assert lt["LaunchTemplateId"] == handle["launch_template_id"]
    fleet = ec2.describe_fleets(FleetIds=[handle["fleet_id"]])["Fleets"][0]
    assert {"Key": TAG_REQUEST, "Value": "req-1"} in fleet["Tags"]
    (params,) = calls.params("CreateFleet")
    assert params["ClientToken"] == client_token("req-1", "fleet")
    assert params["ExcessCapacityTerminationPolicy"] == "no-termination"
    assert params["TerminateInstancesWithExpiration"] is False
    assert params["ValidUntil"].timestamp() == handle["valid_until"]

    state = handler.inspect([acquire("req-1", done)])["req-1"]
    assert sorted(state.instance_ids) == sorted(fleet_ids_of(ec2, handle["fleet_id"]))
    assert len(state.instance_ids) == 3
    assert state.open is False and state.errors == ()
    # instances carry ohfp's tags through the launch template
    tags = ec2.describe_instances(InstanceIds=[state.instance_ids[0]])["Reservations"][0]["Instances"][0][
        "Tags"
    ]
    assert {"Key": TAG_REQUEST, "Value": "req-1"} in tags
    assert calls.names().count("DescribeFleets") == 1


def test_maintain_partial_then_full_return(provider: Any, network: Network, calls: Calls) -> None:
    # moto does not implement ModifyFleet: the client answers it here and the test checks
    # what ohfp asked for.
    answer(provider.clients.ec2, "ModifyFleet", lambda params: {"Return": True})
    handler = EC2FleetHandler(provider)
    done = handler.provision("req-2", template(network, fleet_type="maintain"), 3)
    request = acquire("req-2", done)
    ids = list(handler.inspect([request])["req-2"].instance_ids)
    ec2 = boto3.client("ec2", region_name=REGION)

    assert handler.release(returns(request, ids[:1])) == {}
    (modify,) = calls.params("ModifyFleet")
    assert modify["FleetId"] == done.handle["fleet_id"]
    assert modify["TargetCapacitySpecification"]["TotalTargetCapacity"] == 2
    assert modify["ExcessCapacityTerminationPolicy"] == "no-termination"
    assert alive_ids(ec2, ids) == set(ids[1:])
    assert "DeleteFleets" not in calls.names()
    assert ec2.describe_launch_templates(LaunchTemplateIds=[done.handle["launch_template_id"]])

    assert handler.release(returns(request, ids[1:])) == {}
    assert len(calls.params("ModifyFleet")) == 1  # the last machines delete the fleet instead
    (delete,) = calls.params("DeleteFleets")
    assert delete == {"FleetIds": [done.handle["fleet_id"]], "TerminateInstances": True}
    assert alive_ids(ec2, ids) == set()
    fleet = ec2.describe_fleets(FleetIds=[done.handle["fleet_id"]])["Fleets"][0]
    assert fleet["FleetState"].startswith("deleted")
    assert (
        ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": ["ohfp-req-2"]}])[
            "LaunchTemplates"
        ]
        == []
    )


def test_returning_two_fleets_at_once_deletes_both(provider: Any, network: Network) -> None:
    """One return naming the last machines of two fleets deletes both fleets. (moto refuses a
    DeleteFleets whose fleets have no instances left after deleting only the first fleet of
    the call: each is then asked on its own.)"""
    handler = EC2FleetHandler(provider)
    ec2 = boto3.client("ec2", region_name=REGION)
    items = []
    fleet_ids = []
    for request_id in ("req-a", "req-b"):
        done = handler.provision(request_id, template(network), 2)
        request = acquire(request_id, done)
        ids = list(handler.inspect([request])[request_id].instance_ids)
        request = acquire(request_id, done, tuple(ids))
        items += returns(request, ids)
        fleet_ids.append(done.handle["fleet_id"])
    assert handler.release(items) == {}
    states = {f["FleetId"]: f["FleetState"] for f in ec2.describe_fleets(FleetIds=fleet_ids)["Fleets"]}
    assert all(state.startswith("deleted") for state in states.values()), states


def test_request_fleet_partial_return_changes_no_target(
    provider: Any, network: Network, calls: Calls
) -> None:
    # AWS allows ModifyFleet on maintain fleets only; a request fleet never replaces.
    handler = EC2FleetHandler(provider)
    done = handler.provision("req-3", template(network), 2)
    request = acquire("req-3", done)
    ids = list(handler.inspect([request])["req-3"].instance_ids)
    assert handler.release(returns(request, ids[:1])) == {}
    assert "ModifyFleet" not in calls.names() and "DeleteFleets" not in calls.names()
    ec2 = boto3.client("ec2", region_name=REGION)
    assert alive_ids(ec2, ids) == set(ids[1:])


def test_heterogeneous_split_and_overrides(network: Network, tmp_path: Path) -> None:
    provider = aws_context(tmp_path, {"handlers": {"EC2Fleet": {"maxSpotPercent": 60}}})
    calls = Calls(provider.clients.ec2)
    handler = EC2FleetHandler(provider)
    tpl = template(
        network,
        price_type="heterogeneous",
        percent_on_demand=25,
        vm_types={"c5.xlarge": 1, "c5.2xlarge": 2},
        vm_types_on_demand={"m5.xlarge": 1},
        allocation_strategy="capacityOptimizedPrioritized",
        max_spot_price="0.5",
    )
    handler.provision("req-4", tpl, 10)
    (params,) = calls.params("CreateFleet")
    # 25 % of 10 rounds to 3 on-demand, but spot may take only 60 % (6): 4 on-demand
    assert params["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 10,
        "OnDemandTargetCapacity": 4,
        "SpotTargetCapacity": 6,
        "DefaultTargetCapacityType": "spot",
    }
    assert params["SpotOptions"] == {"AllocationStrategy": "capacity-optimized-prioritized"}
    assert params["OnDemandOptions"] == {"AllocationStrategy": "prioritized"}
    overrides = params["LaunchTemplateConfigs"][0]["Overrides"]
    assert len(overrides) == 3 * 2  # types × subnets
    by_type = {(o["InstanceType"], o["SubnetId"]): o for o in overrides}
    assert set(by_type) == {
        (t, s) for t in ("c5.xlarge", "c5.2xlarge", "m5.xlarge") for s in network.subnet_ids
    }
    first = by_type[("m5.xlarge", network.subnet_ids[0])]
    assert first["Priority"] == 0 and first["WeightedCapacity"] == 1 and first["MaxPrice"] == "0.5"
    assert by_type[("c5.2xlarge", network.subnet_ids[1])]["WeightedCapacity"] == 2


def test_on_demand_units() -> None:
    base = template(Network("vpc", ("s",), "sg"))
    from attrs import evolve

    assert on_demand_units(base, 5) == 5
    assert on_demand_units(evolve(base, price_type="spot"), 5, 10) == 0
    hetero = evolve(base, price_type="heterogeneous", percent_on_demand=50)
    assert on_demand_units(hetero, 5) == 3  # 2.5 rounds half up
    assert on_demand_units(evolve(hetero, percent_on_demand=None), 5) == 0
    assert on_demand_units(hetero, 10, max_spot_percent=20) == 8


def test_describe_batched_asks_one_by_one_after_not_found() -> None:
    # Shared by DescribeFleets and DescribeSpotFleetRequests; moto leaves unknown ids out
    # instead of failing the batch, so AWS's behaviour is played by the describer here.
    asked: list[list[str]] = []

    def describe(ids: list[str]) -> dict[str, dict[str, Any]]:
        asked.append(ids)
        if "ghost" in ids:
            raise CloudError("DescribeFleets: unknown", "InvalidFleetId.NotFound")
        return {i: {"Id": i} for i in ids}

    found = describe_batched(["a", "b", "ghost", "c", "a"], 2, describe)
    assert found == {"a": {"Id": "a"}, "b": {"Id": "b"}, "c": {"Id": "c"}}
    assert asked == [["a", "b"], ["ghost", "c"], ["ghost"], ["c"]]

    def throttled(ids: list[str]) -> dict[str, dict[str, Any]]:
        raise CloudError("DescribeFleets: slow down", "RequestLimitExceeded", True)

    with pytest.raises(CloudError, match="slow down"):
        describe_batched(["a"], 2, throttled)

    def throttled_when_alone(ids: list[str]) -> dict[str, dict[str, Any]]:
        if len(ids) > 1:
            raise CloudError("DescribeFleets: unknown", "InvalidFleetId.NotFound")
        raise CloudError("DescribeFleets: slow down", "RequestLimitExceeded", True)

    with pytest.raises(CloudError, match="slow down"):  # only not-found is passed over
        describe_batched(["a", "b"], 2, throttled_when_alone)


def test_fleet_state_rule() -> None:
    # Shared by the EC2 Fleet and Spot Fleet handlers; each passes its own wording.
    def closed(state: str, expired: bool) -> str:
        return "expired" if expired else f"is {state}"

    def rule(**fields: Any) -> Any:
        values: dict[str, Any] = {
            "state": "active",
            "target": 3.0,
            "fulfilled": 2.0,
            "valid_until": 100.0,
            "now": 50.0,
            "activity_status": None,
            "closed": closed,
            "launch_errors": "launch failed",
        }
        return fleet_state(("i-1", "i-2"), **{**values, **fields})

    short = rule()
    assert short.open is True and short.errors == () and short.instance_ids == ("i-1", "i-2")
    assert rule(now=100.0).errors == ("expired with 2 of 3 units",)
    assert rule(state="failed", activity_status="error").errors == (
        "is failed with 2 of 3 units",
        "launch failed",
    )
    assert rule(valid_until=None, now=1e12).open is True  # no deadline: never expires
    assert rule(now=100.0, fulfilled=2.5).errors == ("expired with 2.5 of 3 units",)
    full = rule(fulfilled=3.0, now=200.0, activity_status="error")
    assert full.open is False and full.errors == ()


def test_provision_twice_reuses_launch_template_and_token(
    provider: Any, network: Network, calls: Calls
) -> None:
    # moto ignores ClientToken (it would create a second fleet); AWS returns the first fleet
    # for the same token and parameters. So this checks that both attempts send the same
    # token and identical parameters, and reuse the one launch template.
    handler = EC2FleetHandler(provider)
    first = handler.provision("req-5", template(network), 2)
    second = handler.provision("req-5", template(network), 2)
    one, two = calls.params("CreateFleet")
    assert one == two and one["ClientToken"] == client_token("req-5", "fleet")
    assert first.handle["launch_template_id"] == second.handle["launch_template_id"]
    assert first.handle["valid_until"] == second.handle["valid_until"]
    ec2 = boto3.client("ec2", region_name=REGION)
    names = [lt["LaunchTemplateName"] for lt in ec2.describe_launch_templates()["LaunchTemplates"]]
    assert names.count("ohfp-req-5") == 1


def test_instant_fleet_records_instances(provider: Any, network: Network) -> None:
    handler = EC2FleetHandler(provider)
    done = handler.provision("req-6", template(network, fleet_type="instant"), 2)
    assert len(done.handle["instance_ids"]) == 2 and done.handle["errors"] == []
    state = handler.inspect([acquire("req-6", done)])["req-6"]
    assert sorted(state.instance_ids) == sorted(done.handle["instance_ids"])
    assert state.open is False and state.errors == ()
    request = acquire("req-6", done)
    assert handler.release(returns(request, done.handle["instance_ids"])) == {}
    ec2 = boto3.client("ec2", region_name=REGION)
    assert alive_ids(ec2, done.handle["instance_ids"]) == set()


def test_instant_fleet_capacity_errors_raise_and_clean_up(provider: Any, network: Network) -> None:
    # moto never reports capacity errors: the client answers CreateFleet as AWS does when
    # no override could launch anything, and DeleteFleets for that (moto-unknown) fleet.
    calls = Calls(provider.clients.ec2)
    answer(
        provider.clients.ec2,
        "DeleteFleets",
        lambda params: {"SuccessfulFleetDeletions": [{"FleetId": params["FleetIds"][0]}]},
    )
    answer(
        provider.clients.ec2,
        "CreateFleet",
        lambda params: {
            "FleetId": "fleet-11111111-2222-3333-4444-555555555555",
            "Errors": [
                {"ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "no t3.micro in us-east-1a"}
            ],
            "Instances": [],
        },
    )
    handler = EC2FleetHandler(provider)
    with pytest.raises(CapacityError, match=r"no t3\.micro"):
        handler.provision("req-7", template(network, fleet_type="instant"), 2)
    ec2 = boto3.client("ec2", region_name=REGION)
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    assert calls.params("DeleteFleets") == [
        {"FleetIds": ["fleet-11111111-2222-3333-4444-555555555555"], "TerminateInstances": True}
    ]


def test_instant_fleet_partial_capacity_is_an_error_in_status(provider: Any, network: Network) -> None:
    # Injected reply (moto always fulfils): one instance of two, and AWS's error for the rest.
    ec2 = boto3.client("ec2", region_name=REGION)
    instance_id = ec2.run_instances(ImageId=network.ami_id, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"
    ][0]["InstanceId"]
    answer(
        provider.clients.ec2,
        "CreateFleet",
        lambda params: {
            "FleetId": "fleet-11111111-2222-3333-4444-555555555555",
            "Errors": [{"ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "short"}],
            "Instances": [
                {"InstanceIds": [instance_id], "InstanceType": "t3.micro", "Lifecycle": "on-demand"}
            ],
        },
    )
    handler = EC2FleetHandler(provider)
    done = handler.provision("req-8", template(network, fleet_type="instant"), 2)
    assert done.handle["instance_ids"] == [instance_id]
    state = handler.inspect([acquire("req-8", done)])["req-8"]
    assert instance_id in state.instance_ids
    assert state.errors == ("InsufficientInstanceCapacity: short",)


def test_create_fleet_refused_raises_capacity_error(
    provider: Any, network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.ec2.exceptions import EC2ClientError

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise EC2ClientError("InsufficientInstanceCapacity", "We currently do not have sufficient capacity")

    monkeypatch.setattr(type(moto_ec2_backend()), "create_fleet", refuse)
    with pytest.raises(CapacityError):
        EC2FleetHandler(provider).provision("req-9", template(network), 2)
    ec2 = boto3.client("ec2", region_name=REGION)
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_request_fleet_short_of_target_expires(provider: Any, network: Network) -> None:
    handler = EC2FleetHandler(provider)
    done = handler.provision("req-10", template(network), 3)
    # moto always fulfils at once; make its fleet report one unit short
    moto_ec2_backend().fleets[done.handle["fleet_id"]].fulfilled_capacity = 2.0
    request = acquire("req-10", done)
    assert handler.inspect([request])["req-10"].open is True
    later = EC2FleetHandler(provider, clock=lambda: done.handle["valid_until"] + 1)
    state = later.inspect([request])["req-10"]
    assert state.open is False
    assert state.errors == (f"EC2 fleet {done.handle['fleet_id']} expired with 2 of 3 units",)


def test_inspect_batches_and_reports_missing_fleet(provider: Any, network: Network, calls: Calls) -> None:
    handler = EC2FleetHandler(provider)
    a = acquire("req-11", handler.provision("req-11", template(network), 1))
    b = acquire("req-12", handler.provision("req-12", template(network), 1))
    ghost = acquire("req-13", handler.provision("req-13", template(network), 1))
    ghost = type(ghost)(
        request_id="req-13",
        kind=ghost.kind,
        handle={**ghost.handle, "fleet_id": "fleet-00000000-0000-0000-0000-000000000000"},
        machine_ids=("i-0123456789abcdef0",),
    )
    states = handler.inspect([a, b, ghost])
    assert calls.names().count("DescribeFleets") == 1
    assert len(states["req-11"].instance_ids) == 1 and len(states["req-12"].instance_ids) == 1
    assert states["req-13"].open is False and "no longer exists" in states["req-13"].errors[0]
    assert states["req-13"].instance_ids == ("i-0123456789abcdef0",)


def test_unsupported(tmp_path: Path) -> None:
    handler = EC2FleetHandler(aws_context(tmp_path))
    net = Network("vpc", ("s",), "sg")
    from attrs import evolve

    assert handler.unsupported(template(net)) is None
    assert "imageId" in (handler.unsupported(evolve(template(net), image_id=None)) or "")
    assert handler.unsupported(evolve(template(net), image_id=None, launch_template_id="lt-1")) is None
    assert "vmType" in (handler.unsupported(evolve(template(net), vm_types={})) or "")

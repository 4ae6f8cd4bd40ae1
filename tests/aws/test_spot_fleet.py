"""Spot Fleet handler against moto.

moto ignores ClientToken, always fulfils at once, never reports ValidUntil and drops a
cancelled request from describe: idempotency is checked on the token ohfp sends (``Calls``),
a short fleet by setting moto's fulfilled capacity, and expiry with the handler's clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from ohfp_aws.apis.spot_fleet import SpotFleetHandler
from ohfp_aws.vocabulary import client_token

from .aws_support import log_lines
from .conftest import REGION, Network
from .fleet_support import Calls, acquire, alive_ids, aws_context, moto_ec2_backend, returns, template

ROLE = "arn:aws:iam::123456789012:role/spot-fleet"


@pytest.fixture
def provider(network: Network, tmp_path: Path) -> Any:
    return aws_context(tmp_path)


def spot_template(network: Network, **fields: Any) -> Any:
    return template(network, **{"price_type": "spot", "fleet_role": ROLE, **fields})


def fleet_of(fleet_id: str) -> Any:
    ec2 = boto3.client("ec2", region_name=REGION)
    configs = ec2.describe_spot_fleet_requests(SpotFleetRequestIds=[fleet_id])["SpotFleetRequestConfigs"]
    return configs[0] if configs else None


def test_request_parameters(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.ec2)
    handler = SpotFleetHandler(provider)
    tpl = spot_template(
        network,
        price_type="heterogeneous",
        percent_on_demand=30,
        vm_types={"m5.large": 1, "m5.xlarge": 2},
        max_spot_price="0.2",
        allocation_strategy="lowestPrice",
        pools_count=2,
    )
    done = handler.provision("req-1", tpl, 10)
    (call,) = calls.params("RequestSpotFleet")
    config = call["SpotFleetRequestConfig"]
    assert config["IamFleetRole"] == ROLE
    assert config["AllocationStrategy"] == "lowestPrice" and config["InstancePoolsToUseCount"] == 2
    assert config["TargetCapacity"] == 10 and config["OnDemandTargetCapacity"] == 3
    assert config["OnDemandAllocationStrategy"] == "lowestPrice"
    assert config["Type"] == "request" and config["SpotPrice"] == "0.2"
    assert config["TerminateInstancesWithExpiration"] is False
    assert config["ValidUntil"].timestamp() == done.handle["valid_until"]
    assert config["ClientToken"] == client_token("req-1", "spotfleet")
    overrides = config["LaunchTemplateConfigs"][0]["Overrides"]
    assert {(o["InstanceType"], o["SubnetId"], o["WeightedCapacity"]) for o in overrides} == {
        (t, s, w) for t, w in (("m5.large", 1), ("m5.xlarge", 2)) for s in network.subnet_ids
    }
    assert config["TagSpecifications"][0]["ResourceType"] == "spot-fleet-request"


def test_default_allocation_strategy_is_always_set(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.ec2)
    SpotFleetHandler(provider).provision("req-2", spot_template(network), 1)
    config = calls.params("RequestSpotFleet")[0]["SpotFleetRequestConfig"]
    assert config["AllocationStrategy"] == "capacityOptimized"
    assert "OnDemandTargetCapacity" not in config


def test_maintain_partial_then_full_return(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.ec2)
    handler = SpotFleetHandler(provider)
    done = handler.provision("req-3", spot_template(network, fleet_type="maintain"), 3)
    assert "ValidUntil" not in calls.params("RequestSpotFleet")[0]["SpotFleetRequestConfig"]
    fleet_id = done.handle["spot_fleet_request_id"]
    request = acquire("req-3", done)
    state = handler.inspect([request])["req-3"]
    ids = list(state.instance_ids)
    assert len(ids) == 3 and state.open is False and state.errors == ()
    ec2 = boto3.client("ec2", region_name=REGION)

    assert handler.release(returns(request, ids[:1])) == {}
    assert calls.params("ModifySpotFleetRequest") == [
        {
            "SpotFleetRequestId": fleet_id,
            "TargetCapacity": 2,
            "ExcessCapacityTerminationPolicy": "noTermination",
        }
    ]
    current = fleet_of(fleet_id)
    assert current is not None and current["SpotFleetRequestConfig"]["TargetCapacity"] == 2
    assert alive_ids(ec2, ids) == set(ids[1:])  # nothing terminated but the returned one

    assert handler.release(returns(request, ids[1:])) == {}
    assert calls.params("CancelSpotFleetRequests")[0] == {
        "SpotFleetRequestIds": [fleet_id],
        "TerminateInstances": True,
    }
    assert len(calls.params("ModifySpotFleetRequest")) == 1
    # moto refuses TerminateInstances on a request with no instances left, so ohfp cancels
    # again without it (and moto then keeps the request as cancelled_running).
    cancelled = fleet_of(fleet_id)
    assert cancelled is None or cancelled["SpotFleetRequestState"].startswith("cancelled")
    assert alive_ids(ec2, ids) == set()
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_request_fleet_partial_return_keeps_target(provider: Any, network: Network) -> None:
    # AWS modifies maintain requests only; a request fleet never replaces what it lost.
    calls = Calls(provider.clients.ec2)
    handler = SpotFleetHandler(provider)
    done = handler.provision("req-4", spot_template(network), 2)
    request = acquire("req-4", done)
    ids = list(handler.inspect([request])["req-4"].instance_ids)
    assert handler.release(returns(request, ids[:1])) == {}
    assert "ModifySpotFleetRequest" not in calls.names() and "CancelSpotFleetRequests" not in calls.names()


def test_expired_partial_fulfilment_closes_with_message(provider: Any, network: Network) -> None:
    handler = SpotFleetHandler(provider)
    done = handler.provision("req-5", spot_template(network), 4)
    fleet_id = done.handle["spot_fleet_request_id"]
    moto_ec2_backend().spot_fleet_requests[fleet_id].fulfilled_capacity = 3.0  # moto always fulfils
    request = acquire("req-5", done)
    assert handler.inspect([request])["req-5"].open is True  # still valid: may deliver the rest
    later = SpotFleetHandler(provider, clock=lambda: done.handle["valid_until"] + 1)
    state = later.inspect([request])["req-5"]
    assert state.open is False
    assert state.errors == ("spot fleet expired with 3 of 4 units",)
    assert len(state.instance_ids) == 4  # what it launched is still reported


def test_cancelled_request_reports_known_machines(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.ec2)
    handler = SpotFleetHandler(provider)
    a = acquire("req-6", handler.provision("req-6", spot_template(network), 1))
    b = handler.provision("req-7", spot_template(network), 1)
    boto3.client("ec2", region_name=REGION).cancel_spot_fleet_requests(
        SpotFleetRequestIds=[b.handle["spot_fleet_request_id"]], TerminateInstances=False
    )
    b_request = acquire("req-7", b, machine_ids=("i-0123456789abcdef0",))
    states = handler.inspect([a, b_request])
    assert calls.names().count("DescribeSpotFleetRequests") == 1
    assert len(states["req-6"].instance_ids) == 1
    assert states["req-7"].open is False
    assert "i-0123456789abcdef0" in states["req-7"].instance_ids


def test_unsupported(network: Network, tmp_path: Path) -> None:
    from attrs import evolve

    handler = SpotFleetHandler(aws_context(tmp_path))
    assert handler.unsupported(spot_template(network)) is None
    assert "fleetRole" in (handler.unsupported(template(network)) or "")
    assert "fleetType" in (handler.unsupported(evolve(spot_template(network), fleet_type="instant")) or "")


def test_the_spot_fleet_request_is_logged_when_made_and_cancelled(provider: Any, network: Network) -> None:
    handler = SpotFleetHandler(provider)
    with log_lines() as logs:
        done = handler.provision("req-log", spot_template(network), 1)
        request = acquire("req-log", done)
        assert (
            handler.release(returns(request, list(handler.inspect([request])["req-log"].instance_ids))) == {}
        )
    fleet_id = done.handle["spot_fleet_request_id"]
    told = [
        (e["event"], e["resource_id"], e.get("made_for"))
        for e in logs
        if e.get("kind") == "spot fleet request"
    ]
    assert told == [
        ("cloud resource created", fleet_id, None),
        ("cloud resource deleted", fleet_id, "req-log"),
    ]

"""Request handles are attrs classes stored as JSON mappings; the dicts ohfp-aws 0.1 wrote
(literal below, as its handlers wrote them for every API) still load and still work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ohfp_aws.apis import handles
from ohfp_aws.apis.handles import FleetHandle, GroupHandle, InstancesHandle
from ohfp_aws.provider import AwsProvider
from ohfp_core.models import CloudRequest, MachineState, RequestKind, ReturnItem

from .aws_support import hooks_for
from .conftest import Network, make_template

LT = {
    "launch_template_id": "lt-0123456789abcdef0",
    "launch_template_version": "1",
    "launch_template_created": True,
    "launch_template_created_at": 1_750_000_000,
}
OLD_HANDLES: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "EC2Fleet-instant": (
        FleetHandle,
        {
            "api": "EC2Fleet",
            "fleet_type": "instant",
            "target": 2,
            "weights": {"t3.micro": 1},
            **LT,
            "fleet_id": "fleet-11111111-2222-3333-4444-555555555555",
            "instance_ids": ["i-0123456789abcdef0"],
            "errors": ["InsufficientInstanceCapacity: short"],
        },
    ),
    "EC2Fleet-request": (
        FleetHandle,
        {
            "api": "EC2Fleet",
            "fleet_type": "request",
            "target": 3,
            "weights": {"t3.micro": 1, "t3.large": 2},
            **LT,
            "valid_until": 1_750_001_800,
            "fleet_id": "fleet-11111111-2222-3333-4444-555555555555",
        },
    ),
    "SpotFleet-maintain": (
        FleetHandle,
        {
            "api": "SpotFleet",
            "fleet_type": "maintain",
            "target": 3,
            "weights": {"m5.large": 1},
            **LT,
            "launch_template_created_at": None,
            "valid_until": 1_750_001_800,
            "spot_fleet_request_id": "sfr-11111111-2222-3333-4444-555555555555",
        },
    ),
    "ASG": (
        GroupHandle,
        {
            "api": "ASG",
            "group_name": "ohfp-req-1",
            "target": 3,
            "weights": {"t3.micro": 1},
            **LT,
            "valid_until": 1_750_001_800,
        },
    ),
    "ASG-found-again": (  # the handle of a group an earlier attempt made: no creation time
        GroupHandle,
        {
            "api": "ASG",
            "group_name": "ohfp-req-1",
            "valid_until": 1_750_001_800,
            "target": 3,
            "weights": {"t3.micro": 1},
            "launch_template_id": "lt-0123456789abcdef0",
            "launch_template_version": "1",
            "launch_template_created": True,
        },
    ),
    "RunInstances": (
        InstancesHandle,
        {"api": "RunInstances", "instance_ids": ["i-0123456789abcdef0"], "errors": []},
    ),
}


@pytest.mark.parametrize("case", list(OLD_HANDLES))
def test_old_handles_load_and_are_written_back_with_their_keys(case: str) -> None:
    kind, stored = OLD_HANDLES[case]
    handle = handles.load(json.loads(json.dumps(stored)), kind)
    assert handle.api == stored["api"]
    written = handles.dump(handle)
    assert {key: written[key] for key in stored} == stored  # every key and value kept
    assert handles.load(json.loads(json.dumps(written)), kind) == handle


def test_a_spot_fleet_handle_keeps_its_key() -> None:
    _, stored = OLD_HANDLES["SpotFleet-maintain"]
    handle = handles.load(stored, FleetHandle)
    assert handle.fleet_id == stored["spot_fleet_request_id"]
    assert "fleet_id" not in handles.dump(handle)


def test_a_broken_handle_is_named_not_raised_as_a_bug() -> None:
    with pytest.raises(ValueError, match=r"\$\.target: expected an integer"):
        handles.load({**OLD_HANDLES["ASG"][1], "target": "three"}, GroupHandle)
    with pytest.raises(ValueError, match="'RunInstances': not a FleetHandle"):
        handles.load(OLD_HANDLES["RunInstances"][1], FleetHandle)


def test_status_of_a_request_whose_handle_cannot_be_read(aws_provider: AwsProvider) -> None:
    request = CloudRequest(
        request_id="req-b",
        kind=RequestKind.ACQUIRE,
        machine_count=1,
        handle={"api": "ASG", "group_name": 7},
        machine_ids=("i-0123456789abcdef0",),
    )
    snapshot = hooks_for(aws_provider).machine_status([request])["req-b"]
    assert "the request's handle cannot be read" in snapshot.message and snapshot.open is False


OLD_KEYS = {
    # What ohfp-aws 0.1 stored per API (and fleet type): status and returns read no other key.
    ("EC2Fleet", "request"): {"api", "fleet_type", "target", "weights", *LT, "valid_until", "fleet_id"},
    ("EC2Fleet", "instant"): {
        "api",
        "fleet_type",
        "target",
        "weights",
        *LT,
        "fleet_id",
        "instance_ids",
        "errors",
    },
    ("SpotFleet", "request"): {
        "api",
        "fleet_type",
        "target",
        "weights",
        *LT,
        "valid_until",
        "spot_fleet_request_id",
    },
    ("ASG", None): {"api", "group_name", "target", "weights", *LT, "valid_until"},
    ("RunInstances", None): {"api", "instance_ids", "errors"},
}
SPOT = {"priceType": "spot", "fleetRole": "arn:aws:iam::123456789012:role/spot-fleet"}
FIELDS: dict[tuple[str, str | None], dict[str, Any]] = {
    ("EC2Fleet", "request"): {"providerApi": "EC2Fleet", "fleetType": "request"},
    ("EC2Fleet", "instant"): {"providerApi": "EC2Fleet", "fleetType": "instant"},
    ("SpotFleet", "request"): {"providerApi": "SpotFleet", **SPOT},
    ("ASG", None): {"providerApi": "ASG"},
    ("RunInstances", None): {"providerApi": "RunInstances"},
}


@pytest.mark.parametrize("case", list(OLD_KEYS), ids=lambda case: "-".join(filter(None, case)))
def test_requests_stored_by_the_old_code_are_served(
    case: tuple[str, str | None], network: Network, aws_provider: AwsProvider, tmp_path: Path
) -> None:
    """A request whose handle holds only the keys 0.1 wrote: status finds its machines and
    returning them all leaves nothing running."""
    hooks = hooks_for(aws_provider)
    template = make_template(network, **FIELDS[case])
    provisioned = hooks.provision("req-old", template, 2)
    old = {
        key: value
        for key, value in json.loads(json.dumps(provisioned.handle)).items()
        if key in OLD_KEYS[case]
    }
    assert set(old) == OLD_KEYS[case]
    request = CloudRequest(request_id="req-old", kind=RequestKind.ACQUIRE, machine_count=2, handle=old)
    machines = hooks.machine_status([request])["req-old"].machines
    assert len(machines) == 2 and {m.state for m in machines} == {MachineState.RUNNING}
    held = CloudRequest(
        request_id="req-old",
        kind=RequestKind.ACQUIRE,
        machine_count=2,
        handle=old,
        machine_ids=tuple(m.machine_id for m in machines),
    )
    items = [ReturnItem(machine_id=m.machine_id, name=m.name, request=held) for m in machines]
    assert hooks.terminate_machines(items) == {}
    after = hooks.machine_status([held])["req-old"].machines
    assert {m.state for m in after} <= {MachineState.SHUTTING_DOWN, MachineState.TERMINATED}

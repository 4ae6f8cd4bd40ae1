"""``ohfp_cancel_request``: what ohfp made for a request whose handle was lost is found by the
request id alone and removed (moto in-process)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import boto3
import pytest
from moto.ec2.models.tags import TagBackend

from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_core.errors import ThrottledError
from ohfp_core.models import CloudRequest, RequestKind, RequestStatus
from ohfp_core.operations import Operations
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.storage import RequestRecord

from .aws_support import count_calls, failing, hooks_for
from .conftest import REGION, Network, make_context, make_template

SPOT = {
    "priceType": "spot",
    "fleetRole": "arn:aws:iam::123456789012:role/spot-fleet",
    "allocationStrategy": "capacityOptimized",
}
CASES: dict[str, dict[str, Any]] = {
    "RunInstances": {"providerApi": "RunInstances"},
    "EC2Fleet-instant": {"providerApi": "EC2Fleet", "fleetType": "instant"},
    "EC2Fleet-request": {"providerApi": "EC2Fleet", "fleetType": "request"},
    "EC2Fleet-maintain": {"providerApi": "EC2Fleet", "fleetType": "maintain"},
    "ASG": {"providerApi": "ASG"},
    "SpotFleet": {"providerApi": "SpotFleet", **SPOT},
}
# Every API call one cancel makes with all four APIs enabled. Always: one
# DescribeAutoScalingGroups, a DescribeTags for EC2 fleets and one for Spot Fleet requests
# (never a listing of the account's fleets), DescribeInstances and DescribeLaunchTemplates;
# then a describe of the fleets found and a delete per thing found.
LOOKUPS = Counter(
    {
        "autoscaling:DescribeAutoScalingGroups": 1,
        "ec2:DescribeTags": 2,
        "ec2:DescribeInstances": 1,
        "ec2:DescribeLaunchTemplates": 1,
    }
)
REMOVALS: dict[str, Counter[str]] = {
    # RunInstances: the tagged instances; no launch template exists.
    "RunInstances": Counter({"ec2:TerminateInstances": 1}),
    **{
        case: Counter({"ec2:DescribeFleets": 1, "ec2:DeleteFleets": 1, "ec2:DeleteLaunchTemplate": 1})
        for case in ("EC2Fleet-instant", "EC2Fleet-request", "EC2Fleet-maintain")
    },
    "ASG": Counter({"autoscaling:DeleteAutoScalingGroup": 1, "ec2:DeleteLaunchTemplate": 1}),
    "SpotFleet": Counter(
        {"ec2:DescribeSpotFleetRequests": 1, "ec2:CancelSpotFleetRequests": 1, "ec2:DeleteLaunchTemplate": 1}
    ),
}


def lost(request_id: str) -> CloudRequest:
    """An acquire request as core hands it to the hook: no handle, no machines."""
    return CloudRequest(request_id=request_id, kind=RequestKind.ACQUIRE, template_id="T", machine_count=2)


def leftovers(request_id: str) -> dict[str, list[str]]:
    """What AWS still has for ``request_id`` that is alive (empty lists when clean)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    autoscaling = boto3.client("autoscaling", region_name=REGION)

    def tagged(tags: Any) -> bool:
        return {"Key": "ohfp:request-id", "Value": request_id} in [
            {"Key": t["Key"], "Value": t["Value"]} for t in tags or []
        ]

    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=[{"Name": "tag:ohfp:request-id", "Values": [request_id]}])[
            "Reservations"
        ]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
    fleets = [
        f["FleetId"]
        for f in ec2.describe_fleets()["Fleets"]
        if tagged(f.get("Tags")) and not f["FleetState"].startswith("deleted")
    ]
    spot_fleets = [
        c["SpotFleetRequestId"]
        for c in ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
        if tagged(c.get("Tags")) and not c["SpotFleetRequestState"].startswith("cancelled")
    ]
    groups = [
        g["AutoScalingGroupName"]
        for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        if g["AutoScalingGroupName"] == f"ohfp-{request_id}"
    ]
    templates = [
        t["LaunchTemplateName"]
        for t in ec2.describe_launch_templates()["LaunchTemplates"]
        if t["LaunchTemplateName"] == f"ohfp-{request_id}"
    ]
    return {
        "instances": instances,
        "fleets": fleets,
        "spot_fleets": spot_fleets,
        "groups": groups,
        "launch_templates": templates,
    }


CLEAN: dict[str, list[str]] = {
    "instances": [],
    "fleets": [],
    "spot_fleets": [],
    "groups": [],
    "launch_templates": [],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_cancel_removes_what_the_request_made(case: str, network: Network, aws_provider: AwsProvider) -> None:
    calls = count_calls(aws_provider)
    hooks = hooks_for(aws_provider)
    template = make_template(network, "T", **CASES[case])
    for request_id in ("req-gone", "req-kept"):
        hooks.provision(request_id, template, 2)
    made = leftovers("req-gone")
    assert len(made["instances"]) == 2
    kept = leftovers("req-kept")

    before = Counter(calls)
    assert hooks.cancel_request(lost("req-gone")) is True
    assert Counter(calls) - before == LOOKUPS + REMOVALS[case]
    assert leftovers("req-gone") == CLEAN
    assert leftovers("req-kept") == kept  # another request of the account is untouched

    before = Counter(calls)
    assert hooks.cancel_request(lost("req-gone")) is True  # idempotent
    # The deleted fleet (AWS keeps it a while) is found and described, nothing more.
    described = {"EC2Fleet": "ec2:DescribeFleets", "SpotFleet": "ec2:DescribeSpotFleetRequests"}
    found_again = Counter([described[api] for api in described if case.startswith(api)])
    assert Counter(calls) - before == LOOKUPS + found_again
    assert leftovers("req-gone") == CLEAN


def test_cancel_of_a_request_that_made_nothing(network: Network, aws_provider: AwsProvider) -> None:
    calls = count_calls(aws_provider)
    hooks = hooks_for(aws_provider)
    hooks.provision("req-other", make_template(network, "T", providerApi="ASG"), 1)
    other = leftovers("req-other")
    before = Counter(calls)
    assert hooks.cancel_request(lost("req-never")) is True
    assert Counter(calls) - before == LOOKUPS
    assert leftovers("req-other") == other


@pytest.mark.slow
def test_cancel_leaves_what_another_provider_instance_made(
    network: Network, aws_provider: AwsProvider, tmp_path: Path
) -> None:
    """The same request id under another HF provider instance name is not ours."""
    other = make_provider(attrs.evolve(make_context(tmp_path), instance="otherinst"))
    others: dict[str, dict[str, Any]] = {"ASG": {}, "EC2Fleet": {"fleetType": "request"}, "SpotFleet": SPOT}
    for api, fields in others.items():
        hooks_for(other).provision(f"req-{api}", make_template(network, "T", providerApi=api, **fields), 1)
        made = leftovers(f"req-{api}")
        assert hooks_for(aws_provider).cancel_request(lost(f"req-{api}")) is True
        assert leftovers(f"req-{api}") == made


def test_cancel_only_asks_enabled_apis(network: Network, tmp_path: Path, moto_aws: None) -> None:
    """A disabled API is not asked (the IAM policy may not allow its calls)."""
    settings = {"handlers": {api: {"enabled": False} for api in ("EC2Fleet", "ASG", "SpotFleet")}}
    provider = make_provider(make_context(tmp_path, None, settings))
    calls = count_calls(provider)
    hooks = hooks_for(provider)
    hooks.provision("req-run", make_template(network, "T"), 2)
    before = Counter(calls)
    assert hooks.cancel_request(lost("req-run")) is True
    assert Counter(calls) - before == Counter({"ec2:DescribeInstances": 1, "ec2:TerminateInstances": 1})
    assert leftovers("req-run") == CLEAN


def test_cancel_surfaces_aws_errors(
    network: Network, aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = hooks_for(aws_provider)
    hooks.provision("req-t", make_template(network, "T", providerApi="EC2Fleet", fleetType="request"), 2)
    made = leftovers("req-t")
    with (
        failing(monkeypatch, TagBackend, "describe_tags", "RequestLimitExceeded"),
        pytest.raises(ThrottledError, match="RequestLimitExceeded"),
    ):
        hooks.cancel_request(lost("req-t"))
    assert leftovers("req-t") == made  # nothing removed: core asks again later
    assert hooks.cancel_request(lost("req-t")) is True
    assert leftovers("req-t") == CLEAN


def test_core_cleans_up_an_abandoned_fleet_request(
    network: Network, aws_provider: AwsProvider, tmp_path: Path
) -> None:
    """Core's reconcile on getRequestStatus: a record with no handle, older than HF's timeout,
    whose fleet AWS did create, ends complete_with_error and AWS is clean."""
    hooks = hooks_for(aws_provider)
    hooks.provision("req-dead", make_template(network, "T", providerApi="EC2Fleet", fleetType="request"), 2)
    assert len(leftovers("req-dead")["fleets"]) == 1
    store = SQLiteStorage(tmp_path / "state")
    store.put_request(
        RequestRecord(
            request_id="req-dead", kind=RequestKind.ACQUIRE, template_id="T", machine_count=2, created_at=1
        )
    )
    ops = Operations(hooks, store, aws_provider.context)
    ops.get_request_status({"requests": [{"requestId": "req-unrelated"}]})
    record = store.get_requests(["req-dead"])["req-dead"]
    assert record.status is RequestStatus.COMPLETE_WITH_ERROR
    assert "abandoned" in record.message
    assert leftovers("req-dead") == CLEAN

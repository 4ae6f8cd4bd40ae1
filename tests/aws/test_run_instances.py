"""RunInstances through the provider hooks, in moto (and a Stubber where moto differs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto.ec2.models.instances import InstanceBackend

from ohfp_aws.apis.run_instances import RunInstancesHandler
from ohfp_aws.launch.template_fields import parse_template
from ohfp_aws.provider import make_provider
from ohfp_aws.vocabulary import TAG_INSTANCE, TAG_REQUEST, TAG_TEMPLATE, client_token
from ohfp_core.errors import CapacityError, ConfigError, QuotaError
from ohfp_core.models import CloudRequest, MachineState, PriceType, RequestKind, ReturnItem

from .aws_support import acquire_request, count_calls, failing, hooks_for
from .conftest import REGION, Network, make_context, make_template

RUN = {"handlers": {"order": ["RunInstances"]}}


def run_provider(tmp_path: Path, max_per_call: int = 100, config: dict[str, Any] | None = None) -> Any:
    settings = {"handlers": {"order": ["RunInstances"], "RunInstances": {"maxPerCall": max_per_call}}}
    return make_provider(make_context(tmp_path, config, settings))


def test_provision_status_partial_and_full_return(network: Network, tmp_path: Path) -> None:
    provider = run_provider(tmp_path)
    calls = count_calls(provider)
    hooks = hooks_for(provider)
    template = make_template(network, providerApi="RunInstances", instanceTags="team=grid")

    # moto launches MinCount (1) per call: the handler tops up the remainder on the next subnets.
    provisioned = hooks.provision("req-1", template, 3)
    assert provisioned.handle["api"] == "RunInstances"
    assert len(provisioned.handle["instance_ids"]) == 3 and provisioned.handle["errors"] == []
    assert len(provisioned.machines) == 3
    assert calls == {"ec2:DescribeInstances": 1, "ec2:RunInstances": 3}
    request = acquire_request("req-1", template, 3, provisioned)

    # provisioning again (core retries after a crash) finds the same instances by tag
    calls.clear()
    again = hooks.provision("req-1", template, 3)
    assert again.handle == provisioned.handle
    assert calls == {"ec2:DescribeInstances": 1}

    calls.clear()
    snapshot = hooks.machine_status([request])["req-1"]
    assert calls == {"ec2:DescribeInstances": 1}
    assert snapshot.open is False and snapshot.message == ""
    assert [m.state for m in snapshot.machines] == [MachineState.RUNNING] * 3
    machine = snapshot.machines[0]
    assert machine.name.endswith(".internal") and machine.private_ip
    assert machine.tags[TAG_REQUEST] == "req-1" and machine.tags[TAG_TEMPLATE] == "OnDemand"
    assert machine.tags[TAG_INSTANCE] == "awsinst" and machine.tags["team"] == "grid"
    subnets = {
        i["SubnetId"]
        for r in boto3.client("ec2", region_name=REGION).describe_instances(
            InstanceIds=list(request.machine_ids)
        )["Reservations"]
        for i in r["Instances"]
    }
    assert subnets == set(network.subnet_ids)

    # partial return
    first, *rest = snapshot.machines
    calls.clear()
    assert (
        hooks.terminate_machines([ReturnItem(machine_id=first.machine_id, name=first.name, request=request)])
        == {}
    )
    assert calls == {"ec2:TerminateInstances": 1}
    ret = CloudRequest(request_id="ret-1", kind=RequestKind.RETURN, machine_ids=(first.machine_id,))
    calls.clear()
    after = hooks.machine_status([request, ret])
    assert calls == {"ec2:DescribeInstances": 1}  # one describe for both requests
    assert [m.state for m in after["ret-1"].machines] == [MachineState.TERMINATED]
    states = {m.machine_id: m.state for m in after["req-1"].machines}
    assert states[first.machine_id] is MachineState.TERMINATED
    assert [states[m.machine_id] for m in rest] == [MachineState.RUNNING] * 2

    # full return
    assert (
        hooks.terminate_machines(
            [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in rest]
        )
        == {}
    )
    final = hooks.machine_status([request])["req-1"]
    assert {m.state for m in final.machines} == {MachineState.TERMINATED}


def test_spot_instances(network: Network, tmp_path: Path) -> None:
    hooks = hooks_for(run_provider(tmp_path))
    template = make_template(network, priceType="spot", maxSpotPrice="0.05")
    provisioned = hooks.provision("req-spot", template, 1)
    assert [m.price_type for m in provisioned.machines] == [PriceType.SPOT]


def stub_instances(count: int, start: int = 0) -> dict[str, Any]:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return {
        "Instances": [
            {"InstanceId": f"i-{n:017x}", "State": {"Name": "pending", "Code": 0}, "LaunchTime": now}
            for n in range(start, start + count)
        ]
    }


def test_max_count_chunks_and_short_calls_with_stubber(network: Network, tmp_path: Path) -> None:
    """moto launches MinCount instances, so MaxCount chunking is checked against a Stubber:
    6 instances with maxPerCall 4 → MaxCount 4, then 2; AWS gives 1 of the 2, so the
    remainder is asked again on the next subnet with a new client token."""
    provider = run_provider(tmp_path, max_per_call=4)
    ec2 = boto3.client("ec2", region_name=REGION)
    provider.clients.__dict__["ec2"] = ec2
    a, b = network.subnet_ids
    expected = [
        (4, a, client_token("req-9", "run-0"), 4),
        (2, b, client_token("req-9", "run-1"), 1),
        (1, a, client_token("req-9", "run-1.1"), 1),
    ]
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": []})  # nothing from an earlier call
        launched = 0
        for max_count, subnet, token, gives in expected:
            params = {
                "ImageId": network.ami_id,
                "InstanceType": "t3.micro",
                "SecurityGroupIds": [network.security_group_id],
                "TagSpecifications": ANY,
                "MinCount": 1,
                "MaxCount": max_count,
                "ClientToken": token,
                "SubnetId": subnet,
            }
            stub.add_response("run_instances", stub_instances(gives, launched), params)
            launched += gives
        template = parse_template(make_template(network), tmp_path)
        provisioned = RunInstancesHandler(provider.aws).provision("req-9", template, 6)
        stub.assert_no_pending_responses()
    assert len(provisioned.handle["instance_ids"]) == 6
    assert provisioned.handle["errors"] == []


def test_capacity_error_before_anything_launched_is_raised(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = hooks_for(run_provider(tmp_path))
    with (
        failing(monkeypatch, InstanceBackend, "run_instances", "InsufficientInstanceCapacity") as seen,
        pytest.raises(CapacityError, match=r"^RunInstances: injected \(InsufficientInstanceCapacity\)$"),
    ):
        hooks.provision("req-cap", make_template(network), 2)
    assert seen[0] == 2  # each subnet tried once
    reservations = boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]
    assert reservations == []


class _Body:
    """What botocore reads an HTTP reply's body from."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Any:
        return iter([self.content])


@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity", "InstanceLimitExceeded"])
def test_capacity_and_quota_errors_are_not_retried_by_the_sdk(
    network: Network, tmp_path: Path, code: str
) -> None:
    """AWS sends InsufficientInstanceCapacity with HTTP 500, which botocore's standard mode
    retries (four attempts with IBM's default AWS_REQUEST_RETRY_ATTEMPTS 3): the same offering
    again, where the next one is the answer. Every RunInstances attempt is counted as it
    leaves (``before-send``) and answered there with AWS's reply: one per subnet for a
    capacity error; a quota error ends the call at once (another subnet shares the quota)."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    provider = run_provider(tmp_path, config={"AWS_REGION": REGION, "AWS_REQUEST_RETRY_ATTEMPTS": 3})
    subnets = [f"subnet-000000000000000{n}" for n in range(1, 5)]
    sent: list[str] = []
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        "<Message>We currently do not have sufficient capacity.</Message></Error></Errors>"
        "<RequestID>ohfp-test</RequestID></Response>"
    ).encode()

    def refuse(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.body.decode() if isinstance(request.body, bytes) else str(request.body))
        return AWSResponse(request.url, 500, HTTPHeaders(), _Body(body))

    provider.clients.ec2.meta.events.register("before-send.ec2.RunInstances", refuse)
    with pytest.raises(CapacityError if code.startswith("Insufficient") else QuotaError, match=code):
        hooks_for(provider).provision("req-ice", make_template(network, subnetId=subnets), 2)
    tried = [next(s for s in subnets if s in params) for params in sent]
    assert tried == (subnets if code.startswith("Insufficient") else subnets[:1])


def test_capacity_error_after_some_launched_completes_with_error(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = hooks_for(run_provider(tmp_path, max_per_call=1))
    template = make_template(network)
    original = InstanceBackend.run_instances
    seen = [0]

    def first_only(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.ec2.exceptions import EC2ClientError

        seen[0] += 1
        if seen[0] > 1:
            raise EC2ClientError("InsufficientInstanceCapacity", "no t3.micro left")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(InstanceBackend, "run_instances", first_only)
    provisioned = hooks.provision("req-part", template, 3)
    assert len(provisioned.handle["instance_ids"]) == 1
    assert provisioned.handle["errors"] == [
        "launched 1 of 3 instances: RunInstances: no t3.micro left (InsufficientInstanceCapacity)"
    ]
    snapshot = hooks.machine_status([acquire_request("req-part", template, 3, provisioned)])["req-part"]
    assert snapshot.open is False
    assert "InsufficientInstanceCapacity" in snapshot.message
    assert len(snapshot.machines) == 1


def test_weighted_type_launches_fewer_instances(network: Network, tmp_path: Path) -> None:
    hooks = hooks_for(run_provider(tmp_path))
    template = make_template(network, vmType=None, vmTypes={"t3.large": 2})
    provisioned = hooks.provision("req-w", template, 3)  # 3 units of weight 2 → 2 instances
    assert len(provisioned.machines) == 2
    assert {m.weight for m in provisioned.machines} == {2}


def test_unsupported_templates(network: Network, tmp_path: Path) -> None:
    handler = RunInstancesHandler(run_provider(tmp_path).aws)
    mixed = parse_template(make_template(network, vmType=None, vmTypes={"m5.large": 1, "m6i.large": 1}))
    assert "one instance type" in (handler.unsupported(mixed) or "")
    hetero = parse_template(make_template(network, priceType="heterogeneous"))
    assert "heterogeneous" in (handler.unsupported(hetero) or "")
    assert handler.unsupported(parse_template(make_template(network))) is None
    with pytest.raises(ConfigError, match="RunInstances: RunInstances launches one instance type"):
        hooks_for(run_provider(tmp_path)).provision(
            "req-x", make_template(network, vmType=None, vmTypes={"m5.large": 1, "c5.large": 1}), 1
        )

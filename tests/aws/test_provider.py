"""The AWS provider's own hooks: handler choice, templates, status edge cases, reclaims,
health checks and fault injection (moto in-process; Stubber or fakes where moto differs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.ec2.models.instances import InstanceBackend, StateReason

from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_core.errors import CloudError, ConfigError, ThrottledError
from ohfp_core.models import (
    Attribute,
    CloudRequest,
    Machine,
    MachineRef,
    MachineState,
    ProviderContext,
    RequestKind,
    Template,
)

from .aws_support import acquire_request, count_calls, failing, hooks_for
from .conftest import REGION, Network, make_context, make_template

NOW = 1_750_000_000.0
UNKNOWN = "i-0000000000000000f"


def only_run_instances(tmp_path: Path, config: dict[str, Any] | None = None) -> AwsProvider:
    return make_provider(make_context(tmp_path, config, {"handlers": {"order": ["RunInstances"]}}))


# handler choice --------------------------------------------------------------------------------
def test_handler_follows_order_and_enabled(network: Network, tmp_path: Path) -> None:
    settings = {"handlers": {api: {"enabled": False} for api in ("EC2Fleet", "ASG", "SpotFleet")}}
    provider = make_provider(make_context(tmp_path, None, settings))
    provisioned = hooks_for(provider).provision("req-o", make_template(network), 1)
    assert provisioned.handle["api"] == "RunInstances"


def test_disabled_provider_api_is_a_config_error(network: Network, tmp_path: Path) -> None:
    settings = {"handlers": {"EC2Fleet": {"enabled": False}}}
    provider = make_provider(make_context(tmp_path, None, settings))
    with pytest.raises(
        ConfigError, match=r"providerApi EC2Fleet is disabled \(aws.handlers.EC2Fleet.enabled"
    ):
        hooks_for(provider).provision("req-d", make_template(network, providerApi="EC2Fleet"), 1)


def test_no_handler_fits_lists_the_reasons(network: Network, tmp_path: Path) -> None:
    hooks = hooks_for(only_run_instances(tmp_path))
    with pytest.raises(ConfigError) as info:
        hooks.provision("req-n", make_template(network, priceType="heterogeneous"), 1)
    assert "no enabled AWS API can serve it" in info.value.message
    assert info.value.problems == (
        "RunInstances: RunInstances cannot mix spot and on-demand (priceType heterogeneous)",
    )


def test_invalid_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"AWS_REQUEST_RETRY_ATTEMPTS: must be 0\.\.10, got 11"):
        make_provider(make_context(tmp_path, {"AWS_REGION": REGION, "AWS_REQUEST_RETRY_ATTEMPTS": 11}))


def test_validate_template_hook(aws_provider: AwsProvider, network: Network) -> None:
    problems = hooks_for(aws_provider).validate_template(make_template(network, volumeType="io1"))
    assert [(p.path, p.message) for p in problems] == [("iops", "required when volumeType is io1")]


def test_user_data_path_is_relative_to_the_confdir(network: Network, aws_provider: AwsProvider) -> None:
    (aws_provider.context.confdir / "boot.sh").write_text("#!/bin/sh\n")
    assert hooks_for(aws_provider).validate_template(make_template(network, userDataScript="boot.sh")) == []


def test_a_template_is_parsed_once_per_call(
    network: Network, aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requestMachines validates, then provisions, the same template: one parse, one read
    of the user-data file."""
    import ohfp_aws.documents

    reads: list[str] = []
    read = ohfp_aws.documents.read_user_data

    def counted(value: Any, base_dir: Path | None = None) -> str:
        reads.append(value)
        return read(value, base_dir)

    monkeypatch.setattr(ohfp_aws.documents, "read_user_data", counted)
    (aws_provider.context.confdir / "boot.sh").write_text("#!/bin/sh\n")
    template = make_template(network, userDataScript="boot.sh", providerApi="RunInstances")
    hooks = hooks_for(aws_provider)
    assert hooks.validate_template(template) == []
    assert len(hooks.provision("req-once", template, 1).machines) == 1
    assert reads == ["boot.sh"]


# templates ----------------------------------------------------------------------------------
def test_missing_cpus_and_memory_come_from_the_instance_type(aws_provider: AwsProvider) -> None:
    calls = count_calls(aws_provider)
    given = [
        Template(template_id="A", max_number=5, fields={"vmType": "t3.micro"}),
        Template(
            template_id="B",
            max_number=5,
            attributes={"ncpus": Attribute("Numeric", "8")},
            fields={"vmTypes": {"m5.large": 1}},
        ),
        Template(
            template_id="C",
            max_number=5,
            attributes={k: Attribute("Numeric", "1") for k in ("ncpus", "nram")}
            | {"type": Attribute("String", "X86_64")},
            fields={"vmType": "m5.large"},
        ),
    ]
    offered = {t.template_id: t for t in hooks_for(aws_provider).available_templates(given)}
    assert calls == {"ec2:DescribeInstanceTypes": 1}  # one batched call, only for A and B
    assert offered["A"].attributes == {
        "type": Attribute("String", "X86_64"),
        "ncpus": Attribute("Numeric", "2"),
        "nram": Attribute("Numeric", "1024"),
    }
    assert offered["B"].attributes["ncpus"] == Attribute("Numeric", "8")  # the file wins
    assert offered["B"].attributes["nram"] == Attribute("Numeric", "8192")
    assert offered["C"] == given[2]


def test_templates_survive_a_failing_describe(
    aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.ec2.models import EC2Backend

    given = [Template(template_id="A", max_number=5, fields={"vmType": "t3.micro"})]
    with failing(monkeypatch, EC2Backend, "describe_instance_types", "UnauthorizedOperation"):
        assert hooks_for(aws_provider).available_templates(given) == given


def test_ssm_image_paths_are_resolved_once(network: Network, aws_provider: AwsProvider) -> None:
    path = "/ohfp/test/ami"
    boto3.client("ssm", region_name=REGION).put_parameter(Name=path, Value=network.ami_id, Type="String")
    calls = count_calls(aws_provider)
    hooks = hooks_for(aws_provider)
    for n in range(2):
        hooks.provision(f"req-ssm-{n}", make_template(network, imageId=path, providerApi="RunInstances"), 1)
    assert calls["ssm:GetParameter"] == 1
    assert calls["ec2:RunInstances"] == 2


def test_root_volume_uses_the_images_root_device(network: Network, aws_provider: AwsProvider) -> None:
    hooks = hooks_for(aws_provider)
    template = make_template(network, providerApi="RunInstances", rootDeviceVolumeSize=30, volumeType="gp3")
    (machine,) = hooks.provision("req-vol", template, 1).machines
    described = boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[machine.machine_id])
    mappings = described["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    assert [m["DeviceName"] for m in mappings] == ["/dev/xvda"]  # the AMI's RootDeviceName (amis.json)


# status edge cases ------------------------------------------------------------------------
def test_stuck_pending_machines_are_terminated(
    network: Network, aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto reports instances running on the first describe, so the describe boundary is
    faked: it reports the real instance pending since 200 s (timeout 180 s)."""
    import ohfp_aws.access.instances

    template = make_template(network, providerApi="RunInstances")
    hooks = hooks_for(aws_provider)
    provisioned = hooks.provision("req-p", template, 1)
    (machine,) = provisioned.machines
    aws_provider.aws.clock = lambda: NOW
    stuck = Machine(
        machine_id=machine.machine_id,
        name=machine.name,
        state=MachineState.PENDING,
        launch_time=int(NOW) - 200,
    )
    monkeypatch.setattr(
        ohfp_aws.access.instances, "describe_machines", lambda ec2, ids, **kw: {stuck.machine_id: stuck}
    )
    snapshot = hooks.machine_status([acquire_request("req-p", template, 1, provisioned)])["req-p"]
    (reported,) = snapshot.machines
    assert reported.state is MachineState.TERMINATED
    assert reported.message == "pending for more than 180 s (AWS_INSTANCE_PENDING_TIMEOUT_SEC); terminated"
    monkeypatch.undo()
    state = boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[machine.machine_id])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")


def test_young_machines_not_yet_visible_are_pending(network: Network, tmp_path: Path) -> None:
    config = {
        "AWS_REGION": REGION,
        "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS": 2,
        "AWS_DESCRIBE_REQUEST_INTERVAL": 250,
    }
    provider = only_run_instances(tmp_path, config)
    provider.aws.clock = lambda: NOW
    sleeps: list[float] = []
    provider.aws.sleep = sleeps.append
    hooks = hooks_for(provider)
    handle = {"api": "RunInstances", "instance_ids": [UNKNOWN], "errors": []}
    young = CloudRequest(
        request_id="req-y",
        kind=RequestKind.ACQUIRE,
        template_id="T",
        machine_count=1,
        handle=handle,
        created_at=int(NOW) - 10,
    )
    (machine,) = hooks.machine_status([young])["req-y"].machines
    assert (machine.machine_id, machine.state) == (UNKNOWN, MachineState.PENDING)
    assert sleeps == [0.25, 0.25]
    old = CloudRequest(
        request_id="req-o",
        kind=RequestKind.ACQUIRE,
        template_id="T",
        machine_count=1,
        handle=handle,
        created_at=int(NOW) - 1000,
    )
    sleeps.clear()
    assert hooks.machine_status([old])["req-o"].machines == ()
    assert sleeps == []


def test_unknown_handle_api(aws_provider: AwsProvider) -> None:
    request = CloudRequest(
        request_id="req-u",
        kind=RequestKind.ACQUIRE,
        template_id="T",
        machine_count=1,
        handle={"api": "Lambda"},
    )
    snapshot = hooks_for(aws_provider).machine_status([request])["req-u"]
    assert "names no known AWS API ('Lambda')" in snapshot.message and snapshot.machines == ()


# reclaims ---------------------------------------------------------------------------------
def test_reclaims(network: Network, aws_provider: AwsProvider) -> None:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    hooks = hooks_for(aws_provider)
    run = "RunInstances"
    spot = hooks.provision("req-s", make_template(network, priceType="spot", providerApi=run), 2).machines
    ondemand = hooks.provision("req-o", make_template(network, providerApi=run), 2).machines
    # A spot interruption as AWS records it: terminated with the spot termination reason.
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    interrupted = backend.get_instance(spot[0].machine_id)
    interrupted.terminate()
    interrupted.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
    )
    # Terminated from the console, outside Host Factory.
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[ondemand[0].machine_id])
    refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in (*spot, *ondemand)]
    refs += [
        MachineRef(name="ip-10-255-255-254.ec2.internal", machine_id=UNKNOWN),
        MachineRef(name=ondemand[1].name),  # a name only: found by private-dns-name
        MachineRef(name="ip-10-255-255-253.ec2.internal"),
    ]
    reclaims = {r.name: r for r in hooks.reclaimed_machines(refs)}
    assert set(reclaims) == {
        spot[0].name,
        ondemand[0].name,
        "ip-10-255-255-254.ec2.internal",
        "ip-10-255-255-253.ec2.internal",
    }
    assert all(r.grace_period == 0 for r in reclaims.values())
    assert reclaims[spot[0].name].reason.startswith("spot interruption")
    assert reclaims[ondemand[0].name].reason.startswith("terminated")
    assert reclaims["ip-10-255-255-254.ec2.internal"].reason == "unknown to EC2"


def test_spot_interruption_notice_grace_with_stubber(tmp_path: Path, aws_env: None) -> None:
    """moto has no spot interruption notices: DescribeSpotInstanceRequests is stubbed."""
    provider = make_provider(make_context(tmp_path))
    provider.aws.clock = lambda: NOW
    ec2 = boto3.client("ec2", region_name=REGION)
    provider.clients.__dict__["ec2"] = ec2
    instance = {
        "InstanceId": "i-0123456789abcdef0",
        "PrivateDnsName": "ip-10-0-0-9.ec2.internal",
        "InstanceLifecycle": "spot",
        "SpotInstanceRequestId": "sir-abc",
        "State": {"Name": "running", "Code": 16},
    }
    marked = dt.datetime.fromtimestamp(NOW - 30, dt.UTC)
    with Stubber(ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [instance]}]})
        stub.add_response(
            "describe_spot_instance_requests",
            {
                "SpotInstanceRequests": [
                    {
                        "SpotInstanceRequestId": "sir-abc",
                        "InstanceId": instance["InstanceId"],
                        "Status": {"Code": "marked-for-termination", "UpdateTime": marked},
                    }
                ]
            },
        )
        (reclaim,) = hooks_for(provider).reclaimed_machines(
            [MachineRef(name="ip-10-0-0-9.ec2.internal", machine_id="i-0123456789abcdef0")]
        )
    assert (reclaim.grace_period, reclaim.reason) == (90, "spot interruption notice")


# health, throttling -------------------------------------------------------------------------
def test_health_checks_in_moto(aws_provider: AwsProvider) -> None:
    checks = {c.name: c for c in hooks_for(aws_provider).health_check()}
    assert {"aws.config", "aws.credentials", "aws.ec2", "aws.autoscaling"} <= set(checks)
    assert checks["aws.credentials"].ok
    assert checks["aws.credentials"].detail == "from env; account 123456789012"
    assert checks["aws.ec2"].ok and "zones in us-east-1" in checks["aws.ec2"].detail


def test_health_checks_report_failures(aws_env: None, tmp_path: Path) -> None:
    # Nothing listens on this port: every probe fails fast and is reported, never raised.
    config = {
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_REQUEST_RETRY_ATTEMPTS": 0,
        "AWS_CONNECTION_TIMEOUT_MS": 200,
    }
    provider = make_provider(
        make_context(tmp_path, config, {"handlers": {"order": ["RunInstances"], "ASG": {"enabled": False}}})
    )
    checks = {c.name: c for c in hooks_for(provider).health_check()}
    assert checks["aws.config"].ok
    assert not checks["aws.credentials"].ok and "GetCallerIdentity" in checks["aws.credentials"].detail
    assert not checks["aws.ec2"].ok
    assert "aws.autoscaling" not in checks


def test_throttling_is_retried(
    network: Network, aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    with failing(monkeypatch, InstanceBackend, "run_instances", "RequestLimitExceeded", times=2) as seen:
        provisioned = hooks_for(aws_provider).provision(
            "req-t", make_template(network, providerApi="RunInstances"), 1
        )
    assert len(provisioned.machines) == 1
    assert seen[0] == 3


def test_persistent_throttling_is_a_throttled_error(
    network: Network, aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = make_template(network, providerApi="RunInstances")
    with (
        failing(monkeypatch, InstanceBackend, "run_instances", "RequestLimitExceeded") as seen,
        pytest.raises(ThrottledError) as info,
    ):
        hooks_for(aws_provider).provision("req-tt", template, 1)
    assert seen[0] == 4  # AWS_REQUEST_RETRY_ATTEMPTS (3) retries after the first attempt
    assert info.value.code == "RequestLimitExceeded" and info.value.retryable
    assert info.value.message == "RunInstances: injected (RequestLimitExceeded)"


def test_status_describe_failure_is_a_cloud_error(
    network: Network, aws_provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = make_template(network, providerApi="RunInstances")
    hooks = hooks_for(aws_provider)
    request = acquire_request("req-f", template, 1, hooks.provision("req-f", template, 1))
    with (
        failing(monkeypatch, InstanceBackend, "get_reservations_by_instance_ids", "AuthFailure"),
        pytest.raises(CloudError, match=r"DescribeInstances: injected \(AuthFailure\)"),
    ):
        hooks.machine_status([request])


def test_make_provider_builds_no_client(aws_ctx: ProviderContext) -> None:
    provider = make_provider(aws_ctx)
    assert provider.clients.created == []


# requests without a handle, weights ---------------------------------------------------------------
def test_request_whose_call_died_is_found_by_its_tag(network: Network, aws_provider: AwsProvider) -> None:
    """Core cleans up a request whose provisioning call died before its handle was stored:
    status with an empty handle must find the machines by the request-id tag alone."""
    hooks = hooks_for(aws_provider)
    template = make_template(network, providerApi="RunInstances")
    hooks.provision("req-died", template, 2)
    hooks.provision("req-other", template, 1)
    orphan = CloudRequest(request_id="req-died", kind=RequestKind.ACQUIRE, template_id=template.template_id)
    snapshot = hooks.machine_status([orphan])["req-died"]
    assert len(snapshot.machines) == 2
    assert {m.tags["ohfp:request-id"] for m in snapshot.machines} == {"req-died"}
    nothing = CloudRequest(request_id="req-never-made", kind=RequestKind.ACQUIRE)
    assert hooks.machine_status([nothing])["req-never-made"].machines == ()


def test_fleet_machines_carry_their_type_weight(network: Network, aws_provider: AwsProvider) -> None:
    hooks = hooks_for(aws_provider)
    template = make_template(
        network, vmType=None, vmTypes={"t3.large": 2}, providerApi="EC2Fleet", fleetType="instant"
    )
    provisioned = hooks.provision("req-w", template, 4)
    snapshot = hooks.machine_status([acquire_request("req-w", template, 4, provisioned)])["req-w"]
    assert snapshot.machines and {m.weight for m in snapshot.machines} == {2}
    assert sum(m.weight for m in snapshot.machines) == 4


def test_hosts_named_without_id_are_terminated_by_name(network: Network, aws_provider: AwsProvider) -> None:
    """Host Factory may return a host by name only; core does not know it (its state was
    lost, say): the provider finds the instance by private DNS name and terminates it."""
    from ohfp_core.models import ReturnItem

    hooks = hooks_for(aws_provider)
    template = make_template(network, providerApi="RunInstances")
    provisioned = hooks.provision("req-n", template, 1)
    snapshot = hooks.machine_status([acquire_request("req-n", template, 1, provisioned)])["req-n"]
    (machine,) = snapshot.machines
    errors = hooks.terminate_machines(
        [
            ReturnItem(machine_id="", name=machine.name),
            ReturnItem(machine_id="", name="ip-10-9-9-9.ec2.internal"),
        ]
    )
    assert errors == {}  # an unknown host is gone, not an error
    ec2 = boto3.client("ec2", region_name=REGION)
    [reservation] = ec2.describe_instances(InstanceIds=[machine.machine_id])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")


def test_validation_says_when_no_enabled_api_can_serve(network: Network, tmp_path: Path) -> None:
    """Offline: a SpotFleet template without fleetRole, with only SpotFleet enabled."""
    provider = make_provider(
        make_context(tmp_path, None, {"handlers": {"order": ["SpotFleet"], "EC2Fleet": {"enabled": False}}})
    )
    template = make_template(network, priceType="spot", providerApi="SpotFleet")
    problems = hooks_for(provider).validate_template(template)
    assert [p.path for p in problems] == ["providerApi"]
    assert "fleetRole" in problems[0].message
    assert (
        hooks_for(provider).validate_template(
            make_template(
                network, providerApi="SpotFleet", fleetRole="arn:aws:iam::1:role/r", priceType="spot"
            )
        )
        == []
    )

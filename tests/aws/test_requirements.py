"""Instance types chosen by shape: template keys validated offline, ncpus/nram from the lower
bounds, and the exact InstanceRequirements each API is sent.

moto does not resolve instance requirements (its CreateFleet and RequestSpotFleet fail
without an InstanceType, and its Auto Scaling group ignores them), so the request bodies are
captured at the client boundary (``Calls``, botocore's ``before-parameter-build``) and the
two fleet calls are answered there (``answer``); nothing here claims AWS would launch them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ohfp_aws.apis.asg import ASGHandler
from ohfp_aws.apis.ec2_fleet import EC2FleetHandler
from ohfp_aws.apis.spot_fleet import SpotFleetHandler
from ohfp_aws.launch.template_fields import parse_template, validate_fields
from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_aws.supply import requirements
from ohfp_core.errors import ConfigError
from ohfp_core.models import Template

from .aws_support import count_calls, hooks_for
from .conftest import Network, make_context, make_template
from .fleet_support import Calls, answer

BASE = {"imageId": "ami-0123456789abcdef0", "subnetId": ["subnet-0a", "subnet-0b"]}
SHAPE = {"vCpusMin": 2, "vCpusMax": 8, "memoryMiBMin": 4096}
ROLE = "arn:aws:iam::123456789012:role/spot-fleet"


def problems(**fields: Any) -> dict[str, str]:
    return {p.path: p.message for p in validate_fields({**BASE, **fields})}


def shaped(**fields: Any) -> Template:
    return Template(template_id="Shape", max_number=10, fields={**BASE, **SHAPE, **fields})


# -- offline validation ---------------------------------------------------------------------------


def test_flat_keys_and_the_object_are_valid_alone_or_together() -> None:
    assert problems(**SHAPE) == {}
    assert problems(instanceRequirements={"VCpuCount": {"Min": 2}, "MemoryMiB": {"Min": 1024}}) == {}
    assert problems(**SHAPE, instanceRequirements={"CpuManufacturers": ["intel", "amd"]}) == {}
    assert problems(**SHAPE, vmTypes={"m5.large": 1, "m6i.large": 1}) == {}


def test_every_problem_names_its_key() -> None:
    both = "give AllowedInstanceTypes or ExcludedInstanceTypes, not both"
    assert problems(
        vCpusMin=8,
        memoryMiBMin=16,
        instanceRequirements={
            "VCpuCount": {"Min": 2},
            "MemoryGiBPerVCpu": {"Min": 4, "Max": 2},
            "BareMetal": "sometimes",
            "CpuManufacturers": ["intel", "ibm"],
            "RequireHibernateSupport": "yes",
            "AllowedInstanceTypes": ["m5.large"],
            "ExcludedInstanceTypes": ["t2.*"],
            "NetworkInterfaceCount": {"Min": -1},
            "Gpus": 1,
        },
    ) == {
        "memoryMiBMin": "must be ≥ 512 MiB, got 16: memory is in MiB (16 GiB would be 16384)",
        "instanceRequirements.MemoryGiBPerVCpu": "Min 4 is above Max 2",
        "instanceRequirements.BareMetal": "must be one of included, required, excluded, got 'sometimes'",
        "instanceRequirements.CpuManufacturers": "'ibm' is not one of intel, amd, amazon-web-services, apple",
        "instanceRequirements.RequireHibernateSupport": "must be true or false, got 'yes'",
        "instanceRequirements.ExcludedInstanceTypes": both,
        "instanceRequirements.NetworkInterfaceCount.Min": "must be an integer ≥ 0, got -1",
        "instanceRequirements.Gpus": "unknown key; known: " + ", ".join(sorted(requirements.KNOWN)),
    }
    # Rules between keys come once every key is valid on its own.
    assert problems(vCpusMin=8, memoryMiBMin=1024, instanceRequirements={"VCpuCount": {"Min": 2}}) == {
        "vCpusMin": "give vCpusMin/vCpusMax or instanceRequirements.VCpuCount, not both"
    }


def test_units_ranges_and_the_required_lower_bounds() -> None:
    assert problems(vCpusMin=2, memoryMiBMin="16GiB") == {
        "memoryMiBMin": "must be an integer number of MiB (16 GiB is 16384), got '16GiB'"
    }
    assert problems(vCpusMin=4, vCpusMax=2, memoryMiBMin=2048) == {
        "vCpusMax": "must be ≥ vCpusMin (4), got 2"
    }
    assert problems(vCpusMin=0, memoryMiBMin=2048)["vCpusMin"] == "must be ≥ 1, got 0"
    assert problems(vCpusMax=4) == {
        "vCpusMin": "required with instance requirements (or instanceRequirements.VCpuCount.Min)",
        "memoryMiBMin": "required with instance requirements (or instanceRequirements.MemoryMiB.Min)",
    }
    assert problems(instanceRequirements={"VCpuCount": {"Min": 2.5}, "MemoryMiB": {"Min": 1024}}) == {
        "instanceRequirements.VCpuCount.Min": "must be an integer ≥ 0, got 2.5"
    }
    (message,) = problems(
        instanceRequirements={"VCpuCount": {"Least": 2}, "MemoryMiB": {"Min": 1024}}
    ).values()
    assert message == """must be an object {"Min": …, "Max": …} of an integer each, got {'Least': 2}"""
    assert problems(instanceRequirements=[])["instanceRequirements"].startswith("must be a non-empty object")


def test_vm_types_beside_requirements_are_the_allowed_types() -> None:
    assert problems(**SHAPE, vmTypes={"m5.large": 2}) == {
        "vmTypes": "beside instance requirements vmTypes lists the types allowed: every weight must be 1"
    }
    beside = problems(**SHAPE, vmType="m5.large", instanceRequirements={"AllowedInstanceTypes": ["m5*"]})
    assert beside == {
        "instanceRequirements": (
            "AllowedInstanceTypes is not allowed beside vmType/vmTypes (they become AllowedInstanceTypes)"
        )
    }
    assert problems(**SHAPE, vmTypesPriority={"m5.large": 0})["vmTypesPriority"].startswith("not used with")
    assert "allocationStrategy" in problems(**SHAPE, allocationStrategy="capacityOptimizedPrioritized")
    parsed = parse_template(shaped(vmTypes={"m5.large": 1, "m6i.large": 1}))
    assert parsed.vm_types == {}
    assert parsed.instance_requirements == {
        "VCpuCount": {"Min": 2, "Max": 8},
        "MemoryMiB": {"Min": 4096},
        "AllowedInstanceTypes": ["m5.large", "m6i.large"],
    }


def test_burstable_types_allowed_beside_requirements_are_included() -> None:
    """AWS leaves burstable types out unless BurstablePerformance says otherwise, and the
    allowed types only narrow: t3 types allowed beside requirements must come with
    ``included``, or nothing would ever launch."""
    parsed = parse_template(shaped(vmTypes={"t3.micro": 1, "t3.small": 1}))
    assert parsed.instance_requirements == {
        "VCpuCount": {"Min": 2, "Max": 8},
        "MemoryMiB": {"Min": 4096},
        "AllowedInstanceTypes": ["t3.micro", "t3.small"],
        "BurstablePerformance": "included",
    }
    by_pattern = parse_template(shaped(instanceRequirements={"AllowedInstanceTypes": ["m5.*", "t4g.*"]}))
    assert (by_pattern.instance_requirements or {})["BurstablePerformance"] == "included"
    for named in ({"vmType": "m5.large"}, {"instanceRequirements": {"AllowedInstanceTypes": ["*"]}}, {}):
        assert "BurstablePerformance" not in (parse_template(shaped(**named)).instance_requirements or {})
    required = parse_template(
        shaped(vmType="t3.micro", instanceRequirements={"BurstablePerformance": "required"})
    )
    assert (required.instance_requirements or {})["BurstablePerformance"] == "required"  # the template's word
    assert problems(
        **SHAPE,
        vmTypes={"t3.micro": 1, "m5.large": 1},
        instanceRequirements={"BurstablePerformance": "excluded"},
    ) == {
        "instanceRequirements": (
            "BurstablePerformance excluded, yet the allowed types t3.micro are burstable: they would never"
            " launch (leave BurstablePerformance out, or set it to included)"
        )
    }


def test_the_keys_passed_through_are_awss_own() -> None:
    """Every key ohfp accepts is a member of the shape each API takes (botocore's models)."""
    import botocore.session

    session = botocore.session.get_session()
    ec2: Any = session.get_service_model("ec2")
    autoscaling: Any = session.get_service_model("autoscaling")
    assert set(requirements.KNOWN) <= set(ec2.shape_for("InstanceRequirementsRequest").members)  # EC2 Fleet
    assert set(requirements.KNOWN) <= set(ec2.shape_for("InstanceRequirements").members)  # Spot Fleet
    asg_keys = set(autoscaling.shape_for("InstanceRequirements").members)
    assert set(requirements.KNOWN) - set(requirements.NOT_IN_ASG) <= asg_keys
    assert not set(requirements.NOT_IN_ASG) & asg_keys


# -- attributes -------------------------------------------------------------------------------


def test_ncpus_and_nram_come_from_the_lower_bounds_without_a_call(aws_provider: AwsProvider) -> None:
    calls = count_calls(aws_provider)
    flat = shaped()
    graviton = Template(
        template_id="Arm",
        max_number=4,
        fields={
            **BASE,
            "instanceRequirements": {
                "VCpuCount": {"Min": 4},
                "MemoryMiB": {"Min": 8192},
                "CpuManufacturers": ["amazon-web-services"],
            },
        },
    )
    offered = hooks_for(aws_provider).available_templates([flat, graviton])
    assert {t.template_id: {k: a.value for k, a in t.attributes.items()} for t in offered} == {
        "Shape": {"type": "X86_64", "ncpus": "2", "nram": "4096"},
        "Arm": {"type": "ARM64", "ncpus": "4", "nram": "8192"},
    }
    assert sum(calls.values()) == 0
    broken = Template(
        template_id="Broken", max_number=1, fields={**SHAPE, "instanceRequirements": {"VCpuCount": 4}}
    )
    (left,) = hooks_for(aws_provider).available_templates([broken])  # offered as written; validation says why
    assert hooks_for(aws_provider).validate_template(left)


# -- what each API is sent ------------------------------------------------------------------------

WANTED = {"VCpuCount": {"Min": 2, "Max": 8}, "MemoryMiB": {"Min": 4096}, "BurstablePerformance": "excluded"}


def shaped_on(network: Network, **fields: Any) -> Template:
    shape = {"vCpusMin": 2, "vCpusMax": 8, "memoryMiBMin": 4096}
    given = {"instanceRequirements": {"BurstablePerformance": "excluded"}}
    return make_template(network, "Shape", vmType=None, **{**shape, **given, **fields})


def test_ec2_fleet_overrides_carry_the_requirements_per_subnet(
    network: Network, aws_provider: AwsProvider
) -> None:
    calls = Calls(aws_provider.clients.ec2)
    answer(aws_provider.clients.ec2, "CreateFleet", lambda params: {"FleetId": "fleet-0123456789abcdef0"})
    template = parse_template(shaped_on(network, priceType="spot", maxSpotPrice=0.05))
    EC2FleetHandler(aws_provider.aws).provision("req-shape", template, 3)
    (params,) = calls.params("CreateFleet")
    (config,) = params["LaunchTemplateConfigs"]
    assert config["Overrides"] == [
        {"InstanceRequirements": WANTED, "SubnetId": subnet, "MaxPrice": "0.05"}
        for subnet in network.subnet_ids
    ]
    assert params["TargetCapacitySpecification"]["SpotTargetCapacity"] == 3
    (lt,) = calls.params("CreateLaunchTemplate")
    assert "InstanceType" not in lt["LaunchTemplateData"]


def test_ec2_fleet_is_sent_burstable_included_for_allowed_t_types(
    network: Network, aws_provider: AwsProvider
) -> None:
    calls = Calls(aws_provider.clients.ec2)
    answer(aws_provider.clients.ec2, "CreateFleet", lambda params: {"FleetId": "fleet-0123456789abcdef0"})
    template = make_template(network, "Small", vmType=None, vmTypes={"t3.micro": 1, "t3.small": 1}, **SHAPE)
    EC2FleetHandler(aws_provider.aws).provision("req-t3", parse_template(template), 2)
    (params,) = calls.params("CreateFleet")
    for override in params["LaunchTemplateConfigs"][0]["Overrides"]:
        assert override["InstanceRequirements"]["AllowedInstanceTypes"] == ["t3.micro", "t3.small"]
        assert override["InstanceRequirements"]["BurstablePerformance"] == "included"


def test_spot_fleet_overrides_carry_the_requirements(network: Network, aws_provider: AwsProvider) -> None:
    calls = Calls(aws_provider.clients.ec2)
    answer(aws_provider.clients.ec2, "RequestSpotFleet", lambda params: {"SpotFleetRequestId": "sfr-0a"})
    template = parse_template(shaped_on(network, priceType="spot", fleetRole=ROLE))
    SpotFleetHandler(aws_provider.aws).provision("req-shape", template, 2)
    (params,) = calls.params("RequestSpotFleet")
    (config,) = params["SpotFleetRequestConfig"]["LaunchTemplateConfigs"]
    assert config["Overrides"] == [
        {"InstanceRequirements": WANTED, "SubnetId": s} for s in network.subnet_ids
    ]


def test_an_auto_scaling_group_gets_one_override_with_the_requirements(
    network: Network, aws_provider: AwsProvider
) -> None:
    calls = Calls(aws_provider.clients.autoscaling)
    template = parse_template(shaped_on(network, vmTypes={"m5.large": 1, "m6i.large": 1}))
    ASGHandler(aws_provider.aws).provision("req-shape", template, 2)
    (params,) = calls.params("CreateAutoScalingGroup")
    policy = params["MixedInstancesPolicy"]
    assert policy["LaunchTemplate"]["Overrides"] == [
        {"InstanceRequirements": {**WANTED, "AllowedInstanceTypes": ["m5.large", "m6i.large"]}}
    ]
    assert policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"] == 100
    assert "LaunchTemplate" not in params
    refused = parse_template(shaped_on(network, instanceRequirements={"RequireEncryptionInTransit": True}))
    assert ASGHandler(aws_provider.aws).unsupported(refused) == (
        "an Auto Scaling group takes no instanceRequirements.RequireEncryptionInTransit"
    )


def test_run_instances_says_it_cannot_choose_by_requirements(network: Network, tmp_path: Path) -> None:
    provider = make_provider(make_context(tmp_path, None, {"handlers": {"order": ["RunInstances"]}}))
    hooks = hooks_for(provider)
    (problem,) = hooks.validate_template(shaped_on(network))
    assert problem.path == "(handler)"
    assert "RunInstances cannot choose instance types by requirements" in problem.message
    (problem,) = hooks.validate_template(shaped_on(network, providerApi="RunInstances"))
    assert problem.path == "providerApi" and "use EC2Fleet, ASG or SpotFleet" in problem.message
    with pytest.raises(ConfigError, match="RunInstances cannot choose instance types by requirements"):
        hooks.provision("req-run", shaped_on(network), 1)

"""Quota-aware capacity: availableNumber lowered to the account's vCPU quotas, shared between
templates on one quota, cached, and failing open.

moto's Service Quotas knows no EC2 quota (GetServiceQuota answers NoSuchResourceException and
GetAWSDefaultServiceQuota is not implemented), so the provider's client answers both itself
(``answer``, or an error reply built the same way); everything else (the running instances,
their types' vCPUs) is moto's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_aws.supply import quotas
from ohfp_core.models import Template

from .aws_support import count_calls, hooks_for
from .conftest import REGION, Network, make_context, make_template
from .fleet_support import Calls, answer

STANDARD, STANDARD_SPOT = "L-1216C47A", "L-34B43A08"
NAMES = {
    STANDARD: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
    STANDARD_SPOT: "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
}


def with_quotas(client: Any, values: dict[str, float]) -> None:
    """The account's applied quotas, as Service Quotas answers GetServiceQuota."""
    answer(
        client,
        "GetServiceQuota",
        lambda params: {
            "Quota": {
                "ServiceCode": "ec2",
                "QuotaCode": params["QuotaCode"],
                "QuotaName": NAMES.get(params["QuotaCode"], params["QuotaCode"]),
                "Value": values[params["QuotaCode"]],
            }
        },
    )


def refusing(client: Any, operation: str, code: str, message: str = "refused") -> None:
    """``operation`` answered with AWS's error ``code`` (HTTP 400), never reaching moto."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    service = client.meta.service_model.service_id.hyphenize()

    def handler(**_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("https://ohfp.test", 400, HTTPHeaders(), None), error

    client.meta.events.register_first(f"before-call.{service}.{operation}", handler)


def quota_provider(tmp_path: Path, cache_seconds: int = 300) -> AwsProvider:
    settings = {"quotas": {"enabled": True, "cacheSeconds": cache_seconds}}
    return make_provider(make_context(tmp_path, None, settings))


def running(network: Network, instance_type: str, count: int, spot: bool = False) -> None:
    """Instances outside ohfp, using the account's quota."""
    extra: dict[str, Any] = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
    ec2: Any = boto3.client("ec2", region_name=REGION)
    ec2.run_instances(
        ImageId=network.ami_id, MinCount=count, MaxCount=count, InstanceType=instance_type, **extra
    )


def offered(provider: AwsProvider, *templates: Template) -> dict[str, tuple[int | None, str]]:
    return {
        t.template_id: (t.available_number, t.available_reason)
        for t in hooks_for(provider).available_templates(list(templates))
    }


def test_instance_types_map_to_their_quota_class() -> None:
    expected = {
        "t3.micro": "standard",
        "c7gn.16xlarge": "standard",
        "im4gn.large": "standard",
        "i3.large": "standard",
        "g4dn.xlarge": "g",
        "gr6.4xlarge": "g",
        "vt1.3xlarge": "g",
        "p4d.24xlarge": "p",
        "x2idn.16xlarge": "x",
        "f1.2xlarge": "f",
        "inf2.xlarge": "inf",
        "trn1.2xlarge": "trn",
        "dl1.24xlarge": "dl",
        "hpc6a.48xlarge": "hpc",
        "u-6tb1.metal": "highmem",
        "u7i-12tb.224xlarge": "highmem",
        "mac1.metal": None,
    }
    assert {name: quotas.quota_class(name) for name in expected} == expected


def test_availability_is_what_the_quota_leaves_and_the_quota_is_named(
    network: Network, tmp_path: Path
) -> None:
    running(network, "t3.micro", 2)  # 4 vCPUs of the standard on-demand quota
    running(network, "m5.large", 1, spot=True)  # 2 vCPUs of the standard spot quota
    provider = quota_provider(tmp_path)
    with_quotas(provider.clients.service_quotas, {STANDARD: 11, STANDARD_SPOT: 8})
    ondemand = make_template(network, "OnDemand", max_number=50)  # t3.micro: 2 vCPUs
    large = make_template(network, "Large", max_number=2, vmType="m5.xlarge")  # 4 vCPUs, maxNumber lower
    spot = make_template(
        network, "Spot", priceType="spot", vmType=None, vmTypes={"m5.large": 1, "m5.xlarge": 2}
    )
    found = offered(provider, ondemand, large, spot)
    assert found["OnDemand"] == (
        3,
        f"AWS vCPU quota {STANDARD} ({NAMES[STANDARD]}): 11 vCPUs, 4 in use or asked for; 2 vCPUs per unit",
    )
    assert found["Large"] == (
        1,
        f"AWS vCPU quota {STANDARD} ({NAMES[STANDARD]}): 11 vCPUs, 4 in use or asked for; 4 vCPUs per unit",
    )
    assert found["Spot"][0] == 3  # (8 − 2) / 2 vCPUs per unit, both types cost 2 per unit


def test_templates_on_one_quota_share_it(network: Network, tmp_path: Path) -> None:
    provider = quota_provider(tmp_path)
    with_quotas(provider.clients.service_quotas, {STANDARD: 10})
    first = make_template(network, "First", providerApi="RunInstances")
    second = make_template(network, "Second", vmType="t3.small")
    assert {k: v[0] for k, v in offered(provider, first, second).items()} == {"First": 5, "Second": 5}
    hooks_for(provider).provision("req-1", first, 3)  # 6 vCPUs asked for, not yet counted by AWS
    assert {k: v[0] for k, v in offered(provider, first, second).items()} == {"First": 2, "Second": 2}


def test_quotas_and_usage_are_kept_so_calls_stay_fast(network: Network, tmp_path: Path) -> None:
    provider = quota_provider(tmp_path)
    calls = count_calls(provider)
    with_quotas(provider.clients.service_quotas, {STANDARD: 10})
    template = make_template(network)
    offered(provider, template)
    assert calls["servicequotas:GetServiceQuota"] == 1 and calls["ec2:DescribeInstances"] == 1
    before = sum(calls.values())
    offered(provider, template)
    assert sum(calls.values()) == before  # from the provider's memory: no AWS call
    (tmp_path / "uncached").mkdir()
    uncached = quota_provider(tmp_path / "uncached", cache_seconds=0)
    counted = count_calls(uncached)
    with_quotas(uncached.clients.service_quotas, {STANDARD: 10})
    for _ in range(2):
        offered(uncached, template)
    assert counted["servicequotas:GetServiceQuota"] == 2


def test_no_applied_value_falls_back_to_the_aws_default(network: Network, tmp_path: Path) -> None:
    provider = quota_provider(tmp_path)
    client = provider.clients.service_quotas
    calls = Calls(client)
    refusing(client, "GetServiceQuota", "NoSuchResourceException")
    answer(
        client,
        "GetAWSDefaultServiceQuota",
        lambda params: {"Quota": {"QuotaCode": params["QuotaCode"], "QuotaName": "Standard", "Value": 4.0}},
    )
    assert offered(provider, make_template(network))["OnDemand"][0] == 2
    assert calls.names() == ["GetServiceQuota", "GetAWSDefaultServiceQuota"]


def test_a_quota_aws_will_not_give_leaves_availability_alone(
    network: Network, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = quota_provider(tmp_path)
    calls = count_calls(provider)
    refusing(provider.clients.service_quotas, "GetServiceQuota", "AccessDeniedException", "not allowed")
    template = make_template(network)
    assert offered(provider, template)["OnDemand"] == (None, "")
    offered(provider, template)  # the refusal is kept too: not asked again
    assert calls["servicequotas:GetServiceQuota"] == 1


def test_heterogeneous_requirements_and_accelerators(network: Network, tmp_path: Path) -> None:
    provider = quota_provider(tmp_path)
    with_quotas(provider.clients.service_quotas, {STANDARD: 16, STANDARD_SPOT: 40})
    mixed = make_template(network, "Mixed", priceType="heterogeneous", percentOnDemand=50, vmType="m5.large")
    shaped = make_template(
        network, "Shaped", vmType=None, vCpusMin=2, vCpusMax=4, memoryMiBMin=4096, providerApi="EC2Fleet"
    )
    gpus = make_template(
        network,
        "Gpus",
        vmType=None,
        providerApi="EC2Fleet",
        instanceRequirements={
            "VCpuCount": {"Min": 4},
            "MemoryMiB": {"Min": 16384},
            "AcceleratorTypes": ["gpu"],
        },
    )
    found = {k: v[0] for k, v in offered(provider, mixed, shaped, gpus).items()}
    # on-demand: 16/2 = 8 units, half of the request → 16; spot: 40/2 = 20, half → 40
    assert found == {"Mixed": 16, "Shaped": 4, "Gpus": None}

"""Shared fixtures for AWS tests: fake credentials, a tiny AMI catalogue and a VPC in moto.

``MOTO_AMIS_PATH`` must be set before moto is imported (moto reads it at import), so it is
set here at module import, before any test module imports moto.

Speed: every botocore session of the run (boto3's, which moto resets per test, and
ohfp's) shares one loader, so each AWS service model is parsed once per run rather than
once per client; ohfp's process-wide session is made afresh per test, so no session
outlives the test (and moto's patching) it was made in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from ohfp_core.models import Attribute, ProviderContext, Template
from testbeds import AMIS_FILE

if TYPE_CHECKING:
    from ohfp_aws.provider import AwsProvider

os.environ.setdefault("MOTO_AMIS_PATH", str(AMIS_FILE))

REGION = "us-east-1"
AMI_ID = "ami-0123456789abcdef0"

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@attrs.frozen
class Network:
    """What a test VPC offers: two subnets in different zones, a security group, an AMI."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_id: str
    ami_id: str = AMI_ID


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials; nothing may probe the instance-metadata address."""
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def moto_aws(aws_env: None, moto_like_aws: None) -> Iterator[None]:
    """moto's in-process AWS for the duration of a test."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def moto_like_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto doing what AWS does where ohfp relies on it (:mod:`testbeds.moto_as_aws`), undone with the
    test's own patches, in order."""
    from testbeds.moto_as_aws import act_like_aws

    act_like_aws(monkeypatch)


@pytest.fixture
def network(moto_aws: None) -> Network:
    """A VPC with two subnets (two zones) and a security group."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for cidr, zone in (("10.0.0.0/20", f"{REGION}a"), ("10.0.16.0/20", f"{REGION}b"))
    )
    sg = ec2.create_security_group(GroupName="ohfp-test", Description="ohfp test", VpcId=vpc_id)["GroupId"]
    return Network(vpc_id=vpc_id, subnet_ids=subnets, security_group_id=sg)


@pytest.fixture(scope="session", autouse=True)
def _shared_service_models() -> Iterator[None]:
    import botocore.loaders
    import botocore.session

    loaders: dict[Any, Any] = {}

    def shared(search_path_string: Any = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = botocore.loaders.create_loader(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(autouse=True)
def _fresh_botocore_session(monkeypatch: pytest.MonkeyPatch) -> None:
    import ohfp_aws.access.session

    monkeypatch.setattr(ohfp_aws.access.session, "_SESSIONS", {})


@pytest.fixture(autouse=True)
def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry back-off sleeps for real; tests do not wait for it."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


# --- provider fixtures (ohfp_aws.provider) ---------------------------------------------------

AWS_CONFIG = {"AWS_REGION": REGION}


def make_context(
    tmp_path: Path, config: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
) -> ProviderContext:
    """A ProviderContext for instance ``awsinst`` with its dirs under ``tmp_path``."""
    for sub in ("conf", "work"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return ProviderContext(
        instance="awsinst",
        provider_type="aws",
        confdir=tmp_path / "conf",
        workdir=tmp_path / "work",
        config=config if config is not None else dict(AWS_CONFIG),
        settings=settings or {},
    )


@pytest.fixture
def aws_ctx(tmp_path: Path) -> ProviderContext:
    """A ProviderContext with config ``{"AWS_REGION": "us-east-1"}`` and a tmp conf/work dir."""
    return make_context(tmp_path)


@pytest.fixture
def aws_provider(moto_aws: None, aws_ctx: ProviderContext) -> AwsProvider:
    """The AWS provider for ``aws_ctx``, talking to moto."""
    from ohfp_aws.provider import make_provider

    return make_provider(aws_ctx)


def make_template(
    network: Network, template_id: str = "OnDemand", max_number: int = 50, **fields: Any
) -> Template:
    """An on-demand t3.micro template in ``network``; ``fields`` override or add keys (None drops)."""
    base: dict[str, Any] = {
        "imageId": network.ami_id,
        "vmType": "t3.micro",
        "subnetId": list(network.subnet_ids),
        "securityGroupIds": [network.security_group_id],
    }
    base.update(fields)
    attributes = {
        "type": Attribute("String", "X86_64"),
        "ncpus": Attribute("Numeric", "2"),
        "nram": Attribute("Numeric", "1024"),
    }
    return Template(
        template_id=template_id,
        max_number=max_number,
        attributes=attributes,
        fields={k: v for k, v in base.items() if v is not None},
    )

"""Launch templates ohfp makes per request, against moto."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import attrs
import boto3
import pytest

from ohfp_aws.launch.launch_templates import delete_for_request, discard_after_failure, ensure_for_request
from ohfp_aws.vocabulary import TAG_REQUEST, client_token
from ohfp_core.errors import CloudError

from .conftest import REGION, Network
from .fleet_support import Calls, aws_context, template


@pytest.fixture
def provider(network: Network, tmp_path: Path) -> Any:
    return aws_context(tmp_path)


def versions(lt_id: str) -> list[Any]:
    ec2 = boto3.client("ec2", region_name=REGION)
    result: list[Any] = ec2.describe_launch_template_versions(LaunchTemplateId=lt_id)[
        "LaunchTemplateVersions"
    ]
    return result


def test_creates_named_tagged_template(provider: Any, network: Network) -> None:
    calls = Calls(provider.clients.ec2)
    tpl = template(network, user_data="#!/bin/sh\necho hi\n", instance_tags={"team": "grid"})
    ref = ensure_for_request(provider, "req-1", tpl, "t3.micro")
    lt_id, version = ref.launch_template_id, ref.launch_template_version
    (params,) = calls.params("CreateLaunchTemplate")
    assert params["LaunchTemplateName"] == "ohfp-req-1"
    assert params["ClientToken"] == client_token("req-1", "lt")
    assert {"Key": TAG_REQUEST, "Value": "req-1"} in params["TagSpecifications"][0]["Tags"]
    data = versions(lt_id)[0]["LaunchTemplateData"]
    assert version == "1"
    assert data["ImageId"] == network.ami_id and data["InstanceType"] == "t3.micro"
    assert data["SecurityGroupIds"] == [network.security_group_id]
    assert base64.b64decode(data["UserData"]).decode() == "#!/bin/sh\necho hi\n"
    instance_tags = next(s for s in data["TagSpecifications"] if s["ResourceType"] == "instance")["Tags"]
    assert {"Key": "team", "Value": "grid"} in instance_tags


def test_second_attempt_reuses_the_template(provider: Any, network: Network) -> None:
    first = ensure_for_request(provider, "req-2", template(network))
    second = ensure_for_request(provider, "req-2", template(network))
    assert first == second  # same id, version and creation time (the anchor for deadlines)
    assert first.launch_template_created is True
    ec2 = boto3.client("ec2", region_name=REGION)
    assert len(ec2.describe_launch_templates()["LaunchTemplates"]) == 1


def test_user_template_is_used_and_never_deleted(provider: Any, network: Network) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    own = ec2.create_launch_template(
        LaunchTemplateName="mine", LaunchTemplateData={"ImageId": network.ami_id}
    )
    own_id = own["LaunchTemplate"]["LaunchTemplateId"]
    calls = Calls(provider.clients.ec2)
    handle = ensure_for_request(
        provider, "req-3", template(network, image_id=None, launch_template_id=own_id)
    )
    assert attrs.asdict(handle) == {
        "launch_template_id": own_id,
        "launch_template_version": "$Default",
        "launch_template_created": False,
        "launch_template_created_at": None,
    }
    delete_for_request(provider, handle)
    assert calls.made == []  # no create, no delete
    assert ec2.describe_launch_templates(LaunchTemplateIds=[own_id])["LaunchTemplates"]


def test_delete_is_idempotent(provider: Any, network: Network) -> None:
    handle = ensure_for_request(provider, "req-4", template(network))
    delete_for_request(provider, handle)
    delete_for_request(provider, handle)  # already gone: not an error
    ec2 = boto3.client("ec2", region_name=REGION)
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_discard_keeps_template_after_transient_failure(provider: Any, network: Network) -> None:
    handle = ensure_for_request(provider, "req-5", template(network))
    ec2 = boto3.client("ec2", region_name=REGION)
    discard_after_failure(provider, handle, CloudError("CreateFleet: timed out", "ReadTimeoutError", True))
    assert len(ec2.describe_launch_templates()["LaunchTemplates"]) == 1
    discard_after_failure(provider, handle, CloudError("CreateFleet: bad subnet", "InvalidSubnetID.NotFound"))
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_template_without_image_is_refused(provider: Any, network: Network) -> None:
    with pytest.raises(CloudError, match="neither imageId nor launchTemplateId"):
        ensure_for_request(provider, "req-6", template(network, image_id=None))

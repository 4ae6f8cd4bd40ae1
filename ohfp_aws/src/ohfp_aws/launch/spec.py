"""Launch parameters shared by RunInstances and launch templates.

:func:`instance_launch_data` returns EC2 ``LaunchTemplateData`` (PascalCase keys, user data
base64-encoded, as launch templates want it). RunInstances takes the same keys, but botocore
base64-encodes its ``UserData`` itself: use :func:`run_instances_params` for that call.
The instance type is not included: fleets set it per override, RunInstances per call.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ohfp_aws.access.boundary import aws_call
from ohfp_aws.vocabulary import AwsTemplate

DEFAULT_ROOT_DEVICE = "/dev/xvda"


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` as EC2's ``[{"Key": "k", "Value": "v"}]``."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def needs_root_device(template: AwsTemplate) -> bool:
    """True when the template sets root volume fields (so the AMI's root device name matters)."""
    return bool(template.root_device_volume_size or template.volume_type or template.iops)


def root_device_name(ec2: Any, image_id: str) -> str:
    """The AMI's root device name (DescribeImages), ``/dev/xvda`` when AWS does not say.

    Call it only when :func:`needs_root_device`: a wrong name adds a second volume instead of
    resizing the root one, so guessing is worse than one describe call.
    """
    with aws_call("DescribeImages"):
        images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    name = images[0].get("RootDeviceName") if images else None
    return str(name) if name else DEFAULT_ROOT_DEVICE


def instance_launch_data(
    template: AwsTemplate,
    image_id: str,
    tags: Mapping[str, str],
    root_device: str = DEFAULT_ROOT_DEVICE,
) -> dict[str, Any]:
    """The template's launch parameters as EC2 LaunchTemplateData.

    Keys present only when the template sets them: ``ImageId`` (always), ``KeyName``,
    ``SecurityGroupIds``, ``BlockDeviceMappings`` (root volume on ``root_device``),
    ``IamInstanceProfile`` (``Arn`` for an ARN, else ``Name``), ``UserData`` (base64) and
    ``TagSpecifications`` for instances and volumes (always: ohfp's tags).
    """
    data: dict[str, Any] = {"ImageId": image_id}
    if template.key_name:
        data["KeyName"] = template.key_name
    if template.security_group_ids:
        data["SecurityGroupIds"] = list(template.security_group_ids)
    if needs_root_device(template):
        ebs: dict[str, Any] = {"DeleteOnTermination": True}
        if template.root_device_volume_size:
            ebs["VolumeSize"] = template.root_device_volume_size
        if template.volume_type:
            ebs["VolumeType"] = template.volume_type
        if template.iops:
            ebs["Iops"] = template.iops
        data["BlockDeviceMappings"] = [{"DeviceName": root_device, "Ebs": ebs}]
    if template.instance_profile:
        key = "Arn" if template.instance_profile.startswith("arn:") else "Name"
        data["IamInstanceProfile"] = {key: template.instance_profile}
    if template.user_data:
        data["UserData"] = base64.b64encode(template.user_data.encode()).decode("ascii")
    if tags:
        data["TagSpecifications"] = [
            {"ResourceType": kind, "Tags": tag_list(tags)} for kind in ("instance", "volume")
        ]
    return data


def run_instances_params(
    template: AwsTemplate,
    image_id: str,
    tags: Mapping[str, str],
    root_device: str = DEFAULT_ROOT_DEVICE,
) -> dict[str, Any]:
    """:func:`instance_launch_data` for RunInstances: ``UserData`` as plain text."""
    params = instance_launch_data(template, image_id, tags, root_device)
    if template.user_data:
        params["UserData"] = template.user_data
    return params

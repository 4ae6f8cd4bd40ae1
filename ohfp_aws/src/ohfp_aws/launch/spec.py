"""Launch parameters shared by RunInstances and launch templates.

:func:`instance_launch_data` returns EC2 ``LaunchTemplateData`` (PascalCase keys, user data
base64-encoded, as launch templates want it); :func:`run_instances_params` the same keys for
RunInstances, whose ``UserData`` botocore base64-encodes itself.
The instance type is not included: fleets set it per override, RunInstances per call.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from ohfp_aws.vocabulary import AwsTemplate

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import VolumeTypeType
    from mypy_boto3_ec2.type_defs import (
        EbsBlockDeviceTypeDef,
        LaunchTemplateEbsBlockDeviceRequestTypeDef,
        LaunchTemplateIamInstanceProfileSpecificationRequestTypeDef,
        RequestLaunchTemplateDataTypeDef,
        RunInstancesRequestTypeDef,
        TagTypeDef,
    )

    from ohfp_aws.access.ec2 import Ec2

DEFAULT_ROOT_DEVICE = "/dev/xvda"


def tag_list(tags: Mapping[str, str]) -> list[TagTypeDef]:
    """``{"k": "v"}`` as EC2's ``[{"Key": "k", "Value": "v"}]``."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def needs_root_device(template: AwsTemplate) -> bool:
    """True when the template sets root volume fields (so the AMI's root device name matters)."""
    return bool(template.root_device_volume_size or template.volume_type or template.iops)


def root_device_name(ec2: Ec2, image_id: str) -> str:
    """The AMI's root device name (DescribeImages), ``/dev/xvda`` when AWS does not say.

    Call it only when :func:`needs_root_device`: a wrong name adds a second volume instead of
    resizing the root one, so guessing is worse than one describe call.
    """
    images = ec2.images([image_id])
    name = images[0].get("RootDeviceName") if images else None
    return str(name) if name else DEFAULT_ROOT_DEVICE


def instance_launch_data(
    template: AwsTemplate,
    image_id: str,
    tags: Mapping[str, str],
    root_device: str = DEFAULT_ROOT_DEVICE,
) -> RequestLaunchTemplateDataTypeDef:
    """The template's launch parameters as EC2 LaunchTemplateData.

    Keys present only when the template sets them: ``ImageId`` (always), ``KeyName``,
    ``SecurityGroupIds``, ``BlockDeviceMappings`` (root volume on ``root_device``),
    ``IamInstanceProfile`` (``Arn`` for an ARN, else ``Name``), ``UserData`` (base64) and
    ``TagSpecifications`` for instances and volumes (always: ohfp's tags).
    """
    data: RequestLaunchTemplateDataTypeDef = {"ImageId": image_id}
    if template.key_name:
        data["KeyName"] = template.key_name
    if template.security_group_ids:
        data["SecurityGroupIds"] = list(template.security_group_ids)
    if needs_root_device(template):
        data["BlockDeviceMappings"] = [{"DeviceName": root_device, "Ebs": root_volume(template)}]
    if template.instance_profile:
        data["IamInstanceProfile"] = instance_profile(template.instance_profile)
    if template.user_data:
        data["UserData"] = base64.b64encode(template.user_data.encode()).decode("ascii")
    if tags:
        data["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": tag_list(tags)},
            {"ResourceType": "volume", "Tags": tag_list(tags)},
        ]
    return data


def run_instances_params(
    template: AwsTemplate,
    image_id: str,
    tags: Mapping[str, str],
    root_device: str = DEFAULT_ROOT_DEVICE,
) -> RunInstancesRequestTypeDef:
    """The keys of :func:`instance_launch_data` for RunInstances (``UserData`` as plain text:
    botocore encodes it), for one instance (the caller sets ``MinCount`` and ``MaxCount``)."""
    params: RunInstancesRequestTypeDef = {"MinCount": 1, "MaxCount": 1, "ImageId": image_id}
    if template.key_name:
        params["KeyName"] = template.key_name
    if template.security_group_ids:
        params["SecurityGroupIds"] = list(template.security_group_ids)
    if needs_root_device(template):
        # RunInstances takes the launch template's keys for the volume.
        ebs = cast("EbsBlockDeviceTypeDef", root_volume(template))
        params["BlockDeviceMappings"] = [{"DeviceName": root_device, "Ebs": ebs}]
    if template.instance_profile:
        params["IamInstanceProfile"] = instance_profile(template.instance_profile)
    if template.user_data:
        params["UserData"] = template.user_data
    if tags:
        params["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": tag_list(tags)},
            {"ResourceType": "volume", "Tags": tag_list(tags)},
        ]
    return params


def root_volume(template: AwsTemplate) -> LaunchTemplateEbsBlockDeviceRequestTypeDef:
    """The root volume the template asks for (deleted with the instance)."""
    ebs: LaunchTemplateEbsBlockDeviceRequestTypeDef = {"DeleteOnTermination": True}
    if template.root_device_volume_size:
        ebs["VolumeSize"] = template.root_device_volume_size
    if template.volume_type:
        ebs["VolumeType"] = cast("VolumeTypeType", template.volume_type)  # one of the template's choices
    if template.iops:
        ebs["Iops"] = template.iops
    return ebs


def instance_profile(name_or_arn: str) -> LaunchTemplateIamInstanceProfileSpecificationRequestTypeDef:
    """``{"Arn": …}`` for an ARN, else ``{"Name": …}``."""
    return {"Arn": name_or_arn} if name_or_arn.startswith("arn:") else {"Name": name_or_arn}

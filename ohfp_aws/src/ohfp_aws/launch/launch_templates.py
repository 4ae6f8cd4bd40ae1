"""Launch templates that fleets and groups launch from.

ohfp makes one launch template per request, named ``ohfp-<request_id>``, tagged like every
other resource of the request, and deletes it with the fleet or group. A template that names
its own ``launchTemplateId`` uses that one as is: ohfp neither changes nor deletes it. The
:class:`LaunchTemplateRef` (kept in the request's handle) records which case applies.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, cast

from attrs import frozen

from ohfp_aws.access.boundary import TRANSIENT_CODES, error_code
from ohfp_aws.context import AwsContext
from ohfp_aws.launch import resources
from ohfp_aws.launch.spec import instance_launch_data, needs_root_device, root_device_name, tag_list
from ohfp_aws.vocabulary import AwsTemplate, client_token
from ohfp_core.errors import CloudError

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import InstanceTypeType

NAME_PREFIX = "ohfp-"
KIND = "launch template"
DEFAULT_VERSION = "$Default"  # for a launch template the user names
_ALREADY_EXISTS = "InvalidLaunchTemplateName.AlreadyExistsException"
_NOT_FOUND = frozenset({"InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException"})
ACTIONS = ("ec2:CreateLaunchTemplate", "ec2:DescribeLaunchTemplates", "ec2:DeleteLaunchTemplate")
"""IAM actions of this module (plus ``ec2:DescribeImages`` when a root volume is set)."""


@frozen(kw_only=True)
class LaunchTemplateRef:
    """The launch template a fleet or group launches from: ohfp's own one for the request
    (``launch_template_created``, deleted with the fleet or group), or the template's
    ``launchTemplateId``. ``launch_template_created_at`` (epoch seconds, None for a user's
    template) is the same on every attempt for a request: deadlines start from it."""

    launch_template_id: str
    launch_template_version: str
    launch_template_created: bool = False
    launch_template_created_at: int | None = None


def template_name(request_id: str) -> str:
    """The name of the launch template ohfp makes for ``request_id``."""
    return f"{NAME_PREFIX}{request_id}"


def ensure_for_request(
    ctx: AwsContext,
    request_id: str,
    template: AwsTemplate,
    instance_type: str | None = None,
) -> LaunchTemplateRef:
    """The launch template to launch ``template``'s machines from.

    With ``template.launch_template_id`` that template at its default version (nothing is
    created). Otherwise a template ``ohfp-<request_id>`` made from the template's fields (and
    ``instance_type``, for an Auto Scaling group of one type). Idempotent: a
    template of that name made by an earlier attempt is reused, with its creation time, so
    a retried create call carries the same parameters as the first (as client tokens require).

    :raises CloudError: when AWS refuses the template.
    """
    if template.launch_template_id:
        return LaunchTemplateRef(
            launch_template_id=template.launch_template_id, launch_template_version=DEFAULT_VERSION
        )
    if not template.image_id:
        raise CloudError(f"template {template.template_id} has neither imageId nor launchTemplateId")
    ec2 = ctx.services.ec2
    image_id = ctx.resolve_image(template.image_id)
    tags = ctx.tags_for(request_id, template)
    if needs_root_device(template):
        data = instance_launch_data(template, image_id, tags, root_device_name(ec2, image_id))
    else:
        data = instance_launch_data(template, image_id, tags)
    if instance_type is not None:
        data["InstanceType"] = cast("InstanceTypeType", instance_type)  # checked by the template
    name = template_name(request_id)
    try:
        created = ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=data,
            ClientToken=client_token(request_id, "lt"),
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": tag_list(tags)}],
        )
    except CloudError as exc:
        if error_code(exc) != _ALREADY_EXISTS:
            raise
        created = ec2.launch_templates([name])[0]
    else:
        resources.created(KIND, str(created.get("LaunchTemplateId")), name=name)
    create_time = created.get("CreateTime")
    return LaunchTemplateRef(
        launch_template_id=str(created.get("LaunchTemplateId")),
        launch_template_version=str(created.get("LatestVersionNumber")),
        launch_template_created=True,
        launch_template_created_at=int(create_time.timestamp())
        if isinstance(create_time, datetime)
        else None,
    )


def delete_for_request(ctx: AwsContext, ref: LaunchTemplateRef, made_for: str | None = None) -> None:
    """Delete the launch template ``ref`` names (made for the request ``made_for``), only if
    ohfp created it.

    A template already deleted is not an error.
    """
    if not ref.launch_template_created or not ref.launch_template_id:
        return
    try:
        ctx.services.ec2.delete_launch_template(ref.launch_template_id)
    except CloudError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise
        return
    resources.deleted(KIND, ref.launch_template_id, made_for)


def delete_by_request_id(ctx: AwsContext, request_id: str) -> None:
    """Delete the launch template ``ohfp-<request_id>`` found by name, for a request whose
    handle was lost; only when it carries this request's and provider instance's tags (a
    template ohfp made). A template that does not exist is not an error.
    """
    try:
        found = ctx.services.ec2.launch_templates([template_name(request_id)])
    except CloudError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise
        return
    for launch_template in found:
        if ctx.made_for(launch_template.get("Tags"), request_id):
            ref = LaunchTemplateRef(
                launch_template_id=launch_template.get("LaunchTemplateId", ""),
                launch_template_version=str(launch_template.get("LatestVersionNumber", "")),
                launch_template_created=True,
            )
            delete_for_request(ctx, ref, request_id)


def discard_after_failure(ctx: AwsContext, ref: LaunchTemplateRef, exc: CloudError) -> None:
    """Delete the request's launch template after its create call failed for good.

    After a transient failure (a timeout, an internal error) the create may still have
    happened, and a retry with the same client token would find a fleet launching from this
    template, so it is kept. Errors deleting it are dropped: ``exc`` is what the caller reports.
    """
    if error_code(exc) in TRANSIENT_CODES:
        return
    with contextlib.suppress(CloudError):
        delete_for_request(ctx, ref)

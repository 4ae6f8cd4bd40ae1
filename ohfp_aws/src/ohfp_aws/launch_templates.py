"""Launch templates that fleets and groups launch from.

ohfp makes one launch template per request, named ``ohfp-<request_id>``, tagged like every
other resource of the request, and deletes it with the fleet or group. A template that names
its own ``launchTemplateId`` uses that one as is: ohfp neither changes nor deletes it. The
handle records which case applies (``launch_template_created``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ohfp_aws.errors import TRANSIENT_CODES, aws_call, error_code
from ohfp_aws.handlers.base import AwsContext, AwsTemplate, client_token
from ohfp_aws.handlers.common import made_for
from ohfp_aws.launch_spec import instance_launch_data, needs_root_device, root_device_name, tag_list
from ohfp_core.errors import CloudError

NAME_PREFIX = "ohfp-"
DEFAULT_VERSION = "$Default"  # for a launch template the user names
_ALREADY_EXISTS = "InvalidLaunchTemplateName.AlreadyExistsException"
_NOT_FOUND = frozenset({"InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException"})
ACTIONS = ("ec2:CreateLaunchTemplate", "ec2:DescribeLaunchTemplates", "ec2:DeleteLaunchTemplate")
"""IAM actions of this module (plus ``ec2:DescribeImages`` when a root volume is set)."""


def template_name(request_id: str) -> str:
    """The name of the launch template ohfp makes for ``request_id``."""
    return f"{NAME_PREFIX}{request_id}"


def create_for_request(
    ctx: AwsContext,
    request_id: str,
    template: AwsTemplate,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """The launch template id and version to launch ``template``'s machines from.

    With ``template.launch_template_id`` that template at its default version (nothing is
    created). Otherwise a template ``ohfp-<request_id>`` made from the template's fields plus
    ``overrides`` (extra LaunchTemplateData keys such as ``InstanceType``). Idempotent: a
    template of that name made by an earlier attempt is reused.

    :raises CloudError: when AWS refuses the template.
    """
    template_id, version, _ = _ensure(ctx, request_id, template, overrides)
    return template_id, version


def handle_fields(
    ctx: AwsContext,
    request_id: str,
    template: AwsTemplate,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`create_for_request` as the handle keys every handler stores.

    ``launch_template_created_at`` (epoch seconds, None for a user's template) is the same
    on every attempt for a request, so handlers derive deadlines from it and a retried
    create call carries the same parameters as the first (as client tokens require).
    """
    template_id, version, created_at = _ensure(ctx, request_id, template, overrides)
    return {
        "launch_template_id": template_id,
        "launch_template_version": version,
        "launch_template_created": not template.launch_template_id,
        "launch_template_created_at": created_at,
    }


def _ensure(
    ctx: AwsContext, request_id: str, template: AwsTemplate, overrides: Mapping[str, Any] | None
) -> tuple[str, str, int | None]:
    if template.launch_template_id:
        return template.launch_template_id, DEFAULT_VERSION, None
    if not template.image_id:
        raise CloudError(f"template {template.template_id} has neither imageId nor launchTemplateId")
    ec2 = ctx.clients.ec2
    image_id = ctx.resolve_image(template.image_id)
    tags = ctx.tags_for(request_id, template)
    if needs_root_device(template):
        data = instance_launch_data(template, image_id, tags, root_device_name(ec2, image_id))
    else:
        data = instance_launch_data(template, image_id, tags)
    data.update(overrides or {})
    name = template_name(request_id)
    try:
        with aws_call("CreateLaunchTemplate"):
            created = ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData=data,
                ClientToken=client_token(request_id, "lt"),
                TagSpecifications=[{"ResourceType": "launch-template", "Tags": tag_list(tags)}],
            )["LaunchTemplate"]
    except CloudError as exc:
        if error_code(exc) != _ALREADY_EXISTS:
            raise
        with aws_call("DescribeLaunchTemplates"):
            created = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"][0]
    create_time = created.get("CreateTime")
    created_at = int(create_time.timestamp()) if isinstance(create_time, datetime) else None
    return str(created["LaunchTemplateId"]), str(created["LatestVersionNumber"]), created_at


def launch_template_spec(handle: Mapping[str, Any]) -> dict[str, str]:
    """The ``LaunchTemplateSpecification`` for a handle made by :func:`handle_fields`."""
    return {"LaunchTemplateId": handle["launch_template_id"], "Version": handle["launch_template_version"]}


def delete_for_request(ctx: AwsContext, handle: Mapping[str, Any]) -> None:
    """Delete the launch template the handle records, only if ohfp created it.

    A template already gone is not an error.
    """
    if not handle.get("launch_template_created") or not handle.get("launch_template_id"):
        return
    try:
        with aws_call("DeleteLaunchTemplate"):
            ctx.clients.ec2.delete_launch_template(LaunchTemplateId=handle["launch_template_id"])
    except CloudError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise


def delete_by_request_id(ctx: AwsContext, request_id: str) -> None:
    """Delete the launch template ``ohfp-<request_id>`` found by name, for a request whose
    handle was lost; only when it carries this request's and provider instance's tags (a
    template ohfp made). A template that does not exist is not an error.
    """
    try:
        with aws_call("DescribeLaunchTemplates"):
            found = ctx.clients.ec2.describe_launch_templates(LaunchTemplateNames=[template_name(request_id)])
    except CloudError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise
        return
    for launch_template in found.get("LaunchTemplates", []):
        if made_for(launch_template.get("Tags"), ctx, request_id):
            handle = {
                "launch_template_created": True,
                "launch_template_id": launch_template["LaunchTemplateId"],
            }
            delete_for_request(ctx, handle)


def discard_after_failure(ctx: AwsContext, handle: Mapping[str, Any], exc: CloudError) -> None:
    """Delete the request's launch template after its create call failed for good.

    After a transient failure (a timeout, an internal error) the create may still have
    happened, and a retry with the same client token would find a fleet launching from this
    template, so it is kept. Errors deleting it are dropped: ``exc`` is what the caller reports.
    """
    if error_code(exc) in TRANSIENT_CODES:
        return
    with contextlib.suppress(CloudError):
        delete_for_request(ctx, handle)

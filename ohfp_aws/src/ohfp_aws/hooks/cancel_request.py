"""Clean-up after a provisioning call that died (``ohfp_cancel_request``).

What ohfp made for the request is found by the request id alone: each enabled API's fleets
or group (:meth:`~ohfp_aws.apis.base.Handler.cancel`), then the instances still tagged
with the id, then the launch template ``ohfp-<request id>``. APIs that are disabled are not
asked (the IAM policy may not allow their calls).
"""

from __future__ import annotations

from ohfp_aws.access import instances
from ohfp_aws.access.boundary import aws_call
from ohfp_aws.apis import HandlerSet
from ohfp_aws.context import AwsContext
from ohfp_aws.launch.launch_templates import delete_by_request_id
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger

log = get_logger("ohfp.aws")


def cancel(ctx: AwsContext, handlers: HandlerSet, request_id: str) -> bool:
    """Remove every fleet, group, instance and launch template made for ``request_id``; True
    once done (nothing left, or on its way out).

    :raises CloudError: when AWS refused; core asks again later.
    """
    templates = False
    for handler in handlers.enabled():
        with aws_call(handler.api):
            handler.cancel(request_id)
        templates = templates or "ec2:DeleteLaunchTemplate" in handler.actions
    left = instances.tagged_for_requests(ctx.services.ec2, [request_id], ctx.instance_name)[request_id]
    errors = ctx.terminate_instances(left)
    if errors:
        raise CloudError(
            f"TerminateInstances: {len(errors)} of {len(left)} instances: {next(iter(errors.values()))}"
        )
    if templates:
        delete_by_request_id(ctx, request_id)
    log.info("cancelled request", request_id=request_id, instances=len(left))
    return True

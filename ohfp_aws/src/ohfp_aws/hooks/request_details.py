"""A request explained to an administrator (``ohfp_request_details``, ``ohfp requests show``).

Read from the stored handle, without calling AWS: what ohfp made for the request (fleet,
group or instances), the errors AWS gave, and why each offering fell short
(:func:`ohfp_aws.supply.shortfalls.as_json`), plus the offerings currently remembered as short of
capacity (tried last by the next request).
"""

from __future__ import annotations

from typing import Any

from ohfp_aws.apis import handles
from ohfp_aws.apis.handles import FleetHandle, GroupHandle, Handle, InstancesHandle
from ohfp_aws.context import AwsContext
from ohfp_aws.supply.offerings import PREFIX
from ohfp_aws.supply.shortfalls import as_json
from ohfp_core.models import CloudRequest, RequestKind


def explain(ctx: AwsContext, request: CloudRequest) -> dict[str, Any] | None:
    """The AWS side of an acquire request; None for a return request or one without a handle."""
    api = handles.api_of(request.handle)
    kind = handles.KINDS.get(api)
    if request.kind is not RequestKind.ACQUIRE or kind is None:
        return None
    try:
        handle: Handle = handles.load(request.handle, kind)  # type: ignore[type-var]
    except ValueError as exc:
        return {"api": api, "message": str(exc)}
    made: dict[str, Any] = {"api": api}
    if isinstance(handle, FleetHandle):
        made.update(fleetId=handle.fleet_id, fleetType=handle.fleet_type, targetUnits=handle.target)
    elif isinstance(handle, GroupHandle):
        made.update(groupName=handle.group_name, targetUnits=handle.target)
    if isinstance(handle, FleetHandle | InstancesHandle):
        made.update(instanceIds=list(handle.instance_ids), errors=list(handle.errors))
    if isinstance(handle, FleetHandle | GroupHandle) and handle.launch_template_created:
        made["launchTemplateId"] = handle.launch_template_id
    made["shortfalls"] = [as_json(item) for item in handle.shortfalls]
    remembered = ctx.values.with_prefix(PREFIX)
    made["unavailableOfferings"] = sorted(key[len(PREFIX) :] for key in remembered)
    return made

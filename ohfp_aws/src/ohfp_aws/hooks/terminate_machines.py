"""Machines Host Factory returns (``ohfp_terminate_machines``).

A machine of a known acquire request goes back through its API's handler, which also
lowers or deletes what launched it; a machine whose request ohfp does not know is simply
terminated; a host Host Factory names without an id is found by its private DNS name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ohfp_aws.access import instances
from ohfp_aws.access.boundary import aws_call
from ohfp_aws.apis import HANDLERS, HandlerSet, handles
from ohfp_aws.context import AwsContext
from ohfp_core.errors import CloudError
from ohfp_core.models import ReturnItem


def terminate(ctx: AwsContext, handlers: HandlerSet, machines: Sequence[ReturnItem]) -> dict[str, str]:
    """An error message per machine id (per name for a host without one) not terminated."""
    by_api: dict[str, list[ReturnItem]] = defaultdict(list)
    direct: list[str] = []
    names: list[str] = []
    for item in machines:
        api = handles.api_of(item.request.handle) if item.request is not None else ""
        if not item.machine_id:
            names.append(item.name)
        elif api in HANDLERS:
            by_api[api].append(item)
        else:
            direct.append(item.machine_id)
    errors: dict[str, str] = {}
    for api, items in by_api.items():
        try:
            with aws_call(api):
                errors.update(handlers.get(api).release(items))
        except CloudError as exc:
            errors.update({item.machine_id: str(exc) for item in items})
    if direct:
        try:
            errors.update(ctx.terminate_instances(direct))
        except CloudError as exc:
            errors.update(dict.fromkeys(direct, str(exc)))
    if names:
        try:
            errors.update(_terminate_by_name(ctx, names))
        except CloudError as exc:
            errors.update(dict.fromkeys(names, str(exc)))
    return errors


def _terminate_by_name(ctx: AwsContext, names: Sequence[str]) -> dict[str, str]:
    """Terminate hosts named without an id; an error per name. A name EC2 does not know, or
    whose instance is already terminated, needs nothing: not an error."""
    found = {
        name: instance["InstanceId"]
        for name, instance in instances.by_name(ctx.services.ec2, names).items()
        if instance.get("State", {}).get("Name") != "terminated"
    }
    failures = ctx.terminate_instances(list(found.values()))
    return {name: failures[instance_id] for name, instance_id in found.items() if instance_id in failures}

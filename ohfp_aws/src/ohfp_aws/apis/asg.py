"""Auto Scaling groups: one group ``ohfp-<request_id>`` per request.

The group launches from ohfp's launch template in the template's subnets with desired
capacity = the units asked for. Several instance types, or spot, use a
MixedInstancesPolicy: overrides in priority order (``vmTypesOnDemand`` first, so a
``prioritized`` on-demand strategy takes them first), weights, and the on-demand share as
``OnDemandPercentageAboveBaseCapacity``; a template by instance requirements has one
override holding them. Returning machines detaches them with the desired
capacity decremented (so the group does not replace them), then terminates them; the last
machine deletes the group and the launch template. Provisioning again for a request whose
group exists (a retried call) is refused by AWS with AlreadyExists: the group is then
described and its handle returned, nothing made twice.

A group short of its desired capacity is waited for until ``spotFleetRequestExpiry`` minutes
after the request (as fleets are); then the request ends with what it got, and the group's
latest failed scaling activity says why. Its failed activities since the last successful one
also say why per instance type and zone (kept in the handle; the offerings short of capacity
are remembered and their types listed last in the next group's overrides).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

import attrs

from ohfp_aws.access.boundary import error_code
from ohfp_aws.access.instances import chunks
from ohfp_aws.apis import handles
from ohfp_aws.apis.common import (
    Clock,
    deadline,
    epoch_of,
    fleet_state,
    group_returns,
    loaded,
    missing_launch_source,
)
from ohfp_aws.apis.handles import GroupHandle
from ohfp_aws.context import AwsContext
from ohfp_aws.launch import resources
from ohfp_aws.launch.launch_templates import ACTIONS as LAUNCH_TEMPLATE_ACTIONS
from ohfp_aws.launch.launch_templates import (
    delete_for_request,
    discard_after_failure,
    ensure_for_request,
    template_name,
)
from ohfp_aws.supply.overrides import on_demand_strategy, priorities, weights
from ohfp_aws.vocabulary import ASG, ON_DEMAND_STRATEGIES, SPOT_STRATEGIES, AwsTemplate, FleetState
from ohfp_core.errors import CloudError
from ohfp_core.models import CloudRequest, Provisioned, ReturnItem

if TYPE_CHECKING:
    from mypy_boto3_autoscaling.type_defs import (
        AutoScalingGroupTypeDef,
        CreateAutoScalingGroupTypeTypeDef,
        InstanceRequirementsTypeDef,
        InstancesDistributionTypeDef,
        LaunchTemplateTypeDef,
        MixedInstancesPolicyTypeDef,
    )

KIND = "Auto Scaling group"
DESCRIBE_NAMES = 100  # names per DescribeAutoScalingGroups (with MaxRecords=100)
DETACH_IDS = 20  # DetachInstances takes at most 20 ids
ACTIVITIES = 10  # scaling activities read to explain a shortfall (newest first)
_DEPARTING = ("Terminating", "Terminated", "Detaching", "Detached")  # lifecycle states


def group_name(request_id: str) -> str:
    return template_name(request_id)  # the same ``ohfp-<request_id>`` as the launch template


class ASGHandler:
    """Provision, inspect and return machines through an Auto Scaling group per request."""

    api: ClassVar[str] = ASG
    actions: ClassVar[tuple[str, ...]] = (
        *LAUNCH_TEMPLATE_ACTIONS,
        "ec2:DescribeImages",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:DetachInstances",
        "autoscaling:DeleteAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "ec2:DescribeSubnets",
        "iam:PassRole",
    )

    def __init__(self, ctx: AwsContext, clock: Clock | None = None) -> None:
        self.ctx = ctx
        self.clock = clock or ctx.clock

    # -- provision ----------------------------------------------------------------------

    def unsupported(self, template: AwsTemplate) -> str | None:
        missing = missing_launch_source(template, "an Auto Scaling group")
        if missing:
            return missing
        if not template.subnet_ids:
            return "an Auto Scaling group needs subnetId"
        if template.fleet_type is not None:
            return "an Auto Scaling group has no fleetType"
        if template.instance_requirements is not None:
            from ohfp_aws.supply.requirements import NOT_IN_ASG

            refused = [key for key in NOT_IN_ASG if key in template.instance_requirements]
            if refused:
                return f"an Auto Scaling group takes no instanceRequirements.{refused[0]}"
        return None

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        name = group_name(request_id)
        types = weights(template)
        launch = ensure_for_request(self.ctx, request_id, template, next(iter(types), None))
        handle = GroupHandle(
            **attrs.asdict(launch),
            api=self.api,
            group_name=name,
            target=count,
            weights=types,
            valid_until=deadline(template, launch.launch_template_created_at or self.clock()),
        )
        try:
            self.ctx.services.autoscaling.create_group(
                **self.create_params(request_id, template, count, handle)
            )
        except CloudError as exc:
            if error_code(exc) != "AlreadyExists":
                discard_after_failure(self.ctx, handle, exc)
                raise
            # An earlier attempt made it (the group is named after the request): its handle,
            # its deadline counted from the group's creation.
            existing = self.describe_groups([name]).get(name)
            if existing is not None:
                handle = self._handle_of(existing, template, count)
            return Provisioned(handle=handles.dump(handle), message=f"group {name} exists")
        resources.created(KIND, name, launch_template_id=handle.launch_template_id, target=count)
        return Provisioned(handle=handles.dump(handle), message=f"Auto Scaling group {name} created")

    def create_params(
        self, request_id: str, template: AwsTemplate, count: int, handle: GroupHandle
    ) -> CreateAutoScalingGroupTypeTypeDef:
        """CreateAutoScalingGroup's parameters for ``count`` units of ``template``."""
        settings = self.ctx.config.handlers.asg
        name = handle.group_name
        tags = self.ctx.tags_for(request_id, template)
        params: CreateAutoScalingGroupTypeTypeDef = {
            "AutoScalingGroupName": name,
            "MinSize": min(settings.min_size, count),
            "MaxSize": max(count, settings.max_size or count),
            "DesiredCapacity": count,
            "VPCZoneIdentifier": ",".join(template.subnet_ids),
            "HealthCheckType": settings.health_check_type,
            "Tags": [
                {
                    "Key": key,
                    "Value": value,
                    "PropagateAtLaunch": True,
                    "ResourceId": name,
                    "ResourceType": "auto-scaling-group",
                }
                for key, value in tags.items()
            ],
        }
        types = weights(template)
        if (
            len(types) > 1
            or template.price_type != "ondemand"
            or (template.launch_template_id and types)
            or template.instance_requirements is not None
        ):
            params["MixedInstancesPolicy"] = self._mixed_policy(request_id, template, handle)
        else:
            params["LaunchTemplate"] = {
                "LaunchTemplateId": handle.launch_template_id,
                "Version": handle.launch_template_version,
            }
        return params

    def _mixed_policy(
        self, request_id: str, template: AwsTemplate, handle: GroupHandle
    ) -> MixedInstancesPolicyTypeDef:
        types = weights(template)
        ranks = priorities(template)
        spot_name = template.allocation_strategy or self.ctx.config.handlers.spot_fleet.allocation_strategy
        if template.price_type == "ondemand":
            percent = 100
        elif template.price_type == "spot":
            percent = 0
        else:
            percent = template.percent_on_demand or 0
        distribution: InstancesDistributionTypeDef = {
            "OnDemandBaseCapacity": 0,
            "OnDemandPercentageAboveBaseCapacity": percent,
            "OnDemandAllocationStrategy": ON_DEMAND_STRATEGIES[on_demand_strategy(template)].asg,
        }
        if percent < 100:
            spot_strategy = SPOT_STRATEGIES[spot_name].asg
            distribution["SpotAllocationStrategy"] = spot_strategy
            if spot_strategy == "lowest-price":
                distribution["SpotInstancePools"] = template.pools_count or max(1, len(types))
            if template.max_spot_price:
                distribution["SpotMaxPrice"] = template.max_spot_price
        launch: LaunchTemplateTypeDef = {
            "LaunchTemplateSpecification": {
                "LaunchTemplateId": handle.launch_template_id,
                "Version": handle.launch_template_version,
            }
        }
        if template.instance_requirements is not None:
            from ohfp_aws.supply.requirements import for_asg

            # Checked offline (ohfp_aws.supply.requirements).
            wanted = cast("InstanceRequirementsTypeDef", for_asg(template.instance_requirements))
            launch["Overrides"] = [{"InstanceRequirements": wanted}]
        elif types:
            from ohfp_aws.supply.offerings import unavailable

            short = unavailable(self.ctx, template, request_id)
            ordered = sorted(types, key=lambda name: (short.anywhere(name, template.subnet_ids), ranks[name]))
            launch["Overrides"] = [
                {"InstanceType": name, "WeightedCapacity": str(types[name])} for name in ordered
            ]
        return {"LaunchTemplate": launch, "InstancesDistribution": distribution}

    def _handle_of(self, group: Mapping[str, Any], template: AwsTemplate, count: int) -> GroupHandle:
        """The handle for a group an earlier attempt created."""
        spec = group.get("LaunchTemplate") or (
            group.get("MixedInstancesPolicy", {})
            .get("LaunchTemplate", {})
            .get("LaunchTemplateSpecification", {})
        )
        created = epoch_of(group.get("CreatedTime")) or self.clock()
        return GroupHandle(
            api=self.api,
            group_name=group["AutoScalingGroupName"],
            valid_until=deadline(template, created),
            target=count,
            weights=weights(template),
            launch_template_id=str(spec.get("LaunchTemplateId")),
            launch_template_version=str(spec.get("Version")),
            launch_template_created=not template.launch_template_id,
        )

    # -- inspect ------------------------------------------------------------------------

    def describe_groups(self, names: Sequence[str]) -> dict[str, AutoScalingGroupTypeDef]:
        """Groups by name in as few DescribeAutoScalingGroups calls as AWS allows."""
        found: dict[str, AutoScalingGroupTypeDef] = {}
        for chunk in chunks(names, DESCRIBE_NAMES):
            for group in self.ctx.services.autoscaling.groups(chunk, DESCRIBE_NAMES):
                found[group["AutoScalingGroupName"]] = group
        return found

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        found, states = loaded(requests, GroupHandle)
        groups = self.describe_groups([handle.group_name for _, handle in found])
        for request, handle in found:
            name = handle.group_name
            group = groups.get(name)
            if group is None or group.get("Status") == "Delete in progress":
                states[request.request_id] = FleetState(
                    instance_ids=request.machine_ids,
                    errors=(f"Auto Scaling group {name} no longer exists",),
                    weights=handle.weights,
                )
                continue
            members = _members(group)
            delivered = sum(_weight(i, handle.weights) for i in members)
            ids = tuple(dict.fromkeys([*(i["InstanceId"] for i in members), *request.machine_ids]))
            state = fleet_state(
                ids,
                state="active",
                target=float(group.get("DesiredCapacity", 0)),
                fulfilled=float(delivered),
                valid_until=handle.valid_until,
                now=self.clock(),
                activity_status=None,
                closed=_expired_message(name),
                launch_errors="",
                weights=handle.weights,
            )
            state = attrs.evolve(state, shortfalls=handle.shortfalls)
            if delivered < float(group.get("DesiredCapacity", 0)):
                state = self._diagnosed(request.request_id, handle, state)
            states[request.request_id] = state
        return states

    def _diagnosed(self, request_id: str, handle: GroupHandle, state: FleetState) -> FleetState:
        """``state`` with why a short group could not launch: its latest failed activity as
        an error, and every failed one since the last success as shortfalls (a new handle
        when they changed)."""
        from ohfp_aws.supply.offerings import remember
        from ohfp_aws.supply.shortfalls import from_activities, merged

        activities = self._activities(handle.group_name)
        why = launch_failure(handle.group_name, activities)
        if why:
            state = attrs.evolve(state, errors=(*state.errors, why))
        found = merged(from_activities(activities, list(handle.weights)))
        if not found or found == handle.shortfalls:
            return state
        remember(self.ctx, found, request_id)
        learned = attrs.evolve(handle, shortfalls=found)
        return attrs.evolve(state, shortfalls=found, handle=handles.dump(learned))

    def _activities(self, name: str) -> list[Mapping[str, Any]]:
        """The group's latest scaling activities, newest first (one call)."""
        return list(self.ctx.services.autoscaling.activities(name, ACTIVITIES))

    def launch_failure(self, name: str) -> str | None:
        """The group's latest failed or cancelled scaling activity, as a message (one
        DescribeScalingActivities call; asked only for a group short of capacity)."""
        return launch_failure(name, self._activities(name))

    # -- release ------------------------------------------------------------------------

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        batches, loose = group_returns(items, self.api, GroupHandle, lambda handle: handle.group_name)
        groups = self.describe_groups(list(batches))
        autoscaling = self.ctx.services.autoscaling
        emptied: list[tuple[GroupHandle, str]] = []  # and the request each was made for
        for name, batch in batches.items():
            returned = set(batch.machine_ids)
            group = groups.get(name)
            if group is None:  # already deleted: what core saw is all we have
                if not set(batch.request.machine_ids) - returned:
                    emptied.append((batch.handle, batch.request.request_id))
                continue
            members = _members(group)
            if batch.nothing_held_after or not [i for i in members if i["InstanceId"] not in returned]:
                autoscaling.delete_group(name, force=True)
                resources.deleted(KIND, name, batch.request.request_id)
                emptied.append((batch.handle, batch.request.request_id))
                continue
            leaving = [i for i in members if i["InstanceId"] in returned]
            if not leaving:
                continue
            desired = int(group.get("DesiredCapacity", 0)) - sum(
                _weight(i, batch.handle.weights) for i in leaving
            )
            if int(group.get("MinSize", 0)) > max(0, desired):
                # Detaching with a decrement may not take desired below MinSize.
                autoscaling.update_min_size(name, max(0, desired))
            for chunk in chunks([i["InstanceId"] for i in leaving], DETACH_IDS):
                autoscaling.detach_instances(name, chunk, decrement=True)
        errors = self.ctx.terminate_instances([*(i for b in batches.values() for i in b.machine_ids), *loose])
        for handle, made_for in emptied:
            delete_for_request(self.ctx, handle, made_for)
        return errors

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, request_id: str) -> None:
        """Delete the group ``ohfp-<request_id>`` with its instances (ForceDelete) when it
        carries this request's and provider instance's tags.

        :raises CloudError: when AWS refused.
        """
        name = group_name(request_id)
        group = self.describe_groups([name]).get(name)
        if group is None or group.get("Status") == "Delete in progress":
            return
        if not self.ctx.made_for(group.get("Tags"), request_id):
            return
        self.ctx.services.autoscaling.delete_group(name, force=True)
        resources.deleted(KIND, name, request_id)


def launch_failure(name: str, activities: Sequence[Mapping[str, Any]]) -> str | None:
    """The latest failed or cancelled activity of ``activities`` (newest first) as a
    message; None when a successful one came first (capacity is on its way)."""
    for activity in activities:
        if activity.get("StatusCode") in ("Failed", "Cancelled"):
            detail = activity.get("StatusMessage") or activity.get("Description") or "no reason given"
            return f"Auto Scaling group {name} could not launch: {detail}"
        if activity.get("StatusCode") == "Successful":
            return None
    return None


def _expired_message(name: str) -> Callable[[str, bool], str]:
    """A group only closes by its deadline (its state is not read)."""

    def closed(state: str, expired: bool) -> str:
        return f"Auto Scaling group {name} expired"

    return closed


def _members(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The group's instances that are not on their way out."""
    return [
        i for i in group.get("Instances", []) if not str(i.get("LifecycleState", "")).startswith(_DEPARTING)
    ]


def _weight(instance: Mapping[str, Any], weights: Mapping[str, int]) -> int:
    """Units an instance of a group counts for: the group's WeightedCapacity, else the
    template's weight for its type, else 1."""
    value = instance.get("WeightedCapacity")
    if value:
        return int(value)
    return int(weights.get(str(instance.get("InstanceType")), 1))

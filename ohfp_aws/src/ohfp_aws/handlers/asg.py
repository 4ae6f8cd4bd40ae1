"""Auto Scaling groups: one group ``ohfp-<request_id>`` per request.

The group launches from ohfp's launch template in the template's subnets with desired
capacity = the units asked for. Several instance types, or spot, use a
MixedInstancesPolicy: overrides in priority order (``vmTypesOnDemand`` first, so a
``prioritized`` on-demand strategy takes them first), weights, and the on-demand share as
``OnDemandPercentageAboveBaseCapacity``. Returning machines detaches them with the desired
capacity decremented (so the group does not replace them), then terminates them; the last
machine deletes the group and the launch template.

A group short of its desired capacity is waited for until ``spotFleetRequestExpiry`` minutes
after the request (as fleets are); then the request ends with what it got, and the group's
latest failed scaling activity says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ohfp_aws.errors import aws_call, error_code
from ohfp_aws.handlers.base import AwsContext, AwsTemplate, FleetState
from ohfp_aws.handlers.common import (
    ON_DEMAND_STRATEGIES,
    Clock,
    deadline,
    epoch_of,
    fleet_state,
    group_returns,
    instance_types,
    made_for,
    missing_launch_source,
    nothing_held_after,
    priorities,
)
from ohfp_aws.instances import chunks
from ohfp_aws.launch_templates import ACTIONS as LAUNCH_TEMPLATE_ACTIONS
from ohfp_aws.launch_templates import (
    delete_for_request,
    discard_after_failure,
    handle_fields,
    launch_template_spec,
    template_name,
)
from ohfp_core.errors import CloudError
from ohfp_core.models import CloudRequest, Provisioned, ReturnItem

# IBM's names → the group's SpotAllocationStrategy. Groups have no "diversified": it becomes
# lowest-price over several pools (SpotInstancePools), which spreads the same way.
SPOT_STRATEGIES = {
    "capacityOptimized": "capacity-optimized",
    "capacityOptimizedPrioritized": "capacity-optimized-prioritized",
    "diversified": "lowest-price",
    "lowestPrice": "lowest-price",
    "priceCapacityOptimized": "price-capacity-optimized",
}
DESCRIBE_NAMES = 100  # names per DescribeAutoScalingGroups (with MaxRecords=100)
DETACH_IDS = 20  # DetachInstances takes at most 20 ids
ACTIVITIES = 5  # scaling activities read to explain a shortfall (newest first)
_LEAVING = ("Terminating", "Terminated", "Detaching", "Detached")


def group_name(request_id: str) -> str:
    return template_name(request_id)  # the same ``ohfp-<request_id>`` as the launch template


class ASGHandler:
    """Provision, inspect and return machines through an Auto Scaling group per request."""

    api: ClassVar[str] = "ASG"
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
        "iam:PassRole",
    )

    def __init__(self, ctx: AwsContext, clock: Clock = time.time) -> None:
        self.ctx = ctx
        self.clock = clock

    # -- provision ----------------------------------------------------------------------

    def unsupported(self, template: AwsTemplate) -> str | None:
        missing = missing_launch_source(template, "an Auto Scaling group")
        if missing:
            return missing
        if not template.subnet_ids:
            return "an Auto Scaling group needs subnetId"
        if template.fleet_type is not None:
            return "an Auto Scaling group has no fleetType"
        return None

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        name = group_name(request_id)
        existing = self.describe_groups([name]).get(name)
        if existing is not None:  # an earlier attempt made it (moto would accept a duplicate)
            return Provisioned(
                handle=self._handle_of(existing, template, count), message=f"group {name} exists"
            )
        types = instance_types(template)
        overrides = {"InstanceType": next(iter(types))} if types else None
        handle: dict[str, Any] = {
            "api": self.api,
            "group_name": name,
            "target": count,
            "weights": types,
            **handle_fields(self.ctx, request_id, template, overrides),
        }
        handle["valid_until"] = deadline(template, handle["launch_template_created_at"] or self.clock())
        try:
            with aws_call("CreateAutoScalingGroup"):
                self.ctx.clients.autoscaling.create_auto_scaling_group(
                    **self.create_params(request_id, template, count, handle)
                )
        except CloudError as exc:
            if error_code(exc) == "AlreadyExists":  # a concurrent attempt won
                return Provisioned(handle=handle, message=f"group {name} exists")
            discard_after_failure(self.ctx, handle, exc)
            raise
        return Provisioned(handle=handle, message=f"Auto Scaling group {name} created")

    def create_params(
        self, request_id: str, template: AwsTemplate, count: int, handle: Mapping[str, Any]
    ) -> dict[str, Any]:
        """CreateAutoScalingGroup's parameters for ``count`` units of ``template``."""
        settings = self.ctx.config.handlers
        name = handle["group_name"]
        tags = self.ctx.tags_for(request_id, template)
        params: dict[str, Any] = {
            "AutoScalingGroupName": name,
            "MinSize": min(settings.asg.min_size, count),
            "MaxSize": max(count, settings.asg.max_size or count),
            "DesiredCapacity": count,
            "VPCZoneIdentifier": ",".join(template.subnet_ids),
            "HealthCheckType": settings.asg.health_check_type,
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
        types = instance_types(template)
        if len(types) > 1 or template.price_type != "ondemand" or (template.launch_template_id and types):
            params["MixedInstancesPolicy"] = self._mixed_policy(template, handle)
        else:
            params["LaunchTemplate"] = launch_template_spec(handle)
        return params

    def _mixed_policy(self, template: AwsTemplate, handle: Mapping[str, Any]) -> dict[str, Any]:
        types = instance_types(template)
        ranks = priorities(template)
        spot_name = template.allocation_strategy or self.ctx.config.handlers.spot_fleet.allocation_strategy
        if template.price_type == "ondemand":
            percent = 100
        elif template.price_type == "spot":
            percent = 0
        else:
            percent = template.percent_on_demand or 0
        od_strategy = ON_DEMAND_STRATEGIES[template.allocation_strategy_on_demand or "lowestPrice"]
        if template.price_type == "heterogeneous" and template.vm_types_on_demand:
            od_strategy = "prioritized"
        distribution: dict[str, Any] = {
            "OnDemandBaseCapacity": 0,
            "OnDemandPercentageAboveBaseCapacity": percent,
            "OnDemandAllocationStrategy": od_strategy,
        }
        if percent < 100:
            distribution["SpotAllocationStrategy"] = SPOT_STRATEGIES[spot_name]
            if distribution["SpotAllocationStrategy"] == "lowest-price":
                distribution["SpotInstancePools"] = template.pools_count or max(1, len(types))
            if template.max_spot_price:
                distribution["SpotMaxPrice"] = template.max_spot_price
        launch: dict[str, Any] = {"LaunchTemplateSpecification": launch_template_spec(handle)}
        if types:
            launch["Overrides"] = [
                {"InstanceType": name, "WeightedCapacity": str(types[name])}
                for name in sorted(types, key=ranks.__getitem__)
            ]
        return {"LaunchTemplate": launch, "InstancesDistribution": distribution}

    def _handle_of(self, group: Mapping[str, Any], template: AwsTemplate, count: int) -> dict[str, Any]:
        """The handle for a group an earlier attempt created."""
        spec = group.get("LaunchTemplate") or (
            group.get("MixedInstancesPolicy", {})
            .get("LaunchTemplate", {})
            .get("LaunchTemplateSpecification", {})
        )
        created = epoch_of(group.get("CreatedTime")) or self.clock()
        return {
            "api": self.api,
            "group_name": group["AutoScalingGroupName"],
            "valid_until": deadline(template, created),
            "target": count,
            "weights": instance_types(template),
            "launch_template_id": spec.get("LaunchTemplateId"),
            "launch_template_version": spec.get("Version"),
            "launch_template_created": not template.launch_template_id,
        }

    # -- inspect ------------------------------------------------------------------------

    def describe_groups(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Groups by name in as few DescribeAutoScalingGroups calls as AWS allows."""
        found: dict[str, dict[str, Any]] = {}
        client = self.ctx.clients.autoscaling
        for chunk in chunks(names, DESCRIBE_NAMES):
            params: dict[str, Any] = {"AutoScalingGroupNames": chunk, "MaxRecords": DESCRIBE_NAMES}
            while True:
                with aws_call("DescribeAutoScalingGroups"):
                    page = client.describe_auto_scaling_groups(**params)
                for group in page.get("AutoScalingGroups", []):
                    found[group["AutoScalingGroupName"]] = group
                if not page.get("NextToken"):
                    break
                params["NextToken"] = page["NextToken"]
        return found

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        groups = self.describe_groups(
            [str(r.handle["group_name"]) for r in requests if r.handle.get("group_name")]
        )
        states: dict[str, FleetState] = {}
        for request in requests:
            name = str(request.handle.get("group_name"))
            group = groups.get(name)
            if group is None or group.get("Status") == "Delete in progress":
                states[request.request_id] = FleetState(
                    instance_ids=request.machine_ids, errors=(f"Auto Scaling group {name} no longer exists",)
                )
                continue
            weights = request.handle.get("weights", {})
            members = _members(group)
            delivered = sum(_weight(i, weights) for i in members)
            ids = tuple(dict.fromkeys([*(i["InstanceId"] for i in members), *request.machine_ids]))
            state = fleet_state(
                ids,
                state="active",
                target=float(group.get("DesiredCapacity", 0)),
                fulfilled=float(delivered),
                valid_until=request.handle.get("valid_until"),
                now=self.clock(),
                activity_status=None,
                closed=_expired_message(name),
                launch_errors="",
            )
            if delivered < float(group.get("DesiredCapacity", 0)):
                why = self.launch_failure(name)
                if why:
                    state = attrs.evolve(state, errors=(*state.errors, why))
            states[request.request_id] = state
        return states

    def launch_failure(self, name: str) -> str | None:
        """The group's latest failed or cancelled scaling activity, as a message (one
        DescribeScalingActivities call; asked only for a group short of capacity)."""
        with aws_call("DescribeScalingActivities"):
            page = self.ctx.clients.autoscaling.describe_scaling_activities(
                AutoScalingGroupName=name, MaxRecords=ACTIVITIES
            )
        for activity in page.get("Activities", []):
            if activity.get("StatusCode") in ("Failed", "Cancelled"):
                detail = activity.get("StatusMessage") or activity.get("Description") or "no reason given"
                return f"Auto Scaling group {name} could not launch: {detail}"
            if activity.get("StatusCode") == "Successful":
                return None  # the latest launch worked: capacity is on its way
        return None

    # -- release ------------------------------------------------------------------------

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        batches, loose = group_returns(items, self.api, "group_name")
        groups = self.describe_groups(list(batches))
        client = self.ctx.clients.autoscaling
        emptied: list[Mapping[str, Any]] = []
        for name, (handle, request, returned) in batches.items():
            gone = set(returned)
            group = groups.get(name)
            if group is None:  # already deleted: what core saw is all we have
                if not set(request.machine_ids) - gone:
                    emptied.append(handle)
                continue
            members = _members(group)
            if nothing_held_after(request, gone) or not [i for i in members if i["InstanceId"] not in gone]:
                with aws_call("DeleteAutoScalingGroup"):
                    client.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
                emptied.append(handle)
                continue
            leaving = [i for i in members if i["InstanceId"] in gone]
            if not leaving:
                continue
            desired = int(group.get("DesiredCapacity", 0)) - sum(
                _weight(i, handle.get("weights", {})) for i in leaving
            )
            if int(group.get("MinSize", 0)) > max(0, desired):
                # Detaching with a decrement may not take desired below MinSize.
                with aws_call("UpdateAutoScalingGroup"):
                    client.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=max(0, desired))
            for chunk in chunks([i["InstanceId"] for i in leaving], DETACH_IDS):
                with aws_call("DetachInstances"):
                    client.detach_instances(
                        AutoScalingGroupName=name, InstanceIds=chunk, ShouldDecrementDesiredCapacity=True
                    )
        errors = self.ctx.terminate_instances([*(i for _, _, r in batches.values() for i in r), *loose])
        for handle in emptied:
            delete_for_request(self.ctx, handle)
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
        if not made_for(group.get("Tags"), self.ctx, request_id):
            return
        with aws_call("DeleteAutoScalingGroup"):
            self.ctx.clients.autoscaling.delete_auto_scaling_group(
                AutoScalingGroupName=name, ForceDelete=True
            )


def _expired_message(name: str) -> Callable[[str, bool], str]:
    """A group only closes by its deadline (its state is not read)."""

    def closed(state: str, expired: bool) -> str:
        return f"Auto Scaling group {name} expired"

    return closed


def _members(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The group's instances that are not on their way out."""
    return [
        i for i in group.get("Instances", []) if not str(i.get("LifecycleState", "")).startswith(_LEAVING)
    ]


def _weight(instance: Mapping[str, Any], weights: Mapping[str, int]) -> int:
    """Units an instance of a group counts for: the group's WeightedCapacity, else the
    template's weight for its type, else 1."""
    value = instance.get("WeightedCapacity")
    if value:
        return int(value)
    return int(weights.get(str(instance.get("InstanceType")), 1))

"""Spot Fleet: one Spot Fleet request per HF request (IBM's own choice for spot templates),
through the fleet flow of :mod:`.fleet`.

The request launches from ohfp's launch template with overrides instance types × subnets,
weighted; ``fleetRole`` is its IAM fleet role. A ``request`` fleet is valid for
``spotFleetRequestExpiry`` minutes and keeps its instances when that passes
(``TerminateInstancesWithExpiration`` False: HF owns them and returns them itself); a
``maintain`` fleet has no ValidUntil (it would stop maintaining) and ohfp stops waiting for
it after the same time. Only a ``maintain`` request may change its target
(ModifySpotFleetRequest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ohfp_aws.access.instances import chunks
from ohfp_aws.apis.common import as_utc, describe_batched, epoch_of, missing_launch_source
from ohfp_aws.apis.fleet import Capacity, Created, FleetHandler, Member
from ohfp_aws.apis.handles import FleetHandle
from ohfp_aws.context import AwsContext
from ohfp_aws.launch.launch_templates import ACTIONS as LAUNCH_TEMPLATE_ACTIONS
from ohfp_aws.launch.spec import tag_list
from ohfp_aws.supply.overrides import Offer, offers, on_demand_strategy, on_demand_units
from ohfp_aws.vocabulary import ON_DEMAND_STRATEGIES, SPOT_FLEET, SPOT_STRATEGIES, AwsTemplate, client_token

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import (
        AllocationStrategyType,
        FleetTypeType,
        InstanceTypeType,
        OnDemandAllocationStrategyType,
    )
    from mypy_boto3_ec2.type_defs import (
        InstanceRequirementsTypeDef,
        LaunchTemplateConfigTypeDef,
        LaunchTemplateOverridesTypeDef,
        ModifySpotFleetRequestRequestTypeDef,
        SpotFleetRequestConfigDataTypeDef,
    )

BATCH = 100  # CancelSpotFleetRequests takes at most 100 ids; describe uses the same batches
HISTORY_PAGE = 100  # history records read to explain a shortfall


class SpotFleet:
    """The Spot Fleet adapter of the fleet flow."""

    api: ClassVar[str] = SPOT_FLEET
    noun: ClassVar[str] = "spot fleet request"
    history_call: ClassVar[str] = "DescribeSpotFleetRequestHistory"
    resource_type: ClassVar[str] = "spot-fleet-request"
    actions: ClassVar[tuple[str, ...]] = (
        *LAUNCH_TEMPLATE_ACTIONS,
        "ec2:DescribeImages",
        "ec2:RequestSpotFleet",
        "ec2:DescribeSpotFleetRequests",
        "ec2:DescribeSpotFleetInstances",
        "ec2:DescribeSpotFleetRequestHistory",
        "ec2:DescribeTags",
        "ec2:DescribeSubnets",
        "ec2:ModifySpotFleetRequest",
        "ec2:CancelSpotFleetRequests",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "iam:PassRole",
    )

    def __init__(self, ctx: AwsContext) -> None:
        self.ctx = ctx

    def unsupported(self, template: AwsTemplate) -> str | None:
        if not template.fleet_role:
            return "Spot Fleet needs fleetRole (the IAM role Spot Fleet launches with)"
        missing = missing_launch_source(template, "Spot Fleet")
        if missing:
            return missing
        if template.fleet_type not in (None, "request", "maintain"):
            return f"Spot Fleet has no fleetType {template.fleet_type} (request or maintain)"
        return None

    def fleet_type(self, template: AwsTemplate) -> str:
        return template.fleet_type or "request"

    # -- create -------------------------------------------------------------------------

    def create(self, request_id: str, template: AwsTemplate, count: int, handle: FleetHandle) -> Created:
        config = self.request_config(request_id, template, count, handle)
        return Created(fleet_id=self.ctx.services.ec2.request_spot_fleet(config))

    def request_config(
        self, request_id: str, template: AwsTemplate, count: int, handle: FleetHandle
    ) -> SpotFleetRequestConfigDataTypeDef:
        """RequestSpotFleet's ``SpotFleetRequestConfig`` for ``count`` units of ``template``."""
        from ohfp_aws.supply.offerings import unavailable

        on_demand = on_demand_units(template, count)
        strategy = template.allocation_strategy or self.ctx.config.handlers.spot_fleet.allocation_strategy
        od_strategy = cast(
            "OnDemandAllocationStrategyType", ON_DEMAND_STRATEGIES[on_demand_strategy(template)].spot_fleet
        )
        prioritized = (od_strategy == "prioritized" and on_demand > 0) or (
            strategy == "capacityOptimizedPrioritized" and on_demand < count
        )
        launch: LaunchTemplateConfigTypeDef = {
            "LaunchTemplateSpecification": {
                "LaunchTemplateId": handle.launch_template_id,
                "Version": handle.launch_template_version,
            }
        }
        found = offers(template, prioritized, unavailable(self.ctx, template, request_id))
        if found:
            launch["Overrides"] = [_override(offer) for offer in found]
        config: SpotFleetRequestConfigDataTypeDef = {
            "IamFleetRole": template.fleet_role or "",
            "AllocationStrategy": cast("AllocationStrategyType", SPOT_STRATEGIES[strategy].spot_fleet),
            "TargetCapacity": count,
            "Type": cast("FleetTypeType", handle.fleet_type),
            "ClientToken": client_token(request_id, "spotfleet"),
            "TerminateInstancesWithExpiration": False,
            "ExcessCapacityTerminationPolicy": "noTermination",
            "LaunchTemplateConfigs": [launch],
            "TagSpecifications": [
                {
                    "ResourceType": "spot-fleet-request",
                    "Tags": tag_list(self.ctx.tags_for(request_id, template)),
                }
            ],
        }
        if on_demand:
            config["OnDemandTargetCapacity"] = on_demand
            config["OnDemandAllocationStrategy"] = od_strategy
        if template.max_spot_price:
            config["SpotPrice"] = template.max_spot_price
        if strategy == "lowestPrice" and template.pools_count:
            config["InstancePoolsToUseCount"] = template.pools_count
        if handle.fleet_type == "request" and handle.valid_until is not None:
            config["ValidUntil"] = as_utc(handle.valid_until)
        return config

    def created(self, handle: FleetHandle) -> str:
        return f"spot fleet request {handle.fleet_id} created"

    # -- describe -----------------------------------------------------------------------

    def describe(self, fleet_ids: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        ec2 = self.ctx.services.ec2
        return describe_batched(
            fleet_ids,
            BATCH,
            lambda chunk: {r.get("SpotFleetRequestId", ""): r for r in ec2.spot_fleet_requests(chunk)},
        )

    def capacity(self, fleet: Mapping[str, Any], handle: FleetHandle) -> Capacity:
        config = fleet.get("SpotFleetRequestConfig", {})
        return Capacity(
            state=str(fleet.get("SpotFleetRequestState", "")),
            target=float(config.get("TargetCapacity", handle.target)),
            fulfilled=float(config.get("FulfilledCapacity", 0)),
            valid_until=epoch_of(config.get("ValidUntil")),
            activity_status=fleet.get("ActivityStatus"),
        )

    def is_closed(self, fleet: Mapping[str, Any]) -> bool:
        return str(fleet.get("SpotFleetRequestState", "")).startswith("cancelled")

    def members(self, fleet: Mapping[str, Any]) -> dict[str, Member]:
        """The request's active instances (none once it is cancelled)."""
        if self.is_closed(fleet):
            return {}
        return {
            instance.get("InstanceId", ""): Member(instance_type=instance.get("InstanceType"), spot=True)
            for instance in self.ctx.services.ec2.spot_fleet_instances(fleet["SpotFleetRequestId"])
        }

    def closed(self, fleet_id: str, state: str, expired: bool) -> str:
        return "spot fleet failed" if state == "failed" else "spot fleet expired"

    # -- change -------------------------------------------------------------------------

    def lower_target(self, fleet: Mapping[str, Any], handle: FleetHandle, returned: Sequence[Member]) -> None:
        """ModifySpotFleetRequest: the target less the returned machines' weights, with
        ``noTermination`` (ohfp terminates exactly the returned machines)."""
        config = fleet.get("SpotFleetRequestConfig", {})
        total = int(config.get("TargetCapacity", handle.target))
        new_total = max(0, total - sum(handle.weights.get(m.instance_type or "", 1) for m in returned))
        params: ModifySpotFleetRequestRequestTypeDef = {
            "SpotFleetRequestId": fleet["SpotFleetRequestId"],
            "TargetCapacity": new_total,
            "ExcessCapacityTerminationPolicy": "noTermination",
        }
        if config.get("OnDemandTargetCapacity") is not None:
            params["OnDemandTargetCapacity"] = min(new_total, int(config["OnDemandTargetCapacity"]))
        self.ctx.services.ec2.modify_spot_fleet_request(**params)

    def delete(self, fleets: Sequence[tuple[str, str]]) -> set[str]:
        """CancelSpotFleetRequests terminating what is left."""
        cancelled: set[str] = set()
        for chunk in chunks([fleet_id for fleet_id, _ in fleets], BATCH):
            response = self.ctx.services.ec2.cancel_spot_fleet_requests(chunk, terminate_instances=True)
            cancelled.update(s["SpotFleetRequestId"] for s in response.get("SuccessfulFleetRequests", []))
            for failure in response.get("UnsuccessfulFleetRequests", []):
                if str(failure.get("Error", {}).get("Code", "")).startswith("fleetRequestIdDoesNotExist"):
                    cancelled.add(failure["SpotFleetRequestId"])
        return cancelled

    def fleet_type_of(self, fleet: Mapping[str, Any]) -> str:
        return str(fleet.get("SpotFleetRequestConfig", {}).get("Type", ""))

    def not_deleted(self, fleet_ids: Sequence[str]) -> str:
        return f"CancelSpotFleetRequests: spot fleet requests {', '.join(fleet_ids)} were not cancelled"

    def history(self, fleet_id: str, since: float) -> list[Mapping[str, Any]]:
        return list(self.ctx.services.ec2.spot_fleet_history(fleet_id, as_utc(since), HISTORY_PAGE))


class SpotFleetHandler(FleetHandler):
    """Provision, inspect and return machines through Spot Fleet."""

    fleet_api = SpotFleet


def _override(offer: Offer) -> LaunchTemplateOverridesTypeDef:
    """``offer`` as a Spot Fleet override (its price is the request's ``SpotPrice``)."""
    override: LaunchTemplateOverridesTypeDef = {}
    if offer.instance_type is not None:
        override["InstanceType"] = cast("InstanceTypeType", offer.instance_type)  # checked by the template
    if offer.weight is not None:
        override["WeightedCapacity"] = offer.weight
    if offer.priority is not None:
        override["Priority"] = offer.priority
    if offer.subnet_id is not None:
        override["SubnetId"] = offer.subnet_id
    if offer.requirements is not None:  # checked offline (ohfp_aws.supply.requirements)
        override["InstanceRequirements"] = cast("InstanceRequirementsTypeDef", dict(offer.requirements))
    return override

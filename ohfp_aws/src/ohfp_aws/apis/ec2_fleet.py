"""EC2 Fleet: one fleet per request (CreateFleet), through the fleet flow of :mod:`.fleet`.

``fleetType`` picks the fleet: ``instant`` launches synchronously (CreateFleet lists the
instances and the errors), ``request`` asks once and keeps trying until its target or
``spotFleetRequestExpiry`` (never replacing lost instances), ``maintain`` also replaces them.
Overrides are the instance types × subnets, weighted; the target splits into on-demand and
spot units by ``priceType`` and ``percentOnDemand``. Only a ``maintain`` fleet may change its
target (ModifyFleet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ohfp_aws.access.boundary import translate
from ohfp_aws.access.instances import chunks
from ohfp_aws.apis.common import as_utc, describe_batched, epoch_of, missing_launch_source
from ohfp_aws.apis.fleet import Capacity, Created, FleetHandler, Member
from ohfp_aws.apis.handles import FleetHandle
from ohfp_aws.context import AwsContext
from ohfp_aws.launch.launch_templates import ACTIONS as LAUNCH_TEMPLATE_ACTIONS
from ohfp_aws.launch.spec import tag_list
from ohfp_aws.supply.overrides import Offer, offers, on_demand_strategy, on_demand_units
from ohfp_aws.vocabulary import (
    EC2_FLEET,
    ON_DEMAND_STRATEGIES,
    SPOT_STRATEGIES,
    AwsTemplate,
    client_token,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import (
        FleetOnDemandAllocationStrategyType,
        FleetTypeType,
        InstanceTypeType,
        SpotAllocationStrategyType,
    )
    from mypy_boto3_ec2.type_defs import (
        CreateFleetRequestTypeDef,
        CreateFleetResultTypeDef,
        FleetLaunchTemplateConfigRequestTypeDef,
        FleetLaunchTemplateOverridesRequestTypeDef,
        InstanceRequirementsRequestTypeDef,
        SpotOptionsRequestTypeDef,
        TagSpecificationTypeDef,
        TargetCapacitySpecificationRequestTypeDef,
    )

DESCRIBE_CHUNK = 100  # FleetIds has no documented maximum; stay modest
DELETE_CHUNK = {"instant": 25, "request": 100, "maintain": 100}  # AWS's DeleteFleets limits
HISTORY_PAGE = 100  # history records read to explain a shortfall


class EC2Fleet:
    """The EC2 Fleet adapter of the fleet flow."""

    api: ClassVar[str] = EC2_FLEET
    noun: ClassVar[str] = "EC2 fleet"
    history_call: ClassVar[str] = "DescribeFleetHistory"
    resource_type: ClassVar[str] = "fleet"
    actions: ClassVar[tuple[str, ...]] = (
        *LAUNCH_TEMPLATE_ACTIONS,
        "ec2:DescribeImages",
        "ec2:CreateFleet",
        "ec2:DescribeFleets",
        "ec2:DescribeFleetInstances",
        "ec2:DescribeFleetHistory",
        "ec2:DescribeSubnets",
        "ec2:ModifyFleet",
        "ec2:DeleteFleets",
        "ec2:DescribeTags",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "iam:PassRole",
    )

    def __init__(self, ctx: AwsContext) -> None:
        self.ctx = ctx

    def unsupported(self, template: AwsTemplate) -> str | None:
        return missing_launch_source(template, "EC2 Fleet")

    def fleet_type(self, template: AwsTemplate) -> str:
        return template.fleet_type or self.ctx.config.handlers.ec2_fleet.default_fleet_type

    # -- create -------------------------------------------------------------------------

    def create(self, request_id: str, template: AwsTemplate, count: int, handle: FleetHandle) -> Created:
        response = self.ctx.services.ec2.create_fleet(
            **self.create_params(request_id, template, count, handle)
        )
        if handle.fleet_type != "instant":
            return Created(fleet_id=response["FleetId"])
        return self._instant(response, handle, count)

    def create_params(
        self, request_id: str, template: AwsTemplate, count: int, handle: FleetHandle
    ) -> CreateFleetRequestTypeDef:
        """CreateFleet's parameters for ``count`` units of ``template``."""
        from ohfp_aws.supply.offerings import unavailable

        settings = self.ctx.config.handlers
        on_demand = on_demand_units(template, count, settings.ec2_fleet.max_spot_percent)
        spot = count - on_demand
        spot_strategy = cast(
            "SpotAllocationStrategyType",
            SPOT_STRATEGIES[
                template.allocation_strategy or settings.spot_fleet.allocation_strategy
            ].ec2_fleet,
        )
        od_strategy = cast(
            "FleetOnDemandAllocationStrategyType",
            ON_DEMAND_STRATEGIES[on_demand_strategy(template)].ec2_fleet,
        )
        prioritized = (od_strategy == "prioritized" and on_demand > 0) or (
            spot_strategy == "capacity-optimized-prioritized" and spot > 0
        )
        max_price = template.max_spot_price if spot > 0 else None
        config: FleetLaunchTemplateConfigRequestTypeDef = {
            "LaunchTemplateSpecification": {
                "LaunchTemplateId": handle.launch_template_id,
                "Version": handle.launch_template_version,
            }
        }
        found = offers(template, prioritized, unavailable(self.ctx, template, request_id))
        overrides = [_override(offer, max_price) for offer in found] or (
            [{"MaxPrice": max_price}] if max_price else []
        )
        if overrides:
            config["Overrides"] = overrides
        tags = tag_list(self.ctx.tags_for(request_id, template))
        tag_specifications: list[TagSpecificationTypeDef] = [{"ResourceType": "fleet", "Tags": tags}]
        if handle.fleet_type == "instant" and not handle.launch_template_created:
            # ohfp's own launch template tags instances; a user's one does not.
            tag_specifications.append({"ResourceType": "instance", "Tags": tags})
        params: CreateFleetRequestTypeDef = {
            "Type": cast("FleetTypeType", handle.fleet_type),
            "ClientToken": client_token(request_id, "fleet"),
            "TargetCapacitySpecification": {
                "TotalTargetCapacity": count,
                "OnDemandTargetCapacity": on_demand,
                "SpotTargetCapacity": spot,
                "DefaultTargetCapacityType": "spot" if spot else "on-demand",
            },
            "LaunchTemplateConfigs": [config],
            "TagSpecifications": tag_specifications,
        }
        if spot:
            spot_options: SpotOptionsRequestTypeDef = {"AllocationStrategy": spot_strategy}
            if spot_strategy == "lowest-price" and template.pools_count:
                spot_options["InstancePoolsToUseCount"] = template.pools_count
            params["SpotOptions"] = spot_options
        if on_demand:
            params["OnDemandOptions"] = {"AllocationStrategy": od_strategy}
        if handle.fleet_type != "instant":
            params["ExcessCapacityTerminationPolicy"] = "no-termination"
            params["TerminateInstancesWithExpiration"] = False
        if handle.fleet_type == "request" and handle.valid_until is not None:
            params["ValidUntil"] = as_utc(handle.valid_until)
        return params

    def _instant(self, response: CreateFleetResultTypeDef, handle: FleetHandle, count: int) -> Created:
        """An instant fleet's instances and errors; a refusal when it launched nothing."""
        from ohfp_aws.supply.shortfalls import from_fleet_errors, merged

        fleet_id = str(response["FleetId"])
        ids: list[str] = []
        delivered = 0
        for group in response.get("Instances", []) or []:
            for instance_id in group.get("InstanceIds", []) or []:
                ids.append(instance_id)
                delivered += handle.weights.get(str(group.get("InstanceType", "")), 1)
        reported = response.get("Errors", []) or []
        errors = [
            f"{e.get('ErrorCode', 'Error')}: {e.get('ErrorMessage', '')}".rstrip(": ") for e in reported
        ]
        shortfalls = merged(from_fleet_errors(reported))
        if delivered < count and not errors:
            errors = [f"EC2 fleet {fleet_id} delivered {delivered} of {count} units"]
        refusal = None
        if reported and not ids:
            from botocore.exceptions import ClientError

            first = reported[0]
            refusal = translate(
                ClientError(
                    {"Error": {"Code": first.get("ErrorCode", ""), "Message": first.get("ErrorMessage", "")}},
                    "CreateFleet",
                )
            )
        return Created(
            fleet_id=fleet_id,
            instance_ids=tuple(ids),
            errors=tuple(errors),
            shortfalls=shortfalls,
            refusal=refusal,
        )

    def created(self, handle: FleetHandle) -> str:
        return f"EC2 fleet {handle.fleet_id} ({handle.fleet_type}) created"

    # -- describe -----------------------------------------------------------------------

    def describe(self, fleet_ids: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        ec2 = self.ctx.services.ec2
        return describe_batched(
            fleet_ids, DESCRIBE_CHUNK, lambda chunk: {f.get("FleetId", ""): f for f in ec2.fleets(chunk)}
        )

    def capacity(self, fleet: Mapping[str, Any], handle: FleetHandle) -> Capacity:
        return Capacity(
            state=str(fleet.get("FleetState", "")),
            target=float(
                fleet.get("TargetCapacitySpecification", {}).get("TotalTargetCapacity", handle.target)
            ),
            fulfilled=float(fleet.get("FulfilledCapacity", 0)),
            valid_until=epoch_of(fleet.get("ValidUntil")),
            activity_status=fleet.get("ActivityStatus"),
        )

    def is_closed(self, fleet: Mapping[str, Any]) -> bool:
        return str(fleet.get("FleetState", "")).startswith("deleted")

    def members(self, fleet: Mapping[str, Any]) -> dict[str, Member]:
        """An instant fleet lists its instances in DescribeFleets; the others need
        DescribeFleetInstances."""
        members: dict[str, Member] = {}
        if fleet.get("Type") == "instant":
            for group in fleet.get("Instances", []) or []:
                for instance_id in group.get("InstanceIds", []) or []:
                    members[instance_id] = Member(
                        instance_type=group.get("InstanceType"), spot=group.get("Lifecycle") == "spot"
                    )
            return members
        for instance in self.ctx.services.ec2.fleet_instances(fleet["FleetId"]):
            spot = str(instance.get("SpotInstanceRequestId") or "").startswith("sir-")
            members[instance.get("InstanceId", "")] = Member(
                instance_type=instance.get("InstanceType"), spot=spot
            )
        return members

    def closed(self, fleet_id: str, state: str, expired: bool) -> str:
        return f"EC2 fleet {fleet_id} expired" if expired else f"EC2 fleet {fleet_id} is {state}"

    # -- change -------------------------------------------------------------------------

    def lower_target(self, fleet: Mapping[str, Any], handle: FleetHandle, returned: Sequence[Member]) -> None:
        """ModifyFleet: the target less the returned machines' weights; the fleet terminates
        nothing itself (ohfp terminates exactly the returned machines)."""
        spec = fleet.get("TargetCapacitySpecification", {})
        total = int(spec.get("TotalTargetCapacity", handle.target))
        spot_units = sum(handle.weights.get(m.instance_type or "", 1) for m in returned if m.spot)
        od_units = sum(handle.weights.get(m.instance_type or "", 1) for m in returned if not m.spot)
        new_total = max(0, total - spot_units - od_units)
        target: TargetCapacitySpecificationRequestTypeDef = {"TotalTargetCapacity": new_total}
        if spec.get("OnDemandTargetCapacity") is not None:
            new_od = max(0, min(new_total, int(spec["OnDemandTargetCapacity"]) - od_units))
            target["OnDemandTargetCapacity"] = new_od
            if spec.get("SpotTargetCapacity") is not None:
                target["SpotTargetCapacity"] = new_total - new_od
        self.ctx.services.ec2.modify_fleet(
            FleetId=fleet["FleetId"],
            TargetCapacitySpecification=target,
            ExcessCapacityTerminationPolicy="no-termination",
        )

    def delete(self, fleets: Sequence[tuple[str, str]]) -> set[str]:
        """DeleteFleets within AWS's per-type batch limits."""
        deleted: set[str] = set()
        for fleet_type, limit in DELETE_CHUNK.items():
            for chunk in chunks([fid for fid, kind in fleets if kind == fleet_type], limit):
                response = self.ctx.services.ec2.delete_fleets(chunk, terminate_instances=True)
                deleted.update(d["FleetId"] for d in response.get("SuccessfulFleetDeletions", []))
                for failure in response.get("UnsuccessfulFleetDeletions", []):
                    if str(failure.get("Error", {}).get("Code", "")).endswith("NotFound"):
                        deleted.add(failure["FleetId"])
        return deleted

    def fleet_type_of(self, fleet: Mapping[str, Any]) -> str:
        return str(fleet.get("Type", ""))

    def not_deleted(self, fleet_ids: Sequence[str]) -> str:
        return f"DeleteFleets: EC2 fleets {', '.join(fleet_ids)} were not deleted"

    def history(self, fleet_id: str, since: float) -> list[Mapping[str, Any]]:
        return list(self.ctx.services.ec2.fleet_history(fleet_id, as_utc(since), HISTORY_PAGE))


class EC2FleetHandler(FleetHandler):
    """Provision, inspect and return machines through EC2 Fleet."""

    fleet_api = EC2Fleet


def _override(offer: Offer, max_price: str | None) -> FleetLaunchTemplateOverridesRequestTypeDef:
    """``offer`` as an EC2 Fleet override, with ``MaxPrice`` when given."""
    override: FleetLaunchTemplateOverridesRequestTypeDef = {}
    if offer.instance_type is not None:
        override["InstanceType"] = cast("InstanceTypeType", offer.instance_type)  # checked by the template
    if offer.weight is not None:
        override["WeightedCapacity"] = offer.weight
    if offer.priority is not None:
        override["Priority"] = offer.priority
    if offer.subnet_id is not None:
        override["SubnetId"] = offer.subnet_id
    if offer.requirements is not None:  # checked offline (ohfp_aws.supply.requirements)
        override["InstanceRequirements"] = cast(
            "InstanceRequirementsRequestTypeDef", dict(offer.requirements)
        )
    if max_price:
        override["MaxPrice"] = max_price
    return override

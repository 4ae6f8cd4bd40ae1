"""EC2 Fleet: one fleet per request, launched from the request's launch template.

``fleetType`` picks the fleet: ``instant`` launches synchronously (CreateFleet lists the
instances and the errors), ``request`` asks once and keeps trying until its target or
``spotFleetRequestExpiry`` (never replacing lost instances), ``maintain`` also replaces them.
Overrides are the instance types × subnets, weighted; the target splits into on-demand and
spot units by ``priceType`` and ``percentOnDemand``.

Returning machines: AWS lets only a ``maintain`` fleet change its target (ModifyFleet), so
only there is the target lowered (without letting the fleet pick instances to terminate);
the other types never replace. The last machine deletes the fleet and its launch template.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ohfp_aws.errors import aws_call, error_code, translate
from ohfp_aws.handlers.base import TAG_REQUEST, AwsContext, AwsTemplate, FleetState, client_token
from ohfp_aws.handlers.common import (
    ON_DEMAND_STRATEGIES,
    Clock,
    alive,
    as_utc,
    deadline,
    describe_batched,
    epoch_of,
    fleet_state,
    group_returns,
    instance_types,
    made_for,
    missing_launch_source,
    nothing_held_after,
    on_demand_units,
    overrides,
    pages,
)
from ohfp_aws.instances import chunks
from ohfp_aws.launch_spec import tag_list
from ohfp_aws.launch_templates import (
    ACTIONS as LAUNCH_TEMPLATE_ACTIONS,
)
from ohfp_aws.launch_templates import (
    delete_for_request,
    discard_after_failure,
    handle_fields,
    launch_template_spec,
)
from ohfp_core.errors import CloudError
from ohfp_core.models import CloudRequest, Provisioned, ReturnItem

SPOT_STRATEGIES = {
    "capacityOptimized": "capacity-optimized",
    "capacityOptimizedPrioritized": "capacity-optimized-prioritized",
    "diversified": "diversified",
    "lowestPrice": "lowest-price",
    "priceCapacityOptimized": "price-capacity-optimized",
}
DESCRIBE_CHUNK = 100  # FleetIds has no documented maximum; stay modest
DELETE_CHUNK = {"instant": 25, "request": 100, "maintain": 100}  # AWS's DeleteFleets limits
_EMPTY_FLEET = "InvalidParameterCombination"


class EC2FleetHandler:
    """Provision, inspect and return machines through EC2 Fleet (CreateFleet)."""

    api: ClassVar[str] = "EC2Fleet"
    actions: ClassVar[tuple[str, ...]] = (
        *LAUNCH_TEMPLATE_ACTIONS,
        "ec2:DescribeImages",
        "ec2:CreateFleet",
        "ec2:DescribeFleets",
        "ec2:DescribeFleetInstances",
        "ec2:ModifyFleet",
        "ec2:DeleteFleets",
        "ec2:DescribeTags",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "iam:PassRole",
    )

    def __init__(self, ctx: AwsContext, clock: Clock = time.time) -> None:
        self.ctx = ctx
        self.clock = clock

    # -- provision ----------------------------------------------------------------------

    def unsupported(self, template: AwsTemplate) -> str | None:
        missing = missing_launch_source(template, "EC2 Fleet")
        if missing:
            return missing
        if template.fleet_type not in (None, "instant", "request", "maintain"):
            return f"EC2 Fleet has no fleetType {template.fleet_type}"
        if template.allocation_strategy and template.allocation_strategy not in SPOT_STRATEGIES:
            return f"EC2 Fleet has no allocationStrategy {template.allocation_strategy}"
        return None

    def fleet_type(self, template: AwsTemplate) -> str:
        return template.fleet_type or self.ctx.config.handlers.ec2_fleet.default_fleet_type

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        fleet_type = self.fleet_type(template)
        handle: dict[str, Any] = {
            "api": self.api,
            "fleet_type": fleet_type,
            "target": count,
            "weights": instance_types(template),
            **handle_fields(self.ctx, request_id, template),
        }
        if fleet_type != "instant":
            handle["valid_until"] = deadline(template, handle["launch_template_created_at"] or self.clock())
        params = self.create_params(request_id, template, count, handle)
        try:
            with aws_call("CreateFleet"):
                response = self.ctx.clients.ec2.create_fleet(**params)
        except CloudError as exc:
            discard_after_failure(self.ctx, handle, exc)
            raise
        handle["fleet_id"] = response["FleetId"]
        if fleet_type == "instant":
            self._record_instant(handle, response, count)
        return Provisioned(handle=handle, message=f"EC2 fleet {response['FleetId']} ({fleet_type}) created")

    def create_params(
        self, request_id: str, template: AwsTemplate, count: int, handle: Mapping[str, Any]
    ) -> dict[str, Any]:
        """CreateFleet's parameters for ``count`` units of ``template``."""
        settings = self.ctx.config.handlers
        fleet_type = handle["fleet_type"]
        on_demand = on_demand_units(template, count, settings.ec2_fleet.max_spot_percent)
        spot = count - on_demand
        spot_strategy = SPOT_STRATEGIES[
            template.allocation_strategy or settings.spot_fleet.allocation_strategy
        ]
        od_strategy = ON_DEMAND_STRATEGIES[template.allocation_strategy_on_demand or "lowestPrice"]
        if template.price_type == "heterogeneous" and template.vm_types_on_demand:
            od_strategy = "prioritized"  # the only way EC2 Fleet favours the on-demand types
        prioritized = (od_strategy == "prioritized" and on_demand > 0) or (
            spot_strategy == "capacity-optimized-prioritized" and spot > 0
        )
        tags = tag_list(self.ctx.tags_for(request_id, template))
        params: dict[str, Any] = {
            "Type": fleet_type,
            "ClientToken": client_token(request_id, "fleet"),
            "TargetCapacitySpecification": {
                "TotalTargetCapacity": count,
                "OnDemandTargetCapacity": on_demand,
                "SpotTargetCapacity": spot,
                "DefaultTargetCapacityType": "spot" if spot else "on-demand",
            },
            "LaunchTemplateConfigs": [
                {
                    "LaunchTemplateSpecification": launch_template_spec(handle),
                    **overrides(template, prioritized, template.max_spot_price if spot > 0 else None),
                }
            ],
            "TagSpecifications": [{"ResourceType": "fleet", "Tags": tags}],
        }
        if spot:
            spot_options: dict[str, Any] = {"AllocationStrategy": spot_strategy}
            if spot_strategy == "lowest-price" and template.pools_count:
                spot_options["InstancePoolsToUseCount"] = template.pools_count
            params["SpotOptions"] = spot_options
        if on_demand:
            params["OnDemandOptions"] = {"AllocationStrategy": od_strategy}
        if fleet_type == "instant" and not handle["launch_template_created"]:
            # ohfp's own launch template tags instances; a user's one does not.
            params["TagSpecifications"].append({"ResourceType": "instance", "Tags": tags})
        if fleet_type != "instant":
            params["ExcessCapacityTerminationPolicy"] = "no-termination"
            params["TerminateInstancesWithExpiration"] = False
        if fleet_type == "request":
            params["ValidUntil"] = as_utc(handle["valid_until"])
        return params

    def _record_instant(self, handle: dict[str, Any], response: Mapping[str, Any], count: int) -> None:
        """Keep an instant fleet's instances and errors; raise when it launched nothing."""
        weights = handle["weights"]
        ids: list[str] = []
        delivered = 0
        for group in response.get("Instances", []) or []:
            for instance_id in group.get("InstanceIds", []) or []:
                ids.append(instance_id)
                delivered += weights.get(group.get("InstanceType"), 1)
        errors = response.get("Errors", []) or []
        handle["instance_ids"] = ids
        handle["errors"] = [
            f"{e.get('ErrorCode', 'Error')}: {e.get('ErrorMessage', '')}".rstrip(": ") for e in errors
        ]
        if delivered < count and not handle["errors"]:
            handle["errors"] = [f"EC2 fleet {handle['fleet_id']} delivered {delivered} of {count} units"]
        if ids or not errors:
            return
        first = errors[0]
        from botocore.exceptions import ClientError

        exc = translate(
            ClientError(
                {"Error": {"Code": first.get("ErrorCode", ""), "Message": first.get("ErrorMessage", "")}},
                "CreateFleet",
            )
        )
        # Nothing launched: leave nothing behind (the error is what the caller must see).
        with contextlib.suppress(CloudError):
            self._delete_fleets([(handle["fleet_id"], "instant")])
        with contextlib.suppress(CloudError):
            delete_for_request(self.ctx, handle)
        raise exc

    # -- inspect ------------------------------------------------------------------------

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        fleets = self.describe_fleets([r.handle["fleet_id"] for r in requests if r.handle.get("fleet_id")])
        now = self.clock()
        states: dict[str, FleetState] = {}
        for request in requests:
            handle = request.handle
            fleet = fleets.get(str(handle.get("fleet_id")))
            known = (*handle.get("instance_ids", ()), *request.machine_ids)
            if fleet is None:
                # An instant fleet is only a record of one launch: the handle has it all.
                instant = handle.get("fleet_type") == "instant"
                missing = (f"EC2 fleet {handle.get('fleet_id')} no longer exists",)
                states[request.request_id] = FleetState(
                    instance_ids=tuple(dict.fromkeys(known)),
                    errors=tuple(handle.get("errors", ())) if instant else missing,
                )
                continue
            states[request.request_id] = self._state(handle, fleet, known, now)
        return states

    def _state(
        self, handle: Mapping[str, Any], fleet: Mapping[str, Any], known: Sequence[str], now: float
    ) -> FleetState:
        fleet_id = fleet["FleetId"]
        target = float(
            fleet.get("TargetCapacitySpecification", {}).get("TotalTargetCapacity", handle["target"])
        )
        fulfilled = float(fleet.get("FulfilledCapacity", 0))
        if handle.get("fleet_type") == "instant":
            members = self.fleet_members(fleet)
            ids = tuple(dict.fromkeys([*known, *members]))
            return FleetState(instance_ids=ids, errors=tuple(handle.get("errors", ())))
        members = self.fleet_members(fleet)

        def closed(current: str, expired: bool) -> str:
            return f"EC2 fleet {fleet_id} expired" if expired else f"EC2 fleet {fleet_id} is {current}"

        return fleet_state(
            tuple(dict.fromkeys([*members, *known])),
            state=fleet.get("FleetState", ""),
            target=target,
            fulfilled=fulfilled,
            valid_until=handle.get("valid_until") or epoch_of(fleet.get("ValidUntil")),
            now=now,
            activity_status=fleet.get("ActivityStatus"),
            closed=closed,
            launch_errors=f"EC2 fleet {fleet_id} reports errors launching instances",
        )

    def describe_fleets(self, fleet_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Fleets by id, in batched DescribeFleets calls; unknown ids are left out."""
        return describe_batched(fleet_ids, DESCRIBE_CHUNK, self._describe_chunk)

    def _describe_chunk(self, fleet_ids: list[str]) -> dict[str, dict[str, Any]]:
        ec2 = self.ctx.clients.ec2
        return {
            fleet["FleetId"]: fleet
            for page in pages(ec2.describe_fleets, "DescribeFleets", FleetIds=fleet_ids)
            for fleet in page.get("Fleets", [])
        }

    def fleet_members(self, fleet: Mapping[str, Any]) -> dict[str, tuple[str | None, bool]]:
        """The fleet's instances: id → (instance type, is spot).

        An instant fleet lists them in DescribeFleets; the others need DescribeFleetInstances.
        """
        members: dict[str, tuple[str | None, bool]] = {}
        if fleet.get("Type") == "instant":
            for group in fleet.get("Instances", []) or []:
                for instance_id in group.get("InstanceIds", []) or []:
                    members[instance_id] = (group.get("InstanceType"), group.get("Lifecycle") == "spot")
            return members
        ec2 = self.ctx.clients.ec2
        for page in pages(ec2.describe_fleet_instances, "DescribeFleetInstances", FleetId=fleet["FleetId"]):
            for instance in page.get("ActiveInstances", []):
                spot = str(instance.get("SpotInstanceRequestId") or "").startswith("sir-")
                members[instance["InstanceId"]] = (instance.get("InstanceType"), spot)
        return members

    # -- release ------------------------------------------------------------------------

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        groups, loose = group_returns(items, self.api, "fleet_id")
        fleets = self.describe_fleets(list(groups))
        members = {
            fleet_id: self.fleet_members(fleets[fleet_id]) for fleet_id in groups if fleet_id in fleets
        }
        candidates = [i for m in members.values() for i in m]
        candidates += [i for fid, (_, req, _) in groups.items() if fid not in fleets for i in req.machine_ids]
        living = alive(self.ctx, candidates)
        to_delete: list[tuple[str, str]] = []
        emptied: list[Mapping[str, Any]] = []
        for fleet_id, (handle, request, returned) in groups.items():
            fleet = fleets.get(fleet_id)
            gone = set(returned)
            if fleet is None:  # the cloud no longer knows it: what core saw is all we have
                if not (set(request.machine_ids) - gone) & living:
                    emptied.append(handle)
                continue
            active = {i: info for i, info in members[fleet_id].items() if i in living}
            if set(active) - gone and not nothing_held_after(request, gone):
                if handle.get("fleet_type") == "maintain":
                    self._lower_target(fleet, handle, [active[i] for i in returned if i in active])
            elif not str(fleet.get("FleetState", "")).startswith("deleted"):
                to_delete.append((fleet_id, str(handle.get("fleet_type") or fleet.get("Type"))))
                emptied.append(handle)
            else:
                emptied.append(handle)
        deleted = self._delete_fleets(to_delete)
        errors = self.ctx.terminate_instances([*(i for _, _, r in groups.values() for i in r), *loose])
        for handle in emptied:
            if handle.get("fleet_id") in deleted or handle.get("fleet_id") not in dict(to_delete):
                delete_for_request(self.ctx, handle)
        return errors

    def _lower_target(
        self, fleet: Mapping[str, Any], handle: Mapping[str, Any], returned: Sequence[tuple[str | None, bool]]
    ) -> None:
        """ModifyFleet: the target less the returned machines' weights; the fleet terminates
        nothing itself (ohfp terminates exactly the returned machines)."""
        if not returned:
            return
        weights = handle.get("weights", {})
        spec = fleet.get("TargetCapacitySpecification", {})
        total = int(spec.get("TotalTargetCapacity", handle["target"]))
        spot_units = sum(weights.get(t, 1) for t, spot in returned if spot)
        od_units = sum(weights.get(t, 1) for t, spot in returned if not spot)
        new_total = max(0, total - spot_units - od_units)
        target: dict[str, Any] = {"TotalTargetCapacity": new_total}
        if spec.get("OnDemandTargetCapacity") is not None:
            new_od = max(0, min(new_total, int(spec["OnDemandTargetCapacity"]) - od_units))
            target["OnDemandTargetCapacity"] = new_od
            if spec.get("SpotTargetCapacity") is not None:
                target["SpotTargetCapacity"] = new_total - new_od
        with aws_call("ModifyFleet"):
            self.ctx.clients.ec2.modify_fleet(
                FleetId=fleet["FleetId"],
                TargetCapacitySpecification=target,
                ExcessCapacityTerminationPolicy="no-termination",
            )

    def _delete_fleets(self, fleets: Sequence[tuple[str, str]]) -> set[str]:
        """DeleteFleets (terminating what is left) within AWS's per-type batch limits;
        the ids deleted (or already gone)."""
        deleted: set[str] = set()
        ec2 = self.ctx.clients.ec2
        for fleet_type, limit in DELETE_CHUNK.items():
            ids = [fid for fid, kind in fleets if kind == fleet_type]
            for chunk in chunks(ids, limit):
                try:
                    with aws_call("DeleteFleets"):
                        response = ec2.delete_fleets(FleetIds=chunk, TerminateInstances=True)
                except CloudError as exc:
                    # moto refuses to terminate an empty fleet's (non-existent) instances with
                    # this code; on this call it can only mean "nothing left to terminate".
                    if error_code(exc) != _EMPTY_FLEET:
                        raise
                    deleted.update(chunk)
                    continue
                deleted.update(d["FleetId"] for d in response.get("SuccessfulFleetDeletions", []))
                for failure in response.get("UnsuccessfulFleetDeletions", []):
                    code = str(failure.get("Error", {}).get("Code", ""))
                    if code.endswith("NotFound"):
                        deleted.add(failure["FleetId"])
        return deleted

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, request_id: str) -> None:
        """Delete the fleets tagged with ``request_id`` (terminating their instances).

        DescribeFleets cannot filter by tag, so DescribeTags finds the fleet ids; DescribeFleets
        then leaves out fleets already deleted and those of another provider instance.

        :raises CloudError: when AWS refused, or did not delete a fleet.
        """
        filters = [
            {"Name": "resource-type", "Values": ["fleet"]},
            {"Name": "key", "Values": [TAG_REQUEST]},
            {"Name": "value", "Values": [request_id]},
        ]
        tagged = [
            str(tag["ResourceId"])
            for page in pages(self.ctx.clients.ec2.describe_tags, "DescribeTags", Filters=filters)
            for tag in page.get("Tags", [])
        ]
        doomed = [
            (fleet_id, str(fleet.get("Type")))
            for fleet_id, fleet in self.describe_fleets(tagged).items()
            if not str(fleet.get("FleetState", "")).startswith("deleted")
            and made_for(fleet.get("Tags"), self.ctx, request_id)
        ]
        left = {fleet_id for fleet_id, _ in doomed} - self._delete_fleets(doomed)
        if left:
            raise CloudError(f"DeleteFleets: EC2 fleets {', '.join(sorted(left))} were not deleted")

"""Spot Fleet: one Spot Fleet request per HF request (IBM's own choice for spot templates).

The request launches from ohfp's launch template with overrides instance types × subnets,
weighted; ``fleetRole`` is its IAM fleet role. A ``request`` fleet is valid for
``spotFleetRequestExpiry`` minutes and keeps its instances when that passes
(``TerminateInstancesWithExpiration`` False: HF owns them and returns them itself); a
``maintain`` fleet has no ValidUntil (it would stop maintaining) and ohfp stops waiting for
it after the same time. Returning machines lowers a ``maintain`` fleet's target (AWS
modifies no other type); the last machine cancels the request and deletes the template.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ohfp_aws.errors import aws_call, error_code
from ohfp_aws.handlers.base import AwsContext, AwsTemplate, FleetState, client_token
from ohfp_aws.handlers.common import (
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
from ohfp_aws.launch_templates import ACTIONS as LAUNCH_TEMPLATE_ACTIONS
from ohfp_aws.launch_templates import (
    delete_for_request,
    discard_after_failure,
    handle_fields,
    launch_template_spec,
)
from ohfp_core.errors import CloudError
from ohfp_core.models import CloudRequest, Provisioned, ReturnItem

SPOT_STRATEGIES = {
    "capacityOptimized": "capacityOptimized",
    "capacityOptimizedPrioritized": "capacityOptimizedPrioritized",
    "diversified": "diversified",
    "lowestPrice": "lowestPrice",
    "priceCapacityOptimized": "priceCapacityOptimized",
}
ON_DEMAND_STRATEGIES = {"lowestPrice": "lowestPrice", "prioritized": "prioritized"}
_NOTHING_TO_TERMINATE = "InvalidParameterCombination"
BATCH = 100  # CancelSpotFleetRequests takes at most 100 ids; describe uses the same batches


class SpotFleetHandler:
    """Provision, inspect and return machines through Spot Fleet (RequestSpotFleet)."""

    api: ClassVar[str] = "SpotFleet"
    actions: ClassVar[tuple[str, ...]] = (
        *LAUNCH_TEMPLATE_ACTIONS,
        "ec2:DescribeImages",
        "ec2:RequestSpotFleet",
        "ec2:DescribeSpotFleetRequests",
        "ec2:DescribeSpotFleetInstances",
        "ec2:ModifySpotFleetRequest",
        "ec2:CancelSpotFleetRequests",
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
        if not template.fleet_role:
            return "Spot Fleet needs fleetRole (the IAM role Spot Fleet launches with)"
        missing = missing_launch_source(template, "Spot Fleet")
        if missing:
            return missing
        if template.fleet_type not in (None, "request", "maintain"):
            return f"Spot Fleet has no fleetType {template.fleet_type} (request or maintain)"
        return None

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        fleet_type = template.fleet_type or "request"
        handle: dict[str, Any] = {
            "api": self.api,
            "fleet_type": fleet_type,
            "target": count,
            "weights": instance_types(template),
            **handle_fields(self.ctx, request_id, template),
        }
        handle["valid_until"] = deadline(template, handle["launch_template_created_at"] or self.clock())
        config = self.request_config(request_id, template, count, handle)
        try:
            with aws_call("RequestSpotFleet"):
                response = self.ctx.clients.ec2.request_spot_fleet(SpotFleetRequestConfig=config)
        except CloudError as exc:
            discard_after_failure(self.ctx, handle, exc)
            raise
        handle["spot_fleet_request_id"] = response["SpotFleetRequestId"]
        return Provisioned(
            handle=handle, message=f"spot fleet request {response['SpotFleetRequestId']} created"
        )

    def request_config(
        self, request_id: str, template: AwsTemplate, count: int, handle: Mapping[str, Any]
    ) -> dict[str, Any]:
        """RequestSpotFleet's ``SpotFleetRequestConfig`` for ``count`` units of ``template``."""
        on_demand = on_demand_units(template, count)
        strategy = template.allocation_strategy or self.ctx.config.handlers.spot_fleet.allocation_strategy
        od_strategy = ON_DEMAND_STRATEGIES[template.allocation_strategy_on_demand or "lowestPrice"]
        if template.price_type == "heterogeneous" and template.vm_types_on_demand:
            od_strategy = "prioritized"  # on-demand launches the vmTypesOnDemand types first
        prioritized = (od_strategy == "prioritized" and on_demand > 0) or (
            strategy == "capacityOptimizedPrioritized" and on_demand < count
        )
        config: dict[str, Any] = {
            "IamFleetRole": template.fleet_role,
            "AllocationStrategy": SPOT_STRATEGIES[strategy],
            "TargetCapacity": count,
            "Type": handle["fleet_type"],
            "ClientToken": client_token(request_id, "spotfleet"),
            "TerminateInstancesWithExpiration": False,
            "ExcessCapacityTerminationPolicy": "noTermination",
            "LaunchTemplateConfigs": [
                {
                    "LaunchTemplateSpecification": launch_template_spec(handle),
                    **overrides(template, prioritized),
                }
            ],
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
        if handle["fleet_type"] == "request":
            config["ValidUntil"] = as_utc(handle["valid_until"])
        return config

    # -- inspect ------------------------------------------------------------------------

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        ids = [
            str(r.handle["spot_fleet_request_id"]) for r in requests if r.handle.get("spot_fleet_request_id")
        ]
        fleets = self.describe_requests(ids)
        now = self.clock()
        states: dict[str, FleetState] = {}
        for request in requests:
            handle = request.handle
            fleet_id = str(handle.get("spot_fleet_request_id"))
            fleet = fleets.get(fleet_id)
            if fleet is None:  # cancelled and purged (moto drops it at once)
                states[request.request_id] = FleetState(
                    instance_ids=request.machine_ids,
                    errors=(f"spot fleet request {fleet_id} no longer exists",),
                )
                continue
            states[request.request_id] = self._state(handle, fleet, request.machine_ids, now)
        return states

    def _state(
        self, handle: Mapping[str, Any], fleet: Mapping[str, Any], known: Sequence[str], now: float
    ) -> FleetState:
        fleet_id = fleet["SpotFleetRequestId"]
        config = fleet.get("SpotFleetRequestConfig", {})
        target = float(config.get("TargetCapacity", handle["target"]))
        fulfilled = float(config.get("FulfilledCapacity", 0))
        state = str(fleet.get("SpotFleetRequestState", ""))
        members = self.fleet_members(fleet_id) if not state.startswith("cancelled") else {}

        def closed(current: str, expired: bool) -> str:
            return "spot fleet failed" if current == "failed" else "spot fleet expired"

        return fleet_state(
            tuple(dict.fromkeys([*members, *known])),
            state=state,
            target=target,
            fulfilled=fulfilled,
            valid_until=epoch_of(config.get("ValidUntil")) or handle.get("valid_until"),
            now=now,
            activity_status=fleet.get("ActivityStatus"),
            closed=closed,
            launch_errors=f"spot fleet request {fleet_id} reports errors launching instances",
        )

    def describe_requests(self, fleet_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Spot fleet requests by id, batched; unknown ids are left out."""
        return describe_batched(fleet_ids, BATCH, self._describe_chunk)

    def _describe_chunk(self, fleet_ids: list[str]) -> dict[str, dict[str, Any]]:
        ec2 = self.ctx.clients.ec2
        return {
            config["SpotFleetRequestId"]: config
            for page in pages(
                ec2.describe_spot_fleet_requests, "DescribeSpotFleetRequests", SpotFleetRequestIds=fleet_ids
            )
            for config in page.get("SpotFleetRequestConfigs", [])
        }

    def fleet_members(self, fleet_id: str) -> dict[str, str | None]:
        """The request's active instances: id → instance type."""
        ec2 = self.ctx.clients.ec2
        return {
            instance["InstanceId"]: instance.get("InstanceType")
            for page in pages(
                ec2.describe_spot_fleet_instances, "DescribeSpotFleetInstances", SpotFleetRequestId=fleet_id
            )
            for instance in page.get("ActiveInstances", [])
        }

    # -- release ------------------------------------------------------------------------

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        groups, loose = group_returns(items, self.api, "spot_fleet_request_id")
        fleets = self.describe_requests(list(groups))
        members = {
            fid: self.fleet_members(fid)
            for fid in groups
            if fid in fleets and not str(fleets[fid].get("SpotFleetRequestState", "")).startswith("cancelled")
        }
        candidates = [i for m in members.values() for i in m]
        candidates += [
            i for fid, (_, req, _) in groups.items() if fid not in members for i in req.machine_ids
        ]
        living = alive(self.ctx, candidates)
        to_cancel: list[str] = []
        emptied: list[Mapping[str, Any]] = []
        for fleet_id, (handle, request, returned) in groups.items():
            gone = set(returned)
            if fleet_id not in members:  # cancelled or purged: what core saw is all we have
                if not (set(request.machine_ids) - gone) & living:
                    emptied.append(handle)
                continue
            active = {i: t for i, t in members[fleet_id].items() if i in living}
            if set(active) - gone and not nothing_held_after(request, gone):
                if handle.get("fleet_type") == "maintain":
                    self._lower_target(fleets[fleet_id], handle, [active[i] for i in returned if i in active])
            else:
                to_cancel.append(fleet_id)
                emptied.append(handle)
        # Terminate first, then cancel: the cancel's TerminateInstances also ends any
        # replacement a maintain fleet launched in between (and moto cannot terminate an
        # instance whose request it has already dropped).
        errors = self.ctx.terminate_instances([*(i for _, _, r in groups.values() for i in r), *loose])
        cancelled = self._cancel(to_cancel)
        for handle in emptied:
            if (
                handle["spot_fleet_request_id"] not in to_cancel
                or handle["spot_fleet_request_id"] in cancelled
            ):
                delete_for_request(self.ctx, handle)
        return errors

    def _lower_target(
        self, fleet: Mapping[str, Any], handle: Mapping[str, Any], returned: Sequence[str | None]
    ) -> None:
        """ModifySpotFleetRequest: the target less the returned machines' weights, with
        ``noTermination`` (ohfp terminates exactly the returned machines)."""
        if not returned:
            return
        weights = handle.get("weights", {})
        config = fleet.get("SpotFleetRequestConfig", {})
        total = int(config.get("TargetCapacity", handle["target"]))
        new_total = max(0, total - sum(weights.get(t, 1) for t in returned))
        params: dict[str, Any] = {
            "SpotFleetRequestId": fleet["SpotFleetRequestId"],
            "TargetCapacity": new_total,
            "ExcessCapacityTerminationPolicy": "noTermination",
        }
        if config.get("OnDemandTargetCapacity") is not None:
            params["OnDemandTargetCapacity"] = min(new_total, int(config["OnDemandTargetCapacity"]))
        with aws_call("ModifySpotFleetRequest"):
            self.ctx.clients.ec2.modify_spot_fleet_request(**params)

    def _cancel(self, fleet_ids: Sequence[str]) -> set[str]:
        """CancelSpotFleetRequests terminating what is left; the ids cancelled (or unknown)."""
        cancelled: set[str] = set()
        cancel = self.ctx.clients.ec2.cancel_spot_fleet_requests
        for chunk in chunks(fleet_ids, BATCH):
            try:
                with aws_call("CancelSpotFleetRequests"):
                    response = cancel(SpotFleetRequestIds=chunk, TerminateInstances=True)
            except CloudError as exc:
                # moto refuses to terminate a request's instances when none are left; on
                # this call that can only mean there is nothing to terminate.
                if error_code(exc) != _NOTHING_TO_TERMINATE:
                    raise
                with aws_call("CancelSpotFleetRequests"):
                    response = cancel(SpotFleetRequestIds=chunk, TerminateInstances=False)
            cancelled.update(s["SpotFleetRequestId"] for s in response.get("SuccessfulFleetRequests", []))
            for failure in response.get("UnsuccessfulFleetRequests", []):
                if str(failure.get("Error", {}).get("Code", "")).startswith("fleetRequestIdDoesNotExist"):
                    cancelled.add(failure["SpotFleetRequestId"])
        return cancelled

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, request_id: str) -> None:
        """Cancel the Spot Fleet requests tagged with ``request_id``, terminating their instances.

        :raises CloudError: when AWS refused, or did not cancel a request.
        """
        # The tags come from DescribeSpotFleetRequests' reply, paging through every request of
        # the account: moto's DescribeTags lists no spot-fleet-request tags. Only this rare
        # clean-up after a provisioning call that died pays for the full listing.
        ec2 = self.ctx.clients.ec2
        doomed = [
            str(config["SpotFleetRequestId"])
            for page in pages(ec2.describe_spot_fleet_requests, "DescribeSpotFleetRequests")
            for config in page.get("SpotFleetRequestConfigs", [])
            if not str(config.get("SpotFleetRequestState", "")).startswith("cancelled")
            and made_for(config.get("Tags"), self.ctx, request_id)
        ]
        left = set(doomed) - self._cancel(doomed)
        if left:
            raise CloudError(
                f"CancelSpotFleetRequests: spot fleet requests {', '.join(sorted(left))} were not cancelled"
            )

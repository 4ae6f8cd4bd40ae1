"""One flow for EC2 Fleet and Spot Fleet: provision, inspect, release and cancel, written once.

A fleet per request launches from ohfp's launch template (or the template's own). What
differs between the two APIs is a small :class:`FleetApi` adapter:
:class:`~ohfp_aws.apis.ec2_fleet.EC2Fleet` and
:class:`~ohfp_aws.apis.spot_fleet.SpotFleet` create, describe, list members, read
capacity, lower the target, delete and find fleets, each in its API's words.

- **provision**: the launch template, then the fleet (one client token per request); a
  create refused for good deletes the launch template; an ``instant`` fleet that launched
  nothing is deleted and its first error raised.
- **inspect**: one batched describe for every fleet; a fleet is open while it is live, short
  of its target and before its deadline (:func:`~ohfp_aws.apis.common.fleet_state`).
  An ``instant`` fleet is a record of one launch: the handle holds its instances and errors,
  and why each override fell short. A ``request`` or ``maintain`` fleet short of its target
  whose ``ActivityStatus`` is ``error`` has its history read (one call per such fleet) for
  why each offering fell short; what is learned goes into the handle, and the
  offerings short of capacity are remembered (:mod:`ohfp_aws.supply.offerings`).
- **release**: only a ``maintain`` fleet replaces lost instances, so only its target is
  lowered (AWS modifies no other type). The returned instances are terminated first; a
  fleet left with nothing Host Factory holds is then deleted with whatever it still runs,
  and its launch template with it. A fleet already deleted or cancelled is left as it is.
- **cancel**: the live fleets tagged with the request id and this provider instance, found
  with DescribeTags, are deleted, terminating their instances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs
from attrs import frozen

from ohfp_aws.apis import handles
from ohfp_aws.apis.common import Clock, alive, deadline, fleet_state, group_returns, loaded
from ohfp_aws.apis.handles import FleetHandle
from ohfp_aws.context import AwsContext
from ohfp_aws.launch import resources
from ohfp_aws.launch.launch_templates import delete_for_request, discard_after_failure, ensure_for_request
from ohfp_aws.supply.overrides import weights
from ohfp_aws.vocabulary import TAG_REQUEST, AwsTemplate, FleetState, Shortfall
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger
from ohfp_core.models import CloudRequest, Provisioned, ReturnItem

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef

log = get_logger("ohfp.aws")


@frozen(kw_only=True)
class Member:
    """An instance a fleet reports: its type and whether it is spot."""

    instance_type: str | None
    spot: bool = False


@frozen(kw_only=True)
class Capacity:
    """What a described fleet says of its capacity (units), its state and deadline."""

    state: str
    target: float
    fulfilled: float
    valid_until: float | None = None
    activity_status: str | None = None


@frozen(kw_only=True)
class Created:
    """A create call's outcome. An instant fleet reports the instances it launched, its
    errors and the shortfall of each override; ``refusal`` is the error to raise when it
    launched nothing."""

    fleet_id: str
    instance_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    shortfalls: tuple[Shortfall, ...] = ()
    refusal: CloudError | None = None


class FleetApi(Protocol):
    """What differs between EC2 Fleet and Spot Fleet. ``noun`` names a fleet in messages
    (``EC2 fleet``, ``spot fleet request``); every call is inside ``aws_call``."""

    api: ClassVar[str]
    actions: ClassVar[tuple[str, ...]]
    noun: ClassVar[str]
    history_call: ClassVar[str]
    resource_type: ClassVar[str]
    """What DescribeTags calls the fleet (``fleet``, ``spot-fleet-request``)."""

    def unsupported(self, template: AwsTemplate) -> str | None:
        """Why this API cannot launch ``template``; None when it can."""
        ...

    def fleet_type(self, template: AwsTemplate) -> str:
        """The fleet type for ``template`` (its ``fleetType`` or this API's default)."""
        ...

    def create(self, request_id: str, template: AwsTemplate, count: int, handle: FleetHandle) -> Created:
        """Create the fleet ``handle`` describes (its id still empty) for ``count`` units."""
        ...

    def created(self, handle: FleetHandle) -> str:
        """The message of a provisioned request."""
        ...

    def describe(self, fleet_ids: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        """Fleets by id, batched; unknown ids are left out."""
        ...

    def capacity(self, fleet: Mapping[str, Any], handle: FleetHandle) -> Capacity:
        """The fleet's state and capacity (the handle's target when AWS does not say)."""
        ...

    def is_closed(self, fleet: Mapping[str, Any]) -> bool:
        """True once the fleet is deleted or cancelled: nothing to lower or delete."""
        ...

    def members(self, fleet: Mapping[str, Any]) -> dict[str, Member]:
        """The fleet's active instances by id."""
        ...

    def closed(self, fleet_id: str, state: str, expired: bool) -> str:
        """Why a fleet short of its target stopped (the rule adds ``with x of y units``)."""
        ...

    def lower_target(self, fleet: Mapping[str, Any], handle: FleetHandle, returned: Sequence[Member]) -> None:
        """Lower a maintain fleet's target by the units of ``returned``, terminating nothing."""
        ...

    def delete(self, fleets: Sequence[tuple[str, str]]) -> set[str]:
        """Delete fleets ``(id, fleet type)``, terminating their instances; the ids deleted
        (or unknown to AWS)."""
        ...

    def fleet_type_of(self, fleet: Mapping[str, Any]) -> str:
        """A described fleet's type (``instant``, ``request`` or ``maintain``)."""
        ...

    def not_deleted(self, fleet_ids: Sequence[str]) -> str:
        """The error for fleets a delete left."""
        ...

    def history(self, fleet_id: str, since: float) -> list[Mapping[str, Any]]:
        """The fleet's history records since ``since`` (epoch seconds), one page."""
        ...


class FleetHandler:
    """Provision, inspect and return machines through one fleet per request; a subclass
    names its :class:`FleetApi` adapter as ``fleet_api``."""

    fleet_api: ClassVar[type[FleetApi]]
    api: ClassVar[str]
    actions: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.api = cls.fleet_api.api
        cls.actions = cls.fleet_api.actions

    def __init__(self, ctx: AwsContext, clock: Clock | None = None) -> None:
        self.ctx = ctx
        self.clock = clock or ctx.clock
        self.fleet = self.fleet_api(ctx)  # type: ignore[call-arg]

    def unsupported(self, template: AwsTemplate) -> str | None:
        return self.fleet.unsupported(template)

    # -- provision ----------------------------------------------------------------------

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        fleet_type = self.fleet.fleet_type(template)
        launch = ensure_for_request(self.ctx, request_id, template)
        start = launch.launch_template_created_at or self.clock()
        draft = FleetHandle(
            **attrs.asdict(launch),
            api=self.api,
            fleet_type=fleet_type,
            fleet_id="",
            target=count,
            weights=weights(template),
            valid_until=None if fleet_type == "instant" else deadline(template, start),
        )
        try:
            created = self.fleet.create(request_id, template, count, draft)
        except CloudError as exc:
            discard_after_failure(self.ctx, draft, exc)
            raise
        resources.created(
            self.fleet.noun,
            created.fleet_id,
            fleet_type=fleet_type,
            launch_template_id=draft.launch_template_id,
            target=count,
        )
        handle = attrs.evolve(
            draft,
            fleet_id=created.fleet_id,
            instance_ids=created.instance_ids,
            errors=created.errors,
            shortfalls=created.shortfalls,
        )
        if created.shortfalls:
            from ohfp_aws.supply.offerings import remember

            remember(self.ctx, created.shortfalls, request_id)
        if created.refusal is not None:
            # Nothing launched: leave nothing behind (the error is what the caller must see).
            with contextlib.suppress(CloudError):
                self.delete([(handle.fleet_id, fleet_type)], {handle.fleet_id: request_id})
            with contextlib.suppress(CloudError):
                delete_for_request(self.ctx, handle, request_id)
            raise created.refusal
        return Provisioned(handle=handles.dump(handle), message=self.fleet.created(handle))

    # -- inspect ------------------------------------------------------------------------

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        found, states = loaded(requests, FleetHandle)
        fleets = self.fleet.describe([handle.fleet_id for _, handle in found if handle.fleet_id])
        now = self.clock()
        for request, handle in found:
            known = (*handle.instance_ids, *request.machine_ids)
            fleet = fleets.get(handle.fleet_id)
            state = self._state(handle, fleet, known, now)
            if fleet is not None and handle.fleet_type != "instant":
                state = self._diagnosed(request, handle, fleet, state)
            states[request.request_id] = state
        return states

    def _diagnosed(
        self, request: CloudRequest, handle: FleetHandle, fleet: Mapping[str, Any], state: FleetState
    ) -> FleetState:
        """``state`` with why the fleet fell short: read from its history while it is short
        and AWS reports launch errors (``ActivityStatus`` error); the handle's last
        diagnosis otherwise (and for a fleet ohfp deleted)."""
        capacity = self.fleet.capacity(fleet, handle)
        failing = capacity.activity_status == "error" and not self.fleet.is_closed(fleet)
        if capacity.fulfilled >= capacity.target or not failing:
            return attrs.evolve(state, shortfalls=handle.shortfalls)
        from ohfp_aws.supply.offerings import remember
        from ohfp_aws.supply.shortfalls import from_history, merged

        since = request.created_at or handle.launch_template_created_at or self.clock() - 3600
        try:
            records = self.fleet.history(handle.fleet_id, float(since))
        except CloudError as exc:
            log.warning("fleet history unavailable", fleet_id=handle.fleet_id, error=str(exc))
            return attrs.evolve(state, shortfalls=handle.shortfalls)
        found = merged(from_history(records, self.fleet.history_call, list(handle.weights)))
        if not found or found == handle.shortfalls:
            return attrs.evolve(state, shortfalls=handle.shortfalls)
        remember(self.ctx, found, request.request_id)
        learned = attrs.evolve(handle, shortfalls=found)
        return attrs.evolve(state, shortfalls=found, handle=handles.dump(learned))

    def _state(
        self, handle: FleetHandle, fleet: Mapping[str, Any] | None, known: Sequence[str], now: float
    ) -> FleetState:
        instant = handle.fleet_type == "instant"
        if fleet is None:
            vanished = (f"{self.fleet.noun} {handle.fleet_id} no longer exists",)
            errors = handle.errors if instant else vanished
            return FleetState(
                instance_ids=tuple(dict.fromkeys(known)),
                errors=errors,
                weights=handle.weights,
                shortfalls=handle.shortfalls,
            )
        members = self.fleet.members(fleet)
        if instant:
            ids = tuple(dict.fromkeys([*known, *members]))
            return FleetState(
                instance_ids=ids, errors=handle.errors, weights=handle.weights, shortfalls=handle.shortfalls
            )
        capacity = self.fleet.capacity(fleet, handle)
        return fleet_state(
            tuple(dict.fromkeys([*members, *known])),
            state=capacity.state,
            target=capacity.target,
            fulfilled=capacity.fulfilled,
            valid_until=handle.valid_until or capacity.valid_until,
            now=now,
            activity_status=capacity.activity_status,
            closed=partial(self.fleet.closed, handle.fleet_id),
            launch_errors=f"{self.fleet.noun} {handle.fleet_id} reports errors launching instances",
            weights=handle.weights,
        )

    # -- release ------------------------------------------------------------------------

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        groups, loose = group_returns(items, self.api, FleetHandle, lambda handle: handle.fleet_id)
        fleets = {
            fleet_id: fleet
            for fleet_id, fleet in self.fleet.describe(list(groups)).items()
            if not self.fleet.is_closed(fleet)
        }
        members = {fleet_id: self.fleet.members(fleet) for fleet_id, fleet in fleets.items()}
        candidates = [i for found in members.values() for i in found]
        candidates += [
            i for fid, group in groups.items() if fid not in fleets for i in group.request.machine_ids
        ]
        living = alive(self.ctx, candidates)
        doomed: list[tuple[str, str]] = []
        emptied: list[tuple[FleetHandle, str]] = []  # and the request each was made for
        for fleet_id, group in groups.items():
            returned = set(group.machine_ids)
            if fleet_id not in fleets:  # deleted or cancelled: what core saw is all we have
                if not (set(group.request.machine_ids) - returned) & living:
                    emptied.append((group.handle, group.request.request_id))
                continue
            active = {i: member for i, member in members[fleet_id].items() if i in living}
            if set(active) - returned and not group.nothing_held_after:
                leaving = [active[i] for i in group.machine_ids if i in active]
                if group.handle.fleet_type == "maintain" and leaving:
                    self.fleet.lower_target(fleets[fleet_id], group.handle, leaving)
            else:
                doomed.append((fleet_id, group.handle.fleet_type))
                emptied.append((group.handle, group.request.request_id))
        # Terminate first, then delete: deleting also ends any replacement a maintain fleet
        # launched in between.
        errors = self.ctx.terminate_instances([*(i for g in groups.values() for i in g.machine_ids), *loose])
        deleted = self.delete(doomed, {fid: group.request.request_id for fid, group in groups.items()})
        doomed_ids = {fleet_id for fleet_id, _ in doomed}
        for handle, made_for in emptied:
            if handle.fleet_id not in doomed_ids or handle.fleet_id in deleted:
                delete_for_request(self.ctx, handle, made_for)
        return errors

    # -- cancel -------------------------------------------------------------------------

    def cancel(self, request_id: str) -> None:
        """Delete the live fleets tagged with ``request_id``, terminating their instances.

        :raises CloudError: when AWS refused, or did not delete a fleet.
        """
        doomed = self.find(request_id)
        left = {fleet_id for fleet_id, _ in doomed} - self.delete(
            doomed, dict.fromkeys(dict(doomed), request_id)
        )
        if left:
            raise CloudError(self.fleet.not_deleted(sorted(left)))

    def delete(self, fleets: Sequence[tuple[str, str]], made_for: Mapping[str, str]) -> set[str]:
        """Delete ``fleets`` (id, fleet type) with their instances: the ids deleted, each
        logged with the request it was made for (``made_for``, by fleet id).

        :raises CloudError: when AWS refused.
        """
        deleted = self.fleet.delete(fleets)
        for fleet_id, _ in fleets:
            if fleet_id in deleted:
                resources.deleted(self.fleet.noun, fleet_id, made_for.get(fleet_id))
        return deleted

    def find(self, request_id: str) -> list[tuple[str, str]]:
        """The live fleets ``(id, fleet type)`` made for ``request_id`` by this provider
        instance: DescribeTags finds the fleets tagged with the request id (neither
        DescribeFleets nor DescribeSpotFleetRequests filters by tag); one describe of those
        leaves out the ones deleted or cancelled and another provider instance's."""
        filters: list[FilterTypeDef] = [
            {"Name": "resource-type", "Values": [self.fleet.resource_type]},
            {"Name": "key", "Values": [TAG_REQUEST]},
            {"Name": "value", "Values": [request_id]},
        ]
        tagged = [tag.get("ResourceId", "") for tag in self.ctx.services.ec2.tags(filters)]
        return [
            (fleet_id, self.fleet.fleet_type_of(fleet))
            for fleet_id, fleet in self.fleet.describe(tagged).items()
            if not self.fleet.is_closed(fleet) and self.ctx.made_for(fleet.get("Tags"), request_id)
        ]

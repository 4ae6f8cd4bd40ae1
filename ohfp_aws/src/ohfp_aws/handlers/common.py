"""What the EC2 Fleet, Spot Fleet and Auto Scaling group handlers share.

The capacity split and launch priorities of a template, grouping returned machines by
their request, which instances are still alive, request deadlines and AWS timestamps,
paginated and batched describes, and the rule that turns a fleet's capacity into a
:class:`FleetState`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ohfp_aws.errors import aws_call, error_code
from ohfp_aws.handlers.base import TAG_INSTANCE, TAG_REQUEST, AwsContext, AwsTemplate, FleetState
from ohfp_aws.instances import chunks, describe_machines
from ohfp_core.errors import CloudError
from ohfp_core.models import CloudRequest, MachineState, ReturnItem

Clock = Callable[[], float]

# IBM's on-demand strategy names as EC2 Fleet and Auto Scaling spell them.
ON_DEMAND_STRATEGIES = {"lowestPrice": "lowest-price", "prioritized": "prioritized"}
# Fleet states in which a fleet may still launch what it lacks.
LIVE_STATES = ("submitted", "active", "modifying")
_GONE_STATES = (MachineState.TERMINATED, MachineState.SHUTTING_DOWN)


# -- templates ----------------------------------------------------------------------------


def on_demand_units(template: AwsTemplate, count: int, max_spot_percent: int = 100) -> int:
    """How many of ``count`` units are on-demand.

    ``ondemand``: all; ``spot``: none; ``heterogeneous``: ``percentOnDemand`` % rounded half
    up (0 without it), raised so the spot share stays within ``max_spot_percent`` %.
    """
    if template.price_type == "ondemand":
        return count
    if template.price_type == "spot":
        return 0
    on_demand = (count * (template.percent_on_demand or 0) + 50) // 100
    spot = min(count - on_demand, count * max_spot_percent // 100)
    return count - spot


def instance_types(template: AwsTemplate) -> dict[str, int]:
    """Every instance type the template may launch → its weight (on-demand types included
    for heterogeneous templates)."""
    types = dict(template.vm_types)
    if template.price_type == "heterogeneous":
        for name, weight in template.vm_types_on_demand.items():
            types.setdefault(name, weight)
    return types


def priorities(template: AwsTemplate) -> dict[str, int]:
    """Launch priority per instance type (0 is first).

    ``vmTypesOnDemand`` types come first (so a ``prioritized`` on-demand strategy launches
    them before the others), then ``vmTypesPriority`` order, then the template's order.
    """
    types = list(instance_types(template))
    on_demand = set(template.vm_types_on_demand) if template.price_type == "heterogeneous" else set()
    ranked = sorted(
        types,
        key=lambda t: (t not in on_demand, template.vm_types_priority.get(t, len(types)), types.index(t)),
    )
    return {name: rank for rank, name in enumerate(ranked)}


def missing_launch_source(template: AwsTemplate, what: str) -> str | None:
    """Why ``what`` (a fleet or group) cannot launch ``template``: no image or launch
    template, or no instance type; None when it can."""
    if not template.image_id and not template.launch_template_id:
        return f"{what} needs imageId or launchTemplateId"
    if not template.vm_types and not template.launch_template_id:
        return f"{what} needs vmType or vmTypes (or a launchTemplateId that sets the type)"
    return None


def deadline(template: AwsTemplate, start: float) -> int:
    """When a request stops waiting for capacity: ``start`` + ``spotFleetRequestExpiry`` minutes.

    Handlers start from the launch template's creation time, the same on every attempt, so
    a retried create sends the same ``ValidUntil`` with the same client token.
    """
    return int(start) + template.spot_fleet_request_expiry_min * 60


# -- inspect ------------------------------------------------------------------------------


def units(value: float) -> str:
    """Capacity units for a message: ``3`` rather than ``3.0``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def fleet_state(
    instance_ids: Sequence[str],
    *,
    state: str,
    target: float,
    fulfilled: float,
    valid_until: float | None,
    now: float,
    activity_status: str | None,
    closed: Callable[[str, bool], str],
    launch_errors: str,
) -> FleetState:
    """A fleet's :class:`FleetState` from its capacity.

    The fleet is open while it is short of ``target``, in a live state and not past
    ``valid_until``. A short fleet that is not open gets the error ``closed(state, expired)``
    followed by `` with <fulfilled> of <target> units``; a short fleet whose activity status
    is ``error`` also gets ``launch_errors``.
    """
    expired = valid_until is not None and now >= float(valid_until)
    short = fulfilled < target
    is_open = state in LIVE_STATES and short and not expired
    errors: list[str] = []
    if short and not is_open:
        errors.append(f"{closed(state, expired)} with {units(fulfilled)} of {units(target)} units")
    if short and activity_status == "error":
        errors.append(launch_errors)
    return FleetState(instance_ids=tuple(instance_ids), open=is_open, errors=tuple(errors))


def alive(ctx: AwsContext, instance_ids: Iterable[str]) -> set[str]:
    """The ids among ``instance_ids`` whose instances exist and are not terminating.

    Fleet instance listings lag behind terminations (and moto never drops terminated ones),
    so who is left is decided by one batched DescribeInstances.
    """
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        return set()
    machines = describe_machines(ctx.clients.ec2, ids)
    return {i for i, machine in machines.items() if machine.state not in _GONE_STATES}


def as_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def epoch_of(value: Any) -> float | None:
    """A timestamp AWS returned (datetime or ISO text) as seconds since the epoch."""
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=UTC).timestamp()
    if isinstance(value, str) and value:
        with contextlib.suppress(ValueError):
            return epoch_of(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


# -- cancel -------------------------------------------------------------------------------


def made_for(tags: Iterable[Mapping[str, Any]] | None, ctx: AwsContext, request_id: str) -> bool:
    """True when AWS ``tags`` (``[{"Key": …, "Value": …}]``) mark a resource ohfp made for
    ``request_id`` in this provider instance."""
    found = {str(t.get("Key")): t.get("Value") for t in tags or ()}
    return found.get(TAG_REQUEST) == request_id and found.get(TAG_INSTANCE) == ctx.instance_name


# -- AWS calls ----------------------------------------------------------------------------


def is_not_found(exc: CloudError) -> bool:
    code = error_code(exc)
    return code.endswith(("NotFound", "NotFoundException", "Malformed"))


def pages(
    call: Callable[..., Mapping[str, Any]], operation: str, **params: Any
) -> Iterator[Mapping[str, Any]]:
    """Every page of a NextToken-paginated EC2 call, errors translated."""
    while True:
        with aws_call(operation):
            page = call(**params)
        yield page
        token = page.get("NextToken")
        if not token:
            return
        params["NextToken"] = token


def describe_batched(
    ids: Sequence[str], size: int, describe: Callable[[list[str]], dict[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """What ``describe`` finds for ``ids`` (by id), asked ``size`` ids at a time; unknown
    ids are left out.

    One unknown id fails a whole batch with a not-found error: that batch is then asked one
    id at a time, and an id that is itself not found is left out; any other error is raised.
    """
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids, size):
        try:
            found.update(describe(chunk))
        except CloudError as exc:
            if not is_not_found(exc):
                raise
            for one in chunk:
                try:
                    found.update(describe([one]))
                except CloudError as single:
                    if not is_not_found(single):
                        raise
    return found


def overrides(template: AwsTemplate, prioritized: bool, max_price: str | None = None) -> dict[str, Any]:
    """Launch-template overrides: every instance type × subnet, weighted (and ranked when
    ``prioritized``), each with ``MaxPrice`` when given. ``{}`` when there is nothing to
    override."""
    types = instance_types(template)
    ranks = priorities(template)
    found: list[dict[str, Any]] = []
    for name in types or [None]:
        for subnet in template.subnet_ids or (None,):
            override: dict[str, Any] = {}
            if name is not None:
                override["InstanceType"] = name
                override["WeightedCapacity"] = float(types[name])
                if prioritized:
                    override["Priority"] = float(ranks[name])
            if subnet is not None:
                override["SubnetId"] = subnet
            if max_price:
                override["MaxPrice"] = max_price
            if override:
                found.append(override)
    return {"Overrides": found} if found else {}


# -- release ------------------------------------------------------------------------------


def nothing_held_after(request: CloudRequest, returned: Iterable[str]) -> bool:
    """True when Host Factory holds no other machine of ``request`` once ``returned`` go.

    Then the fleet or group is deleted with whatever it still runs: anything left is a
    machine Host Factory never got (a replacement for one the console terminated, say).
    False when core named no machines for the request (the cloud's view decides then).
    """
    return bool(request.machine_ids) and not set(request.machine_ids) - set(returned)


def group_returns(
    items: Sequence[ReturnItem], api: str, key: str
) -> tuple[dict[str, tuple[Mapping[str, Any], CloudRequest, list[str]]], list[str]]:
    """Returned machines by ``handle[key]`` of their acquire request (for handles of ``api``),
    and the ids of machines no such request claims."""
    groups: dict[str, tuple[Mapping[str, Any], CloudRequest, list[str]]] = {}
    loose: list[str] = []
    for item in items:
        request = item.request
        handle = request.handle if request is not None else {}
        if request is None or handle.get("api") != api or not handle.get(key):
            loose.append(item.machine_id)
            continue
        groups.setdefault(str(handle[key]), (handle, request, []))[2].append(item.machine_id)
    return groups, loose

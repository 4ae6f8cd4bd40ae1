"""What the fleet and Auto Scaling group handlers share.

Request deadlines and AWS timestamps, the rule that turns a fleet's or group's capacity into
a :class:`~ohfp_aws.vocabulary.FleetState`, which instances are still alive, batched describes
that survive unknown ids, and returned machines grouped by the fleet or group that
launched them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from attrs import define, field

from ohfp_aws.access.boundary import error_code
from ohfp_aws.access.instances import chunks, describe_machines
from ohfp_aws.apis import handles
from ohfp_aws.apis.handles import H
from ohfp_aws.context import AwsContext
from ohfp_aws.vocabulary import AwsTemplate, FleetState
from ohfp_core.errors import CloudError
from ohfp_core.models import CloudRequest, ReturnItem

Clock = Callable[[], float]
T = TypeVar("T")

LIVE_STATES = ("submitted", "active", "modifying")
"""Fleet states in which a fleet may still launch what it lacks."""


# -- templates and time -------------------------------------------------------------------------


def missing_launch_source(template: AwsTemplate, what: str) -> str | None:
    """Why ``what`` (a fleet or group) cannot launch ``template``: no image or launch
    template, or no instance type; None when it can."""
    if not template.image_id and not template.launch_template_id:
        return f"{what} needs imageId or launchTemplateId"
    if not template.vm_types and not template.launch_template_id and not template.instance_requirements:
        return (
            f"{what} needs vmType or vmTypes, instance requirements, or a launchTemplateId that sets the type"
        )
    return None


def deadline(template: AwsTemplate, start: float) -> int:
    """When a request stops waiting for capacity: ``start`` + ``spotFleetRequestExpiry`` minutes.

    Handlers start from the launch template's creation time, the same on every attempt, so
    a retried create sends the same ``ValidUntil`` with the same client token.
    """
    return int(start) + template.spot_fleet_request_expiry_min * 60


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
    weights: Mapping[str, int] | None = None,
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
    return FleetState(
        instance_ids=tuple(instance_ids), open=is_open, errors=tuple(errors), weights=weights or {}
    )


def alive(ctx: AwsContext, instance_ids: Iterable[str]) -> set[str]:
    """The ids among ``instance_ids`` whose instances exist and are not terminating.

    A fleet's instance listing (DescribeFleetInstances, DescribeSpotFleetInstances) lags
    behind terminations, so who is left is decided by one batched DescribeInstances.
    """
    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        return set()
    machines = describe_machines(ctx.services.ec2, ids)
    return {i for i, machine in machines.items() if not machine.state.is_ending}


def loaded(
    requests: Sequence[CloudRequest], kind: type[H]
) -> tuple[list[tuple[CloudRequest, H]], dict[str, FleetState]]:
    """Each request with its handle as ``kind``; a request whose handle cannot be read gets
    a state holding the machines core knows and why (never open)."""
    found: list[tuple[CloudRequest, H]] = []
    broken: dict[str, FleetState] = {}
    for request in requests:
        try:
            found.append((request, handles.load(request.handle, kind)))
        except ValueError as exc:
            broken[request.request_id] = FleetState(instance_ids=request.machine_ids, errors=(str(exc),))
    return found, broken


# -- AWS calls ----------------------------------------------------------------------------


def is_not_found(exc: CloudError) -> bool:
    code = error_code(exc)
    return code.endswith(("NotFound", "NotFoundException", "Malformed"))


def describe_batched(
    ids: Sequence[str], size: int, describe: Callable[[list[str]], Mapping[str, T]]
) -> dict[str, T]:
    """What ``describe`` finds for ``ids`` (by id), asked ``size`` ids at a time; unknown
    ids are left out.

    One unknown id fails a whole batch with a not-found error: that batch is then asked one
    id at a time, and an id that is itself not found is left out; any other error is raised.
    """
    found: dict[str, T] = {}
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


# -- release ------------------------------------------------------------------------------


@define(kw_only=True)
class Returned(Generic[H]):
    """Machines returned from one fleet or group: the acquire request that launched them
    and its handle."""

    request: CloudRequest
    handle: H
    machine_ids: list[str] = field(factory=list)

    @property
    def nothing_held_after(self) -> bool:
        """True when Host Factory holds no other machine of the request once these go.

        Then the fleet or group is deleted with whatever it still runs: anything left is a
        machine Host Factory never got (a replacement for one the console terminated, say).
        False when core named no machines for the request (the cloud's view decides then).
        """
        held = set(self.request.machine_ids)
        return bool(held) and not held - set(self.machine_ids)


def group_returns(
    items: Sequence[ReturnItem], api: str, kind: type[H], key: Callable[[H], str]
) -> tuple[dict[str, Returned[H]], list[str]]:
    """Returned machines by ``key`` of their acquire request's handle (``api``'s handles, of
    ``kind``), and the ids of machines no such request claims."""
    groups: dict[str, Returned[H]] = {}
    loose: list[str] = []
    for item in items:
        handle: H | None = None
        if item.request is not None and handles.api_of(item.request.handle) == api:
            with contextlib.suppress(ValueError):
                handle = handles.load(item.request.handle, kind)
        if item.request is None or handle is None or not key(handle):
            loose.append(item.machine_id)
            continue
        groups.setdefault(key(handle), Returned(request=item.request, handle=handle)).machine_ids.append(
            item.machine_id
        )
    return groups, loose

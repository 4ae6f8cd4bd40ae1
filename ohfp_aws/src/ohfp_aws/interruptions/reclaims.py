"""Hosts AWS is taking back without Host Factory asking (``ohfp_reclaimed_machines``).

The hosts Host Factory holds are described in one batch (by id, or by private DNS name when
only the name is known). A host is reclaimed when EC2 does not know it, when it stopped or
terminated outside Host Factory, when a spot interruption ended it, or when AWS marked a spot
instance for interruption (DescribeSpotInstanceRequests: the notice's seconds left).

With an interruption queue (``aws.events.queueUrl``) the queue is drained first, on every
call (:mod:`~ohfp_aws.interruptions.drain`: no other call reads it), and the notices kept for
these hosts count too (:mod:`ohfp_aws.interruptions.notices`): a spot interruption warning
with the seconds left until its instance-action time, a state change to stopping, stopped,
shutting-down or terminated with grace 0 (before DescribeInstances shows it), and — when
``aws.events.reportRebalance`` is set — a rebalance recommendation with
``aws.events.rebalanceGracePeriod`` counted from its time. Where several say a host goes, the
shortest grace wins.

While the resident service listens to the queue (:func:`~ohfp_aws.interruptions.drain.listening`)
and every host has its instance id, the answer is the stored notices alone: no API call (the
queue's state-change rule, which ``ohfp-aws events setup`` makes, reports hosts stopped or
terminated outside Host Factory). The hosts are still described in full by the service's
first such call and then once every ``aws.events.recheckSeconds``: a host gone without a
notice (a queue made without the state-change rule, an event EventBridge never delivered)
is found within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ohfp_aws.access import instances
from ohfp_aws.context import AwsContext
from ohfp_core.models import MachineRef, Reclaim

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef

    from ohfp_aws.interruptions.notices import Notice, Signal

_described: dict[tuple[str, str], float] = {}
"""(instance, queue) -> when (``time.monotonic``) this process last described the hosts of a
getReturnRequests in full."""
_described_lock = threading.Lock()

SPOT_NOTICE_SEC = 120
SPOT_INTERRUPTION_CODES = frozenset({"marked-for-termination", "marked-for-stop", "marked-for-hibernation"})
SPOT_TERMINATION_REASON = "Server.SpotInstanceTermination"
_OUTSIDE = ("stopping", "stopped", "shutting-down", "terminated")


def reclaimed(ctx: AwsContext, machines: Sequence[MachineRef]) -> list[Reclaim]:
    """A :class:`Reclaim` per host AWS is taking back; hosts that are fine are left out."""
    if machines and all(ref.machine_id for ref in machines) and _heard(ctx) and not _recheck_due(ctx):
        return _from_notices(ctx, machines)
    described_at = time.monotonic()
    ec2 = ctx.services.ec2
    described = instances.describe_instances(ec2, [ref.machine_id for ref in machines if ref.machine_id])
    by_name = instances.by_name(ec2, [ref.name for ref in machines if not ref.machine_id])
    described += list(by_name.values())
    by_id = {i["InstanceId"]: i for i in described}
    running_spot = [
        i
        for i in described
        if i.get("InstanceLifecycle") == "spot" and i["State"]["Name"] in ("pending", "running")
    ]
    notices = spot_notices(ctx, running_spot)
    events = _queued(ctx, list(by_id))
    found: list[Reclaim] = []
    now = ctx.clock()
    for ref in machines:
        instance = by_id.get(ref.machine_id) if ref.machine_id else by_name.get(ref.name)
        reclaim = _reclaim(ref, instance, notices)
        if instance is not None and (reclaim is None or reclaim.grace_period > 0):
            reclaim = _sooner(ctx, ref, instance, reclaim, events.get(instance["InstanceId"], []), now)
        if reclaim is not None:
            found.append(reclaim)
    if ctx.config.events.queue_url:
        with _described_lock:
            _described[(ctx.instance_name, ctx.config.events.queue_url)] = described_at
    return found


def _recheck_due(ctx: AwsContext) -> bool:
    """True when this process has not described the hosts in full within
    ``aws.events.recheckSeconds`` (or never has)."""
    settings = ctx.config.events
    with _described_lock:
        last = _described.get((ctx.instance_name, settings.queue_url or ""))
    return last is None or time.monotonic() - last > settings.recheck_seconds


def _heard(ctx: AwsContext) -> bool:
    if not ctx.config.events.queue_url:
        return False
    from ohfp_aws.interruptions import drain

    return drain.listening(ctx)


def _from_notices(ctx: AwsContext, machines: Sequence[MachineRef]) -> list[Reclaim]:
    """The reclaims the stored notices tell of (the listener keeps them current)."""
    from ohfp_aws.interruptions import notices

    kept = notices.kept_for(ctx.values, [ref.machine_id for ref in machines if ref.machine_id])
    now = ctx.clock()
    found = (
        _sooner(ctx, ref, {"InstanceId": ref.machine_id}, None, kept.get(ref.machine_id or "", []), now)
        for ref in machines
    )
    return [reclaim for reclaim in found if reclaim is not None]


def _queued(ctx: AwsContext, instance_ids: Sequence[str]) -> dict[str, list[Notice]]:
    """The queue drained, then the notices kept for ``instance_ids`` (none without a queue)."""
    if not ctx.config.events.queue_url:
        return {}
    from ohfp_aws.interruptions import drain, notices

    drain.drain(ctx, instance_ids)
    return notices.kept_for(ctx.values, instance_ids)


def _sooner(
    ctx: AwsContext,
    ref: MachineRef,
    instance: Mapping[str, Any],
    polled: Reclaim | None,
    queued: Sequence[Notice],
    now: float,
) -> Reclaim | None:
    """``polled`` or what the queued notices say, whichever gives the shorter grace."""
    from ohfp_aws.interruptions.notices import signal

    settings = ctx.config.events
    rebalance = settings.rebalance_grace_period if settings.report_rebalance else None
    launched = instance.get("LaunchTime")
    launched_at = launched.timestamp() if isinstance(launched, datetime) else None
    signals: list[Signal] = [s for n in queued if (s := signal(n, now, launched_at, rebalance)) is not None]
    if not signals:
        return polled
    first = min(signals, key=lambda s: s.grace_period)
    if polled is not None and polled.grace_period <= first.grace_period:
        return polled
    return Reclaim(
        name=ref.name, grace_period=first.grace_period, machine_id=instance["InstanceId"], reason=first.reason
    )


def _reclaim(
    ref: MachineRef, instance: Mapping[str, Any] | None, notices: Mapping[str, int]
) -> Reclaim | None:
    if instance is None:
        return Reclaim(name=ref.name, grace_period=0, machine_id=ref.machine_id, reason="unknown to EC2")
    instance_id = instance["InstanceId"]
    state = instance["State"]["Name"]
    reason = instance.get("StateReason") or {}
    if reason.get("Code") == SPOT_TERMINATION_REASON:
        return Reclaim(
            name=ref.name, grace_period=0, machine_id=instance_id, reason=f"spot interruption: {state}"
        )
    if state in _OUTSIDE:
        detail = reason.get("Message") or reason.get("Code") or ""
        return Reclaim(
            name=ref.name, grace_period=0, machine_id=instance_id, reason=f"{state}: {detail}".rstrip(": ")
        )
    if instance_id in notices:
        return Reclaim(
            name=ref.name,
            grace_period=notices[instance_id],
            machine_id=instance_id,
            reason="spot interruption notice",
        )
    return None


def spot_notices(ctx: AwsContext, spot_instances: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Seconds of notice left per spot instance AWS has marked for interruption."""
    request_ids = {
        i["SpotInstanceRequestId"]: i["InstanceId"] for i in spot_instances if i.get("SpotInstanceRequestId")
    }
    if not request_ids:
        return {}
    notices: dict[str, int] = {}
    now = ctx.clock()
    filters: list[FilterTypeDef] = [{"Name": "spot-instance-request-id", "Values": list(request_ids)}]
    for spot in ctx.services.ec2.spot_instance_requests(filters):
        status = spot.get("Status", {})
        instance_id = request_ids.get(spot.get("SpotInstanceRequestId", ""))
        if instance_id is None or status.get("Code") not in SPOT_INTERRUPTION_CODES:
            continue
        updated = status.get("UpdateTime")
        elapsed = now - updated.timestamp() if isinstance(updated, datetime) else 0
        notices[instance_id] = int(min(SPOT_NOTICE_SEC, max(0, SPOT_NOTICE_SEC - elapsed)))
    return notices

"""EC2's own word that an instance is going: notices from the interruption queue.

EventBridge delivers three kinds of EC2 event to the queue ``ohfp-aws events setup`` makes;
:func:`parse` reads one message body as a :class:`Notice`:

- ``EC2 Spot Instance Interruption Warning``: AWS interrupts the instance (``detail
  .instance-action``: terminate, stop or hibernate) two minutes after the event's ``time``;
- ``EC2 Instance Rebalance Recommendation``: the instance is at elevated risk of
  interruption; no deadline (reported only when ``aws.events.reportRebalance`` is set);
- ``EC2 Instance State-change Notification`` to stopping, stopped, shutting-down or
  terminated.

Notices of instances ohfp holds are kept in the provider's memory between calls
(:class:`~ohfp_core.values.Values`), one per instance and kind, the newest winning, so a
message delivered twice, or late, changes nothing. :func:`signal` turns what is kept into the
grace period Host Factory gets: the seconds left until the instance-action time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from ohfp_core.values import Values

INTERRUPTION = "interruption"
REBALANCE = "rebalance"
STATE = "state"
KINDS = (INTERRUPTION, REBALANCE, STATE)

DETAIL_TYPES: Mapping[str, str] = {
    "EC2 Spot Instance Interruption Warning": INTERRUPTION,
    "EC2 Instance Rebalance Recommendation": REBALANCE,
    "EC2 Instance State-change Notification": STATE,
}
"""EventBridge ``detail-type`` → the kind of notice."""

GONE_STATES = ("stopping", "stopped", "shutting-down", "terminated")
"""The states a state-change notice is kept for (the others need no action)."""

SPOT_NOTICE_SEC = 120
"""AWS interrupts a spot instance this long after its interruption warning."""

KEEP_SEC = 3600
"""How long a notice is kept: past it, DescribeInstances says what became of the instance."""

_PREFIX = "notice:"


@frozen(kw_only=True)
class Notice:
    """One EC2 event about one instance: ``at`` is the event's time (epoch seconds);
    ``detail`` the instance action (interruption) or the new state (state change)."""

    instance_id: str
    kind: str
    at: float
    detail: str = ""

    @property
    def key(self) -> str:
        """Where it is kept: one notice per instance and kind."""
        return f"{_PREFIX}{self.instance_id}:{self.kind}"

    def as_json(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "kind": self.kind, "at": self.at, "detail": self.detail}


def _epoch(value: Any) -> float | None:
    """An event's ``time`` (ISO 8601, ``Z`` for UTC) as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse(body: str) -> Notice | None:
    """The notice a queue message carries, or None for anything else (another source or
    detail type, a state that needs no action, a body that is not an EC2 event)."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("source") != "aws.ec2":
        return None
    kind = DETAIL_TYPES.get(str(event.get("detail-type")))
    detail = event.get("detail")
    at = _epoch(event.get("time"))
    if kind is None or not isinstance(detail, dict) or at is None:
        return None
    instance_id = detail.get("instance-id")
    if not isinstance(instance_id, str) or not instance_id.startswith("i-"):
        return None
    what = str(detail.get("state") if kind == STATE else detail.get("instance-action") or "")
    if kind == STATE and what not in GONE_STATES:
        return None
    return Notice(instance_id=instance_id, kind=kind, at=at, detail=what)


def _from_json(value: Any) -> Notice | None:
    try:
        return Notice(
            instance_id=str(value["instance_id"]),
            kind=str(value["kind"]),
            at=float(value["at"]),
            detail=str(value.get("detail", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def keep(values: Values, notices: Iterable[Notice]) -> int:
    """Store ``notices`` (one write), each replacing an older one of its instance and kind;
    a notice older than the one kept is dropped. Returns how many were written."""
    newest: dict[str, Notice] = {}
    for notice in notices:
        if notice.key not in newest or newest[notice.key].at < notice.at:
            newest[notice.key] = notice
    if not newest:
        return 0
    kept = {key: _from_json(value) for key, value in values.get_many(list(newest)).items()}
    fresh = {
        key: notice.as_json()
        for key, notice in newest.items()
        if (old := kept.get(key)) is None or old.at <= notice.at
    }
    if fresh:
        values.put_many(fresh, KEEP_SEC)
    return len(fresh)


def kept_for(values: Values, instance_ids: Sequence[str]) -> dict[str, list[Notice]]:
    """The notices kept for ``instance_ids``, by instance id (one read)."""
    keys = [f"{_PREFIX}{i}:{kind}" for i in dict.fromkeys(instance_ids) for kind in KINDS]
    found: dict[str, list[Notice]] = {}
    for value in values.get_many(keys).values():
        notice = _from_json(value)
        if notice is not None:
            found.setdefault(notice.instance_id, []).append(notice)
    return found


@frozen(kw_only=True)
class Signal:
    """What a notice says to Host Factory: seconds of grace left and why."""

    grace_period: int
    reason: str


def signal(
    notice: Notice, now: float, launched_at: float | None, rebalance_grace: int | None
) -> Signal | None:
    """The grace period ``notice`` gives at ``now``, or None when it no longer applies.

    A notice older than the instance's launch time (a stopped instance started again) no
    longer applies; nor does a rebalance recommendation when ``rebalance_grace`` is None
    (not reported). An interruption leaves ``time`` + 120 s − now; a rebalance
    recommendation ``time`` + ``rebalance_grace`` − now; a state change none.
    """
    if launched_at is not None and int(launched_at) > int(notice.at):
        return None
    if notice.kind == STATE:
        return Signal(grace_period=0, reason=f"{notice.detail} (EC2 state-change event)")
    if notice.kind == INTERRUPTION:
        left = notice.at + SPOT_NOTICE_SEC - now
        action = notice.detail or "terminate"
        return Signal(grace_period=_seconds(left), reason=f"spot interruption warning ({action})")
    if notice.kind == REBALANCE and rebalance_grace is not None:
        left = notice.at + rebalance_grace - now
        return Signal(grace_period=_seconds(left), reason="rebalance recommendation")
    return None


def _seconds(left: float) -> int:
    return int(max(0.0, left))

"""Why a request fell short, per offering: AWS's answers read as :class:`~ohfp_aws.vocabulary.Shortfall`.

Each API says it its own way, and each reader here turns it into shortfalls:

- :func:`from_fleet_errors`: an instant EC2 Fleet's ``Errors[]`` (the override, the
  lifecycle, AWS's code and message);
- :func:`from_history`: DescribeFleetHistory / DescribeSpotFleetRequestHistory records of a
  ``request`` or ``maintain`` fleet (the instance type and zone read from the description);
- :func:`from_activities`: an Auto Scaling group's failed scaling activities;
- :func:`from_error`: a RunInstances call refused in one subnet.

:func:`classify` names the reason (insufficient capacity, quota, price, unsupported, other)
from AWS's code, else from the words of its message. :func:`merged` counts repeats;
:func:`summary` says the first few in a line short enough for Host Factory's log;
:func:`as_json` is the full account for ``ohfp requests show``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ohfp_aws.access.boundary import CAPACITY_CODES, QUOTA_CODES, aws_message, error_code
from ohfp_aws.vocabulary import Shortfall
from ohfp_core.errors import CloudError

PRICE_CODES = frozenset({"SpotMaxPriceTooLow", "price-too-low"})
UNSUPPORTED_CODES = frozenset(
    {"Unsupported", "UnsupportedOperation", "InvalidInstanceType", "UnsupportedInstanceType"}
)
_WORDS = (
    ("quota", ("limit", "quota", "exceeded")),
    ("price", ("price", " bid")),
    ("unsupported", ("not supported", "unsupported", "not available in")),
    ("insufficient-capacity", ("capacity", "insufficient")),
)
_TYPE = re.compile(r"\b([a-z][a-z0-9-]*\.(?:nano|micro|small|medium|large|\d*xlarge|metal(?:-\d+xl)?))\b")
_ZONE = re.compile(r"\b([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d[a-z])\b")
_SUBNET = re.compile(r"\b(subnet-[0-9a-f]{8,17})\b")
_CODE = re.compile(r"\b([A-Z][A-Za-z]+(?:\.[A-Za-z]+)?)\b")
_MESSAGE_MAX = 300
HISTORY_SUBTYPES = frozenset(
    {
        "launchSpecUnusable",
        "launchSpecTemporarilyBlacklisted",
        "allLaunchSpecsTemporarilyBlacklisted",
        "spotInstanceCountLimitExceeded",
        "spotFleetRequestConfigurationInvalid",
        "iamFleetRoleInvalid",
    }
)
"""History events that say an offering (or the whole fleet) could not launch."""
_SUBTYPE_REASONS = {"spotInstanceCountLimitExceeded": "quota", "launchSpecUnusable": "price"}


def classify(code: str, message: str) -> str:
    """The reason AWS's ``code`` (else the words of ``message``) gives."""
    if code in PRICE_CODES:
        return "price"
    if code in CAPACITY_CODES:
        return "insufficient-capacity"
    if code in QUOTA_CODES:
        return "quota"
    if code in UNSUPPORTED_CODES:
        return "unsupported"
    text = f" {message.lower()}"
    for reason, words in _WORDS:
        if any(word in text for word in words):
            return reason
    return "other"


def _code_in(text: str) -> str:
    """The first AWS error code named in ``text`` (empty when none)."""
    known = CAPACITY_CODES | QUOTA_CODES | PRICE_CODES | UNSUPPORTED_CODES
    return next((word for word in _CODE.findall(text) if word in known), "")


def _short(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= _MESSAGE_MAX else f"{text[: _MESSAGE_MAX - 1]}…"


def _lifecycle(value: Any) -> str | None:
    return {"spot": "spot", "on-demand": "on-demand", "ondemand": "on-demand"}.get(str(value).lower())


def from_fleet_errors(errors: Iterable[Mapping[str, Any]], source: str = "CreateFleet") -> list[Shortfall]:
    """Shortfalls of an instant fleet's ``Errors[]`` (the override each names)."""
    found = []
    for error in errors:
        overrides = (error.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
        code = str(error.get("ErrorCode") or "")
        message = str(error.get("ErrorMessage") or "")
        found.append(
            Shortfall(
                reason=classify(code, message),
                instance_type=overrides.get("InstanceType") or _first(_TYPE, message),
                subnet_id=overrides.get("SubnetId") or _first(_SUBNET, message),
                zone=overrides.get("AvailabilityZone") or _first(_ZONE, message),
                lifecycle=_lifecycle(error.get("Lifecycle")),
                code=code,
                message=_short(message),
                source=source,
            )
        )
    return found


def _first(pattern: re.Pattern[str], text: str, among: Sequence[str] = ()) -> str | None:
    found = pattern.findall(text)
    if among:
        known = [item for item in found if item in among]
        found = known or found
    return found[0] if found else None


def from_history(
    records: Iterable[Mapping[str, Any]], source: str, types: Sequence[str] = ()
) -> list[Shortfall]:
    """Shortfalls in a fleet's history records (error and information events that say an
    offering could not launch). The description names the instance type (one of ``types``
    when it names several) and zone, and often AWS's error code."""
    found = []
    for record in records:
        info = record.get("EventInformation") or {}
        subtype = str(info.get("EventSubType") or "")
        kind = str(record.get("EventType") or "")
        if subtype not in HISTORY_SUBTYPES and "error" not in kind.lower():
            continue
        description = str(info.get("EventDescription") or subtype)
        code = _code_in(description)
        reason = (
            classify(code, description)
            if code
            else _SUBTYPE_REASONS.get(subtype) or classify("", description)
        )
        found.append(
            Shortfall(
                reason=reason,
                instance_type=_first(_TYPE, description, types),
                subnet_id=_first(_SUBNET, description),
                zone=_first(_ZONE, description),
                code=code or subtype,
                message=_short(description),
                source=source,
            )
        )
    return found


def from_activities(activities: Iterable[Mapping[str, Any]], types: Sequence[str] = ()) -> list[Shortfall]:
    """Shortfalls in an Auto Scaling group's failed or cancelled scaling activities (the
    newest first, up to the newest successful one)."""
    found = []
    for activity in activities:
        status = activity.get("StatusCode")
        if status == "Successful":
            break
        if status not in ("Failed", "Cancelled"):
            continue
        message = str(activity.get("StatusMessage") or activity.get("Description") or "")
        code = _code_in(message)
        found.append(
            Shortfall(
                reason=classify(code, message),
                instance_type=_first(_TYPE, message, types),
                subnet_id=_first(_SUBNET, message),
                zone=_first(_ZONE, message),
                code=code,
                message=_short(message),
                source="DescribeScalingActivities",
            )
        )
    return found


def from_error(
    exc: CloudError, instance_type: str | None, subnet_id: str | None, lifecycle: str | None
) -> Shortfall:
    """The shortfall of a RunInstances call AWS refused in ``subnet_id``."""
    code = error_code(exc)
    message = aws_message(exc)
    return Shortfall(
        reason=classify(code, message),
        instance_type=instance_type,
        subnet_id=subnet_id,
        zone=_first(_ZONE, message),
        lifecycle=lifecycle,
        code=code,
        message=_short(message),
        source="RunInstances",
    )


def merged(items: Iterable[Shortfall]) -> tuple[Shortfall, ...]:
    """``items`` with repeats of one offering, reason and code counted once (first order kept)."""
    found: dict[tuple[Any, ...], Shortfall] = {}
    for item in items:
        key = (item.reason, item.instance_type, item.subnet_id, item.zone, item.lifecycle, item.code)
        if key in found:
            found[key] = attrs.evolve(found[key], count=found[key].count + item.count)
        else:
            found[key] = item
    return tuple(found.values())


def summary(items: Sequence[Shortfall], request_id: str = "", limit: int = 3) -> str:
    """One line for Host Factory's log: the first ``limit`` offerings and why, the rest
    counted, and where the full account is."""
    if not items:
        return ""
    parts = []
    for item in items[:limit]:
        reason = item.reason.replace("-", " ")
        code = f" ({item.code})" if item.code and item.code.lower() != item.reason else ""
        times = f" ×{item.count}" if item.count > 1 else ""
        parts.append(f"{item.offering}: {reason}{code}{times}")
    more = f"; {len(items) - limit} more" if len(items) > limit else ""
    where = f" (ohfp requests show {request_id})" if request_id else ""
    return "by offering: " + "; ".join(parts) + more + where


def as_json(item: Shortfall) -> dict[str, Any]:
    """A shortfall for an administrator: camelCase keys, the ones AWS left empty dropped."""
    document = {
        "offering": item.offering,
        "reason": item.reason,
        "instanceType": item.instance_type,
        "subnetId": item.subnet_id,
        "zone": item.zone,
        "lifecycle": item.lifecycle,
        "code": item.code,
        "message": item.message,
        "source": item.source,
        "count": item.count,
    }
    return {key: value for key, value in document.items() if value not in (None, "")}

"""Offerings short of capacity, remembered for a while and tried last.

When AWS says an instance type has no capacity in a subnet or zone (an instant fleet's
errors, a fleet's history, a group's scaling activities, a RunInstances refusal),
:func:`remember` keeps that for ``aws.offerings.unavailableSeconds`` (default 180 s) in the
provider's memory between calls, keyed by instance type, subnet or zone, and spot or
on-demand — as Karpenter's unavailable-offerings cache does. The next request's overrides
put those offerings last (:func:`unavailable`): fleets list them after the others and, with a
prioritized allocation strategy, give them the lowest priorities; an Auto Scaling group lists
their instance types last; RunInstances tries their subnets last. They are still offered:
capacity comes back, and the memory is short.

A zone is matched to the template's subnets through DescribeSubnets, asked only when a
remembered offering names a zone alone, and kept a day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ohfp_aws.vocabulary import AwsTemplate, Shortfall
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger

if TYPE_CHECKING:
    from ohfp_aws.context import AwsContext

log = get_logger("ohfp.aws")

PREFIX = "unavailable:"
ANY = "any"
_ZONE_PREFIX = "subnet-zone:"
ZONE_KEEP_SEC = 86400


def remember(ctx: AwsContext, shortfalls: Iterable[Shortfall], request_id: str = "") -> int:
    """Keep the offerings ``shortfalls`` (of ``request_id``) found short of capacity; how
    many were kept."""
    ttl = ctx.config.offerings.unavailable_seconds
    if not ttl:
        return 0
    now = ctx.clock()
    entries: dict[str, dict[str, Any]] = {}
    for item in shortfalls:
        where = item.subnet_id or item.zone
        if item.reason != "insufficient-capacity" or not item.instance_type or not where:
            continue
        key = f"{PREFIX}{item.instance_type}:{where}:{item.lifecycle or ANY}"
        entries[key] = {"at": now, "code": item.code, "source": item.source, "request": request_id}
    if entries:
        ctx.values.put_many(entries, ttl)
        log.info("offerings short of capacity remembered", offerings=sorted(entries), seconds=ttl)
    return len(entries)


class Unavailable:
    """Which of a template's offerings were found short of capacity lately."""

    def __init__(
        self,
        keys: set[tuple[str, str, str]] | None = None,
        zones: Mapping[str, str] | None = None,
        lifecycles: Iterable[str] = (ANY,),
    ) -> None:
        self.keys = keys or set()
        self.zones = dict(zones or {})
        self.lifecycles = set(lifecycles)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __call__(self, instance_type: str | None, subnet_id: str | None) -> bool:
        """True when ``instance_type`` was short in ``subnet_id`` (or its zone); with no
        subnet (AWS picks), when it was short anywhere."""
        if not self.keys or not instance_type:
            return False
        if subnet_id is None:
            return any(t == instance_type and life in self.lifecycles for t, _, life in self.keys)
        wheres = {subnet_id, self.zones.get(subnet_id)} - {None}
        return any((instance_type, w, life) in self.keys for w in wheres for life in self.lifecycles)

    def anywhere(self, instance_type: str, subnet_ids: Sequence[str]) -> bool:
        """True when ``instance_type`` was short in any of ``subnet_ids`` (anywhere, without)."""
        if not subnet_ids:
            return self(instance_type, None)
        return any(self(instance_type, subnet) for subnet in subnet_ids)


def unavailable(ctx: AwsContext, template: AwsTemplate, request_id: str = "") -> Unavailable:
    """The remembered offerings of ``template``'s instance types (none for a template by
    requirements: AWS picks its types), but those ``request_id`` itself found: a retried
    create call must send the parameters of the first."""
    from ohfp_aws.supply.overrides import weights

    types = set(weights(template))
    if not ctx.config.offerings.unavailable_seconds or not types:
        return Unavailable()
    keys: set[tuple[str, str, str]] = set()
    for key, value in ctx.values.with_prefix(PREFIX).items():
        parts = key[len(PREFIX) :].split(":")
        if len(parts) != 3 or parts[0] not in types:
            continue
        found_by = value.get("request") if isinstance(value, Mapping) else None
        if not request_id or found_by != request_id:
            keys.add((parts[0], parts[1], parts[2]))
    if not keys:
        return Unavailable()
    zoned = any(not where.startswith("subnet-") for _, where, _ in keys)
    zones = subnet_zones(ctx, template.subnet_ids) if zoned and template.subnet_ids else {}
    lifecycles = {ANY}
    if template.price_type != "spot":
        lifecycles.add("on-demand")
    if template.price_type != "ondemand":
        lifecycles.add("spot")
    return Unavailable(keys, zones, lifecycles)


def subnet_zones(ctx: AwsContext, subnet_ids: Sequence[str]) -> dict[str, str]:
    """Each subnet's availability zone (DescribeSubnets for those not known yet); empty
    when AWS cannot be asked (zone-only offerings then go unmatched)."""
    keys = [f"{_ZONE_PREFIX}{subnet}" for subnet in subnet_ids]
    known = {key[len(_ZONE_PREFIX) :]: str(zone) for key, zone in ctx.values.get_many(keys).items()}
    missing = [subnet for subnet in subnet_ids if subnet not in known]
    if missing:
        try:
            found = ctx.services.ec2.subnets(missing)
        except CloudError as exc:
            log.warning("cannot map subnets to zones", error=str(exc))
            return known
        fresh = {s.get("SubnetId", ""): s.get("AvailabilityZone", "") for s in found}
        ctx.values.put_many({f"{_ZONE_PREFIX}{k}": v for k, v in fresh.items()}, ZONE_KEEP_SEC)
        known.update(fresh)
    return known

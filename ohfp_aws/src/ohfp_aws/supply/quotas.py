"""Capacity the account can really get: templates' availability lowered to EC2's vCPU quotas.

With ``aws.quotas.enabled``, getAvailableTemplates (and requestMachines, which reads the same
templates) lowers each template's ``availableNumber`` to what the account's vCPU quota still
allows, and says why in ``available_reason`` (core names it when it refuses a request beyond).

- **Which quota**: EC2 counts running vCPUs per instance class and purchase option: one
  quota for the standard families (A, C, D, H, I, M, R, T, Z), one each for G and VT, P, X,
  F, Inf, DL, Trn, HPC and high-memory (:data:`CLASSES`), on-demand and spot apart. A
  template draws on the quotas of its instance types' classes, for its ``priceType``.
- **What is left**: the quota (Service Quotas ``GetServiceQuota``, its AWS default when the
  account has no applied value) less the vCPUs of the region's pending and running
  instances (one DescribeInstances of them, their types' vCPUs from DescribeInstanceTypes),
  less what requests made since that count asked for. Templates on one quota share it: a
  request from one lowers what the others are offered.
- **Units**: a unit of a template costs the most vCPUs per weight among its types of that
  class (so what is offered fits whichever type AWS picks); its classes add up; a
  heterogeneous template needs its on-demand share from the on-demand quotas and the rest
  from the spot ones. A template by instance requirements counts on the standard quotas
  at ``VCpuCount.Max`` vCPUs per unit (``Min`` without a maximum), or its allowed types when
  they are named exactly; one that asks for accelerators is not limited.
- **Fast**: quotas, usage and vCPUs per type are kept in the provider's memory between
  calls (:class:`~ohfp_core.values.Values`) for ``aws.quotas.cacheSeconds`` (a day for
  vCPUs per type), so most calls read them from the state store and call no AWS.
- **Failing open**: a quota AWS will not give (no permission, unknown code) is logged once
  per cache period and leaves availability as it was; so does a failed DescribeInstances.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from ohfp_aws.access.boundary import error_code
from ohfp_core.errors import CloudError, ConfigError
from ohfp_core.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_service_quotas.type_defs import ServiceQuotaTypeDef

    from ohfp_aws.context import AwsContext
    from ohfp_aws.vocabulary import AwsTemplate
    from ohfp_core.models import Template

log = get_logger("ohfp.aws")

ON_DEMAND, SPOT = "on-demand", "spot"


@frozen
class QuotaClass:
    """One EC2 instance class's vCPU quota codes (``None``: AWS has no such quota)."""

    on_demand: str
    spot: str | None

    def code(self, option: str) -> str | None:
        return self.on_demand if option == ON_DEMAND else self.spot


CLASSES: Mapping[str, QuotaClass] = {
    "standard": QuotaClass("L-1216C47A", "L-34B43A08"),  # Standard (A, C, D, H, I, M, R, T, Z)
    "g": QuotaClass("L-DB2E81BA", "L-3819A6DF"),  # G and VT
    "p": QuotaClass("L-417A185B", "L-7212CCBC"),  # P
    "x": QuotaClass("L-7295265B", "L-E3A00192"),  # X
    "f": QuotaClass("L-74FC7D96", "L-88CF9481"),  # F
    "inf": QuotaClass("L-1945791B", "L-B5D1601B"),  # Inf
    "dl": QuotaClass("L-6E869C2A", "L-85EED4F7"),  # DL
    "trn": QuotaClass("L-2C3B7624", "L-6B0D517C"),  # Trn
    "hpc": QuotaClass("L-F7808C92", None),  # HPC
    "highmem": QuotaClass("L-43DA4232", None),  # High Memory
}
"""EC2's vCPU quotas per instance class (Service Quotas service code ``ec2``)."""

_PREFIXES = (
    ("inf", "inf"),
    ("trn", "trn"),
    ("dl", "dl"),
    ("hpc", "hpc"),
    ("mac", None),  # dedicated hosts: no vCPU quota
    ("u-", "highmem"),  # u-6tb1 …; u7i … below
    ("vt", "g"),
    ("gr", "g"),
    ("g", "g"),
    ("p", "p"),
    ("x", "x"),
    ("f", "f"),
)
_FAMILY = re.compile(r"^[a-z]")
_KEEP_VCPUS_SEC = 86400
_QUOTA, _USAGE, _VCPUS, _DEBIT = "quota:", "quota-usage", "vcpus:", "quota-debit:"


def quota_class(instance_type: str) -> str | None:
    """The class of ``instance_type`` (``standard``, ``g`` …); None when no vCPU quota
    applies (Mac dedicated hosts) or the name is not an instance type."""
    family = instance_type.partition(".")[0].lower()
    if not _FAMILY.match(family):
        return None
    if re.match(r"^u\d", family):
        return "highmem"
    for prefix, name in _PREFIXES:
        if family.startswith(prefix):
            return name
    return "standard"


def _options(template: AwsTemplate) -> tuple[str, ...]:
    return {"ondemand": (ON_DEMAND,), "spot": (SPOT,)}.get(template.price_type, (ON_DEMAND, SPOT))


def types_of(template: AwsTemplate) -> dict[str, int] | None:
    """The instance types a unit of ``template`` may be, with their weights; None when a
    template by requirements cannot say (no exact allowed types)."""
    from ohfp_aws.supply.overrides import weights

    wanted = template.instance_requirements
    if wanted is None:
        return weights(template)
    allowed = wanted.get("AllowedInstanceTypes") or []
    if allowed and all("*" not in name for name in allowed):
        return dict.fromkeys(allowed, 1)
    return None


def demand(template: AwsTemplate, vcpus: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """vCPUs one unit of ``template`` costs, per purchase option and quota code: the most
    per weight among its types of each class. Empty when it cannot be told."""
    per_code: dict[str, dict[str, float]] = {}
    types = types_of(template)
    wanted = template.instance_requirements or {}
    for option in _options(template):
        costs: dict[str, float] = {}
        if types is None:
            if wanted.get("AcceleratorTypes") or (wanted.get("AcceleratorCount") or {}).get("Min"):
                continue
            bounds = wanted.get("VCpuCount") or {}
            code = CLASSES["standard"].code(option)
            if code and (bounds.get("Max") or bounds.get("Min")):
                costs[code] = float(bounds.get("Max") or bounds["Min"])
        else:
            for name, weight in types.items():
                cls = quota_class(name)
                code = CLASSES[cls].code(option) if cls else None
                if code is None or name not in vcpus:
                    continue
                costs[code] = max(costs.get(code, 0.0), vcpus[name] / max(1, weight))
        if costs:
            per_code[option] = costs
    return per_code


@frozen(kw_only=True)
class Pool:
    """One vCPU quota: its code and name, the limit, and the vCPUs in use or asked for."""

    code: str
    name: str
    limit: float
    used: float

    @property
    def left(self) -> float:
        return max(0.0, self.limit - self.used)


def units(costs: Mapping[str, float], pools: Mapping[str, Pool]) -> int | None:
    """Units the pools allow at ``costs`` vCPUs per unit (their classes add up); None when
    no pool is known (the quota check failed open)."""
    known = [(code, cost) for code, cost in costs.items() if code in pools and cost > 0]
    if not known:
        return None
    return sum(math.floor(pools[code].left / cost) for code, cost in known)


def allowed(
    template: AwsTemplate, per_option: Mapping[str, Mapping[str, float]], pools: Mapping[str, Pool]
) -> int | None:
    """Units of ``template`` its quotas allow; None when unknown."""
    found = {option: units(costs, pools) for option, costs in per_option.items()}
    if template.price_type != "heterogeneous":
        return next(iter(found.values()), None)
    on_demand, spot = found.get(ON_DEMAND), found.get(SPOT)
    share = template.percent_on_demand or 0
    limits = []
    if on_demand is not None and share > 0:
        limits.append(on_demand * 100 // share)
    if spot is not None and share < 100:
        limits.append(spot * 100 // (100 - share))
    return min(limits) if limits else None


def why(
    template: AwsTemplate, per_option: Mapping[str, Mapping[str, float]], pools: Mapping[str, Pool]
) -> str:
    """The quotas that limit ``template``, for ``available_reason``."""
    parts = []
    for costs in per_option.values():
        for code, cost in costs.items():
            if code in pools:
                pool = pools[code]
                parts.append(
                    f"AWS vCPU quota {code} ({pool.name}): {pool.limit:g} vCPUs,"
                    f" {pool.used:g} in use or asked for; {cost:g} vCPUs per unit"
                )
    return "; ".join(parts)


def limit(
    ctx: AwsContext, templates: Sequence[Template], parse: Callable[[Template], AwsTemplate]
) -> list[Template]:
    """``templates`` with ``availableNumber`` lowered to what their vCPU quotas allow, and
    ``available_reason`` naming the quota. Templates ``parse`` refuses are left as they are."""
    parsed: dict[int, AwsTemplate] = {}
    for index, offered in enumerate(templates):
        try:
            parsed[index] = parse(offered)
        except ConfigError:
            continue
    if not parsed:
        return list(templates)
    try:
        vcpus = vcpus_of(ctx, {name for t in parsed.values() for name in (types_of(t) or {})})
        demands = {index: demand(t, vcpus) for index, t in parsed.items()}
        codes = {code for per_option in demands.values() for costs in per_option.values() for code in costs}
        pools = load_pools(ctx, codes)
    except CloudError as exc:
        log.warning("quota check unavailable; availability not lowered", error=str(exc))
        return list(templates)
    result = list(templates)
    for index, aws_template in parsed.items():
        room = allowed(aws_template, demands[index], pools)
        current = result[index].available_number
        if room is None or (current is not None and current <= room):
            continue
        reason = why(aws_template, demands[index], pools)
        result[index] = attrs.evolve(result[index], available_number=room, available_reason=reason)
    return result


def vcpus_of(ctx: AwsContext, names: Iterable[str]) -> dict[str, int]:
    """vCPUs per instance type (DescribeInstanceTypes for those not kept; kept a day).
    Unknown names are left out."""
    wanted = sorted(set(names))
    found = {
        key[len(_VCPUS) :]: int(v) for key, v in ctx.values.get_many([_VCPUS + n for n in wanted]).items()
    }
    missing = [name for name in wanted if name not in found]
    fresh: dict[str, int] = {}
    for start in range(0, len(missing), 100):
        try:
            for item in ctx.services.ec2.instance_types(missing[start : start + 100]):
                fresh[item.get("InstanceType", "")] = int(item.get("VCpuInfo", {}).get("DefaultVCpus", 0))
        except CloudError as exc:
            if not error_code(exc).startswith("InvalidInstanceType"):
                raise
            log.warning("unknown instance types; not counted against a quota", error=str(exc))
    if fresh:
        ctx.values.put_many({_VCPUS + name: n for name, n in fresh.items()}, _KEEP_VCPUS_SEC)
    return {**found, **fresh}


def load_pools(ctx: AwsContext, codes: Iterable[str]) -> dict[str, Pool]:
    """The pools of ``codes`` AWS gives: limits and usage from the provider's memory, else
    from AWS (then kept ``cacheSeconds``), less what requests asked for since the usage was
    counted. A quota AWS refuses is left out (and logged once per cache period)."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    ttl = ctx.config.quotas.cache_seconds
    kept = ctx.values.get_many([_QUOTA + code for code in wanted] + [_USAGE]) if ttl else {}
    limits: dict[str, Any] = {code: kept[_QUOTA + code] for code in wanted if _QUOTA + code in kept}
    missing = [code for code in wanted if code not in limits]
    fetched = {code: _quota(ctx, code) for code in missing}
    limits.update(fetched)
    usage = kept.get(_USAGE)
    if usage is None:
        usage = {"at": ctx.clock(), "used": _usage(ctx)}
        if ttl:
            ctx.values.put(_USAGE, usage, ttl)
    if ttl and fetched:
        ctx.values.put_many({_QUOTA + code: value for code, value in fetched.items()}, ttl)
    asked = _asked_since(ctx, float(usage["at"])) if ttl else {}
    pools: dict[str, Pool] = {}
    for code in wanted:
        entry = limits.get(code) or {}
        if entry.get("value") is None:
            continue
        used = float(usage["used"].get(code, 0)) + asked.get(code, 0.0)
        pools[code] = Pool(
            code=code, name=str(entry.get("name") or code), limit=float(entry["value"]), used=used
        )
    return pools


def read_quota(ctx: AwsContext, code: str) -> ServiceQuotaTypeDef:
    """The account's EC2 quota ``code``: its applied value, else AWS's default.

    :raises CloudError: when neither can be read.
    """
    quotas = ctx.services.service_quotas
    try:
        return quotas.quota("ec2", code)
    except CloudError as exc:
        if error_code(exc) != "NoSuchResourceException":
            raise
        return quotas.default_quota("ec2", code)


def quota_readable(ctx: AwsContext) -> str:
    """The standard on-demand vCPU quota, read as availability reads it (a health check).

    :raises CloudError: when it cannot be read.
    """
    code = CLASSES["standard"].on_demand
    quota = read_quota(ctx, code)
    return f"{quota.get('QuotaName') or code}: {quota.get('Value', 0.0):g} vCPUs"


def _quota(ctx: AwsContext, code: str) -> dict[str, Any]:
    """The account's quota ``code`` (its AWS default when it has no applied value), or why not."""
    try:
        quota = read_quota(ctx, code)
    except CloudError as exc:
        log.warning("vCPU quota unavailable; availability not lowered by it", quota_code=code, error=str(exc))
        return {"value": None, "error": str(exc)}
    return {"value": float(quota.get("Value", 0.0)), "name": str(quota.get("QuotaName") or code)}


def _usage(ctx: AwsContext) -> dict[str, float]:
    """vCPUs of the region's pending and running instances, per quota code (one paged
    DescribeInstances; DescribeInstanceTypes for types not kept)."""
    running: list[tuple[str, str]] = []
    for instance in ctx.services.ec2.instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    ):
        option = SPOT if instance.get("InstanceLifecycle") == "spot" else ON_DEMAND
        running.append((str(instance.get("InstanceType")), option))
    vcpus = vcpus_of(ctx, {name for name, _ in running})
    used: dict[str, float] = {}
    for name, option in running:
        cls = quota_class(name)
        code = CLASSES[cls].code(option) if cls else None
        if code and name in vcpus:
            used[code] = used.get(code, 0.0) + vcpus[name]
    return used


def _asked_since(ctx: AwsContext, since: float) -> dict[str, float]:
    """vCPUs requests asked for after the usage was counted, per quota code."""
    asked: dict[str, float] = {}
    for value in ctx.values.with_prefix(_DEBIT).values():
        if not isinstance(value, Mapping) or float(value.get("at", 0)) < since:
            continue
        for code, n in (value.get("vcpus") or {}).items():
            asked[code] = asked.get(code, 0.0) + float(n)
    return asked


def debit(ctx: AwsContext, request_id: str, template: AwsTemplate, count: int) -> None:
    """Note the vCPUs a request just asked for, so the quotas offered next count them
    before DescribeInstances does (kept ``cacheSeconds``; from kept vCPUs only, no AWS call)."""
    ttl = ctx.config.quotas.cache_seconds
    if not ttl:
        return
    names = types_of(template) or {}
    kept = ctx.values.get_many([_VCPUS + name for name in names])
    vcpus = {key[len(_VCPUS) :]: int(v) for key, v in kept.items()}
    per_option = demand(template, vcpus)
    share = (template.percent_on_demand or 0) if template.price_type == "heterogeneous" else None
    asked: dict[str, float] = {}
    for option, costs in per_option.items():
        part = (
            count
            if share is None
            else math.ceil(count * (share if option == ON_DEMAND else 100 - share) / 100)
        )
        for code, cost in costs.items():
            asked[code] = asked.get(code, 0.0) + part * cost
    if asked:
        ctx.values.put(_DEBIT + request_id, {"at": ctx.clock(), "vcpus": asked}, ttl)

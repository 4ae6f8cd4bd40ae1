"""What a template asks a fleet or group for: the on-demand/spot split of its units, the
instance types that fill them (weighted, in launch priority) and the launch-template
overrides that say so. Pure functions of :class:`~ohfp_aws.vocabulary.AwsTemplate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ohfp_aws.vocabulary import AwsTemplate


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


def weights(template: AwsTemplate) -> dict[str, int]:
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
    types = list(weights(template))
    on_demand = set(template.vm_types_on_demand) if template.price_type == "heterogeneous" else set()
    ranked = sorted(
        types,
        key=lambda t: (t not in on_demand, template.vm_types_priority.get(t, len(types)), types.index(t)),
    )
    return {name: rank for rank, name in enumerate(ranked)}


def on_demand_strategy(template: AwsTemplate) -> str:
    """IBM's on-demand allocation strategy for ``template``: ``prioritized`` when a
    heterogeneous template names ``vmTypesOnDemand`` (the only way to launch them first),
    else ``allocationStrategyOnDemand`` (default ``lowestPrice``)."""
    if template.price_type == "heterogeneous" and template.vm_types_on_demand:
        return "prioritized"
    return template.allocation_strategy_on_demand or "lowestPrice"


def overrides(
    template: AwsTemplate,
    prioritized: bool,
    max_price: str | None = None,
    unavailable: Callable[[str | None, str | None], bool] | None = None,
) -> dict[str, Any]:
    """Fleet launch-template overrides: every instance type × subnet, weighted (and ranked
    when ``prioritized``), each with ``MaxPrice`` when given; for a template by instance
    requirements, the requirements in every subnet. ``{}`` when there is nothing to override.

    Offerings ``unavailable(type, subnet)`` says were short of capacity lately come last,
    and when ``prioritized`` after every other priority.
    """
    if template.instance_requirements is not None:
        return {"Overrides": requirement_overrides(template, max_price)}
    types = weights(template)
    ranks = priorities(template)
    short = unavailable or (lambda instance_type, subnet: False)
    found: list[tuple[bool, dict[str, Any]]] = []
    for name in types or [None]:
        for subnet in template.subnet_ids or (None,):
            last = short(name, subnet)
            override: dict[str, Any] = {}
            if name is not None:
                override["InstanceType"] = name
                override["WeightedCapacity"] = float(types[name])
                if prioritized:
                    override["Priority"] = float(ranks[name] + (len(types) if last else 0))
            if subnet is not None:
                override["SubnetId"] = subnet
            if max_price:
                override["MaxPrice"] = max_price
            if override:
                found.append((last, override))
    found.sort(key=lambda item: item[0])
    return {"Overrides": [override for _, override in found]} if found else {}


def requirement_overrides(template: AwsTemplate, max_price: str | None = None) -> list[dict[str, Any]]:
    """One override per subnet (one without subnets) carrying the template's
    InstanceRequirements as written (EC2 Fleet and Spot Fleet take the same keys)."""
    found: list[dict[str, Any]] = []
    for subnet in template.subnet_ids or (None,):
        override: dict[str, Any] = {"InstanceRequirements": dict(template.instance_requirements or {})}
        if subnet is not None:
            override["SubnetId"] = subnet
        if max_price:
            override["MaxPrice"] = max_price
        found.append(override)
    return found

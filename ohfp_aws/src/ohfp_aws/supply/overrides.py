"""What a template asks a fleet or group for: the on-demand/spot split of its units, the
instance types that fill them (weighted, in launch priority) and the launch-template
overrides that say so (:class:`Offer`, which each fleet API spells in its own words). Pure
functions of :class:`~ohfp_aws.vocabulary.AwsTemplate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from attrs import frozen

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


@frozen(kw_only=True)
class Offer:
    """One override of a fleet's launch template: an instance type (weighted, ranked when the
    strategy is prioritized) or the template's instance requirements, in a subnet; None
    where AWS chooses. Each fleet API spells it in its own words."""

    instance_type: str | None = None
    subnet_id: str | None = None
    weight: float | None = None
    priority: float | None = None
    requirements: Mapping[str, Any] | None = None


def offers(
    template: AwsTemplate,
    prioritized: bool,
    unavailable: Callable[[str | None, str | None], bool] | None = None,
) -> list[Offer]:
    """A fleet's overrides: every instance type × subnet, weighted (and ranked when
    ``prioritized``); for a template by instance requirements, the requirements in every
    subnet. Empty when there is nothing to override (a launch template sets the type and no
    subnet is named).

    Offerings ``unavailable(type, subnet)`` says were short of capacity lately come last,
    and when ``prioritized`` after every other priority.
    """
    subnets = template.subnet_ids or (None,)
    if template.instance_requirements is not None:
        return [Offer(subnet_id=subnet, requirements=template.instance_requirements) for subnet in subnets]
    types = weights(template)
    ranks = priorities(template)
    short = unavailable or (lambda instance_type, subnet: False)
    found: list[tuple[bool, Offer]] = []
    for name in types or [None]:
        for subnet in subnets:
            if name is None and subnet is None:
                continue
            last = short(name, subnet)
            offer = Offer(instance_type=name, subnet_id=subnet)
            if name is not None:
                rank = float(ranks[name] + (len(types) if last else 0)) if prioritized else None
                offer = attrs.evolve(offer, weight=float(types[name]), priority=rank)
            found.append((last, offer))
    found.sort(key=lambda item: item[0])
    return [offer for _, offer in found]

"""The ``budget`` plugin: a template's machines may not cost more an hour than its limit.

Enable it in ``ohfp.json``, with a cost per unit (a machine, or a weighted unit) per hour and
the most the template's machines may cost an hour in all, per template; ``default`` covers
templates not named (without it they are not limited)::

    {"budget": {
        "enabled": true,
        "templates": {"OnDemand-m5-large": {"unitCost": 0.096, "maxHourlyCost": 2.0}},
        "default": {"unitCost": 0.05, "maxHourlyCost": 1.0}}}

The limit becomes a cap on the units the template holds at once: ``maxNumber`` is lowered to
``floor(maxHourlyCost / unitCost)`` (an unlimited template gets that cap). Core then counts
the machines Host Factory holds and the capacity still due, inside the store's transaction,
as it does for every ``maxNumber``: getAvailableTemplates reports what the budget leaves, and
a request beyond it is refused (exit 2) with the budget named. Costs are in whatever currency
the site writes them in.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import attrs
from attrs import field, frozen

from ohfp_core import hookimpl
from ohfp_core.errors import ConfigError
from ohfp_core.models import ProviderContext, Template
from ohfp_core.parsing import config_converter, key, rule, structure

NAME = "budget"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be a number ≥ 0, got {value:g}"


@frozen(kw_only=True)
class Limit:
    """``unit_cost`` per unit per hour; ``max_hourly_cost`` the most the template's machines
    may cost an hour in all."""

    unit_cost: float = field(metadata=key("unitCost"), validator=rule(_not_negative))
    max_hourly_cost: float = field(metadata=key("maxHourlyCost"), validator=rule(_not_negative))

    @property
    def units(self) -> int | None:
        """The most units the limit allows; None when a unit costs nothing."""
        return math.floor(self.max_hourly_cost / self.unit_cost + 1e-9) if self.unit_cost else None


@frozen(kw_only=True)
class BudgetSettings:
    """The ``budget`` section of ``ohfp.json``."""

    enabled: bool = False
    templates: dict[str, Limit] = field(factory=dict)
    default: Limit | None = None


def read_settings(settings: Mapping[str, Mapping[str, Any]]) -> BudgetSettings:
    """The ``budget`` section, structured; every problem names its key (``$.budget.…``).

    :raises ConfigError: for unknown keys or bad values.
    """
    return structure(
        settings.get(NAME, {}),
        BudgetSettings,
        converter=config_converter(),
        error=ConfigError,
        message=f"invalid {NAME!r} settings",
        path=f"$.{NAME}",
    )


def capped(template: Template, limit: Limit) -> Template:
    """``template`` with ``maxNumber`` lowered to what ``limit`` allows (unchanged if it
    allows more)."""
    units = limit.units
    if units is None or (not template.unlimited and template.max_number <= units):
        return template
    reason = (
        f"budget: {limit.unit_cost:g} a unit an hour, maxHourlyCost {limit.max_hourly_cost:g}"
        f" allows {units} units"
    )
    return attrs.evolve(template, max_number=units, available_reason=reason)


class BudgetGuard:
    """Caps each limited template's ``maxNumber`` by its hourly budget."""

    def __init__(self) -> None:
        self.settings = BudgetSettings()

    @hookimpl
    def ohfp_configure(self, context: ProviderContext, settings: Mapping[str, Mapping[str, Any]]) -> None:
        self.settings = read_settings(settings)

    def limit_for(self, template_id: str) -> Limit | None:
        return self.settings.templates.get(template_id, self.settings.default)

    @hookimpl(wrapper=True)
    def ohfp_available_templates(
        self, templates: Sequence[Template]
    ) -> Generator[None, Sequence[Template] | None, Sequence[Template] | None]:
        offered = yield
        if not self.settings.enabled or offered is None:
            return offered
        return [
            capped(template, limit) if (limit := self.limit_for(template.template_id)) else template
            for template in offered
        ]


plugin = BudgetGuard()
"""The object the ``ohfp.plugins`` entry point ``budget`` registers."""

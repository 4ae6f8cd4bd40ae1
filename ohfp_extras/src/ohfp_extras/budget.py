"""The ``budget`` plugin: refuse a request whose machines would cost more an hour than the
template's limit.

Enable it in ``ohfp.json``, with a cost per unit (a machine, or a weighted unit) per hour and
the most one request may add per hour, per template; ``default`` covers templates not named
(without it they are not limited)::

    {"budget": {
        "enabled": true,
        "templates": {"OnDemand-m5-large": {"unitCost": 0.096, "maxHourlyCost": 2.0}},
        "default": {"unitCost": 0.05, "maxHourlyCost": 1.0}}}

A request beyond the limit is refused before the provider is called, with
:class:`~ohfp_core.errors.QuotaError` naming the limit, so Host Factory gets IBM's failure
reply (``{"message": "Request VM from aws failed: budget: …"}``, no request id). Costs are in
whatever currency the site writes them in.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from attrs import frozen

from ohfp_core import hookimpl
from ohfp_core.errors import ConfigError, QuotaError
from ohfp_core.models import ProviderContext, Provisioned, Template
from ohfp_extras.settings import cost, enabled, section

NAME = "budget"
LIMIT_KEYS = ("unitCost", "maxHourlyCost")


@frozen
class Limit:
    """``unit_cost`` per unit per hour; ``max_hourly_cost`` the most one request may add."""

    unit_cost: float
    max_hourly_cost: float


def _limit(value: Any, where: str) -> Limit:
    if not isinstance(value, Mapping):
        raise ConfigError(
            "invalid 'budget' settings", [f"{where}: must be an object with {', '.join(LIMIT_KEYS)}"]
        )
    problems = [
        f"{where}.{key}: unknown key (known: {', '.join(LIMIT_KEYS)})"
        for key in value
        if key not in LIMIT_KEYS
    ]
    problems += [f"{where}.{key}: required" for key in LIMIT_KEYS if key not in value]
    if problems:
        raise ConfigError("invalid 'budget' settings", problems)
    return Limit(
        cost(value["unitCost"], f"{where}.unitCost"), cost(value["maxHourlyCost"], f"{where}.maxHourlyCost")
    )


class BudgetGuard:
    """Checks each provisioning request against its template's hourly limit."""

    def __init__(self) -> None:
        self.enabled = False
        self.limits: dict[str, Limit] = {}
        self.default: Limit | None = None

    @hookimpl
    def ohfp_configure(self, context: ProviderContext, settings: Mapping[str, Mapping[str, Any]]) -> None:
        found = section(settings, NAME, ("templates", "default"))
        self.enabled = enabled(found, NAME)
        templates = found.get("templates", {})
        if not isinstance(templates, Mapping):
            raise ConfigError(
                "invalid 'budget' settings", ["$.budget.templates: must be an object by template id"]
            )
        self.limits = {
            str(tid): _limit(value, f"$.budget.templates.{tid}") for tid, value in templates.items()
        }
        self.default = _limit(found["default"], "$.budget.default") if "default" in found else None

    def limit_for(self, template_id: str) -> Limit | None:
        return self.limits.get(template_id, self.default)

    @hookimpl(wrapper=True)
    def ohfp_provision(
        self, request_id: str, template: Template, count: int
    ) -> Generator[None, Provisioned | None, Provisioned | None]:
        limit = self.limit_for(template.template_id) if self.enabled else None
        if limit is not None and round(count * limit.unit_cost, 9) > limit.max_hourly_cost:
            raise QuotaError(
                f"budget: template {template.template_id!r} may add at most {limit.max_hourly_cost:g} an hour"
                f" per request (maxHourlyCost); {count} units at {limit.unit_cost:g} cost"
                f" {count * limit.unit_cost:g} an hour",
                code="BudgetExceeded",
            )
        return (yield)


plugin = BudgetGuard()
"""The object the ``ohfp.plugins`` entry point ``budget`` registers."""

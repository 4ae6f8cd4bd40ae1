"""The budget plugin: a template's machines may not cost more an hour than its limit."""

from __future__ import annotations

import pytest

from ohfp_core.errors import ConfigError, InputError
from ohfp_mock.cloud import MockCloud

from .conftest import MakeOps, request

BUDGET = {
    "budget": {
        "enabled": True,
        "templates": {"mock-small": {"unitCost": 0.1, "maxHourlyCost": 0.3}},
        "default": {"unitCost": 1, "maxHourlyCost": 1},
    }
}


def _available(ops: object, template_id: str) -> int:
    reply = ops.get_available_templates({})  # type: ignore[attr-defined]
    return int(next(t for t in reply["templates"] if t["templateId"] == template_id)["availableNumber"])


def test_the_budget_caps_what_a_template_holds_in_all(make_ops: MakeOps) -> None:
    ops = make_ops(BUDGET)
    assert _available(ops, "mock-small") == 3  # 0.3 an hour at 0.1 a unit
    assert request(ops, 2)["requestId"].startswith("req-")
    assert _available(ops, "mock-small") == 1
    with pytest.raises(InputError) as refused:  # 2 + 2 units would cost 0.4 an hour
        request(ops, 2)
    assert refused.value.problems == (
        "$.template.machineCount: 2 exceeds the 1 machines available from template 'mock-small'"
        " (maxNumber 3, 2 in use; budget: 0.1 a unit an hour, maxHourlyCost 0.3 allows 3 units)",
    )
    assert request(ops, 1)["requestId"]  # what is left is still there
    with MockCloud(ops.context.workdir) as cloud:
        assert len(cloud.machines()) == 3  # the refusal reached no cloud


def test_the_default_limits_templates_not_named(make_ops: MakeOps) -> None:
    ops = make_ops(BUDGET)
    assert _available(ops, "mock-spot") == 1  # 1 an hour at 1 a unit
    with pytest.raises(InputError, match="maxHourlyCost 1 allows 1 units"):
        request(ops, 2, "mock-spot")


def test_disabled_or_unlisted_is_not_limited(make_ops: MakeOps) -> None:
    disabled = {"budget": {**BUDGET["budget"], "enabled": False}}
    assert "requestId" in request(make_ops(disabled), 10)
    only_small = {
        "budget": {"enabled": True, "templates": {"mock-small": {"unitCost": 1, "maxHourlyCost": 1}}}
    }
    assert "requestId" in request(make_ops(only_small), 5, "mock-spot")


def test_a_free_unit_or_a_generous_limit_changes_nothing(make_ops: MakeOps) -> None:
    free = {"budget": {"enabled": True, "default": {"unitCost": 0, "maxHourlyCost": 0}}}
    generous = {"budget": {"enabled": True, "default": {"unitCost": 0.01, "maxHourlyCost": 1000}}}
    plain = _available(make_ops(), "mock-small")
    assert _available(make_ops(free), "mock-small") == plain
    assert _available(make_ops(generous), "mock-small") == plain


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"templates": {"T": {"unitCost": -1, "maxHourlyCost": 1}}},
            "$.budget.templates.T.unitCost: must be a number ≥ 0, got -1",
        ),
        ({"templates": {"T": {"unitCost": 1}}}, "$.budget.templates.T.maxHourlyCost: required field missing"),
        (
            {"default": {"unitCost": 1, "maxHourlyCost": 1, "currency": "EUR"}},
            "$.budget.default.currency: unknown key; known: maxHourlyCost, unitCost",
        ),
        ({"templates": []}, "$.budget.templates: expected an object, got a list"),
        ({"limit": 3}, "$.budget.limit: unknown key; known: default, enabled, templates"),
        ({"enabled": "on"}, '$.budget.enabled: expected true or false, got "on"'),
    ],
)
def test_bad_settings_name_the_key(make_ops: MakeOps, section: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_ops({"budget": {"enabled": True, **section}})
    assert raised.value.problems == (problem,)

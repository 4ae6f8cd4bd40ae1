"""The budget plugin: a request beyond its template's hourly limit gets IBM's failure reply."""

from __future__ import annotations

import pytest

from ohfp_core.errors import ConfigError
from ohfp_mock.cloud import MockCloud

from .conftest import MakeOps, request

BUDGET = {
    "budget": {
        "enabled": True,
        "templates": {"mock-small": {"unitCost": 0.1, "maxHourlyCost": 0.3}},
        "default": {"unitCost": 1, "maxHourlyCost": 1},
    }
}


def test_within_the_limit_is_provisioned(make_ops: MakeOps) -> None:
    assert request(make_ops(BUDGET), 3)["requestId"].startswith("req-")  # 0.3 an hour: at the limit


def test_beyond_the_limit_is_refused_naming_it(make_ops: MakeOps) -> None:
    ops = make_ops(BUDGET)
    assert request(ops, 4) == {
        "message": "Request VM from mock failed: budget: template 'mock-small' may add at most 0.3 an hour"
        " per request (maxHourlyCost); 4 units at 0.1 cost 0.4 an hour"
    }
    assert "maxHourlyCost" in request(ops, 2, "mock-spot")["message"]  # the default: 2 at 1 > 1
    with MockCloud(ops.context.workdir) as cloud:
        assert cloud.machines() == []  # refused before the provider was called


def test_disabled_or_unlisted_is_not_limited(make_ops: MakeOps) -> None:
    disabled = {"budget": {**BUDGET["budget"], "enabled": False}}
    assert "requestId" in request(make_ops(disabled), 10)
    only_small = {
        "budget": {"enabled": True, "templates": {"mock-small": {"unitCost": 1, "maxHourlyCost": 1}}}
    }
    assert "requestId" in request(make_ops(only_small), 5, "mock-spot")


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"templates": {"T": {"unitCost": -1, "maxHourlyCost": 1}}},
            "$.budget.templates.T.unitCost: must be a number ≥ 0, got -1",
        ),
        ({"templates": {"T": {"unitCost": 1}}}, "$.budget.templates.T.maxHourlyCost: required"),
        (
            {"default": {"unitCost": 1, "maxHourlyCost": 1, "currency": "EUR"}},
            "$.budget.default.currency: unknown key (known: unitCost, maxHourlyCost)",
        ),
        ({"templates": []}, "$.budget.templates: must be an object by template id"),
        ({"limit": 3}, "$.budget.limit: unknown key (known: enabled, templates, default)"),
    ],
)
def test_bad_settings_name_the_key(make_ops: MakeOps, section: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_ops({"budget": {"enabled": True, **section}})
    assert raised.value.problems == (problem,)

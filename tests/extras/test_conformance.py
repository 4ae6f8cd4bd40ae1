"""The conformance kit with ohfp-extras' plugins enabled next to the mock provider.

With the audit trail and the budget guard enabled (limits the kit stays within) the whole
contract holds, and the audit file records the kit's cloud changes. With dry run enabled only
the tests that need nothing from the cloud apply; the others are skipped, saying why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.models import ProviderContext
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.testing import CloudDriver
from ohfp_extras.audit import AuditTrail
from ohfp_extras.budget import BudgetGuard
from ohfp_extras.dry_run import DryRun
from ohfp_mock.provider import MockProvider
from tests.mock.test_conformance import TestMockContract as MockContract


def _configure(context: ProviderContext, plugins: Sequence[tuple[str, object]], settings: Any) -> None:
    Hooks(make_manager(extensions=plugins), "mock").configure(context, settings)


class TestMockContractAuditedWithinBudget(MockContract):
    @pytest.fixture
    def extensions(self, provider: MockProvider) -> Sequence[tuple[str, object]]:
        plugins = [("audit", AuditTrail()), ("budget", BudgetGuard())]
        settings = {
            "audit": {"enabled": True},
            "budget": {"enabled": True, "default": {"unitCost": 0.5, "maxHourlyCost": 100}},
        }
        _configure(provider.context, plugins, settings)
        return plugins

    def test_the_audit_trail_recorded_the_changes(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        request, machines = self._running(hooks, cloud_driver)
        self._return(hooks, request, machines)
        plugin = dict(hooks.pm.list_name_plugin())["audit"]
        assert isinstance(plugin, AuditTrail) and plugin.path is not None
        actions = [json.loads(line)["action"] for line in Path(plugin.path).read_text().splitlines()]
        assert actions == ["provision", "terminate"]


NOTHING_MADE = "dry run provisions nothing, so there are no machines to observe"
DRY_RUN_CANNOT = {
    "test_provision_is_idempotent": NOTHING_MADE,
    "test_weighted_units": NOTHING_MADE,
    "test_status_after_settle": NOTHING_MADE,
    "test_status_answers_every_request": NOTHING_MADE,
    "test_status_is_batched": NOTHING_MADE,
    "test_terminate_by_name_only": NOTHING_MADE,
    "test_return_request_shows_machines_gone": NOTHING_MADE,
    "test_returned_machines_are_not_replaced": NOTHING_MADE,
    "test_reclaim_is_reported": NOTHING_MADE,
    "test_healthy_machines_are_not_reclaimed": NOTHING_MADE,
    "test_pending_machines_are_not_reclaimed": NOTHING_MADE,
    "test_console_termination_is_reclaimed": NOTHING_MADE,
    "test_terminate_is_idempotent": NOTHING_MADE,
    "test_terminate_unknown_machine": (
        "dry run answers every termination with a failure, so the host stays Host Factory's, where the"
        " contract wants an unknown host accepted as gone"
    ),
    "test_cancel_removes_what_was_made": "dry run refuses to cancel (a CloudError) until it is off",
    "test_interrupted_provision_leaves_nothing": NOTHING_MADE,
    "test_api_error_is_a_cloud_error": "dry run never calls the provider's ohfp_provision, which would fail",
}


class TestMockContractDryRun(MockContract):
    @pytest.fixture
    def extensions(self, provider: MockProvider) -> Sequence[tuple[str, object]]:
        plugins = [("dry-run", DryRun())]
        _configure(provider.context, plugins, {"dry-run": {"enabled": True}})
        return plugins

    @pytest.fixture(autouse=True)
    def _only_where_dry_run_applies(self, request: pytest.FixtureRequest) -> None:
        reason = DRY_RUN_CANNOT.get(request.node.originalname)
        if reason:
            pytest.skip(reason)


def test_dry_run_skips_only_tests_of_the_kit() -> None:
    kit = {name for name in dir(MockContract) if name.startswith("test_")}
    assert set(DRY_RUN_CANNOT) <= kit

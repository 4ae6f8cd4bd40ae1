"""The conformance kit catches real bugs: each rule it checks is proven here by a provider
broken on purpose.

Every broken provider is the mock provider (which passes the whole kit, see
``tests/mock/test_conformance.py``) with one hook changed to make one mistake. The kit test
that checks the rule must fail with a :class:`ContractViolation` whose message names the hook
and the rule it broke.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core import hookimpl
from ohfp_core.errors import CloudError
from ohfp_core.models import (
    CloudRequest,
    HealthCheck,
    MachineRef,
    MachineState,
    Provisioned,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_core.plugins import make_manager
from ohfp_core.testing import ContractViolation, KitHooks, ProviderContract
from ohfp_mock.knobs import read_knobs
from ohfp_mock.provider import MockProvider
from tests.mock.conftest import mock_context
from tests.mock.test_conformance import KNOBS, MockDriver


class CancelDoesNothing(MockProvider):
    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        return True


class CancelForgetsTheMachines(MockProvider):
    """Closes the cloud request so status no longer finds it, but the machines run on."""

    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        self.cloud._db.execute("DELETE FROM requests WHERE request_id = ?", (request.request_id,))
        return True


class CancelAnswersText(MockProvider):
    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> Any:
        super().ohfp_cancel_request(request)
        return "cancelled"


class NameOnlyReturnIgnored(MockProvider):
    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        return self.cloud.terminate([item.machine_id for item in machines if item.machine_id])


class ReturnTakesTheWholeRequest(MockProvider):
    """Finds the named host, then terminates every machine of its request."""

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        names = {item.name for item in machines}
        requests = {m.request_id for m in self.cloud.machines() if m.name in names}
        return self.cloud.terminate([m.machine_id for m in self.cloud.machines() if m.request_id in requests])


class PendingReportedReclaimed(MockProvider):
    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        now = self.cloud.now()
        pending = {m.name for m in self.cloud.machines() if m.state(now) is not MachineState.RUNNING}
        found = list(super().ohfp_reclaimed_machines(machines))
        return found + [Reclaim(name=ref.name, grace_period=0) for ref in machines if ref.name in pending]


class ReclaimByIdOnly(MockProvider):
    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        known = {m.machine_id for m in self.cloud.machines()}
        unknown = [Reclaim(name=r.name, grace_period=0) for r in machines if r.machine_id not in known]
        with_ids = [r for r in machines if r.machine_id in known]
        return [*self.cloud.reclaimed(with_ids), *unknown]


class ReturnRequestsLeftOut(MockProvider):
    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        return self.cloud.status([r for r in requests if r.kind is RequestKind.ACQUIRE])


class WeightIgnored(MockProvider):
    """Launches ``count`` machines, whatever each counts for."""

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        weights = template.fields.get("vmTypes") or {}
        return self.cloud.provision(request_id, template, count * max(weights.values(), default=1))


class NoHealthChecks(MockProvider):
    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        return []


class SdkErrorEscapes(MockProvider):
    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        try:
            return super().ohfp_provision(request_id, template, count)
        except CloudError as exc:
            raise RuntimeError(f"An error occurred (RequestLimitExceeded): {exc}") from None


class ProvisionAnswersDict(MockProvider):
    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Any:
        return attrs.asdict(super().ohfp_provision(request_id, template, count))


class StatusAnswersList(MockProvider):
    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Any:
        return list(self.cloud.status(requests).values())


class StatusMachinesAsDicts(MockProvider):
    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Any:
        return {
            key: RequestSnapshot(machines=tuple(attrs.asdict(m) for m in snapshot.machines))  # type: ignore[misc]
            for key, snapshot in self.cloud.status(requests).items()
        }


class StatusStatesAsText(MockProvider):
    """Reports ``state`` as the cloud's string instead of a MachineState."""

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Any:
        return {
            key: RequestSnapshot(
                machines=tuple(
                    attrs.evolve(m, state=m.state.value)  # type: ignore[arg-type]
                    for m in snapshot.machines
                )
            )
            for key, snapshot in self.cloud.status(requests).items()
        }


class ReclaimAnswersNames(MockProvider):
    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Any:
        return [reclaim.name for reclaim in self.cloud.reclaimed(machines)]


@attrs.frozen
class Bug:
    """``provider`` breaks a rule; kit test ``test`` must fail with ``message``, naming ``rule``."""

    provider: type[MockProvider]
    test: str
    message: str
    rule: str


CANCEL = "(everything made for the request is deleted or on its way out, found by the request id)"
ANSWER_ALL = "(every request handed in must be answered)"
BY_NAME = "(a host may come by name alone, with an empty machine_id: find it by name)"
RECLAIM_BY_NAME = "look the host up by name)"
MODELS = "(results are ohfp_core.models objects"

BUGS = [
    Bug(
        CancelDoesNothing, "test_cancel_removes_what_was_made", "ohfp_cancel_request: left machine i-", CANCEL
    ),
    Bug(
        CancelForgetsTheMachines, "test_cancel_removes_what_was_made", "ohfp_cancel_request: left ip-", CANCEL
    ),
    Bug(
        CancelAnswersText,
        "test_cancel_removes_what_was_made",
        "ohfp_cancel_request: returned 'cancelled'",
        "(must be True once everything is removed, or the hook left out)",
    ),
    Bug(NameOnlyReturnIgnored, "test_terminate_by_name_only", "ohfp_terminate_machines: left ip-", BY_NAME),
    Bug(
        ReturnTakesTheWholeRequest,
        "test_terminate_by_name_only",
        "ohfp_terminate_machines: also took i-",
        "(terminate only the hosts handed in)",
    ),
    Bug(
        PendingReportedReclaimed,
        "test_pending_machines_are_not_reclaimed",
        "ohfp_reclaimed_machines: reported [('ip-",
        "(a pending machine is still booting, not being reclaimed)",
    ),
    Bug(ReclaimByIdOnly, "test_reclaim_is_reported", "ohfp_reclaimed_machines: reported [", RECLAIM_BY_NAME),
    Bug(
        ReclaimByIdOnly,
        "test_healthy_machines_are_not_reclaimed",
        "ohfp_reclaimed_machines: reported running hosts",
        RECLAIM_BY_NAME,
    ),
    Bug(
        ReturnRequestsLeftOut,
        "test_status_answers_every_request",
        "ohfp_machine_status: left out running request ret-",
        ANSWER_ALL,
    ),
    Bug(
        ReturnRequestsLeftOut,
        "test_return_request_shows_machines_gone",
        "ohfp_machine_status: left out running return request ret-",
        ANSWER_ALL,
    ),
    Bug(
        WeightIgnored,
        "test_weighted_units",
        "ohfp_provision: made machines weighing [2, 2, 2, 2] for 4 units",
        "(count is units of capacity",
    ),
    Bug(
        NoHealthChecks,
        "test_health_checks_pass",
        "ohfp_health_check: returned no checks",
        "(a provider reports at least one check)",
    ),
    Bug(
        SdkErrorEscapes,
        "test_api_error_is_a_cloud_error",
        "ohfp_provision: raised RuntimeError",
        "(failures the cloud reports are raised as ohfp_core.errors.CloudError)",
    ),
    Bug(
        ProvisionAnswersDict,
        "test_provision_handle_is_json",
        "ohfp_provision: returned dict",
        "(must be a Provisioned)",
    ),
    Bug(
        StatusAnswersList,
        "test_status_after_settle",
        "ohfp_machine_status: returned list",
        "(must be a mapping of request id to RequestSnapshot)",
    ),
    Bug(
        StatusMachinesAsDicts,
        "test_status_after_settle",
        "ohfp_machine_status: returned a dict among",
        MODELS,
    ),
    Bug(
        ReclaimAnswersNames,
        "test_reclaim_is_reported",
        "ohfp_reclaimed_machines: returned a str among",
        MODELS,
    ),
]
NEW_RULES = {
    "test_cancel_removes_what_was_made",
    "test_terminate_by_name_only",
    "test_status_answers_every_request",
    "test_pending_machines_are_not_reclaimed",
    "test_weighted_units",
    "test_health_checks_pass",
    "test_api_error_is_a_cloud_error",
}


@pytest.fixture
def run_kit(tmp_path: Path) -> Iterator[Any]:
    """``run_kit(provider_class, test_name)`` runs one kit test against a mock-based provider."""
    opened: list[tuple[MockProvider, MockDriver]] = []

    def run(provider_class: type[MockProvider], test_name: str) -> None:
        provider = provider_class(mock_context(tmp_path, dict(KNOBS)), read_knobs(KNOBS))
        driver = MockDriver(provider)
        opened.append((provider, driver))
        hooks = KitHooks(make_manager(provider, provider_name="under-test"), "under-test")
        test = getattr(ProviderContract(), test_name)
        given = {"hooks": hooks, "cloud_driver": driver}
        test(**{name: given[name] for name in inspect.signature(test).parameters})

    yield run
    for provider, driver in opened:
        driver.cloud.close()
        provider.close()


def test_every_new_rule_has_a_broken_provider() -> None:
    assert {bug.test for bug in BUGS} >= NEW_RULES


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: f"{bug.provider.__name__}-{bug.test}")
def test_the_kit_catches(bug: Bug, run_kit: Any) -> None:
    with pytest.raises(ContractViolation) as failed:
        run_kit(bug.provider, bug.test)
    message = str(failed.value)
    assert message.startswith(bug.message), message
    assert bug.rule in message, message


@pytest.mark.parametrize("test_name", sorted({bug.test for bug in BUGS}))
def test_the_working_mock_passes(test_name: str, run_kit: Any) -> None:
    run_kit(MockProvider, test_name)

"""The conformance kit catches real bugs: each rule it checks is proven here by a provider
broken on purpose.

Every broken provider is the mock provider (which passes the whole kit, see
``tests/mock/test_conformance.py``) with one hook changed to make one mistake. The kit test
that checks the rule must fail with a :class:`ContractViolation` whose message names the hook
and the rule it broke.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core import hookimpl
from ohfp_core.deprecation import OhfpDeprecationWarning
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


class RemembersOnlyInMemory(MockProvider):
    """Launches under an id of its own and keeps which request it belongs to in memory alone,
    recorded once the launch returns: a call killed in between leaves machines that nothing
    finds by the request id (the leak of a provider whose cloud does not tag)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.made: dict[str, str] = {}

    def _own(self, request: CloudRequest) -> CloudRequest:
        return attrs.evolve(request, request_id=self.made.get(request.request_id, request.request_id))

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        own = self.made.get(request_id) or f"own-{uuid.uuid4()}"
        provisioned = self.cloud.provision(own, template, count)
        self.made[request_id] = own
        return provisioned

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        found = self.cloud.status([self._own(r) for r in requests])
        return {
            r.request_id: found[self._own(r).request_id] for r in requests if self._own(r).request_id in found
        }

    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        self.cloud.cancel(self._own(request).request_id)
        return True


class CatchesTheInterruption(MockProvider):
    """Catches everything, so a killed call would look finished."""

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        try:
            return super().ohfp_provision(request_id, template, count)
        except BaseException:
            return Provisioned()


class ProvisionWaitsForBoot(MockProvider):
    """Returns only once its machines run (the clock moved by the boot time stands for the wait)."""

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        provisioned = super().ohfp_provision(request_id, template, count)
        self.cloud.advance(self.knobs.boot_seconds)
        request = CloudRequest(request_id=request_id, kind=RequestKind.ACQUIRE, handle=provisioned.handle)
        return attrs.evolve(provisioned, machines=self.cloud.status([request])[request_id].machines)


class ProvisionNotIdempotent(MockProvider):
    """Forgets the cloud request of an earlier call, so a second call launches again."""

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        self.cloud._db.execute("DELETE FROM requests WHERE request_id = ?", (request_id,))
        return super().ohfp_provision(request_id, template, count)


class WeightsDoubled(MockProvider):
    """Reports every machine as two units, whatever the template says."""

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        return {
            key: attrs.evolve(snapshot, machines=tuple(attrs.evolve(m, weight=2) for m in snapshot.machines))
            for key, snapshot in self.cloud.status(requests).items()
        }


class HealthCheckRaises(MockProvider):
    """Lets the cloud's error out of the health check instead of reporting a failed check."""

    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        self.cloud.status([])  # a cloud call: raises while the cloud fails
        return [HealthCheck(name="mock cloud", ok=True)]


class TemplatesLaunchAWarmPool(MockProvider):
    """Launches a machine whenever templates are listed."""

    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        offered = super().ohfp_available_templates(templates)
        self.cloud.provision(f"warm-{uuid.uuid4()}", offered[0], 1)
        return offered


class StatusRaisesKeyError(MockProvider):
    """A lookup bug: a plain exception out of a hook."""

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        return {r.request_id: self.cloud.status(requests)[r.request_id + "-typo"] for r in requests}


class ForgetsWhatEnded(MockProvider):
    """Follows the rule for what a cloud no longer knows, as a cloud of processes would: a
    terminated machine is left out, and so is a request with nothing left."""

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        known = {}
        for key, snapshot in self.cloud.status(requests).items():
            alive = tuple(m for m in snapshot.machines if m.state is not MachineState.TERMINATED)
            if alive or snapshot.open:
                known[key] = attrs.evolve(snapshot, machines=alive)
        return known


@attrs.frozen
class Bug:
    """``provider`` breaks a rule; kit test ``test`` must fail with ``message``, naming ``rule``."""

    provider: type[MockProvider]
    test: str
    message: str
    rule: str


CANCEL = "(everything made for the request is deleted or on its way out, found by the request id)"
ANSWER_ALL = (
    "(answer every request whose machines the cloud still knows; leave out only what it no longer knows)"
)
RETURNS = "(a return request's snapshot lists its machines the cloud still knows"
FINDABLE = "everything a request makes is findable by its request id from the moment it exists"
NEVER_CATCH = "(a killed call runs no handler: catch Exception, never BaseException"
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
        "ohfp_machine_status: left i-",
        RETURNS,
    ),
    Bug(
        ReturnRequestsLeftOut,
        "test_return_request_shows_machines_gone",
        "ohfp_machine_status: left i-",
        RETURNS,
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
        "(failures the cloud reports are raised as ohfp_core.errors.CloudError; ohfp_provision may"
        " raise CloudError or ConfigError, anything else is a provider bug",
    ),
    Bug(
        StatusRaisesKeyError,
        "test_status_after_settle",
        "ohfp_machine_status: raised KeyError",
        "ohfp_machine_status may raise CloudError, anything else is a provider bug that core answers"
        " with an internal error)",
    ),
    Bug(
        RemembersOnlyInMemory,
        "test_interrupted_provision_leaves_nothing",
        "ohfp_cancel_request: left i-",
        FINDABLE,
    ),
    Bug(
        CatchesTheInterruption,
        "test_interrupted_provision_leaves_nothing",
        "ohfp_provision: returned although the kit interrupted it",
        NEVER_CATCH,
    ),
    Bug(
        ProvisionWaitsForBoot,
        "test_provision_returns_at_once",
        "ohfp_provision: returned once i-",
        "(return at once and let machines boot while core polls ohfp_machine_status",
    ),
    Bug(
        ProvisionNotIdempotent,
        "test_provision_is_idempotent",
        "ohfp_provision: a second call for req-",
        "(idempotent on request_id: find what the first call made)",
    ),
    Bug(
        WeightsDoubled,
        "test_status_after_settle",
        "ohfp_machine_status: reported weights [2, 2] for 2 units of mock-spot",
        "(a machine of a template without weights counts for one unit",
    ),
    Bug(
        HealthCheckRaises,
        "test_health_check_reports_a_failing_cloud",
        "ohfp_health_check: raised ThrottledError",
        "(report a failure as HealthCheck(ok=False); a health check never raises",
    ),
    Bug(
        TemplatesLaunchAWarmPool,
        "test_offered_templates_are_valid",
        "ohfp_available_templates: changed the cloud: made i-",
        "(must not change anything in the cloud",
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
    "test_interrupted_provision_leaves_nothing",
    "test_provision_returns_at_once",
    "test_provision_is_idempotent",
    "test_health_check_reports_a_failing_cloud",
    "test_offered_templates_are_valid",
    "test_status_after_settle",
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
    """``run_kit(provider_class, test_name)`` runs one kit test against a mock-based provider;
    ``next_hooks`` get a second provider of the class on the same cloud, as the next call would."""
    opened: list[MockProvider | MockDriver] = []

    def run(
        provider_class: type[MockProvider], test_name: str, driver_class: type[MockDriver] = MockDriver
    ) -> None:
        def make() -> MockProvider:
            made = provider_class(mock_context(tmp_path, dict(KNOBS)), read_knobs(KNOBS))
            opened.append(made)
            return made

        provider, following = make(), make()
        driver = driver_class(provider)
        opened.append(driver)
        given = {
            "hooks": KitHooks(make_manager(provider, provider_name="under-test"), "under-test"),
            "next_hooks": KitHooks(make_manager(following, provider_name="under-test"), "under-test"),
            "cloud_driver": driver,
        }
        test = getattr(ProviderContract(), test_name)
        test(**{name: given[name] for name in inspect.signature(test).parameters})

    yield run
    for made in opened:
        (made.cloud if isinstance(made, MockDriver) else made).close()


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


RETURN_TESTS = (
    "test_status_answers_every_request",
    "test_return_request_shows_machines_gone",
    "test_returned_machines_are_not_replaced",
    "test_cancel_removes_what_was_made",
    "test_interrupted_provision_leaves_nothing",
    "test_terminate_is_idempotent",
)


@pytest.mark.parametrize("test_name", RETURN_TESTS)
def test_a_provider_that_forgets_what_ended_passes(test_name: str, run_kit: Any) -> None:
    """The rule for returns asks no records of dead machines: leaving out what the cloud no longer
    knows passes the kit (and core reports it terminated: tests/core/test_operations.py)."""
    run_kit(ForgetsWhatEnded, test_name)


class DriverOfRelease02(MockDriver):
    """A cloud driver written for ohfp 0.2: ``settle()`` and ``reclaim()``, no ``advance_clock()``."""

    advance_clock = None  # type: ignore[assignment]
    take_away = None  # type: ignore[assignment]

    def settle(self) -> None:
        MockDriver.advance_clock(self)

    def reclaim(self, machine_id: str) -> None:
        MockDriver.take_away(self, machine_id)


@pytest.mark.parametrize("test_name", ["test_status_after_settle", "test_reclaim_is_reported"])
def test_a_driver_of_release_0_2_still_works_and_is_told_the_new_names(test_name: str, run_kit: Any) -> None:
    with pytest.warns(OhfpDeprecationWarning, match=r"is removed in 0\.4\.0: use CloudDriver\.") as caught:
        run_kit(MockProvider, test_name, DriverOfRelease02)
    assert {w.filename for w in caught} == {__file__}  # pointing at the old methods above


class RealTimeDriver(MockDriver):
    """A cloud in real time: no clock to move; the kit polls until machines run."""

    advance_clock = None  # type: ignore[assignment]


def test_a_real_time_cloud_is_waited_for(run_kit: Any, tmp_path: Path) -> None:
    """Without advance_clock() the kit polls (bounded by settle_timeout) instead of moving a clock:
    the machines boot while it waits (the mock's clock follows real time)."""
    fast = {**KNOBS, "MOCK_BOOT_SECONDS": 1, "MOCK_TERMINATE_SECONDS": 1}
    provider = MockProvider(mock_context(tmp_path / "rt", fast), read_knobs(fast))
    driver = RealTimeDriver(provider)
    hooks = KitHooks(make_manager(provider, provider_name="under-test"), "under-test")
    try:
        contract = ProviderContract()
        contract.poll_interval = 0.1
        contract.test_status_after_settle(hooks, driver)
        contract.test_return_request_shows_machines_gone(hooks, driver)
    finally:
        driver.cloud.close()
        provider.close()

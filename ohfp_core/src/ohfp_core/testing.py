"""The provider conformance kit: one pytest suite every provider package runs in its own CI.

How a provider package uses it (needs ``pip install ohfp-core[testing]``)::

    from ohfp_core.testing import ProviderContract

    class TestMyCloudContract(ProviderContract):
        @pytest.fixture
        def provider(self, tmp_path):           # the object your factory returns
            return make_provider(my_context(tmp_path))

        @pytest.fixture
        def next_provider(self, tmp_path):      # the provider as the next call builds it
            return make_provider(my_context(tmp_path))

        @pytest.fixture
        def cloud_driver(self, provider):       # plays your test cloud's part
            return MyCloudDriver(...)

Each test checks one rule of the hook reference (``docs/hooks.md``) and, when it fails, says
which hook broke which rule and so what to fix: ``ohfp_machine_status: left out running
request req-… (answer every request whose machines the cloud still knows …)``. Every result
is type-checked and every exception a hook may not raise is reported by :class:`KitHooks`
before a test uses it, so a provider returning a dict where a model belongs, or raising a
``KeyError``, fails with the hook's name. The cloud driver (:class:`CloudDriver`) needs only
``template()``; each optional capability it has enables more tests, and a test whose
capability is missing is skipped saying which. Each test gets fresh fixtures. Class
attributes: ``machine_count`` (machines per request), ``settle_timeout`` and
``poll_interval`` (how long and how often the kit polls a cloud in real time). Override the
``extensions`` fixture to run the contract with extension plugins next to the provider.
ohfp-core registers this module as a pytest plugin (entry point ``pytest11``). Only this
module of ohfp-core imports pytest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import pytest

from ohfp_core.errors import CloudError
from ohfp_core.kit_driver import CloudDriver, capability, resources, settle
from ohfp_core.kit_hooks import (
    ContractViolation,
    KitHooks,
    ProvisionInterrupted,
    expect,
    type_name,
    violated,
)
from ohfp_core.models import (
    ATTRIBUTE_TYPES,
    MANDATORY_ATTRIBUTES,
    TEMPLATE_ID_RE,
    CloudRequest,
    Machine,
    MachineRef,
    MachineState,
    Provisioned,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.storage_contract import StorageContract as StorageContract

__all__ = [
    "CloudDriver",
    "ContractViolation",
    "KitHooks",
    "ProviderContract",
    "ProvisionInterrupted",
    "StorageContract",
    "violated",
]

MAX_NOTICE = 120
"""The most seconds of notice a reclaim may give (a spot interruption's two minutes)."""
ENDING = tuple(state for state in MachineState if state.is_ending)
"""States of a machine that is deleted or on its way out."""
UNKNOWN_ID = "i-0000000000000000f"
UNKNOWN_NAME = "ip-10-255-255-254.unknown.internal"

ANSWER = "answer every request whose machines the cloud still knows; leave out only what it no longer knows"
RETURNS = (
    "a return request's snapshot lists its machines the cloud still knows, as their acquire"
    " request does; leave out only what the cloud no longer knows (core reports it terminated)"
)
FINDABLE = (
    "everything a request makes is findable by its request id from the moment it exists: tag or"
    " name it with the id as the cloud creates it"
)
CANCEL = "everything made for the request is deleted or on its way out, found by the request id"
CORE_CANCEL = (
    "without ohfp_cancel_request core terminates what status finds by the request id alone (empty handle)"
)
NEVER_CATCH = (
    "a killed call runs no handler: catch Exception, never BaseException, and record what the cloud"
    " makes before or as it makes it"
)
UNCHANGED = "must not change anything in the cloud: getAvailableTemplates and every requestMachines call it"


def _request_id(prefix: str = "req") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _ids(machines: Iterable[Machine]) -> set[str]:
    return {machine.machine_id for machine in machines}


def _listed(held: Mapping[str, str]) -> str:
    return ", ".join(f"{key} ({state})" for key, state in sorted(held.items()))


def _changes(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """What differs between two listings of the cloud, in words."""
    made = {k: v for k, v in after.items() if k not in before}
    gone = {k: v for k, v in before.items() if k not in after}
    moved = [f"{k} {before[k]} → {v}" for k, v in sorted(after.items()) if k in before and before[k] != v]
    parts = [f"made {_listed(made)}"] if made else []
    parts += [f"removed {_listed(gone)}"] if gone else []
    parts += [f"changed {', '.join(moved)}"] if moved else []
    return "; ".join(parts)


class ProviderContract:
    """Conformance tests of the provider contract (:mod:`ohfp_core.hookspecs`).

    Subclass it in a test module and provide the fixtures ``provider`` and ``cloud_driver``;
    override ``next_provider`` too (see there).
    """

    machine_count = 2
    """How many machines each test requests; at least 2."""
    settle_timeout = 60.0
    """Seconds the kit waits for a cloud without a simulated clock to get where a test needs it
    (machines running, terminated, reclaimed) before it checks and fails."""
    poll_interval = 0.5
    """Seconds between two looks at a cloud in real time."""

    # fixtures and helpers -------------------------------------------------------------
    @pytest.fixture
    def extensions(self) -> Sequence[tuple[str, object]]:
        """Extension plugins registered next to the provider, as ``(name, plugin)``, already
        configured (override to run the contract with them; none by default)."""
        return ()

    def _hooks(self, provider: object, extensions: Sequence[tuple[str, object]]) -> Iterator[KitHooks]:
        pm = make_manager(provider, provider_name="under-test", extensions=extensions)
        yield KitHooks(pm, "under-test")
        for name, _ in extensions:
            pm.unregister(name=name)
        pm.unregister(provider)

    @pytest.fixture
    def hooks(self, provider: object, extensions: Sequence[tuple[str, object]]) -> Iterator[Hooks]:
        """The provider's hooks, called as core calls them and checked (:class:`KitHooks`)."""
        yield from self._hooks(provider, extensions)

    @pytest.fixture
    def next_provider(self, provider: object) -> object:
        """The provider as the next Host Factory call builds it: a new process, so a new object
        from your factory on the same instance, work dir and test cloud. Override it: the
        default is ``provider`` itself, which lets a provider that keeps what it made only in
        its own memory pass the crash-safety test."""
        return provider

    @pytest.fixture
    def next_hooks(
        self,
        hooks: Hooks,
        provider: object,
        next_provider: object,
        extensions: Sequence[tuple[str, object]],
    ) -> Iterator[Hooks]:
        """The hooks of ``next_provider`` (``hooks`` when it is the same object)."""
        if next_provider is provider:
            yield hooks
        else:
            yield from self._hooks(next_provider, extensions)

    def _settle(self, driver: CloudDriver, until: Callable[[], bool], *, move_clock: bool = True) -> None:
        settle(driver, until, self.settle_timeout, self.poll_interval, move_clock=move_clock)

    def _provision(self, hooks: Hooks, driver: CloudDriver, template: Template | None = None) -> CloudRequest:
        template = template or driver.template()
        request_id = _request_id()
        provisioned = hooks.provision(request_id, template, self.machine_count)
        return self._acquire(request_id, template, provisioned)

    def _acquire(
        self, request_id: str, template: Template, provisioned: Provisioned, count: int | None = None
    ) -> CloudRequest:
        return CloudRequest(
            request_id=request_id,
            kind=RequestKind.ACQUIRE,
            template_id=template.template_id,
            machine_count=self.machine_count if count is None else count,
            handle=json.loads(json.dumps(provisioned.handle)),  # what core stores and hands back
            machine_ids=tuple(machine.machine_id for machine in provisioned.machines),
        )

    def _snapshot(self, hooks: Hooks, request: CloudRequest) -> RequestSnapshot:
        snapshot = hooks.machine_status([request]).get(request.request_id)
        if snapshot is None:
            violated("ohfp_machine_status", f"left out running request {request.request_id}", ANSWER)
        return snapshot

    def _machines(self, hooks: Hooks, request: CloudRequest) -> tuple[Machine, ...]:
        return self._snapshot(hooks, request).machines

    def _settled(
        self, hooks: Hooks, request: CloudRequest, states: Sequence[MachineState]
    ) -> Callable[[], bool]:
        """A condition: the request's machines (none counts) are all in ``states``."""

        def done() -> bool:
            snapshot = hooks.machine_status([request]).get(request.request_id, RequestSnapshot())
            return all(machine.state in states for machine in snapshot.machines)

        return done

    def _delivered(self, hooks: Hooks, request: CloudRequest) -> Callable[[], bool]:
        """A condition: the acquire request's machines are all there and none is pending."""

        def done() -> bool:
            snapshot = hooks.machine_status([request]).get(request.request_id, RequestSnapshot())
            machines = snapshot.machines
            units = sum(m.weight for m in machines)
            return units >= request.machine_count and all(
                m.state is not MachineState.PENDING for m in machines
            )

        return done

    def _running(self, hooks: Hooks, driver: CloudDriver) -> tuple[CloudRequest, tuple[Machine, ...]]:
        request = self._provision(hooks, driver)
        self._settle(driver, self._delivered(hooks, request))
        machines = self._machines(hooks, request)
        hook = "ohfp_machine_status"
        expect(
            len(machines) == self.machine_count,
            hook,
            f"reported {len(machines)} machines for a request of {self.machine_count}",
            "an acquire request's snapshot lists every machine made for it",
        )
        weights = [m.weight for m in machines]
        expect(
            sum(weights) == self.machine_count,
            hook,
            f"reported weights {weights} for {self.machine_count} units of {request.template_id}",
            "a machine of a template without weights counts for one unit: the weights add up to the"
            " units asked",
        )
        return attrs.evolve(request, machine_ids=tuple(m.machine_id for m in machines)), machines

    def _return(self, hooks: Hooks, request: CloudRequest, machines: Sequence[Machine]) -> CloudRequest:
        items = [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in machines]
        failures = hooks.terminate_machines(items)
        expect(failures == {}, "ohfp_terminate_machines", f"refused {failures}", "running machines terminate")
        return CloudRequest(
            request_id=_request_id("ret"),
            kind=RequestKind.RETURN,
            machine_ids=tuple(m.machine_id for m in machines),
        )

    def _check_return(
        self, snapshots: Mapping[str, RequestSnapshot], acquire: CloudRequest, returned: CloudRequest
    ) -> tuple[Machine, ...]:
        """The return request's snapshot agrees with its acquire request's: it lists the returned
        machines the acquire request still reports, and nothing else. Its machines."""
        hook = "ohfp_machine_status"
        known = {m.machine_id: m for m in snapshots.get(acquire.request_id, RequestSnapshot()).machines}
        machines = snapshots.get(returned.request_id, RequestSnapshot()).machines
        listed = _ids(machines)
        missing = [i for i in returned.machine_ids if i in known and i not in listed]
        expect(
            not missing,
            hook,
            f"left {', '.join(f'{i} ({known[i].state})' for i in missing)} out of return request"
            f" {returned.request_id} while reporting them for their acquire request",
            RETURNS,
        )
        extra = sorted(listed - set(returned.machine_ids))
        expect(
            not extra,
            hook,
            f"listed {extra} for return request {returned.request_id},"
            f" returning {list(returned.machine_ids)}",
            "a return request's snapshot describes its machine_ids",
        )
        return machines

    def _cancel_rule(self, hooks: Hooks, rule: str) -> tuple[str, str]:
        """The hook to blame when what a request made survives its cancelling, and the rule."""
        if hooks.pm.hook.ohfp_cancel_request.get_hookimpls():
            return "ohfp_cancel_request", rule
        return "ohfp_machine_status", f"{CORE_CANCEL}; {rule}"

    def _cancel(self, hooks: Hooks, request: CloudRequest) -> None:
        """Cancel as core does: the hook, else terminate what status finds by the id alone."""
        if hooks.cancel_request(request):
            return
        snapshot = hooks.machine_status([request]).get(request.request_id, RequestSnapshot())
        owner = CloudRequest(
            request_id=request.request_id,
            kind=RequestKind.ACQUIRE,
            template_id=request.template_id,
            machine_count=request.machine_count,
            handle=dict(snapshot.handle or {}),
            machine_ids=tuple(m.machine_id for m in snapshot.machines),
        )
        hooks.terminate_machines(
            [ReturnItem(machine_id=m.machine_id, name=m.name, request=owner) for m in snapshot.machines]
        )

    def _inject_api_error(self, driver: CloudDriver) -> None:
        """Make the provider's next cloud call fail, or skip the test."""
        inject = capability(driver, "inject_api_error")
        if inject is None:
            pytest.skip("the cloud driver has no inject_api_error() to make the next cloud call fail")
        try:
            inject()
        except NotImplementedError:
            pytest.skip(
                "the cloud driver cannot inject API errors (inject_api_error raised NotImplementedError)"
            )

    def _needs(self, driver: CloudDriver, name: str, why: str) -> Callable[..., Any]:
        found = capability(driver, name)
        if found is None:
            pytest.skip(f"the cloud driver has no {name}() {why}")
        return found

    # templates ------------------------------------------------------------------------
    def test_offered_templates_are_valid(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_available_templates: every template offered is valid (id, maxNumber, the mandatory
        attributes as string pairs, no validation problem), with or without a templates file, the
        driver's template is kept, and nothing in the cloud changes (checked with
        ``driver.resources()``).
        """
        # With no templates file a provider may offer none (AWS) or built-in ones (mock);
        # whatever it offers must be valid.
        hook = "ohfp_available_templates"
        before = resources(cloud_driver)
        for given in ([], [cloud_driver.template()]):
            for template in hooks.available_templates(given):
                tid = template.template_id
                expect(TEMPLATE_ID_RE.match(tid), hook, f"offered id {tid!r}", "1-64 of [0-9A-Za-z_-]")
                expect(template.max_number >= -1, hook, f"{tid}: maxNumber {template.max_number}", "≥ -1")
                for name in MANDATORY_ATTRIBUTES:
                    expect(name in template.attributes, hook, f"{tid}: no {name}", "type, ncpus, nram")
                for name, attribute in template.attributes.items():
                    expect(
                        attribute.type in ATTRIBUTE_TYPES and isinstance(attribute.value, str),
                        hook,
                        f"{tid}: attribute {name} is {attribute!r}",
                        "each attribute is (String|Numeric|Boolean, a string value)",
                    )
                problems = hooks.validate_template(template)
                expect(problems == [], hook, f"{tid} fails validation: {problems}", "offer valid templates")
        ids = {template.template_id for template in hooks.available_templates([cloud_driver.template()])}
        expect(
            cloud_driver.template().template_id in ids,
            hook,
            "dropped the driver's template",
            "templates from the file are offered when the provider can serve them",
        )
        after = resources(cloud_driver)
        if before is not None and after is not None:
            expect(after == before, hook, f"changed the cloud: {_changes(before, after)}", UNCHANGED)

    def test_driver_template_validates(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_validate_template: the driver's template raises no problem."""
        problems = hooks.validate_template(cloud_driver.template())
        expect(problems == [], "ohfp_validate_template", f"rejects the driver's template: {problems}", "")

    # provisioning ----------------------------------------------------------------------
    def test_provision_handle_is_json(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: returns a Provisioned whose handle is JSON and whose machines are Machines."""
        hooks.provision(_request_id(), cloud_driver.template(), self.machine_count)  # KitHooks checks

    def test_provision_returns_at_once(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: returns while its machines still boot, not once they run (needs
        ``driver.machines_start_pending()`` to say True).
        """
        starts_pending = self._needs(cloud_driver, "machines_start_pending", "to say machines boot over time")
        if not starts_pending():
            pytest.skip("the cloud driver's machines_start_pending() says machines run at once")
        template = cloud_driver.template()
        request_id = _request_id()
        provisioned = hooks.provision(request_id, template, self.machine_count)
        request = self._acquire(request_id, template, provisioned)
        seen = [*provisioned.machines, *self._machines(hooks, request)]
        running = sorted({m.machine_id for m in seen if m.state is MachineState.RUNNING})
        expect(
            not running,
            "ohfp_provision",
            f"returned once {', '.join(running)} ran, although the cloud boots machines over time",
            "return at once and let machines boot while core polls ohfp_machine_status: a call that"
            " waits for them runs into Host Factory's time limit",
        )

    def test_provision_is_idempotent(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: a second call with the same request id makes nothing new (what it made
        is named: machines by status, anything else by ``driver.resources()``)."""
        hook = "ohfp_provision"
        rule = "idempotent on request_id: find what the first call made"
        template = cloud_driver.template()
        request_id = _request_id()
        first = self._acquire(request_id, template, hooks.provision(request_id, template, self.machine_count))
        self._settle(cloud_driver, self._delivered(hooks, first))
        made_first = _ids(self._machines(hooks, first))
        expect(
            len(made_first) == self.machine_count,
            hook,
            f"made {len(made_first)} machines for {self.machine_count} units",
            "count is units of capacity: one machine per unit of a template without weights",
        )
        before = resources(cloud_driver)
        provisioned = hooks.provision(request_id, template, self.machine_count)
        second = self._acquire(request_id, template, provisioned)
        self._settle(cloud_driver, self._delivered(hooks, second))
        seen = hooks.machine_status([first]).get(request_id, RequestSnapshot()).machines
        seen += hooks.machine_status([second]).get(request_id, RequestSnapshot()).machines
        made = sorted(_ids([*seen, *provisioned.machines]) - made_first)
        after = resources(cloud_driver)
        other = {k: v for k, v in (after or {}).items() if before is not None and k not in before}
        other = {k: v for k, v in other.items() if k not in made}
        what = ", ".join([*made, *(f"{k} ({v})" for k, v in sorted(other.items()))])
        expect(not what, hook, f"a second call for {request_id} made {what}", rule)

    def test_weighted_units(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: count is units of capacity; machines report their weight and their weights cover
        the count without a spare machine (needs ``driver.weighted_template()``).
        """
        make = capability(cloud_driver, "weighted_template")
        template = make() if make is not None else None
        if template is None:
            pytest.skip("the cloud driver offers no weighted_template() (no weighted instance types)")
        units = self.machine_count * 2
        request_id = _request_id()
        request = self._acquire(request_id, template, hooks.provision(request_id, template, units), units)
        self._settle(cloud_driver, self._delivered(hooks, request))
        machines = self._machines(hooks, request)
        weights = [m.weight for m in machines]
        rule = "count is units of capacity: machines report their weight, and their weights cover it"
        expect(max(weights, default=1) > 1, "ohfp_machine_status", f"weights {weights}", rule)
        expect(
            sum(weights) >= units and sum(weights) - max(weights) < units,
            "ohfp_provision",
            f"made machines weighing {weights} for {units} units",
            rule,
        )

    # status ----------------------------------------------------------------------------
    def test_status_after_settle(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: settled machines run, each with its own id, host name, private IP and
        launch time, and count one unit each for a template without weights.
        """
        _, machines = self._running(hooks, cloud_driver)
        hook = "ohfp_machine_status"
        expect(len(_ids(machines)) == self.machine_count, hook, "repeated a machine id", "one entry each")
        expect(
            len({m.name for m in machines}) == self.machine_count,
            hook,
            f"gave names {[m.name for m in machines]}",
            "each machine has its own host name",
        )
        for m in machines:
            expect(m.state is MachineState.RUNNING, hook, f"{m.machine_id} is {m.state}", "settled → running")
            expect(
                m.machine_id and m.name and m.private_ip and m.launch_time > 0,
                hook,
                f"reported {m!r}",
                "a running machine has an id, a host name, a private IP and a launch time (report it"
                " pending until it has its address)",
            )

    def test_status_answers_every_request(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: every acquire and return request whose machines the cloud knows is
        answered, alone and together; a return request lists its machines the cloud still knows.
        """
        one, machines = self._running(hooks, cloud_driver)
        two = self._provision(hooks, cloud_driver)
        returned = self._return(hooks, one, machines[:1])
        for request in (one, two):  # alone, then together
            self._snapshot(hooks, request)
        snapshots = hooks.machine_status([one, two, returned])
        for request in (one, two):
            expect(
                request.request_id in snapshots,
                "ohfp_machine_status",
                f"left out running {request.kind.value} request {request.request_id}",
                ANSWER,
            )
        self._check_return(snapshots, one, returned)
        self._check_return(hooks.machine_status([returned, one]), one, returned)

    def test_status_is_batched(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: two requests asked together each get their own machines."""
        one = self._provision(hooks, cloud_driver)
        two = self._provision(hooks, cloud_driver)
        self._settle(cloud_driver, lambda: self._delivered(hooks, one)() and self._delivered(hooks, two)())
        snapshots = hooks.machine_status([one, two])
        for request in (one, two):
            expect(
                request.request_id in snapshots,
                "ohfp_machine_status",
                f"left out running request {request.request_id} when asked with another",
                ANSWER,
            )
        ids_one = _ids(snapshots[one.request_id].machines)
        ids_two = _ids(snapshots[two.request_id].machines)
        expect(
            len(ids_one) == len(ids_two) == self.machine_count and not ids_one & ids_two,
            "ohfp_machine_status",
            f"gave {sorted(ids_one)} and {sorted(ids_two)} for two requests asked together",
            "each request gets its own machines",
        )

    def test_status_of_unknown_requests(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: requests and machines the cloud does not know are left out, not invented."""
        self._provision(hooks, cloud_driver)  # something exists that must not be reported
        unknown = CloudRequest(
            request_id=_request_id(), kind=RequestKind.ACQUIRE, template_id="x", machine_count=1
        )
        unknown_return = CloudRequest(
            request_id=_request_id("ret"), kind=RequestKind.RETURN, machine_ids=(UNKNOWN_ID,)
        )
        snapshots = hooks.machine_status([unknown, unknown_return])
        for request in (unknown, unknown_return):
            snapshot = snapshots.get(request.request_id)
            expect(
                snapshot is None or snapshot.machines == (),
                "ohfp_machine_status",
                f"reported machines for unknown request {request.request_id}: {snapshot}",
                "leave out what the cloud does not know",
            )

    # termination -----------------------------------------------------------------------
    def test_terminate_is_idempotent(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_terminate_machines: returning machines again, also once terminated, is not an error."""
        request, machines = self._running(hooks, cloud_driver)
        items = [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in machines]
        for when in ("first", "second", "settled"):
            if when == "settled":
                self._settle(cloud_driver, self._settled(hooks, request, (MachineState.TERMINATED,)))
            failures = hooks.terminate_machines(items)
            expect(
                failures == {},
                "ohfp_terminate_machines",
                f"refused {failures} on the {when} call",
                "idempotent: a machine already terminating or terminated is not an error",
            )

    def test_terminate_unknown_machine(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_terminate_machines: a host the cloud does not know, by id or by name, is gone, not an
        error.
        """
        for item in (
            ReturnItem(machine_id=UNKNOWN_ID, name=UNKNOWN_NAME),
            ReturnItem(machine_id="", name=UNKNOWN_NAME),
        ):
            failures = hooks.terminate_machines([item])
            expect(
                failures == {},
                "ohfp_terminate_machines",
                f"refused unknown host {item}: {failures}",
                "a host the cloud does not know is gone, not an error",
            )

    def test_terminate_by_name_only(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_terminate_machines: a host handed in by name alone (empty machine_id) is found and
        terminated, and only it.
        """
        request, machines = self._running(hooks, cloud_driver)
        named, kept = machines[0], machines[1:]
        failures = hooks.terminate_machines([ReturnItem(machine_id="", name=named.name)])
        expect(
            failures == {},
            "ohfp_terminate_machines",
            f"refused {named.name} named without an id: {failures}",
            "a host may come by name alone, with an empty machine_id: find it by name",
        )
        after = {m.machine_id: m for m in self._machines(hooks, request)}
        state = after[named.machine_id].state if named.machine_id in after else MachineState.TERMINATED
        expect(
            state in ENDING,
            "ohfp_terminate_machines",
            f"left {named.name} ({named.machine_id}) {state} when returned by name only",
            "a host may come by name alone, with an empty machine_id: find it by name",
        )
        for machine in kept:
            expect(
                machine.machine_id in after and after[machine.machine_id].state is MachineState.RUNNING,
                "ohfp_terminate_machines",
                f"also took {machine.machine_id} when only {named.name} was returned",
                "terminate only the hosts handed in",
            )

    def test_return_request_shows_machines_gone(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: a return request's machines are shutting down, then terminated; the
        request lists those the cloud still knows and may be left out once it knows none.
        """
        request, machines = self._running(hooks, cloud_driver)
        returned = self._return(hooks, request, machines)
        for settled in (False, True):
            if settled:
                self._settle(cloud_driver, self._settled(hooks, returned, (MachineState.TERMINATED,)))
            listed = self._check_return(hooks.machine_status([request, returned]), request, returned)
            allowed = (MachineState.TERMINATED,) if settled else ENDING
            for machine in listed:
                expect(
                    machine.state in allowed,
                    "ohfp_machine_status",
                    f"reported {machine.machine_id} {machine.state} for a return request",
                    "returned machines are shutting-down, then terminated",
                )

    def test_returned_machines_are_not_replaced(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_terminate_machines: what launched returned machines does not replace them."""
        request, machines = self._running(hooks, cloud_driver)
        self._return(hooks, request, machines)
        for _ in range(2):  # time for a fleet or group to launch replacements
            self._settle(cloud_driver, self._settled(hooks, request, (MachineState.TERMINATED,)))
        snapshot = hooks.machine_status([request]).get(request.request_id)
        after = snapshot.machines if snapshot else ()
        rule = "lower the target capacity of a fleet or group that would replace returned machines"
        expect(_ids(after) <= _ids(machines), "ohfp_terminate_machines", "machines were replaced", rule)
        expect(all(m.state.is_lost for m in after), "ohfp_terminate_machines", f"still up: {after}", rule)

    # cancelling ------------------------------------------------------------------------
    def test_cancel_removes_what_was_made(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_cancel_request: everything made for a request whose call died is deleted or on its way out,
        found by the request id alone; nothing is left that status or the reclaim check finds alive;
        idempotent; True for a request the cloud never saw. Without the hook, status must find the
        machines by the request id (core's fallback).
        """
        made = self._provision(hooks, cloud_driver)
        made_machines = self._machines(hooks, made)
        lost = CloudRequest(  # what core knows of a request whose provisioning call died
            request_id=made.request_id,
            kind=RequestKind.ACQUIRE,
            template_id=made.template_id,
            machine_count=made.machine_count,
        )
        hook, rule = self._cancel_rule(hooks, CANCEL)
        self._cancel(hooks, lost)
        for settled in (False, True):
            if settled:
                self._settle(cloud_driver, self._settled(hooks, made, (MachineState.TERMINATED,)))
            for asked in (lost, made):
                snapshot = hooks.machine_status([asked]).get(asked.request_id, RequestSnapshot())
                for machine in snapshot.machines:
                    expect(
                        machine.state in ((MachineState.TERMINATED,) if settled else ENDING),
                        hook,
                        f"left machine {machine.machine_id} {machine.state} after cancelling",
                        rule,
                    )
                expect(not snapshot.open, hook, "left the cloud request open to deliver machines", rule)
            refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in made_machines]
            taken = {r.name for r in hooks.reclaimed_machines(refs)}
            for machine in made_machines:
                expect(
                    machine.name in taken,
                    hook,
                    f"left {machine.name} up after cancelling (the reclaim check finds it alive)",
                    rule,
                )
        self._cancel(hooks, lost)  # idempotent: called again until it succeeds
        never = CloudRequest(request_id=_request_id(), kind=RequestKind.ACQUIRE, template_id="x")
        result = hooks.pm.hook.ohfp_cancel_request(request=never)
        expect(
            result is None or result is True,
            "ohfp_cancel_request",
            f"returned {result!r} for a request the cloud never saw",
            "True also when nothing was ever made",
        )

    def test_interrupted_provision_leaves_nothing(
        self, hooks: Hooks, next_hooks: Hooks, cloud_driver: CloudDriver
    ) -> None:
        """ohfp_cancel_request: a provisioning call killed right after the cloud made its machines,
        before the provider returned, leaves nothing once the next call cancels the request by its id
        alone, as core does for a call that died (needs ``driver.interrupt_after_create()`` and
        ``driver.resources()``; the cancel runs on ``next_provider``).
        """
        arm = self._needs(cloud_driver, "interrupt_after_create", "to interrupt a provisioning call")
        before = resources(cloud_driver)
        if before is None:
            pytest.skip("the cloud driver has no resources() to list what an interrupted provisioning made")
        fired: list[bool] = []

        def interrupt() -> None:
            fired.append(True)
            raise ProvisionInterrupted("the conformance kit interrupts ohfp_provision here, as a kill would")

        arm(interrupt)
        template = cloud_driver.template()
        request_id = _request_id()
        hook = "ohfp_provision"
        try:
            hooks.provision(request_id, template, self.machine_count)
        except ProvisionInterrupted:
            pass
        except Exception as exc:
            if not fired:
                raise
            violated(hook, f"raised {type_name(exc)} when the kit interrupted it: {exc}", NEVER_CATCH)
        else:
            if fired:
                violated(hook, "returned although the kit interrupted it", NEVER_CATCH)
            pytest.fail(
                "the cloud driver's interrupt_after_create() did not interrupt the provisioning: call"
                " interrupt() inside it, once the cloud has made the machines"
            )
        made = {k: v for k, v in (resources(cloud_driver) or {}).items() if k not in before}
        if not made:
            pytest.fail(
                "the cloud driver interrupted the provisioning before resources() listed anything it"
                " made: call interrupt() once the cloud has made the machines"
            )
        lost = CloudRequest(  # what core knows of a request whose provisioning call died
            request_id=request_id,
            kind=RequestKind.ACQUIRE,
            template_id=template.template_id,
            machine_count=self.machine_count,
        )
        self._cancel(next_hooks, lost)

        def left() -> dict[str, str]:
            return {k: v for k, v in (resources(cloud_driver) or {}).items() if k in made}

        self._settle(cloud_driver, lambda: not left())
        blamed, rule = self._cancel_rule(next_hooks, FINDABLE)
        remaining = left()
        expect(
            not remaining,
            blamed,
            f"left {_listed(remaining)} of {request_id} after its provisioning was interrupted once the"
            " cloud had made them",
            rule,
        )

    # reclaims --------------------------------------------------------------------------
    def test_reclaim_is_reported(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: a host the cloud takes away is reported with its notice (≤ 120 s), by id
        and by name alone (needs ``driver.take_away()``).
        """
        take_away = self._needs(cloud_driver, "take_away", "to take a machine away from outside")
        _, machines = self._running(hooks, cloud_driver)
        taken = machines[0]
        take_away(taken.machine_id)
        hook = "ohfp_reclaimed_machines"
        by_id = [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]
        self._settle(cloud_driver, lambda: bool(hooks.reclaimed_machines(by_id)), move_clock=False)
        for by_name in (False, True):
            refs = [MachineRef(name=m.name, machine_id=None if by_name else m.machine_id) for m in machines]
            reclaims = hooks.reclaimed_machines(refs)
            names = [r.name for r in reclaims]
            expect(
                names == [taken.name],
                hook,
                f"reported {names}{' for hosts known by name only' if by_name else ''}"
                f" after {taken.name} was taken away",
                "MachineRef.machine_id may be None: look the host up by name"
                if by_name
                else "report a host the cloud takes back, and only it",
            )
            expect(
                0 <= reclaims[0].grace_period <= MAX_NOTICE,
                hook,
                f"gave grace {reclaims[0].grace_period}",
                f"the seconds of notice left, at most {MAX_NOTICE}",
            )

    def test_healthy_machines_are_not_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: running hosts are left out, by id and by name alone."""
        _, machines = self._running(hooks, cloud_driver)
        fine = "hosts that are fine are left out"
        for by_name in (False, True):
            refs = [MachineRef(name=m.name, machine_id=None if by_name else m.machine_id) for m in machines]
            reported = [r.name for r in hooks.reclaimed_machines(refs)]
            expect(
                reported == [],
                "ohfp_reclaimed_machines",
                f"reported running hosts {reported}" + (" known by name only" if by_name else ""),
                f"{fine}; MachineRef.machine_id may be None: look the host up by name" if by_name else fine,
            )

    def test_pending_machines_are_not_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: machines still booting are left out."""
        request = self._provision(hooks, cloud_driver)
        machines = self._machines(hooks, request)  # pending, unless the cloud is immediate
        refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]
        reclaims = hooks.reclaimed_machines(refs)
        states = {m.name: m.state.value for m in machines}
        expect(
            reclaims == [],
            "ohfp_reclaimed_machines",
            f"reported {[(r.name, states.get(r.name)) for r in reclaims]}",
            "a pending machine is still booting, not being reclaimed",
        )

    def test_unknown_machine_is_reclaimed_at_once(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: a host the cloud does not know is reported with grace 0."""
        for ref in (MachineRef(name=UNKNOWN_NAME, machine_id=UNKNOWN_ID), MachineRef(name=UNKNOWN_NAME)):
            reclaims = [(r.name, r.grace_period) for r in hooks.reclaimed_machines([ref])]
            expect(
                reclaims == [(ref.name, 0)],
                "ohfp_reclaimed_machines",
                f"reported {reclaims} for a host the cloud does not know ({ref})",
                "a host the cloud no longer knows is reclaimed with grace 0",
            )

    def test_console_termination_is_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: a host terminated outside Host Factory is reported with grace 0
        (needs ``driver.terminate_outside()``)."""
        terminate = self._needs(cloud_driver, "terminate_outside", "to terminate a machine from outside")
        _, machines = self._running(hooks, cloud_driver)
        terminate(machines[0].machine_id)
        refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]

        def found() -> list[tuple[str, int]]:
            return [(r.name, r.grace_period) for r in hooks.reclaimed_machines(refs)]

        self._settle(cloud_driver, lambda: found() == [(machines[0].name, 0)])
        reported = found()
        expect(
            reported == [(machines[0].name, 0)],
            "ohfp_reclaimed_machines",
            f"reported {reported} after {machines[0].name} was terminated from the console",
            "a host terminated outside Host Factory is reclaimed with grace 0",
        )

    # errors and health -------------------------------------------------------------------
    def test_api_error_is_a_cloud_error(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: an API error the driver injects is raised as CloudError (needs
        ``driver.inject_api_error()``).
        """
        self._inject_api_error(cloud_driver)
        try:
            hooks.provision(_request_id(), cloud_driver.template(), self.machine_count)
        except CloudError:
            return
        violated(
            "ohfp_provision",
            "succeeded although the cloud call failed",
            "failures the cloud reports are raised as ohfp_core.errors.CloudError",
        )

    def test_health_checks_pass(self, hooks: Hooks) -> None:
        """ohfp_health_check: at least one check, all passing on a healthy test cloud."""
        checks = hooks.health_check()
        expect(checks, "ohfp_health_check", "returned no checks", "a provider reports at least one check")
        failed = [check for check in checks if not check.ok]
        expect(not failed, "ohfp_health_check", f"failed on a healthy test cloud: {failed}", "")

    def test_health_check_reports_a_failing_cloud(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_health_check: with the cloud's API failing, the checks are reported (a failed one with
        ok=False), not raised (needs ``driver.inject_api_error()``).
        """
        self._inject_api_error(cloud_driver)
        checks = hooks.health_check()  # KitHooks names an exception as the breach
        expect(
            checks,
            "ohfp_health_check",
            "returned no checks while the cloud failed",
            "a provider reports at least one check",
        )

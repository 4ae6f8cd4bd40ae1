"""The provider conformance kit: one pytest suite every provider package runs in its own CI.

How a provider package uses it (needs ``pip install ohfp-core[testing]``)::

    from ohfp_core.testing import ProviderContract

    class TestMyCloudContract(ProviderContract):
        @pytest.fixture
        def provider(self, tmp_path):           # the object your factory returns
            ctx = ProviderContext(instance="inst", provider_type="mycloud", confdir=tmp_path,
                                  workdir=tmp_path)
            return make_provider(ctx)

        @pytest.fixture
        def cloud_driver(self, provider):       # a CloudDriver for your test cloud
            return MyCloudDriver(...)

Each test checks one rule of the hook reference (``docs/hooks.md``) and, when it fails, says
which hook broke which rule: ``ohfp_machine_status: left out running request req-… (every
request handed in must be answered)``. Every result is type-checked before it is used, so a
provider returning a dict where a model belongs fails with the hook's name, not an
``AttributeError``. Each test gets fresh fixtures; the kit calls hooks through
:func:`ohfp_core.plugins.make_manager` and :class:`KitHooks` (core's :class:`Hooks`, with the
checks). Set ``machine_count`` to change how many machines each test asks for; override the
``extensions`` fixture to run the contract with extension plugins next to the provider.
ohfp-core registers this module as a pytest plugin (entry point ``pytest11``). Only this
module of ohfp-core imports pytest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import attrs
import pytest

from ohfp_core.errors import CloudError
from ohfp_core.models import (
    ATTRIBUTE_TYPES,
    MANDATORY_ATTRIBUTES,
    TEMPLATE_ID_RE,
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    MachineState,
    Provisioned,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.storage_contract import StorageContract as StorageContract

__all__ = ["CloudDriver", "ContractViolation", "KitHooks", "ProviderContract", "violated"]

MAX_SPOT_NOTICE = 120
ENDING = tuple(state for state in MachineState if state.is_ending)
"""States of a machine that is deleted or on its way out."""
UNKNOWN_ID = "i-0000000000000000f"
UNKNOWN_NAME = "ip-10-255-255-254.unknown.internal"


class CloudDriver(Protocol):
    """What the kit needs from a provider package's test cloud, besides the provider.

    ``template``, ``settle``, ``reclaim`` and ``terminate_outside`` are required. The kit also
    uses these methods when the driver has them, and skips the tests that need them (saying
    why) when it does not:

    - ``inject_api_error()``: make the provider's next cloud call fail (throttling,
      unavailable); raising NotImplementedError counts as missing.
    - ``weighted_template()``: a template whose machines each count for more than one unit
      (weighted instance types), or None when the provider has none.
    """

    def template(self) -> Template:
        """A valid template the provider can provision from right away."""
        ...

    def settle(self) -> None:
        """Let pending machines become running, and stopping ones terminated (advance a
        simulated clock; nothing for a cloud that is immediate)."""
        ...

    def reclaim(self, machine_id: str) -> None:
        """Give the machine a spot interruption notice (or otherwise start taking it back)."""
        ...

    def terminate_outside(self, machine_id: str) -> None:
        """Terminate the machine outside Host Factory, as from the cloud console."""
        ...


class ContractViolation(AssertionError):
    """A provider broke a rule of the hook reference; the message names the hook and the rule."""


def violated(hook: str, what: str, rule: str) -> NoReturn:
    """Fail the running test: ``<hook>: <what> (<rule>)``."""
    __tracebackhide__ = True
    raise ContractViolation(f"{hook}: {what} ({rule})")


def _expect(condition: object, hook: str, what: str, rule: str) -> None:
    __tracebackhide__ = True
    if not condition:
        violated(hook, what, rule)


def _type_name(value: object) -> str:
    return type(value).__name__


def _each(hook: str, values: object, kind: type, what: str) -> list[Any]:
    """``values`` as a list, every item a ``kind``, or the hook is named as the culprit."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        violated(hook, f"returned {_type_name(values)} as {what}", f"must be a sequence of {kind.__name__}")
    items = list(values)
    for item in items:
        _expect(
            isinstance(item, kind),
            hook,
            f"returned a {_type_name(item)} among {what}",
            f"results are ohfp_core.models objects: {kind.__name__}, never dicts or SDK objects",
        )
        for name, expected in _FIELD_TYPES.get(kind, {}).items():
            value = getattr(item, name)
            _expect(
                isinstance(value, expected) and not (expected is int and isinstance(value, bool)),
                hook,
                f"returned {kind.__name__}.{name} = {value!r} ({_type_name(value)})",
                f"{kind.__name__}.{name} is a {getattr(expected, '__name__', expected)}",
            )
    return items


_FIELD_TYPES: dict[type, dict[str, type]] = {
    Machine: {"machine_id": str, "name": str, "state": MachineState, "launch_time": int, "weight": int},
    Reclaim: {"name": str, "grace_period": int},
    HealthCheck: {"name": str, "ok": bool},
}
"""Fields attrs does not check by itself, checked so a wrong type fails naming the hook."""


def _answered(hook: str, result: object, valid: Callable[[Any], bool], must: str) -> None:
    """The one provider's answer exists and has the type ``must`` describes."""
    __tracebackhide__ = True
    _expect(result is not None, hook, "is not implemented", "every provider implements it")
    _expect(valid(result), hook, f"returned {_type_name(result)} {str(result)[:200]}", must)


class KitHooks(Hooks):
    """Core's :class:`Hooks`, checking each provider result's type before core would use it."""

    def available_templates(self, templates: Sequence[Template]) -> list[Template]:
        result = self.pm.hook.ohfp_available_templates(templates=tuple(templates))
        return _each("ohfp_available_templates", result, Template, "the templates")

    def provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        hook = "ohfp_provision"
        result = self.pm.hook.ohfp_provision(request_id=request_id, template=template, count=count)
        _answered(hook, result, lambda r: isinstance(r, Provisioned), "must be a Provisioned")
        try:
            json.dumps(result.handle)
        except (TypeError, ValueError) as exc:
            violated(hook, f"returned a handle that is not JSON ({exc})", "core stores the handle as JSON")
        _each(hook, result.machines, Machine, "Provisioned.machines")
        return result  # type: ignore[no-any-return]

    def machine_status(self, requests: Sequence[CloudRequest]) -> dict[str, RequestSnapshot]:
        hook = "ohfp_machine_status"
        if not requests:
            return {}
        result = self.pm.hook.ohfp_machine_status(requests=tuple(requests))
        _answered(
            hook,
            result,
            lambda r: isinstance(r, Mapping),
            "must be a mapping of request id to RequestSnapshot",
        )
        asked = {request.request_id for request in requests}
        for key, snapshot in result.items():
            _expect(
                key in asked, hook, f"answered {key!r}, which was not asked about", "answer by request id"
            )
            _expect(
                isinstance(snapshot, RequestSnapshot),
                hook,
                f"returned a {_type_name(snapshot)} for {key}",
                "each answer is a RequestSnapshot",
            )
            _each(hook, snapshot.machines, Machine, f"the machines of {key}")
        return dict(result)

    def terminate_machines(self, machines: Sequence[ReturnItem]) -> dict[str, str]:
        hook = "ohfp_terminate_machines"
        if not machines:
            return {}
        result = self.pm.hook.ohfp_terminate_machines(machines=tuple(machines))
        _answered(
            hook,
            result,
            lambda r: (
                isinstance(r, Mapping)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in r.items())
            ),
            "must be a mapping of machine id (or name) to an error message",
        )
        return dict(result)

    def cancel_request(self, request: CloudRequest) -> bool:
        result = self.pm.hook.ohfp_cancel_request(request=request)
        _expect(
            result is None or isinstance(result, bool),
            "ohfp_cancel_request",
            f"returned {result!r}",
            "must be True once everything is removed, or the hook left out",
        )
        return bool(result)

    def reclaimed_machines(self, machines: Sequence[MachineRef]) -> list[Reclaim]:
        if not machines:
            return []
        result = self.pm.hook.ohfp_reclaimed_machines(machines=tuple(machines))
        return _each("ohfp_reclaimed_machines", result, Reclaim, "the reclaims")

    def health_check(self) -> list[HealthCheck]:
        checks: list[HealthCheck] = []
        for result in self.pm.hook.ohfp_health_check():
            checks += _each("ohfp_health_check", result or (), HealthCheck, "the checks")
        return checks


def _request_id(prefix: str = "req") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _ids(machines: Iterable[Machine]) -> set[str]:
    return {machine.machine_id for machine in machines}


class ProviderContract:
    """Conformance tests of the provider contract (:mod:`ohfp_core.hookspecs`).

    Subclass it in a test module and provide the fixtures ``provider`` and ``cloud_driver``.
    """

    machine_count = 2
    """How many machines each test requests; at least 2."""

    # fixtures and helpers -------------------------------------------------------------
    @pytest.fixture
    def extensions(self) -> Sequence[tuple[str, object]]:
        """Extension plugins registered next to the provider, as ``(name, plugin)``, already
        configured (override to run the contract with them; none by default)."""
        return ()

    @pytest.fixture
    def hooks(self, provider: object, extensions: Sequence[tuple[str, object]]) -> Iterator[Hooks]:
        pm = make_manager(provider, provider_name="under-test", extensions=extensions)
        yield KitHooks(pm, "under-test")
        for name, _ in extensions:
            pm.unregister(name=name)
        pm.unregister(provider)

    def _provision(self, hooks: Hooks, driver: CloudDriver, template: Template | None = None) -> CloudRequest:
        template = template or driver.template()
        request_id = _request_id()
        provisioned = hooks.provision(request_id, template, self.machine_count)
        return self._acquire(request_id, template, provisioned)

    def _acquire(self, request_id: str, template: Template, provisioned: Provisioned) -> CloudRequest:
        return CloudRequest(
            request_id=request_id,
            kind=RequestKind.ACQUIRE,
            template_id=template.template_id,
            machine_count=self.machine_count,
            handle=json.loads(json.dumps(provisioned.handle)),  # what core stores and hands back
            machine_ids=tuple(machine.machine_id for machine in provisioned.machines),
        )

    def _snapshot(self, hooks: Hooks, request: CloudRequest) -> RequestSnapshot:
        snapshot = hooks.machine_status([request]).get(request.request_id)
        if snapshot is None:
            violated(
                "ohfp_machine_status",
                f"left out running request {request.request_id}",
                "every request handed in must be answered",
            )
        return snapshot

    def _machines(self, hooks: Hooks, request: CloudRequest) -> tuple[Machine, ...]:
        return self._snapshot(hooks, request).machines

    def _running(self, hooks: Hooks, driver: CloudDriver) -> tuple[CloudRequest, tuple[Machine, ...]]:
        request = self._provision(hooks, driver)
        driver.settle()
        machines = self._machines(hooks, request)
        _expect(
            len(machines) == self.machine_count,
            "ohfp_machine_status",
            f"reported {len(machines)} machines for a request of {self.machine_count}",
            "an acquire request's snapshot lists every machine made for it",
        )
        return attrs.evolve(request, machine_ids=tuple(m.machine_id for m in machines)), machines

    def _return(self, hooks: Hooks, request: CloudRequest, machines: Sequence[Machine]) -> CloudRequest:
        items = [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in machines]
        failures = hooks.terminate_machines(items)
        _expect(
            failures == {}, "ohfp_terminate_machines", f"refused {failures}", "running machines terminate"
        )
        return CloudRequest(
            request_id=_request_id("ret"),
            kind=RequestKind.RETURN,
            machine_ids=tuple(m.machine_id for m in machines),
        )

    # templates ------------------------------------------------------------------------
    def test_offered_templates_are_valid(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_available_templates: every template offered is valid (id, maxNumber, the mandatory
        attributes as string pairs, no validation problem), with or without a templates file, and the
        driver's template is kept.
        """
        # With no templates file a provider may offer none (AWS) or built-in ones (mock);
        # whatever it offers must be valid.
        hook = "ohfp_available_templates"
        for given in ([], [cloud_driver.template()]):
            for template in hooks.available_templates(given):
                tid = template.template_id
                _expect(TEMPLATE_ID_RE.match(tid), hook, f"offered id {tid!r}", "1-64 of [0-9A-Za-z_-]")
                _expect(template.max_number >= -1, hook, f"{tid}: maxNumber {template.max_number}", "≥ -1")
                for name in MANDATORY_ATTRIBUTES:
                    _expect(name in template.attributes, hook, f"{tid}: no {name}", "type, ncpus, nram")
                for name, attribute in template.attributes.items():
                    _expect(
                        attribute.type in ATTRIBUTE_TYPES and isinstance(attribute.value, str),
                        hook,
                        f"{tid}: attribute {name} is {attribute!r}",
                        "each attribute is (String|Numeric|Boolean, a string value)",
                    )
                problems = hooks.validate_template(template)
                _expect(problems == [], hook, f"{tid} fails validation: {problems}", "offer valid templates")
        ids = {template.template_id for template in hooks.available_templates([cloud_driver.template()])}
        _expect(
            cloud_driver.template().template_id in ids,
            hook,
            "dropped the driver's template",
            "templates from the file are offered when the provider can serve them",
        )

    def test_driver_template_validates(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_validate_template: the driver's template raises no problem."""
        problems = hooks.validate_template(cloud_driver.template())
        _expect(problems == [], "ohfp_validate_template", f"rejects the driver's template: {problems}", "")

    # provisioning ----------------------------------------------------------------------
    def test_provision_handle_is_json(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: returns a Provisioned whose handle is JSON and whose machines are Machines."""
        hooks.provision(_request_id(), cloud_driver.template(), self.machine_count)  # KitHooks checks

    def test_provision_is_idempotent(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: a second call with the same request id makes nothing new."""
        template = cloud_driver.template()
        request_id = _request_id()
        first = self._acquire(request_id, template, hooks.provision(request_id, template, self.machine_count))
        second = self._acquire(
            request_id, template, hooks.provision(request_id, template, self.machine_count)
        )
        cloud_driver.settle()
        ids_first = _ids(self._machines(hooks, first))
        ids_second = _ids(self._machines(hooks, second))
        _expect(
            len(ids_first) == self.machine_count and ids_first == ids_second,
            "ohfp_provision",
            f"a second call for {request_id} made {sorted(ids_second - ids_first)}",
            "idempotent on request_id: find what the first call made",
        )

    def test_weighted_units(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: count is units of capacity; machines report their weight and their weights cover
        the count without a spare machine (needs ``driver.weighted_template()``).
        """
        make = getattr(cloud_driver, "weighted_template", None)
        template = make() if make is not None else None
        if template is None:
            pytest.skip("the cloud driver offers no weighted_template() (no weighted instance types)")
        units = self.machine_count * 2
        request_id = _request_id()
        request = self._acquire(request_id, template, hooks.provision(request_id, template, units))
        cloud_driver.settle()
        machines = self._machines(hooks, request)
        weights = [m.weight for m in machines]
        rule = "count is units of capacity: machines report their weight, and their weights cover it"
        _expect(max(weights, default=1) > 1, "ohfp_machine_status", f"weights {weights}", rule)
        _expect(
            sum(weights) >= units and sum(weights) - max(weights) < units,
            "ohfp_provision",
            f"made machines weighing {weights} for {units} units",
            rule,
        )

    # status ----------------------------------------------------------------------------
    def test_status_after_settle(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: settled machines run, each with its own id, host name, private IP and
        launch time.
        """
        _, machines = self._running(hooks, cloud_driver)
        hook = "ohfp_machine_status"
        _expect(len(_ids(machines)) == self.machine_count, hook, "repeated a machine id", "one entry each")
        _expect(
            len({m.name for m in machines}) == self.machine_count,
            hook,
            f"gave names {[m.name for m in machines]}",
            "each machine has its own host name",
        )
        for m in machines:
            _expect(
                m.state is MachineState.RUNNING, hook, f"{m.machine_id} is {m.state}", "settled → running"
            )
            _expect(
                m.machine_id and m.name and m.private_ip and m.launch_time > 0,
                hook,
                f"reported {m!r}",
                "a running machine has an id, a host name, a private IP and a launch time",
            )

    def test_status_answers_every_request(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: every running acquire and return request handed in is answered, alone and
        together; a return request lists its machines.
        """
        one, machines = self._running(hooks, cloud_driver)
        two = self._provision(hooks, cloud_driver)
        returned = self._return(hooks, one, machines[:1])
        for request in (one, two, returned):  # alone, then together
            self._snapshot(hooks, request)
        snapshots = hooks.machine_status([one, two, returned])
        for request in (one, two, returned):
            _expect(
                request.request_id in snapshots,
                "ohfp_machine_status",
                f"left out running {request.kind.value} request {request.request_id}",
                "every request handed in must be answered",
            )
        listed = _ids(snapshots[returned.request_id].machines)
        _expect(
            listed == set(returned.machine_ids),
            "ohfp_machine_status",
            f"listed {sorted(listed)} for {returned.request_id}, returning {list(returned.machine_ids)}",
            "a return request's snapshot describes its machine_ids the cloud still knows",
        )

    def test_status_is_batched(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: two requests asked together each get their own machines."""
        one = self._provision(hooks, cloud_driver)
        two = self._provision(hooks, cloud_driver)
        cloud_driver.settle()
        snapshots = hooks.machine_status([one, two])
        for request in (one, two):
            _expect(
                request.request_id in snapshots,
                "ohfp_machine_status",
                f"left out running request {request.request_id} when asked with another",
                "every request handed in must be answered",
            )
        ids_one = _ids(snapshots[one.request_id].machines)
        ids_two = _ids(snapshots[two.request_id].machines)
        _expect(
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
            _expect(
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
                cloud_driver.settle()
            failures = hooks.terminate_machines(items)
            _expect(
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
            _expect(
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
        _expect(
            failures == {},
            "ohfp_terminate_machines",
            f"refused {named.name} named without an id: {failures}",
            "a host may come by name alone, with an empty machine_id: find it by name",
        )
        after = {m.machine_id: m for m in self._machines(hooks, request)}
        state = after[named.machine_id].state if named.machine_id in after else MachineState.TERMINATED
        _expect(
            state in ENDING,
            "ohfp_terminate_machines",
            f"left {named.name} ({named.machine_id}) {state} when returned by name only",
            "a host may come by name alone, with an empty machine_id: find it by name",
        )
        for machine in kept:
            _expect(
                machine.machine_id in after and after[machine.machine_id].state is MachineState.RUNNING,
                "ohfp_terminate_machines",
                f"also took {machine.machine_id} when only {named.name} was returned",
                "terminate only the hosts handed in",
            )

    def test_return_request_shows_machines_gone(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_machine_status: a return request's machines are shutting down, then terminated."""
        request, machines = self._running(hooks, cloud_driver)
        returned = self._return(hooks, request, machines)
        for settled in (False, True):
            snapshot = hooks.machine_status([returned]).get(returned.request_id)
            _expect(
                settled or snapshot is not None,
                "ohfp_machine_status",
                f"left out running return request {returned.request_id}",
                "every request handed in must be answered",
            )
            allowed = (MachineState.TERMINATED,) if settled else ENDING
            for machine in snapshot.machines if snapshot else ():
                _expect(
                    machine.machine_id in returned.machine_ids and machine.state in allowed,
                    "ohfp_machine_status",
                    f"reported {machine.machine_id} {machine.state} for a return request",
                    "returned machines are shutting-down, then terminated",
                )
            cloud_driver.settle()

    def test_returned_machines_are_not_replaced(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_terminate_machines: what launched returned machines does not replace them."""
        request, machines = self._running(hooks, cloud_driver)
        self._return(hooks, request, machines)
        cloud_driver.settle()
        cloud_driver.settle()
        snapshot = hooks.machine_status([request]).get(request.request_id)
        after = snapshot.machines if snapshot else ()
        rule = "lower the target capacity of a fleet or group that would replace returned machines"
        _expect(_ids(after) <= _ids(machines), "ohfp_terminate_machines", "machines were replaced", rule)
        _expect(all(m.state.is_lost for m in after), "ohfp_terminate_machines", f"still up: {after}", rule)

    # cancelling ------------------------------------------------------------------------
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
        if hooks.pm.hook.ohfp_cancel_request.get_hookimpls():
            hook = "ohfp_cancel_request"
            rule = "everything made for the request is deleted or on its way out, found by the request id"
        else:
            hook = "ohfp_machine_status"
            rule = (
                "without ohfp_cancel_request core terminates what status finds by the request id alone"
                " (empty handle)"
            )
        self._cancel(hooks, lost)
        for settled in (False, True):
            for asked in (lost, made):
                snapshot = hooks.machine_status([asked]).get(asked.request_id, RequestSnapshot())
                for machine in snapshot.machines:
                    _expect(
                        machine.state in ((MachineState.TERMINATED,) if settled else ENDING),
                        hook,
                        f"left machine {machine.machine_id} {machine.state} after cancelling",
                        rule,
                    )
                _expect(not snapshot.open, hook, "left the cloud request open to deliver machines", rule)
            refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in made_machines]
            taken = {r.name for r in hooks.reclaimed_machines(refs)}
            for machine in made_machines:
                _expect(
                    machine.name in taken,
                    hook,
                    f"left {machine.name} up after cancelling (the reclaim check finds it alive)",
                    rule,
                )
            cloud_driver.settle()
        self._cancel(hooks, lost)  # idempotent: called again until it succeeds
        never = CloudRequest(request_id=_request_id(), kind=RequestKind.ACQUIRE, template_id="x")
        result = hooks.pm.hook.ohfp_cancel_request(request=never)
        _expect(
            result is None or result is True,
            "ohfp_cancel_request",
            f"returned {result!r} for a request the cloud never saw",
            "True also when nothing was ever made",
        )

    # reclaims --------------------------------------------------------------------------
    def test_reclaim_is_reported(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: an interrupted host is reported with its notice (≤ 120 s), by id and by
        name alone.
        """
        _, machines = self._running(hooks, cloud_driver)
        taken = machines[0]
        cloud_driver.reclaim(taken.machine_id)
        hook = "ohfp_reclaimed_machines"
        for by_name in (False, True):
            refs = [MachineRef(name=m.name, machine_id=None if by_name else m.machine_id) for m in machines]
            reclaims = hooks.reclaimed_machines(refs)
            names = [r.name for r in reclaims]
            _expect(
                names == [taken.name],
                hook,
                f"reported {names}{' for hosts known by name only' if by_name else ''}"
                f" after {taken.name} was interrupted",
                "MachineRef.machine_id may be None: look the host up by name" if by_name else "spot notice",
            )
            _expect(
                0 <= reclaims[0].grace_period <= MAX_SPOT_NOTICE,
                hook,
                f"gave grace {reclaims[0].grace_period}",
                f"the seconds of notice left, at most {MAX_SPOT_NOTICE}",
            )

    def test_healthy_machines_are_not_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: running hosts are left out, by id and by name alone."""
        _, machines = self._running(hooks, cloud_driver)
        fine = "hosts that are fine are left out"
        for by_name in (False, True):
            refs = [MachineRef(name=m.name, machine_id=None if by_name else m.machine_id) for m in machines]
            reported = [r.name for r in hooks.reclaimed_machines(refs)]
            _expect(
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
        _expect(
            reclaims == [],
            "ohfp_reclaimed_machines",
            f"reported {[(r.name, states.get(r.name)) for r in reclaims]}",
            "a pending machine is still booting, not being reclaimed",
        )

    def test_unknown_machine_is_reclaimed_at_once(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: a host the cloud does not know is reported with grace 0."""
        for ref in (MachineRef(name=UNKNOWN_NAME, machine_id=UNKNOWN_ID), MachineRef(name=UNKNOWN_NAME)):
            reclaims = [(r.name, r.grace_period) for r in hooks.reclaimed_machines([ref])]
            _expect(
                reclaims == [(ref.name, 0)],
                "ohfp_reclaimed_machines",
                f"reported {reclaims} for a host the cloud does not know ({ref})",
                "a host the cloud no longer knows is reclaimed with grace 0",
            )

    def test_console_termination_is_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_reclaimed_machines: a host terminated outside Host Factory is reported with grace 0."""
        _, machines = self._running(hooks, cloud_driver)
        cloud_driver.terminate_outside(machines[0].machine_id)
        cloud_driver.settle()
        reclaims = hooks.reclaimed_machines(
            [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]
        )
        found = [(r.name, r.grace_period) for r in reclaims]
        _expect(
            found == [(machines[0].name, 0)],
            "ohfp_reclaimed_machines",
            f"reported {found} after {machines[0].name} was terminated from the console",
            "a host terminated outside Host Factory is reclaimed with grace 0",
        )

    # errors and health -------------------------------------------------------------------
    def test_api_error_is_a_cloud_error(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        """ohfp_provision: an API error the driver injects is raised as CloudError (needs
        ``driver.inject_api_error()``).
        """
        inject = getattr(cloud_driver, "inject_api_error", None)
        if inject is None:
            pytest.skip("the cloud driver has no inject_api_error() to make the next cloud call fail")
        try:
            inject()
        except NotImplementedError:
            pytest.skip(
                "the cloud driver cannot inject API errors (inject_api_error raised NotImplementedError)"
            )
        rule = "failures the cloud reports are raised as ohfp_core.errors.CloudError"
        try:
            hooks.provision(_request_id(), cloud_driver.template(), self.machine_count)
        except CloudError:
            return
        except ContractViolation:
            raise
        except Exception as exc:
            violated("ohfp_provision", f"raised {_type_name(exc)}: {exc} on an injected API error", rule)
        violated("ohfp_provision", "succeeded although the cloud call failed", rule)

    def test_health_checks_pass(self, hooks: Hooks) -> None:
        """ohfp_health_check: at least one check, all passing on a healthy test cloud."""
        checks = hooks.health_check()
        _expect(checks, "ohfp_health_check", "returned no checks", "a provider reports at least one check")
        failed = [check for check in checks if not check.ok]
        _expect(not failed, "ohfp_health_check", f"failed on a healthy test cloud: {failed}", "")

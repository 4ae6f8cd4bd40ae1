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

Each test gets fresh fixtures; the kit calls hooks through :func:`ohfp_core.plugins.make_manager`
and :class:`ohfp_core.plugins.Hooks`, exactly as core does. Set ``machine_count`` to change how
many machines each test asks for. ohfp-core registers this module as a pytest plugin
(entry point ``pytest11``), so its asserts are rewritten for detailed messages. Only this
module of ohfp-core imports pytest.
"""

# A pytest suite shipped in the package: its checks are plain asserts.

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Protocol

import pytest

from ohfp_core.errors import CloudError
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
    ReturnItem,
    Template,
)
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.storage_contract import StorageContract as StorageContract

__all__ = ["CloudDriver", "ProviderContract"]

MAX_SPOT_NOTICE = 120


class CloudDriver(Protocol):
    """What the kit needs from a provider package's test cloud, besides the provider."""

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

    def inject_api_error(self) -> None:
        """Make the provider's next cloud call fail (throttling, unavailable). Optional: raise
        NotImplementedError, or leave the method out, and the test is skipped."""
        ...


def _request_id(prefix: str = "req") -> str:
    return f"{prefix}-{uuid.uuid4()}"


class ProviderContract:
    """Conformance tests of the provider contract (:mod:`ohfp_core.hookspecs`).

    Subclass it in a test module and provide the fixtures ``provider`` and ``cloud_driver``.
    """

    machine_count = 2
    """How many machines each test requests; at least 2."""

    # fixtures and helpers -------------------------------------------------------------
    @pytest.fixture
    def hooks(self, provider: object) -> Iterator[Hooks]:
        pm = make_manager(provider, provider_name="under-test")
        yield Hooks(pm, "under-test")
        pm.unregister(provider)

    def _provision(self, hooks: Hooks, driver: CloudDriver) -> CloudRequest:
        template = driver.template()
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

    def _machines(self, hooks: Hooks, request: CloudRequest) -> tuple[Machine, ...]:
        snapshot = hooks.machine_status([request]).get(request.request_id)
        assert snapshot is not None, f"machine_status left out the known request {request.request_id}"
        return snapshot.machines

    def _running(self, hooks: Hooks, driver: CloudDriver) -> tuple[CloudRequest, tuple[Machine, ...]]:
        request = self._provision(hooks, driver)
        driver.settle()
        machines = self._machines(hooks, request)
        assert len(machines) == self.machine_count
        return request, machines

    def _return(self, hooks: Hooks, request: CloudRequest, machines: Sequence[Machine]) -> CloudRequest:
        items = [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in machines]
        assert hooks.terminate_machines(items) == {}
        return CloudRequest(
            request_id=_request_id("ret"),
            kind=RequestKind.RETURN,
            machine_ids=tuple(m.machine_id for m in machines),
        )

    # templates ------------------------------------------------------------------------
    def test_offered_templates_are_valid(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        # With no templates file a provider may offer none (AWS) or built-in ones (mock);
        # whatever it offers must be valid.
        for given in ([], [cloud_driver.template()]):
            offered = hooks.available_templates(given)
            for template in offered:
                assert isinstance(template, Template)
                assert TEMPLATE_ID_RE.match(template.template_id)
                assert template.max_number >= -1
                for name in MANDATORY_ATTRIBUTES:
                    assert name in template.attributes, f"{template.template_id}: attribute {name} missing"
                for attribute in template.attributes.values():
                    assert attribute.type in ATTRIBUTE_TYPES
                    assert isinstance(attribute.value, str)
                assert hooks.validate_template(template) == [], template.template_id
        ids = {template.template_id for template in hooks.available_templates([cloud_driver.template()])}
        assert cloud_driver.template().template_id in ids, "the driver's template is offered"

    def test_driver_template_validates(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        assert hooks.validate_template(cloud_driver.template()) == []

    # provisioning ----------------------------------------------------------------------
    def test_provision_handle_is_json(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        provisioned = hooks.provision(_request_id(), cloud_driver.template(), self.machine_count)
        assert isinstance(provisioned, Provisioned)
        json.dumps(provisioned.handle)
        assert all(isinstance(machine, Machine) for machine in provisioned.machines)

    def test_provision_is_idempotent(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        template = cloud_driver.template()
        request_id = _request_id()
        first = self._acquire(request_id, template, hooks.provision(request_id, template, self.machine_count))
        second = self._acquire(
            request_id, template, hooks.provision(request_id, template, self.machine_count)
        )
        cloud_driver.settle()
        ids_first = {m.machine_id for m in self._machines(hooks, first)}
        ids_second = {m.machine_id for m in self._machines(hooks, second)}
        assert len(ids_first) == self.machine_count
        assert ids_first == ids_second, "a second call created machines"

    def test_status_after_settle(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        _, machines = self._running(hooks, cloud_driver)
        assert len({m.machine_id for m in machines}) == self.machine_count
        assert len({m.name for m in machines}) == self.machine_count
        for machine in machines:
            assert machine.state is MachineState.RUNNING, machine
            assert machine.machine_id and machine.name and machine.private_ip
            assert machine.launch_time > 0

    def test_status_is_batched(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        one = self._provision(hooks, cloud_driver)
        two = self._provision(hooks, cloud_driver)
        cloud_driver.settle()
        snapshots = hooks.machine_status([one, two])
        assert set(snapshots) == {one.request_id, two.request_id}
        ids_one = {m.machine_id for m in snapshots[one.request_id].machines}
        ids_two = {m.machine_id for m in snapshots[two.request_id].machines}
        assert len(ids_one) == len(ids_two) == self.machine_count
        assert not ids_one & ids_two

    def test_status_of_unknown_requests(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        self._provision(hooks, cloud_driver)  # something exists that must not be reported
        unknown = CloudRequest(
            request_id=_request_id(), kind=RequestKind.ACQUIRE, template_id="x", machine_count=1
        )
        unknown_return = CloudRequest(
            request_id=_request_id("ret"), kind=RequestKind.RETURN, machine_ids=("i-0000000000000000f",)
        )
        snapshots = hooks.machine_status([unknown, unknown_return])
        for request in (unknown, unknown_return):
            snapshot = snapshots.get(request.request_id)
            assert snapshot is None or snapshot.machines == (), snapshot

    # termination -----------------------------------------------------------------------
    def test_terminate_is_idempotent(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        request, machines = self._running(hooks, cloud_driver)
        items = [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in machines]
        assert hooks.terminate_machines(items) == {}
        assert hooks.terminate_machines(items) == {}
        cloud_driver.settle()
        assert hooks.terminate_machines(items) == {}

    def test_terminate_unknown_machine(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        unknown = ReturnItem(machine_id="i-0000000000000000f", name="ip-10-255-255-254.unknown.internal")
        assert hooks.terminate_machines([unknown]) == {}

    def test_return_request_shows_machines_gone(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        request, machines = self._running(hooks, cloud_driver)
        returned = self._return(hooks, request, machines)
        for settled in (False, True):
            snapshot = hooks.machine_status([returned]).get(returned.request_id)
            for machine in snapshot.machines if snapshot else ():
                assert machine.machine_id in returned.machine_ids
                allowed = (
                    (MachineState.TERMINATED,)
                    if settled
                    else (MachineState.SHUTTING_DOWN, MachineState.TERMINATED)
                )
                assert machine.state in allowed, machine
            cloud_driver.settle()

    def test_returned_machines_are_not_replaced(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        request, machines = self._running(hooks, cloud_driver)
        self._return(hooks, request, machines)
        cloud_driver.settle()
        cloud_driver.settle()
        snapshot = hooks.machine_status([request]).get(request.request_id)
        after = snapshot.machines if snapshot else ()
        assert {m.machine_id for m in after} <= {m.machine_id for m in machines}, "machines were replaced"
        assert all(m.state.is_gone for m in after), after

    # reclaims --------------------------------------------------------------------------
    def test_reclaim_is_reported(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        _, machines = self._running(hooks, cloud_driver)
        taken, healthy = machines[0], machines[1]
        cloud_driver.reclaim(taken.machine_id)
        reclaims = hooks.reclaimed_machines(
            [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]
        )
        assert [r.name for r in reclaims] == [taken.name], reclaims
        assert 0 <= reclaims[0].grace_period <= MAX_SPOT_NOTICE
        assert healthy.name not in {r.name for r in reclaims}

    def test_healthy_machines_are_not_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        _, machines = self._running(hooks, cloud_driver)
        assert (
            hooks.reclaimed_machines([MachineRef(name=m.name, machine_id=m.machine_id) for m in machines])
            == []
        )

    def test_unknown_machine_is_reclaimed_at_once(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        ref = MachineRef(name="ip-10-255-255-254.unknown.internal", machine_id="i-0000000000000000f")
        reclaims = hooks.reclaimed_machines([ref])
        assert [(r.name, r.grace_period) for r in reclaims] == [(ref.name, 0)]

    def test_console_termination_is_reclaimed(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        _, machines = self._running(hooks, cloud_driver)
        cloud_driver.terminate_outside(machines[0].machine_id)
        cloud_driver.settle()
        reclaims = hooks.reclaimed_machines(
            [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]
        )
        assert [(r.name, r.grace_period) for r in reclaims] == [(machines[0].name, 0)]

    # errors and health -------------------------------------------------------------------
    def test_api_error_is_a_cloud_error(self, hooks: Hooks, cloud_driver: CloudDriver) -> None:
        inject = getattr(cloud_driver, "inject_api_error", None)
        if inject is None:
            pytest.skip("the cloud driver cannot inject API errors")
        try:
            inject()
        except NotImplementedError:
            pytest.skip("the cloud driver cannot inject API errors")
        with pytest.raises(CloudError):
            hooks.provision(_request_id(), cloud_driver.template(), self.machine_count)

    def test_health_checks_pass(self, hooks: Hooks) -> None:
        checks = hooks.health_check()
        assert all(check.ok for check in checks), checks

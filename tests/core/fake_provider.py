"""A tiny in-memory provider for core's tests: it does exactly what the test tells it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ohfp_core import hookimpl
from ohfp_core.errors import CloudError
from ohfp_core.models import (
    Attribute,
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    MachineState,
    Problem,
    Provisioned,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)

ATTRS = {
    "type": Attribute("String", "X86_64"),
    "ncpus": Attribute("Numeric", "2"),
    "nram": Attribute("Numeric", "4096"),
}


class FakeCloud:
    """Provider hookimpls over dicts. Machines start pending; ``boot()`` makes them run."""

    def __init__(self) -> None:
        self.machines: dict[str, Machine] = {}
        self.by_request: dict[str, list[str]] = {}
        self.open: dict[str, bool] = {}
        self.calls: list[str] = []
        self.fail_next: CloudError | None = None
        self.deliver: int | None = None  # deliver at most this many machines per request
        self.reclaims: dict[str, int] = {}
        self.templates: list[Template] | None = None
        self.instant = False  # machines run at once and come back from provisioning
        self.returned: list[ReturnItem] = []  # every ReturnItem the provider was given
        self.refuse: set[str] = set()  # machine ids (or names) whose termination fails
        self.terminate_error: CloudError | None = None  # terminate raises this
        self.forget_ended = False  # status leaves out terminated machines and requests with none left
        self._ids = itertools.count(1)

    # control ---------------------------------------------------------------------------
    def boot(self) -> None:
        for mid, machine in self.machines.items():
            if machine.state is MachineState.PENDING:
                self.machines[mid] = attrs.evolve(machine, state=MachineState.RUNNING)

    def set_state(self, machine_id: str, state: MachineState, message: str = "") -> None:
        self.machines[machine_id] = attrs.evolve(self.machines[machine_id], state=state, message=message)

    def _raise_if_asked(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    # hooks -------------------------------------------------------------------------------
    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template] | None:
        self.calls.append("templates")
        if self.templates is not None:
            return self.templates
        return None

    @hookimpl
    def ohfp_validate_template(self, template: Template) -> list[Problem]:
        bad = [key for key in template.fields if key.startswith("bad")]
        return [Problem(key, "not allowed") for key in bad]

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        self.calls.append(f"provision:{request_id}")
        self._raise_if_asked()
        if request_id not in self.by_request:
            n = count if self.deliver is None else min(count, self.deliver)
            ids = []
            for _ in range(n):
                k = next(self._ids)
                mid = f"i-{k:017x}"
                self.machines[mid] = Machine(
                    machine_id=mid,
                    name=f"host-{k}.fake",
                    state=MachineState.PENDING,
                    private_ip=f"10.0.0.{k}",
                    launch_time=1_700_000_000 + k,
                )
                ids.append(mid)
            self.by_request[request_id] = ids
            self.open[request_id] = n < count and self.deliver is None
        ids = self.by_request[request_id]
        if self.instant:
            self.boot()
            return Provisioned(handle={"ids": ids}, machines=tuple(self.machines[i] for i in ids))
        return Provisioned(handle={"ids": ids})

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        self.calls.append("status:" + ",".join(r.request_id for r in requests))
        self._raise_if_asked()
        result = {}
        for request in requests:
            if request.kind is RequestKind.ACQUIRE:
                ids = self.by_request.get(request.request_id)
                if ids is None:
                    continue
                result[request.request_id] = RequestSnapshot(
                    machines=tuple(self.machines[i] for i in ids if i in self.machines),
                    open=self.open.get(request.request_id, False),
                )
            else:
                result[request.request_id] = RequestSnapshot(
                    machines=tuple(self.machines[i] for i in request.machine_ids if i in self.machines)
                )
        if self.forget_ended:  # what a cloud of processes knows: nothing of what ended
            result = {
                key: attrs.evolve(snapshot, machines=alive)
                for key, snapshot in result.items()
                if (alive := tuple(m for m in snapshot.machines if m.state is not MachineState.TERMINATED))
                or snapshot.open
            }
        return result

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        self.calls.append("terminate:" + ",".join(m.machine_id for m in machines))
        self.returned.extend(machines)
        self._raise_if_asked()
        if self.terminate_error is not None:
            raise self.terminate_error
        by_name = {m.name: mid for mid, m in self.machines.items()}
        errors = {}
        for item in machines:
            if not item.machine_id:  # HF named the host only: find it by name
                if item.name in self.refuse:
                    errors[item.name] = "termination refused"
                elif item.name in by_name:
                    self.set_state(by_name[item.name], MachineState.SHUTTING_DOWN)
                continue
            if item.machine_id in self.machines:
                if item.machine_id in self.refuse:
                    errors[item.machine_id] = "termination refused"
                    continue
                if self.machines[item.machine_id].state is not MachineState.TERMINATED:  # idempotent
                    self.set_state(item.machine_id, MachineState.SHUTTING_DOWN)
        return errors

    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        self.calls.append("reclaimed:" + ",".join(m.name for m in machines))
        self._raise_if_asked()
        names = {m.name: m.machine_id for m in self.machines.values()}
        out = []
        for ref in machines:
            mid = ref.machine_id or names.get(ref.name)
            if mid is None or mid not in self.machines:
                out.append(Reclaim(name=ref.name, grace_period=0, machine_id=mid, reason="unknown"))
            elif mid in self.reclaims:
                out.append(Reclaim(name=ref.name, grace_period=self.reclaims[mid], machine_id=mid))
        return out

    @hookimpl
    def ohfp_health_check(self) -> list[HealthCheck]:
        return [HealthCheck(name="fake", ok=True, detail="all good")]


def template_entry(template_id: str = "T1", max_number: int = 10, **fields: Any) -> dict[str, Any]:
    """A templates-file entry."""
    return {
        "templateId": template_id,
        "maxNumber": max_number,
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "4096"]},
        **fields,
    }

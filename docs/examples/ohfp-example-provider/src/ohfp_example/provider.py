"""The example provider: ohfp's provider hooks answered by the toy cloud."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ohfp_core import hookimpl
from ohfp_core.errors import ConfigError
from ohfp_core.models import (
    Attribute,
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    MachineState,
    ProviderContext,
    Provisioned,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_example.cloud import cloud_state

NOTICE_SECONDS = 120
CONFIG_KEYS = ("EXAMPLE_HOST_PREFIX",)
CORE_KEYS = ("ACCEPT_PROPAGATED_LOG_SETTING",)  # core reads these from the same file

DEFAULT_TEMPLATE = Template(
    template_id="example-small",
    max_number=10,
    attributes={
        "type": Attribute("String", "X86_64"),
        "ncpus": Attribute("Numeric", "1"),
        "nram": Attribute("Numeric", "1024"),
    },
)


def _machine(machine_id: str, record: Mapping[str, Any]) -> Machine:
    return Machine(
        machine_id=machine_id,
        name=record["name"],
        state=MachineState(record["state"]),
        private_ip=record["ip"],
        launch_time=record["launched"],
        message=record.get("message", ""),
    )


class ExampleProvider:
    """One provider instance. Its methods marked @hookimpl are ohfp hook implementations."""

    def __init__(self, ctx: ProviderContext, host_prefix: str) -> None:
        self.workdir = ctx.workdir
        self.host_prefix = host_prefix

    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        return templates or [DEFAULT_TEMPLATE]

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        with cloud_state(self.workdir) as cloud:
            machines = cloud["machines"]
            if not any(m["request"] == request_id for m in machines.values()):
                for _ in range(count):  # only the first call for request_id creates machines
                    n = cloud["next"]
                    cloud["next"] = n + 1
                    machines[f"ex-{n:08d}"] = {
                        "name": f"{self.host_prefix}-{n}",
                        "ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                        "request": request_id,
                        "state": "running",
                        "launched": int(time.time()),
                    }
            mine = [_machine(i, m) for i, m in machines.items() if m["request"] == request_id]
        return Provisioned(handle={}, machines=tuple(mine))

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        with cloud_state(self.workdir) as cloud:
            machines = cloud["machines"]
        snapshots = {}
        for request in requests:
            if request.kind is RequestKind.ACQUIRE:
                ids = [i for i, m in machines.items() if m["request"] == request.request_id]
            else:
                ids = [i for i in request.machine_ids if i in machines]
            if ids:
                snapshots[request.request_id] = RequestSnapshot(
                    machines=tuple(_machine(i, machines[i]) for i in ids)
                )
        return snapshots

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        with cloud_state(self.workdir) as cloud:
            known = cloud["machines"]
            by_name = {m["name"]: i for i, m in known.items()}
            for item in machines:
                machine_id = item.machine_id or by_name.get(item.name)  # a host may come by name only
                record = known.get(machine_id) if machine_id else None
                if record is not None:  # unknown machines are already gone: not an error
                    record["state"] = "terminated"
        return {}

    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        with cloud_state(self.workdir) as cloud:
            known = cloud["machines"]
        by_name = {m["name"]: i for i, m in known.items()}
        now = int(time.time())
        reclaims = []
        for ref in machines:
            machine_id = ref.machine_id or by_name.get(ref.name)
            record = known.get(machine_id) if machine_id else None
            if record is None:
                reclaims.append(
                    Reclaim(
                        name=ref.name,
                        grace_period=0,
                        machine_id=ref.machine_id,
                        reason="unknown to the cloud",
                    )
                )
            elif record["state"] != "running":
                reclaims.append(
                    Reclaim(
                        name=ref.name, grace_period=0, machine_id=machine_id, reason=record.get("message", "")
                    )
                )
            elif record.get("notice") is not None:
                left = max(0, NOTICE_SECONDS - (now - record["notice"]))
                reclaims.append(
                    Reclaim(
                        name=ref.name, grace_period=left, machine_id=machine_id, reason="interruption notice"
                    )
                )
        return reclaims

    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        try:
            with cloud_state(self.workdir) as cloud:
                count = len(cloud["machines"])
        except OSError as exc:
            return [HealthCheck(name="example cloud", ok=False, detail=str(exc))]
        return [HealthCheck(name="example cloud", ok=True, detail=f"{count} machines in {self.workdir}")]


def make_provider(ctx: ProviderContext) -> ExampleProvider:
    """The ``ohfp.providers`` entry point ``example``: one provider for ctx's instance."""
    unknown = sorted(set(ctx.config) - set(CONFIG_KEYS) - set(CORE_KEYS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; the example provider knows {', '.join(CONFIG_KEYS)}")
    return ExampleProvider(ctx, str(ctx.config.get("EXAMPLE_HOST_PREFIX", "example")))

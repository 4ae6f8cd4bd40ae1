"""The read-only API's JSON documents about the service and the instances it serves
(:mod:`~ohfp_core.serve.routes` maps the paths onto them).

Documents about an instance's requests read its state store on a worker of its own, never
behind a busy call (:meth:`~ohfp_core.serve.workers.Pool.checkout` makes one when all are
busy); :func:`on_instance` gives up after :data:`READ_TIMEOUT_SEC`. Nothing here changes
state: templates are offered as getAvailableTemplates would, without its reconciling.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ohfp_core.errors import OhfpError

if TYPE_CHECKING:
    from ohfp_core.operations import Operations
    from ohfp_core.serve.state import ServiceState

READ_TIMEOUT_SEC = 10.0
LIST_LIMIT = 200
STATES = ("running", "complete", "complete_with_error", "all")


class NotFound(LookupError):
    pass


# ------------------------------------------------------------------ answered from memory
def health(service: ServiceState) -> dict[str, Any]:
    return {"status": "stopping" if service.stopping else "ok", "pid": os.getpid()}


def _quantile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def status(service: ServiceState) -> dict[str, Any]:
    """Version, build, pid, uptime, calls per Host Factory call, in flight, last error."""
    from importlib.metadata import version

    from ohfp_core.plugins import PLUGIN_GROUP, PROVIDER_GROUP, installed

    stats = service.stats
    with stats.lock:
        calls = {
            call: {
                "served": stats.served[call],
                "p50Ms": _quantile(list(stats.durations[call]), 50),
                "p95Ms": _quantile(list(stats.durations[call]), 95),
                "exitCodes": {
                    str(code): n for (name, code), n in sorted(stats.by_exit.items()) if name == call
                },
            }
            for call in sorted(stats.served)
        }
        in_flight = [
            {"call": call, "instance": instance, "runningSec": round(time.time() - since, 3)}
            for call, instance, since in stats.in_flight.values()
        ]
        last_error = stats.last_error
    return {
        "version": version("ohfp-core"),
        "build": service.build.id,
        "pid": os.getpid(),
        "socket": str(service.socket),
        "uptimeSec": round(time.time() - stats.started, 3),
        "state": "stopping" if service.stopping else "serving",
        "calls": calls,
        "inFlight": in_flight,
        "lastError": last_error,
        "instances": instances(service),
        "plugins": [
            {
                "name": info.name,
                "group": info.group,
                "distribution": info.distribution,
                "version": info.version,
            }
            for group in (PROVIDER_GROUP, PLUGIN_GROUP)
            for info in installed(group)
        ],
        "idleWorkers": service.pool.idle_workers(),
    }


def instances(service: ServiceState) -> list[dict[str, Any]]:
    """The instances this service has served, from their last call's environment."""
    found = []
    for name, key in sorted(service.pool.seen.items()):
        env = dict(key.env)
        found.append(
            {
                "name": name,
                "provider": key.provider,
                "confdir": env.get("HF_PROVIDER_CONFDIR"),
                "workdir": env.get("HF_PROVIDER_WORKDIR"),
                "logdir": env.get("HF_PROVIDER_LOGDIR"),
            }
        )
    return found


# ------------------------------------------------------------------ read from the instances
def on_instance(service: ServiceState, name: str, job: Callable[[Operations], Any]) -> Any:
    """``job(ops)`` on a worker of instance ``name``, within :data:`READ_TIMEOUT_SEC`.

    :raises NotFound: for an instance this service has not served.
    :raises TimeoutError: when the job did not finish in time.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    from ohfp_core.environment import using

    key = service.pool.seen.get(name)
    if key is None:
        raise NotFound(f"no instance {name!r} has called this service")
    worker = service.pool.checkout(key)

    def run(w: Any) -> Any:
        with using(dict(key.env)):
            return job(w.operations(key.provider))

    future = worker.submit(run)
    try:
        result = future.result(timeout=READ_TIMEOUT_SEC)
    except FutureTimeout:
        future.add_done_callback(lambda _: worker.retire())
        raise TimeoutError(f"instance {name!r} did not answer within {READ_TIMEOUT_SEC:g} s") from None
    finally:
        if future.done():
            service.pool.checkin(worker)  # kept if it holds a built instance, else retired
    return result


def _names(service: ServiceState, instance: str | None) -> list[str]:
    if instance is None:
        return sorted(service.pool.seen)
    if instance not in service.pool.seen:
        raise NotFound(f"no instance {instance!r} has called this service")
    return [instance]


def _requests_of(ops: Operations, state: str) -> list[dict[str, Any]]:
    from ohfp_core.storage import request_to_doc

    if state == "running":
        records = ops.store.open_requests()
    else:
        records = [r for r in ops.store.iter_requests() if state == "all" or r.status.value == state]
    records = sorted(records, key=lambda r: r.created_at, reverse=True)[:LIST_LIMIT]
    machines = ops.store.machines_of([r.request_id for r in records if r.kind.value == "acquire"])
    listed = []
    for record in records:
        doc = request_to_doc(record)
        doc["machineCount"] = len(machines.get(record.request_id, ())) or len(record.machine_ids)
        listed.append(doc)
    return listed


def requests(service: ServiceState, instance: str | None, state: str) -> dict[str, Any]:
    if state not in STATES:
        raise NotFound(f"state must be one of {', '.join(STATES)}, got {state!r}")
    return {
        "state": state,
        "instances": {
            name: on_instance(service, name, lambda ops: _requests_of(ops, state))
            for name in _names(service, instance)
        },
    }


def request(service: ServiceState, request_id: str, instance: str | None) -> dict[str, Any]:
    """One request as ``ohfp requests show`` gives it, with its timeline and instance."""
    for name in _names(service, instance):
        try:
            shown = on_instance(service, name, lambda ops: ops.show_request(request_id))
        except OhfpError:
            continue
        return {"instance": name, **shown, "timeline": timeline(shown)}
    raise NotFound(f"no request {request_id!r} in the instances this service serves")


def timeline(shown: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's moments, oldest first: created, machines launched, last update."""
    record = shown["request"]
    events = [{"at": record.get("created_at"), "event": "created"}]
    for machine in shown.get("machines", []):
        launched = machine.get("machine", {}).get("launch_time")
        if launched:
            events.append(
                {"at": launched, "event": f"machine {machine.get('machine', {}).get('machine_id')} launched"}
            )
    events.append({"at": record.get("updated_at"), "event": f"last update: {record.get('status')}"})
    return sorted((e for e in events if e["at"] is not None), key=lambda e: e["at"])


def _templates_of(ops: Operations) -> dict[str, Any]:
    from ohfp_core import capacity, converter

    valid, broken = ops.offered()
    return {
        "templates": [converter.template_json(t) for t in capacity.with_availability(ops.store, valid)],
        "invalid": broken,
    }


def templates(service: ServiceState, instance: str | None) -> dict[str, Any]:
    return {
        "instances": {name: on_instance(service, name, _templates_of) for name in _names(service, instance)}
    }


def ready(service: ServiceState) -> dict[str, Any]:
    """Every instance's health checks: ``ready``, or ``degraded`` naming the failed ones."""

    def checks(ops: Operations) -> list[dict[str, Any]]:
        summary = ops.store.check()
        found = [
            {"name": "ohfp.state", "ok": bool(summary.get("ok")), "detail": str(summary.get("problems", ""))}
        ]
        return found + [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in ops.hooks.health_check()]

    results: dict[str, Any] = {}
    for name in _names(service, None):
        try:
            results[name] = on_instance(service, name, checks)
        except (OhfpError, TimeoutError) as exc:
            results[name] = [{"name": "instance", "ok": False, "detail": str(exc)}]
    failed = {name: [c["name"] for c in found if not c["ok"]] for name, found in results.items()}
    failed = {name: names for name, names in failed.items() if names}
    return {
        "status": "degraded" if failed or service.stopping else "ready",
        "failed": failed,
        "instances": results,
    }

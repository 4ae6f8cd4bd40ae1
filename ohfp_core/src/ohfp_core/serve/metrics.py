"""Prometheus metrics of the service (``GET /metrics``, text format).

- ``ohfp_hf_calls_total{call,instance,exit_code}`` and ``ohfp_hf_call_seconds{call}``:
  every Host Factory call the service answered, and how long it took;
- ``ohfp_hf_calls_in_flight``, ``ohfp_workers_idle``, ``ohfp_uptime_seconds``;
- ``ohfp_hook_calls_total{hook,error_code}`` and ``ohfp_hook_seconds{hook}``: every
  provider and plugin hook the calls made (the cloud calls behind them), failures by the
  ``CloudError`` code they raised (``""`` when none);
- ``ohfp_reclaimed_hosts{instance}``: hosts the last getReturnRequests reported reclaimed.

``prometheus_client`` is imported here only: the service imports it once, the scripts never.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ohfp_core.serve.state import ServiceState

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0)


class Metrics:
    """The service's registry and the observers that feed it."""

    def __init__(self, service: ServiceState) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.calls = Counter(
            "ohfp_hf_calls",
            "Host Factory calls answered",
            ["call", "instance", "exit_code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "ohfp_hf_call_seconds",
            "Time to answer a Host Factory call",
            ["call"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.hooks = Counter(
            "ohfp_hook_calls",
            "Hook calls made by the calls, by CloudError code",
            ["hook", "error_code"],
            registry=self.registry,
        )
        self.hook_seconds = Histogram(
            "ohfp_hook_seconds", "Time in a hook call", ["hook"], buckets=BUCKETS, registry=self.registry
        )
        self.reclaimed = Gauge(
            "ohfp_reclaimed_hosts",
            "Hosts the last getReturnRequests reported reclaimed",
            ["instance"],
            registry=self.registry,
        )
        in_flight = Gauge("ohfp_hf_calls_in_flight", "Host Factory calls running", registry=self.registry)
        in_flight.set_function(lambda: len(service.stats.in_flight))
        idle = Gauge("ohfp_workers_idle", "Warm instances waiting for a call", registry=self.registry)
        idle.set_function(service.pool.idle_workers)
        uptime = Gauge("ohfp_uptime_seconds", "Seconds since the service started", registry=self.registry)
        uptime.set_function(lambda: time.time() - service.stats.started)
        self._starts = threading.local()

    def observe(self, call: str, instance: str, code: int, seconds: float, stdout: bytes) -> None:
        self.calls.labels(call, instance, str(code)).inc()
        self.seconds.labels(call).observe(seconds)
        if call == "getReturnRequests" and code == 0:
            try:
                reclaimed = len(json.loads(stdout).get("requests", []))
            except (ValueError, AttributeError):
                return
            self.reclaimed.labels(instance).set(reclaimed)

    def watch_hooks(self, pm: Any) -> None:
        """Time every hook call of a worker's plugin manager (pluggy's call monitoring)."""
        starts = self._starts

        def before(hook_name: str, hook_impls: Any, kwargs: Any) -> None:
            stack = getattr(starts, "stack", None)
            if stack is None:
                stack = starts.stack = []
            stack.append(time.perf_counter())

        def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
            stack = getattr(starts, "stack", None) or [time.perf_counter()]
            elapsed = time.perf_counter() - stack.pop()
            error = outcome.exception
            code = str(getattr(error, "code", "") or type(error).__name__) if error is not None else ""
            self.hooks.labels(hook_name, code).inc()
            self.hook_seconds.labels(hook_name).observe(elapsed)

        pm.add_hookcall_monitoring(before, after)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

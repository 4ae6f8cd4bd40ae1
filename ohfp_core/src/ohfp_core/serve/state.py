"""What the service's parts see of the running service.

:class:`ServiceState` is the face the listeners (:mod:`~ohfp_core.serve.server`), the
documents (:mod:`~ohfp_core.serve.api`, :mod:`~ohfp_core.serve.page`,
:mod:`~ohfp_core.serve.routes`) and the metrics (:mod:`~ohfp_core.serve.metrics`) are given;
:class:`~ohfp_core.serve.lifecycle.Service` fulfils it and assembles them, so none of them
imports the module that runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ohfp_core.serve.calls import Calls, Stats
from ohfp_core.serve.runtime import Build
from ohfp_core.serve.workers import Pool


class ServiceState(Protocol):
    """The running service as its listeners, documents and metrics see it."""

    socket: Path
    build: Build
    stats: Stats
    pool: Pool
    calls: Calls
    stopping: str | None
    """Why the service stops taking calls; None while it serves."""
    metrics: Any
    """The service's :class:`~ohfp_core.serve.metrics.Metrics` once it runs."""

    def admit(self, script_build: str, env: Mapping[str, str]) -> int | None:
        """None when a call may run here, else the status that sends it back unrun."""
        ...

    def stop(self, reason: str) -> None:
        """Stop taking calls."""
        ...

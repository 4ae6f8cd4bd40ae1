"""``ohfp health``: core's own checks of the environment, then every plugin's.

The environment is checked as a call would use it, and a problem is a failed check (exit
code 4), not a configuration error: the work directory can be made owner-only and written
to, the state store opens and passes its own check, the log file can be appended to.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from ohfp_core.errors import ConfigError, OhfpError
from ohfp_core.files import private_dir
from ohfp_core.models import HealthCheck, ProviderContext
from ohfp_core.storage import Storage


def _probe(name: str, check: Callable[[], str]) -> HealthCheck:
    try:
        return HealthCheck(name=name, ok=True, detail=check())
    except Exception as exc:  # a health check reports, it never raises
        return HealthCheck(name=name, ok=False, detail=str(exc) or type(exc).__name__)


def core_checks(context: ProviderContext, open_store: Callable[[], Storage]) -> list[HealthCheck]:
    """The work directory, the state store and the log directory, as calls use them."""

    def workdir() -> str:
        private_dir(context.workdir)
        with tempfile.NamedTemporaryFile(dir=context.workdir, prefix=".ohfp-health-"):
            pass
        return f"{context.workdir}: owner-only and writable"

    def state() -> str:
        store = open_store()
        try:
            summary = store.check()
        finally:
            store.close()
        if not summary.get("ok"):
            raise OhfpError("; ".join(map(str, summary.get("problems", []))) or "check failed")
        counts = summary.get("counts", {})
        return (
            f"{summary.get('backend')} schema {summary.get('schemaVersion')}:"
            f" {counts.get('requests', 0)} requests, {counts.get('machines', 0)} machines"
        )

    checks = [_probe("ohfp.workdir", workdir), _probe("ohfp.state", state)]
    if context.logdir is not None:
        logdir = context.logdir

        def logs() -> str:
            if not os.access(logdir, os.W_OK | os.X_OK):
                raise OhfpError(f"{logdir}: not writable by this user")
            return f"{logdir}: writable"

        checks.append(_probe("ohfp.logdir", logs))
    return checks


def report(context: ProviderContext, checks: Sequence[HealthCheck]) -> dict[str, Any]:
    """The reply of ``ohfp health``: ``healthy`` only when every check passed."""
    return _reply(context.provider_type, context.instance, checks)


def unusable(requested: str | None, error: ConfigError) -> dict[str, Any]:
    """The reply of ``ohfp health`` when the instance cannot be set up at all (no provider,
    no work or config directory, a broken config file or ``ohfp.json``): the same report,
    with the failure as the ``ohfp.config`` check; the provider's checks cannot run."""
    from ohfp_core import config
    from ohfp_core.plugins import choose_provider

    paths = config.resolve_paths()
    try:
        provider: str | None = choose_provider(requested, config.provider_setting(paths.confdir))
    except ConfigError:
        provider = requested
    checks = [
        HealthCheck(name="ohfp.config", ok=False, detail=str(error)),
        HealthCheck(
            name="ohfp.provider",
            ok=False,
            detail="not run: the provider's checks need the instance's configuration (see ohfp.config)",
        ),
    ]
    instance = config.instance_name(paths, provider) if provider else paths.instance
    return _reply(provider, instance, checks)


def _reply(provider: str | None, instance: str | None, checks: Sequence[HealthCheck]) -> dict[str, Any]:
    ok = all(c.ok for c in checks)
    return {
        "message": "healthy" if ok else "unhealthy",
        "provider": provider,
        "instance": instance,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
    }

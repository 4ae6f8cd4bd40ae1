"""The ``audit`` plugin: one JSON line per cloud change (provision, terminate, cancel).

Enable it in ``ohfp.json``; ``file`` is optional (default ``ohfp-audit-<instance>.jsonl``, in
the log directory when relative)::

    {"audit": {"enabled": true, "file": "ohfp-audit.jsonl"}}

Each line says who (``user``, ``uid``, ``host``, ``pid``, the provider ``instance``), what
(``action``, ``templateId`` and ``count``, or the ``machines``), which requests
(``requestIds``: the request provisioned or cancelled, or the acquire requests of the machines
terminated), and the ``outcome``: ``ok``; ``dry-run`` when the dry-run plugin answered;
``failed`` with the cloud's ``error`` and ``code`` (also for machines a termination refused);
``error`` when the provider raised something else. The line is written after the call, so it
records the outcome; a line that cannot be written is logged to ohfp's log and the call's
reply stands.

The file is opened with ``O_NOFOLLOW`` (a symbolic link in its place is refused), created mode
0600 and appended to one line per write, so overlapping Host Factory calls do not interleave
lines. The plugin checks it can open the file when it is configured, before anything reaches
the cloud: a file it cannot open fails the call with a configuration error (exit code 3).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ohfp_core import hookimpl
from ohfp_core.errors import CloudError, ConfigError
from ohfp_core.logs import get_logger
from ohfp_core.models import CloudRequest, ProviderContext, Provisioned, ReturnItem, Template
from ohfp_extras.dry_run import NOT_TERMINATED, is_dry_run
from ohfp_extras.settings import enabled, section

NAME = "audit"
FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC

log = get_logger("ohfp_extras.audit")


def open_audit_file(path: Path) -> int:
    """Open ``path`` to append: created 0600, never through a symbolic link, a regular file.

    :raises OSError: when it cannot be opened so.
    """
    fd = os.open(path, FLAGS, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def _user() -> tuple[str, int]:
    """The effective user, by the password database (not the spoofable ``USER``)."""
    uid = os.geteuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name, uid
    except (ImportError, KeyError):
        return str(uid), uid


def _outcome_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CloudError):
        return {"outcome": "failed", "error": exc.message, "code": exc.code}
    return {"outcome": "error", "error": f"{type(exc).__name__}: {exc}"}


class AuditTrail:
    """Wraps the provider hooks that change the cloud and appends a line per call."""

    def __init__(self) -> None:
        self.enabled = False
        self.path: Path | None = None
        self.who: dict[str, Any] = {}

    @hookimpl
    def ohfp_configure(self, context: ProviderContext, settings: Mapping[str, Mapping[str, Any]]) -> None:
        found = section(settings, NAME, ("file",))
        self.enabled = enabled(found, NAME)
        if not self.enabled:
            return
        name = found.get("file", f"ohfp-audit-{context.instance}.jsonl")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                "invalid 'audit' settings", [f"$.audit.file: must be a file name, got {name!r}"]
            )
        path = Path(name)
        if not path.is_absolute():
            if context.logdir is None:
                raise ConfigError(
                    "invalid 'audit' settings",
                    [
                        f"$.audit.file: {name!r} is relative and there is no log directory"
                        " (set HF_PROVIDER_LOGDIR, or give an absolute path)"
                    ],
                )
            path = context.logdir / path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(open_audit_file(path))
        except OSError as exc:
            raise ConfigError(
                "invalid 'audit' settings",
                [f"$.audit.file: cannot append to {str(path)!r}: {exc.strerror or exc}"],
            ) from None
        user, uid = _user()
        self.path = path
        self.who = {
            "user": user,
            "uid": uid,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "instance": context.instance,
            "provider": context.provider_type,
        }

    def record(self, action: str, request_ids: Sequence[str], **what: Any) -> None:
        """Append one line; a failure to write is logged, never raised."""
        if self.path is None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = {"time": stamp, "action": action, **self.who, "requestIds": list(request_ids), **what}
        data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()
        try:
            fd = open_audit_file(self.path)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("audit line not written", path=str(self.path), error=str(exc), line=line)

    @hookimpl(wrapper=True, tryfirst=True)
    def ohfp_provision(
        self, request_id: str, template: Template, count: int
    ) -> Generator[None, Provisioned | None, Provisioned | None]:
        if not self.enabled:
            return (yield)
        what = {"templateId": template.template_id, "count": count}
        try:
            result = yield
        except BaseException as exc:
            self.record("provision", [request_id], **what, **_outcome_of(exc))
            raise
        outcome = "dry-run" if result is not None and is_dry_run(result.handle) else "ok"
        machines = [m.machine_id for m in result.machines] if result is not None else []
        self.record("provision", [request_id], **what, outcome=outcome, machines=machines)
        return result

    @hookimpl(wrapper=True, tryfirst=True)
    def ohfp_terminate_machines(
        self, machines: Sequence[ReturnItem]
    ) -> Generator[None, Mapping[str, str] | None, Mapping[str, str] | None]:
        if not self.enabled:
            return (yield)
        requests = sorted({m.request.request_id for m in machines if m.request is not None})
        what = {"machines": [{"machineId": m.machine_id, "name": m.name} for m in machines]}
        try:
            result = yield
        except BaseException as exc:
            self.record("terminate", requests, **what, **_outcome_of(exc))
            raise
        failures = dict(result or {})
        if failures and all(error == NOT_TERMINATED for error in failures.values()):
            self.record("terminate", requests, **what, outcome="dry-run")
        elif failures:
            self.record("terminate", requests, **what, outcome="failed", failures=failures)
        else:
            self.record("terminate", requests, **what, outcome="ok")
        return result

    @hookimpl(wrapper=True, tryfirst=True)
    def ohfp_cancel_request(self, request: CloudRequest) -> Generator[None, bool | None, bool | None]:
        if not self.enabled:
            return (yield)
        try:
            result = yield
        except BaseException as exc:
            self.record("cancel", [request.request_id], **_outcome_of(exc))
            raise
        if result:  # without the hook core terminates what it finds: that call is recorded
            self.record("cancel", [request.request_id], outcome="ok")
        return result


plugin = AuditTrail()
"""The object the ``ohfp.plugins`` entry point ``audit`` registers."""

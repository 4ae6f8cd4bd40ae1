"""The ``dry-run`` plugin: Host Factory's calls run through ohfp, nothing reaches the cloud.

Enable it in ``ohfp.json``::

    {"dry-run": {"enabled": true}}

While enabled:

- **requestMachines** gets a request id at once, with the message ``Dry run: …``; the
  provider's ``ohfp_provision`` is never called. getRequestStatus then reports the request
  ``complete_with_error`` with the message ``dry run: nothing was provisioned …``.
- **requestReturnMachines** does not pass the machines to the provider: each is reported
  ``fail`` with ``dry run: not terminated …`` and stays Host Factory's (core holds it again).
- a request whose call died is not cancelled in the cloud: cancelling fails with a cloud
  error, and core tries again on a later call (once dry run is off, the provider cancels it).

Status polls and reclaim checks still read the cloud (they change nothing). Answering first
(``tryfirst``) is how a plugin keeps a ``firstresult`` hook from reaching the provider: a
wrapper (``wrapper=True``) cannot skip the call it wraps.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

from ohfp_core import hookimpl
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger
from ohfp_core.models import (
    CloudRequest,
    ProviderContext,
    Provisioned,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_extras.settings import enabled, section

NAME = "dry-run"
HANDLE_KEY = "dryRun"
"""Set in the handle of a request made in a dry run."""
STATUS_MESSAGE = "dry run: nothing was provisioned (the dry-run plugin is enabled in ohfp.json)"
NOT_TERMINATED = "dry run: not terminated (the dry-run plugin is enabled in ohfp.json)"
NOT_CANCELLED = "dry run: cancelling is not sent to the cloud while the dry-run plugin is enabled"

log = get_logger("ohfp_extras.dry_run")


def is_dry_run(handle: Mapping[str, Any]) -> bool:
    """True for the handle of a request made in a dry run."""
    return handle.get(HANDLE_KEY) is True


class DryRun:
    """Answers provision, terminate and cancel itself while enabled, so the provider is not
    called; marks what it answered so status replies say so."""

    def __init__(self) -> None:
        self.enabled = False
        self.provider = "the provider"

    @hookimpl
    def ohfp_configure(self, context: ProviderContext, settings: Mapping[str, Mapping[str, Any]]) -> None:
        self.enabled = enabled(section(settings, NAME, ()), NAME)
        self.provider = context.provider_type

    @hookimpl(tryfirst=True)
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned | None:
        if not self.enabled:
            return None
        log.info("dry run: provision not sent", request_id=request_id, template_id=template.template_id)
        return Provisioned(
            handle={HANDLE_KEY: True},
            message=(
                f"Dry run: {count} machines of template {template.template_id!r} were not requested "
                f"from {self.provider}; nothing reached the cloud."
            ),
        )

    @hookimpl(wrapper=True)
    def ohfp_machine_status(
        self, requests: Sequence[CloudRequest]
    ) -> Generator[None, Mapping[str, RequestSnapshot] | None, Mapping[str, RequestSnapshot] | None]:
        answer = yield
        dry = [r for r in requests if r.kind is RequestKind.ACQUIRE and is_dry_run(r.handle)]
        if not dry:
            return answer
        # A request made in a dry run has nothing in the cloud, also once dry run is off.
        return {**(answer or {}), **{r.request_id: RequestSnapshot(message=STATUS_MESSAGE) for r in dry}}

    @hookimpl(tryfirst=True)
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str] | None:
        if not self.enabled:
            return None
        log.info("dry run: terminate not sent", machines=[m.machine_id or m.name for m in machines])
        return {item.machine_id or item.name: NOT_TERMINATED for item in machines}

    @hookimpl(tryfirst=True)
    def ohfp_cancel_request(self, request: CloudRequest) -> bool | None:
        if not self.enabled:
            return None
        raise CloudError(NOT_CANCELLED, code="DryRun")


plugin = DryRun()
"""The object the ``ohfp.plugins`` entry point ``dry-run`` registers."""

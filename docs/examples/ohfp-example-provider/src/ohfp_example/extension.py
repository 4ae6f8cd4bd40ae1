"""An extension plugin: a site rule, an audit trail and a quota, for whichever provider runs."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence

from ohfp_core import hookimpl
from ohfp_core.errors import QuotaError
from ohfp_core.logs import get_logger
from ohfp_core.models import CloudRequest, Problem, Provisioned, Template

QUOTA_ENV = "EXAMPLE_MAX_PER_REQUEST"
log = get_logger("ohfp_example.audit")


@hookimpl
def ohfp_validate_template(template: Template) -> Sequence[Problem]:
    """Site rule: every template has a limit."""
    if template.unlimited:
        return [Problem("maxNumber", "unlimited templates (-1) are not allowed at this site")]
    return []


@hookimpl
def ohfp_request_submitted(request: CloudRequest) -> None:
    """Audit trail: one log line per request Host Factory makes."""
    log.info(
        "audit",
        request_id=request.request_id,
        kind=request.kind.value,
        template_id=request.template_id,
        count=request.machine_count,
        machines=list(request.machine_ids),
    )


@hookimpl(wrapper=True)
def ohfp_provision(
    request_id: str, template: Template, count: int
) -> Generator[None, Provisioned | None, Provisioned | None]:
    """Quota: refuse big requests before the provider is called."""
    limit = int(os.environ.get(QUOTA_ENV, "20"))
    if count > limit:
        raise QuotaError(f"site quota: at most {limit} machines per request, {count} asked")
    return (yield)

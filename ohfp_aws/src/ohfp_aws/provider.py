"""The AWS provider: ohfp's hooks answered with EC2 Fleet, Auto Scaling, Spot Fleet or RunInstances.

:func:`make_provider` is the ``ohfp.providers`` entry point ``aws``. Every hook is one line
that delegates to the module named for it: :mod:`ohfp_aws.hooks` holds one per hook
(``ohfp_machine_status`` → :mod:`~ohfp_aws.hooks.machine_status` …), reclaims are
:mod:`ohfp_aws.interruptions.reclaims`, and validation asks the template's fields
(:mod:`ohfp_aws.launch.template_fields`) and the handlers (:class:`~ohfp_aws.apis.HandlerSet`).
Those modules are imported by the hook that needs them. Importing this module imports no
botocore: clients are made on first use (:mod:`ohfp_aws.access.session`) and handler modules
when a template needs them. Each Host Factory call is a new process, so what a call does
not use is never imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ohfp_aws.apis import HandlerSet
from ohfp_aws.context import AwsContext
from ohfp_core import hookimpl
from ohfp_core.models import (
    CloudRequest,
    HealthCheck,
    MachineRef,
    Problem,
    ProviderContext,
    Provisioned,
    Reclaim,
    RequestSnapshot,
    ReturnItem,
    Template,
)

if TYPE_CHECKING:
    from ohfp_aws.access.session import AwsClients
    from ohfp_aws.launch.template_fields import Templates


class AwsProvider:
    """Hook implementations for one HF provider instance on AWS."""

    def __init__(self, ctx: ProviderContext, clients: AwsClients | None = None) -> None:
        self.context = ctx
        self.aws = AwsContext.of(ctx, clients)
        self.handlers = HandlerSet(self.aws)

    @property
    def clients(self) -> AwsClients:
        return self.aws.clients

    @cached_property
    def templates(self) -> Templates:
        """The instance's templates, each parsed once."""
        from ohfp_aws.launch.template_fields import Templates

        return Templates(self.context.confdir)

    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        from ohfp_aws.hooks import available_templates

        return available_templates.offered(self.aws, templates, self.templates.parse)

    @hookimpl
    def ohfp_call_started(self, timeout_sec: float) -> None:
        self.aws.clients.call_started(timeout_sec)

    @hookimpl
    def ohfp_wait_for_events(self, seconds: float) -> None:
        from ohfp_aws.interruptions import drain

        drain.listen(self.aws, seconds)

    @hookimpl
    def ohfp_validate_template(self, template: Template) -> Sequence[Problem]:
        """The template's fields, then whether an enabled AWS API can serve it (offline)."""
        return self.templates.problems(template) or self.handlers.problems(self.templates.parse(template))

    @hookimpl
    def ohfp_validate_templates_online(
        self, templates: Sequence[Template]
    ) -> Mapping[str, Sequence[Problem]]:
        """That each template's images, subnets, security groups and launch template exist."""
        from ohfp_aws.hooks import validate_online

        return validate_online.missing(self.aws, [self.templates.parse(t) for t in templates])

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        from ohfp_aws.hooks import provision

        return provision.provision(self.aws, self.handlers, request_id, self.templates.parse(template), count)

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        from ohfp_aws.hooks import machine_status

        return machine_status.machine_status(self.aws, self.handlers, requests)

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        from ohfp_aws.hooks import terminate_machines

        return terminate_machines.terminate(self.aws, self.handlers, machines)

    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        from ohfp_aws.hooks import cancel_request

        return cancel_request.cancel(self.aws, self.handlers, request.request_id)

    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        from ohfp_aws.interruptions import reclaims

        return reclaims.reclaimed(self.aws, machines)

    @hookimpl
    def ohfp_request_details(self, request: CloudRequest) -> Mapping[str, Any] | None:
        from ohfp_aws.hooks import request_details

        return request_details.explain(self.aws, request)

    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        from ohfp_aws.hooks import health_check

        return health_check.checks(self.aws)


def make_provider(ctx: ProviderContext) -> AwsProvider:
    """The ``ohfp.providers`` entry point. :raises ConfigError: for an invalid config."""
    return AwsProvider(ctx)

"""The AWS APIs ohfp provisions with: one handler class per API, imported on demand, and the
choice of handler for a template.

Importing this package imports no handler module and nothing of AWS: ``ohfp-aws
iam-policy`` and the provider's start-up read :data:`HANDLERS` alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import import_module
from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import aws_call
from ohfp_aws.vocabulary import ASG, EC2_FLEET, RUN_INSTANCES, SPOT_FLEET
from ohfp_core.errors import ConfigError
from ohfp_core.logs import get_logger
from ohfp_core.models import Problem, Provisioned

if TYPE_CHECKING:
    from ohfp_aws.apis.base import Handler
    from ohfp_aws.context import AwsContext
    from ohfp_aws.vocabulary import AwsTemplate

log = get_logger("ohfp.aws")

HANDLERS: dict[str, str] = {
    EC2_FLEET: "ohfp_aws.apis.ec2_fleet:EC2FleetHandler",
    ASG: "ohfp_aws.apis.asg:ASGHandler",
    SPOT_FLEET: "ohfp_aws.apis.spot_fleet:SpotFleetHandler",
    RUN_INSTANCES: "ohfp_aws.apis.run_instances:RunInstancesHandler",
}
"""Where each of :data:`~ohfp_aws.vocabulary.APIS` is handled."""


def handler_class(api: str) -> type[Handler]:
    """The handler class for ``api`` (a key of :data:`HANDLERS`), imported now.

    :raises KeyError: for an API ohfp does not know.
    :raises ImportError: when the handler's module is missing.
    """
    module_name, _, class_name = HANDLERS[api].partition(":")
    cls = getattr(import_module(module_name), class_name)
    if not isinstance(cls, type):
        raise TypeError(f"{HANDLERS[api]} is not a class")
    return cls


class HandlerSet:
    """The handlers of one provider instance, each made on first use, and which one serves
    a template: ``providerApi`` when set, else the first enabled API in
    ``aws.handlers.order`` that can."""

    def __init__(self, ctx: AwsContext) -> None:
        self.ctx = ctx
        self._made: dict[str, Handler] = {}

    def get(self, api: str) -> Handler:
        """The handler for ``api``. :raises KeyError: for an unknown API."""
        if api not in self._made:
            self._made[api] = handler_class(api)(self.ctx)  # type: ignore[call-arg]
        return self._made[api]

    def enabled(self) -> Iterator[Handler]:
        """Every enabled handler that can be loaded, in :data:`HANDLERS` order."""
        for api in HANDLERS:
            if api in self.ctx.config.handlers.enabled:
                try:
                    yield self.get(api)
                except ImportError:
                    continue

    def choose(self, template: AwsTemplate) -> Handler:
        """The handler that serves ``template``.

        :raises ConfigError: naming why no handler fits.
        """
        settings = self.ctx.config.handlers
        if template.provider_api:
            api = template.provider_api
            if api not in settings.enabled:
                raise ConfigError(
                    f"template {template.template_id}: providerApi {api} is disabled "
                    f"(aws.handlers.{api}.enabled in ohfp.json)"
                )
            handler = self.get(api)
            reason = handler.unsupported(template)
            if reason:
                raise ConfigError(
                    f"template {template.template_id}: providerApi {api} cannot serve it: {reason}"
                )
            return handler
        reasons: list[str] = []
        for api in settings.order:
            if api not in settings.enabled:
                continue
            try:
                handler = self.get(api)
            except ImportError as exc:
                reasons.append(f"{api}: not available ({exc})")
                continue
            reason = handler.unsupported(template)
            if reason is None:
                return handler
            reasons.append(f"{api}: {reason}")
        raise ConfigError(
            f"template {template.template_id}: no enabled AWS API can serve it",
            reasons or ["every API is disabled in aws.handlers"],
        )

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        """``count`` units of ``template`` from the handler that serves it.

        :raises ConfigError: when none can (before any AWS call).
        :raises CloudError: when AWS refused.
        """
        handler = self.choose(template)
        log.info("provisioning", count=count, template_id=template.template_id, api=handler.api)
        with aws_call(handler.api):
            return handler.provision(request_id, template, count)

    def problems(self, template: AwsTemplate) -> list[Problem]:
        """Why no handler can serve ``template`` (offline), as a problem of ``providerApi``
        when the template names one; empty when one can."""
        try:
            self.choose(template)
        except ConfigError as exc:
            return [Problem("providerApi" if template.provider_api else "(handler)", str(exc))]
        return []

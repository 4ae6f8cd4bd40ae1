"""Provisioning (``ohfp_provision``): the handler that serves the template launches, then, with
``aws.quotas.enabled``, the vCPUs asked for are noted against the quotas
(:func:`~ohfp_aws.supply.quotas.debit`) so the templates offered next count them.
"""

from __future__ import annotations

from ohfp_aws.apis import HandlerSet
from ohfp_aws.context import AwsContext
from ohfp_aws.vocabulary import AwsTemplate
from ohfp_core.models import Provisioned


def provision(
    ctx: AwsContext, handlers: HandlerSet, request_id: str, template: AwsTemplate, count: int
) -> Provisioned:
    """``count`` units of ``template`` for ``request_id``.

    :raises ConfigError: when no enabled API can serve the template (before any AWS call).
    :raises CloudError: when AWS refused.
    """
    provisioned = handlers.provision(request_id, template, count)
    if ctx.config.quotas.enabled:
        from ohfp_aws.supply import quotas

        quotas.debit(ctx, request_id, template, count)
    return provisioned

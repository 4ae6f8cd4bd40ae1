"""The templates the AWS provider offers (``ohfp_available_templates``).

Each template missing ``type``, ``ncpus`` or ``nram`` gets them from its instance type
(:mod:`~ohfp_aws.supply.instance_types`); with ``aws.quotas.enabled`` each template's
``availableNumber`` is then lowered to what the account's vCPU quotas allow
(:mod:`~ohfp_aws.supply.quotas`). Nothing changes in the cloud.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ohfp_aws.context import AwsContext
from ohfp_aws.vocabulary import AwsTemplate
from ohfp_core.models import Template


def offered(
    ctx: AwsContext, templates: Sequence[Template], parse: Callable[[Template], AwsTemplate]
) -> Sequence[Template]:
    """``templates`` completed from their instance types and limited by the vCPU quotas."""
    from ohfp_aws.supply import instance_types

    completed = instance_types.with_attributes(ctx, templates)
    if not ctx.config.quotas.enabled:
        return completed
    from ohfp_aws.supply import quotas

    return quotas.limit(ctx, completed, parse)

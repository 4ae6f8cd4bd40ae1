"""Health checks of the AWS provider (``ohfp health``): the configuration, the credentials
(sts:GetCallerIdentity), EC2 (ec2:DescribeAvailabilityZones), Auto Scaling when ASG is
enabled, and that every enabled handler loads. A check reports; it never raises.
"""

from __future__ import annotations

from collections.abc import Callable

from ohfp_aws.access.boundary import aws_call
from ohfp_aws.apis import handler_class
from ohfp_aws.context import AwsContext
from ohfp_aws.vocabulary import ASG
from ohfp_core.models import HealthCheck


def checks(ctx: AwsContext) -> list[HealthCheck]:
    """Every check, in order; read only."""
    settings = ctx.config.handlers
    enabled = [api for api in settings.order if api in settings.enabled]
    found = [
        HealthCheck(
            name="aws.config",
            ok=True,
            detail=f"region {ctx.config.region}; APIs in order: " + ", ".join(enabled),
        )
    ]
    found.append(_probe("aws.credentials", "GetCallerIdentity", lambda: _account(ctx)))
    found.append(_probe("aws.ec2", "DescribeAvailabilityZones", lambda: _zones(ctx)))
    if ASG in settings.enabled:
        found.append(_probe("aws.autoscaling", "DescribeAutoScalingGroups", lambda: _groups(ctx)))
    for api in enabled:
        try:
            handler_class(api)
        except (ImportError, AttributeError) as exc:
            found.append(HealthCheck(name=f"aws.handler.{api}", ok=False, detail=f"cannot load: {exc}"))
    return found


def _probe(name: str, operation: str, call: Callable[[], str]) -> HealthCheck:
    try:
        with aws_call(operation):
            return HealthCheck(name=name, ok=True, detail=call())
    except Exception as exc:  # a health check reports, it never raises
        return HealthCheck(name=name, ok=False, detail=str(exc))


def _account(ctx: AwsContext) -> str:
    return f"account {ctx.services.sts.account()}"


def _zones(ctx: AwsContext) -> str:
    return f"{len(ctx.services.ec2.availability_zones())} zones in {ctx.config.region}"


def _groups(ctx: AwsContext) -> str:
    ctx.services.autoscaling.any_group()
    return "reachable"

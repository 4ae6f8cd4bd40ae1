"""Health checks of the AWS provider (``ohfp health``), each a named check that reports and
never raises:

- ``aws.config``: the configuration parsed, the APIs in order;
- ``aws.endpoint``: the EC2 endpoint URL in use, configured or botocore's default;
- ``aws.region``: the region is in botocore's bundled endpoint data (offline, no call);
- ``aws.credentials``: where botocore found credentials (its provider's name, never a value)
  and their account (sts:GetCallerIdentity);
- ``aws.ec2`` (ec2:DescribeAvailabilityZones), ``aws.autoscaling`` when ASG is enabled;
- ``aws.interruptions`` when ``aws.events.queueUrl`` is set: the queue exists and can be read
  (sqs:GetQueueAttributes);
- ``aws.quotas`` when ``aws.quotas.enabled``: the standard on-demand vCPU quota can be read
  (servicequotas:GetServiceQuota);
- ``aws.handler.<API>`` only for an enabled API whose handler does not load.
"""

from __future__ import annotations

from collections.abc import Callable

from ohfp_aws.access.boundary import aws_call
from ohfp_aws.access.endpoints import credentials_source, known_region
from ohfp_aws.apis import handler_class
from ohfp_aws.context import AwsContext
from ohfp_aws.supply.quotas import quota_readable
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
        ),
        _probe("aws.endpoint", "endpoint", lambda: _endpoint(ctx)),
        _probe("aws.region", "region", lambda: _region(ctx)),
        _probe("aws.credentials", "GetCallerIdentity", lambda: _credentials(ctx)),
        _probe("aws.ec2", "DescribeAvailabilityZones", lambda: _zones(ctx)),
    ]
    if ASG in settings.enabled:
        found.append(_probe("aws.autoscaling", "DescribeAutoScalingGroups", lambda: _groups(ctx)))
    queue_url = ctx.config.events.queue_url
    if queue_url:
        found.append(_probe("aws.interruptions", "GetQueueAttributes", lambda: _queue(ctx, queue_url)))
    if ctx.config.quotas.enabled:
        found.append(_probe("aws.quotas", "GetServiceQuota", lambda: quota_readable(ctx)))
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
        return HealthCheck(name=name, ok=False, detail=str(exc) or type(exc).__name__)


def _endpoint(ctx: AwsContext) -> str:
    url = ctx.services.ec2.endpoint_url
    origin = "AWS_ENDPOINT_URL" if ctx.config.endpoint_url else f"botocore's default for {ctx.config.region}"
    return f"EC2 at {url} ({origin})"


def _region(ctx: AwsContext) -> str:
    partition = known_region(ctx.clients.session, ctx.config.region)
    return f"{ctx.config.region} (partition {partition}, botocore's endpoint data)"


def _credentials(ctx: AwsContext) -> str:
    source = credentials_source(ctx.clients.session)
    where = f" ({ctx.config.credential_file})" if ctx.config.credential_file else ""
    return f"from {source}{where}; account {ctx.services.sts.account()}"


def _zones(ctx: AwsContext) -> str:
    return f"{len(ctx.services.ec2.availability_zones())} zones in {ctx.config.region}"


def _groups(ctx: AwsContext) -> str:
    ctx.services.autoscaling.any_group()
    return "reachable"


def _queue(ctx: AwsContext, queue_url: str) -> str:
    waiting = ctx.services.sqs.waiting(queue_url)
    return f"{queue_url}: readable, about {waiting} messages waiting"

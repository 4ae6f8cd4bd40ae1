"""The AWS provider's configuration: IBM's ``awsprov_config.json`` plus ohfp's handler settings.

IBM's file is flat and accepted unchanged::

    {"AWS_REGION": "us-east-1", "AWS_CREDENTIAL_FILE": "/path/credentials",
     "AWS_CONNECTION_TIMEOUT_MS": 10000, "AWS_REQUEST_RETRY_ATTEMPTS": 3, ...}

``AWS_REGION`` is required; when the file leaves it out, the ``AWS_REGION`` and then the
``AWS_DEFAULT_REGION`` environment variable are used (the same variables the AWS CLI reads),
so a host already set up for the CLI needs no extra key. Nothing else falls back to the
environment except credentials, which follow the AWS default chain unless
``AWS_CREDENTIAL_FILE`` names a shared-credentials file.

ohfp's own settings for the AWS provider are the ``"aws"`` section of ``ohfp.json``::

    {"aws": {"handlers": {
        "order": ["EC2Fleet", "ASG", "SpotFleet", "RunInstances"],
        "EC2Fleet": {"enabled": true, "defaultFleetType": "request", "maxSpotPercent": 100},
        "ASG": {"enabled": true, "minSize": 0, "maxSize": null, "healthCheckType": "EC2"},
        "SpotFleet": {"enabled": true, "allocationStrategy": "capacityOptimized"},
        "RunInstances": {"enabled": true, "maxPerCall": 100}}}}

``order`` is the preference used when a template does not name ``providerApi``; a handler
with ``"enabled": false`` is never used. Three optional sections switch on what no polling
provider has: ``events`` (an SQS queue of EC2 interruption and state-change events),
``quotas`` (availability lowered to the account's vCPU quotas) and ``offerings`` (how long an
instance type short of capacity in a subnet is tried last). Every key is optional. Each class below is one
object of these files, each field reading the key the file spells (``key``) with its rule;
unknown keys, in either file, are errors that name the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import attrs
from attrs import field, frozen

from ohfp_aws.documents import AS_GIVEN, QUOTED, SECTION, TRIMMED, broken, flag, integer, read, text
from ohfp_aws.vocabulary import APIS, ASG, EC2_FLEET, FLEET_TYPES, RUN_INSTANCES, SPOT_FLEET, SPOT_STRATEGIES
from ohfp_core.errors import ConfigError
from ohfp_core.parsing import NOT_READ, FieldError, key, one_of, rule

DEFAULT_ORDER = APIS
HEALTH_CHECK_TYPES = ("EC2", "ELB", "VPC_LATTICE", "EBS")

Text = Annotated[str | None, TRIMMED]
QuotedInt = Annotated[int, QUOTED]
QuotedBool = Annotated[bool, QUOTED]


def _api_order(value: Any) -> str | None:
    if not isinstance(value, tuple) or not value:
        return f"must be a non-empty list of {', '.join(APIS)}, got {value!r}"
    bad = [item for item in value if item not in APIS]
    if bad:
        return f"unknown API {bad[0]!r}; choose from {', '.join(APIS)}"
    if len(set(value)) != len(value):
        return "lists an API twice"
    return None


# -- ohfp.json: the aws section ------------------------------------------------------------------


@frozen(kw_only=True)
class EC2FleetSettings:
    """``aws.handlers.EC2Fleet``."""

    enabled: QuotedBool = field(default=True, validator=rule(flag))
    default_fleet_type: Annotated[str, AS_GIVEN] = field(
        default="request", metadata=key("defaultFleetType"), validator=rule(one_of(FLEET_TYPES))
    )
    max_spot_percent: QuotedInt = field(
        default=100, metadata=key("maxSpotPercent"), validator=rule(integer(0, 100))
    )


@frozen(kw_only=True)
class ASGSettings:
    """``aws.handlers.ASG``."""

    enabled: QuotedBool = field(default=True, validator=rule(flag))
    min_size: QuotedInt = field(default=0, metadata=key("minSize"), validator=rule(integer(0)))
    max_size: Annotated[int | None, QUOTED] = field(
        default=None, metadata=key("maxSize"), validator=rule(integer(1))
    )
    health_check_type: Annotated[str, AS_GIVEN] = field(
        default="EC2", metadata=key("healthCheckType"), validator=rule(one_of(HEALTH_CHECK_TYPES))
    )


@frozen(kw_only=True)
class SpotFleetSettings:
    """``aws.handlers.SpotFleet``; its ``allocationStrategy`` is every API's default."""

    enabled: QuotedBool = field(default=True, validator=rule(flag))
    allocation_strategy: Annotated[str, AS_GIVEN] = field(
        default="capacityOptimized",
        metadata=key("allocationStrategy"),
        validator=rule(one_of(tuple(SPOT_STRATEGIES))),
    )


@frozen(kw_only=True)
class RunInstancesSettings:
    """``aws.handlers.RunInstances``."""

    enabled: QuotedBool = field(default=True, validator=rule(flag))
    max_per_call: QuotedInt = field(default=100, metadata=key("maxPerCall"), validator=rule(integer(1, 1000)))


@frozen(kw_only=True)
class HandlerSettings:
    """Which AWS APIs to use, in which order, and their tuning (``aws.handlers``)."""

    order: Annotated[tuple[str, ...], AS_GIVEN] = field(default=DEFAULT_ORDER, validator=rule(_api_order))
    ec2_fleet: Annotated[EC2FleetSettings, SECTION] = field(factory=EC2FleetSettings, metadata=key(EC2_FLEET))
    asg: Annotated[ASGSettings, SECTION] = field(factory=ASGSettings, metadata=key(ASG))
    spot_fleet: Annotated[SpotFleetSettings, SECTION] = field(
        factory=SpotFleetSettings, metadata=key(SPOT_FLEET)
    )
    run_instances: Annotated[RunInstancesSettings, SECTION] = field(
        factory=RunInstancesSettings, metadata=key(RUN_INSTANCES)
    )

    def __attrs_post_init__(self) -> None:
        if not self.enabled:
            raise ValueError("every AWS API is disabled; enable at least one")

    @property
    def enabled(self) -> frozenset[str]:
        """The APIs whose ``enabled`` is true."""
        sections: dict[str, EC2FleetSettings | ASGSettings | SpotFleetSettings | RunInstancesSettings] = {
            EC2_FLEET: self.ec2_fleet,
            ASG: self.asg,
            SPOT_FLEET: self.spot_fleet,
            RUN_INSTANCES: self.run_instances,
        }
        return frozenset(api for api, section in sections.items() if section.enabled)


def _queue_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return f"must be an SQS queue URL (https://sqs.<region>.amazonaws.com/…), got {value!r}"
    return None


@frozen(kw_only=True)
class EventsSettings:
    """``aws.events``: the SQS queue EventBridge feeds with EC2's interruption warnings,
    rebalance recommendations and state changes (``ohfp-aws events setup`` makes it).
    Without ``queueUrl`` nothing is drained and reclaims are found by polling alone."""

    queue_url: Text = field(default=None, metadata=key("queueUrl"), validator=rule(_queue_url))
    max_batches: QuotedInt = field(default=3, metadata=key("maxBatches"), validator=rule(integer(1, 10)))
    report_rebalance: QuotedBool = field(default=False, metadata=key("reportRebalance"), validator=rule(flag))
    rebalance_grace_period: QuotedInt = field(
        default=120, metadata=key("rebalanceGracePeriod"), validator=rule(integer(0, 3600))
    )
    check_seconds: QuotedInt = field(
        default=45, metadata=key("checkSeconds"), validator=rule(integer(2, 3600))
    )
    """While the resident service's listener last received from the queue at most this long
    ago, getReturnRequests answers from the notices it stored, without an API call."""
    recheck_seconds: QuotedInt = field(
        default=300, metadata=key("recheckSeconds"), validator=rule(integer(30, 86400))
    )
    """Even while the listener hears the queue, getReturnRequests describes the hosts in full
    once this often (and on the service's first call), so a host gone without a notice is
    found."""


@frozen(kw_only=True)
class QuotaSettings:
    """``aws.quotas``: lower each template's ``availableNumber`` to what the account's EC2
    vCPU quotas still allow, read through Service Quotas and kept ``cacheSeconds``."""

    enabled: QuotedBool = field(default=False, validator=rule(flag))
    cache_seconds: QuotedInt = field(
        default=300, metadata=key("cacheSeconds"), validator=rule(integer(0, 86400))
    )


@frozen(kw_only=True)
class OfferingSettings:
    """``aws.offerings``: an instance type found short of capacity in a subnet or zone is
    tried last for ``unavailableSeconds`` (0: never remembered)."""

    unavailable_seconds: QuotedInt = field(
        default=180, metadata=key("unavailableSeconds"), validator=rule(integer(0, 3600))
    )


@frozen(kw_only=True)
class AwsSettings:
    """The ``aws`` section of ``ohfp.json``."""

    handlers: Annotated[HandlerSettings, SECTION] = field(factory=HandlerSettings)
    events: Annotated[EventsSettings, SECTION] = field(factory=EventsSettings)
    quotas: Annotated[QuotaSettings, SECTION] = field(factory=QuotaSettings)
    offerings: Annotated[OfferingSettings, SECTION] = field(factory=OfferingSettings)


# -- awsprov_config.json ------------------------------------------------------------------------------


@frozen(kw_only=True)
class AwsConfig:
    """IBM's AWS provider config (``awsprov_config.json``), by IBM's keys, plus ``handlers``,
    ``events``, ``quotas`` and ``offerings`` from ohfp.json (not keys of IBM's file:
    :func:`load_config` sets them).

    Times are kept in the file's units (milliseconds or seconds, as named).
    ``key_file`` (``AWS_KEY_FILE``) is accepted for compatibility and never used for API calls.
    """

    region: Text = field(default=None, metadata=key("AWS_REGION"), validator=rule(text()))
    credential_file: Text = field(default=None, metadata=key("AWS_CREDENTIAL_FILE"), validator=rule(text()))
    endpoint_url: Text = field(default=None, metadata=key("AWS_ENDPOINT_URL"), validator=rule(text()))
    key_file: Text = field(default=None, metadata=key("AWS_KEY_FILE"), validator=rule(text()))
    proxy_host: Text = field(default=None, metadata=key("AWS_PROXY_HOST"), validator=rule(text()))
    proxy_port: Annotated[int | None, QUOTED] = field(
        default=None, metadata=key("AWS_PROXY_PORT"), validator=rule(integer(1, 65535))
    )
    connection_timeout_ms: QuotedInt = field(
        default=10000, metadata=key("AWS_CONNECTION_TIMEOUT_MS"), validator=rule(integer(1, 600_000))
    )
    request_retry_attempts: QuotedInt = field(
        default=3, metadata=key("AWS_REQUEST_RETRY_ATTEMPTS"), validator=rule(integer(0, 10))
    )
    instance_pending_timeout_sec: QuotedInt = field(
        default=180, metadata=key("AWS_INSTANCE_PENDING_TIMEOUT_SEC"), validator=rule(integer(1))
    )
    describe_request_retry_attempts: QuotedInt = field(
        default=0, metadata=key("AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS"), validator=rule(integer(0, 10))
    )
    describe_request_interval_ms: QuotedInt = field(
        default=0, metadata=key("AWS_DESCRIBE_REQUEST_INTERVAL"), validator=rule(integer(0, 60_000))
    )
    accept_propagated_log_setting: QuotedBool = field(
        default=False, metadata=key("ACCEPT_PROPAGATED_LOG_SETTING"), validator=rule(flag)
    )
    handlers: HandlerSettings = field(factory=HandlerSettings, metadata=NOT_READ)
    events: EventsSettings = field(factory=EventsSettings, metadata=NOT_READ)
    quotas: QuotaSettings = field(factory=QuotaSettings, metadata=NOT_READ)
    offerings: OfferingSettings = field(factory=OfferingSettings, metadata=NOT_READ)

    def __attrs_post_init__(self) -> None:
        if self.proxy_port is not None and self.proxy_host is None:
            broken(AwsConfig, [FieldError("AWS_PROXY_PORT", "set AWS_PROXY_HOST too")])

    @property
    def proxies(self) -> dict[str, str] | None:
        """botocore's ``proxies`` for ``AWS_PROXY_HOST``/``AWS_PROXY_PORT``, or None."""
        if not self.proxy_host:
            return None
        host = self.proxy_host if "://" in self.proxy_host else f"http://{self.proxy_host}"
        url = f"{host}:{self.proxy_port}" if self.proxy_port else host
        return {"http": url, "https": url}


def _in_file(file: Path | None, section: str, problem: str) -> str:
    """``problem`` (``key: message``) as ``file: $.<section>key: message`` when ``file`` is known."""
    return f"{file}: $.{section}{problem}" if file is not None else problem


def load_config(
    raw: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    config_file: Path | None = None,
    settings_file: Path | None = None,
) -> AwsConfig:
    """Parse IBM's AWS config keys and the ``aws`` settings section, each in one pass.

    :param config_file: the file ``raw`` was read from, ``settings_file`` the ``ohfp.json``
        whose ``aws`` section ``settings`` is: each problem names its file when given.
    :raises ConfigError: listing every problem of both, each naming its key
        (``AWS_REQUEST_RETRY_ATTEMPTS: must be 0..10, got 12``, or with the file
        ``/conf/awsinstprov_config.json: $.AWS_REQUEST_RETRY_ATTEMPTS: must be 0..10, got 12``),
        an unknown key with the closest known one (``did you mean 'AWS_REGION'?``).
    """
    env = os.environ if environ is None else environ
    if not isinstance(raw, Mapping):
        raise ConfigError("the AWS provider config must be a JSON object of AWS_* keys")
    problems: list[str] = []
    config, aws = AwsConfig(), AwsSettings()
    try:
        config = read(raw, AwsConfig, message="invalid AWS provider config")
    except ConfigError as exc:
        problems += [_in_file(config_file, "", p) for p in exc.problems]
    try:
        aws = read(settings or {}, AwsSettings, message="invalid aws settings")
    except ConfigError as exc:
        problems += [_in_file(settings_file, "aws.", p) for p in exc.problems]
    region = config.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region and raw.get("AWS_REGION") is None:
        problems.append(
            _in_file(
                config_file,
                "",
                "AWS_REGION: required (set it in the provider config or the AWS_REGION environment variable)",
            )
        )
    if problems:
        raise ConfigError("invalid AWS provider configuration", problems)
    return attrs.evolve(
        config,
        region=region,
        handlers=aws.handlers,
        events=aws.events,
        quotas=aws.quotas,
        offerings=aws.offerings,
    )

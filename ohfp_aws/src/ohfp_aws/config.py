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
with ``"enabled": false`` is never used. Every key is optional. Unknown keys, in either
file, are errors that name the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from attrs import field, frozen

from ohfp_aws.handlers.base import APIS, FLEET_TYPES
from ohfp_core.errors import ConfigError

DEFAULT_ORDER = ("EC2Fleet", "ASG", "SpotFleet", "RunInstances")
SPOT_ALLOCATION_STRATEGIES = (
    "capacityOptimized",
    "capacityOptimizedPrioritized",
    "diversified",
    "lowestPrice",
    "priceCapacityOptimized",
)
HEALTH_CHECK_TYPES = ("EC2", "ELB", "VPC_LATTICE", "EBS")


@frozen
class HandlerSettings:
    """Which AWS APIs to use, in which order, and their tuning (``aws.handlers`` in ohfp.json)."""

    order: tuple[str, ...] = DEFAULT_ORDER
    enabled: frozenset[str] = frozenset(DEFAULT_ORDER)
    ec2fleet_default_type: str = "request"
    ec2fleet_max_spot_percent: int = 100
    asg_min_size: int = 0
    asg_max_size: int | None = None
    asg_health_check_type: str = "EC2"
    spotfleet_allocation_strategy: str = "capacityOptimized"
    runinstances_max_per_call: int = 100


@frozen
class AwsConfig:
    """IBM's AWS provider config (``awsprov_config.json``) plus :class:`HandlerSettings`.

    Times are kept in the file's units (milliseconds or seconds, as named).
    ``key_file`` (``AWS_KEY_FILE``) is accepted for compatibility and never used for API calls.
    """

    region: str
    credential_file: str | None = None
    endpoint_url: str | None = None
    key_file: str | None = None
    proxy_host: str | None = None
    proxy_port: int | None = None
    connection_timeout_ms: int = 10000
    request_retry_attempts: int = 3
    instance_pending_timeout_sec: int = 180
    describe_request_retry_attempts: int = 0
    describe_request_interval_ms: int = 0
    accept_propagated_log_setting: bool = False
    handlers: HandlerSettings = field(factory=HandlerSettings)

    @property
    def proxies(self) -> dict[str, str] | None:
        """botocore's ``proxies`` for ``AWS_PROXY_HOST``/``AWS_PROXY_PORT``, or None."""
        if not self.proxy_host:
            return None
        host = self.proxy_host if "://" in self.proxy_host else f"http://{self.proxy_host}"
        url = f"{host}:{self.proxy_port}" if self.proxy_port else host
        return {"http": url, "https": url}


T = TypeVar("T")


class _Reader:
    """Reads typed values from one mapping, collecting problems that name the key."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def _fail(self, key: str, message: str) -> None:
        self.problems.append(f"{self.prefix}{key}: {message}")

    def get(self, key: str, convert: Callable[[str, Any], T], default: T) -> T:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            return default
        try:
            return convert(key, self.data[key])
        except ValueError as exc:
            self._fail(key, str(exc))
            return default

    def unknown(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            self._fail(key, "unknown key")


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


def _int_in(low: int, high: int | None) -> Callable[[str, Any], int]:
    def convert(key: str, value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value.strip())  # IBM's samples sometimes quote numbers
        span = f"{low}..{high}" if high is not None else f"≥ {low}"
        if number is None:
            raise ValueError(f"must be an integer {span}, got {value!r}")
        if number < low or (high is not None and number > high):
            raise ValueError(f"must be {span}, got {number}")
        return number

    return convert


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "y", "n"):
        return value.strip().lower() in ("true", "yes", "y")
    raise ValueError(f"must be true or false, got {value!r}")


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert


def _api_list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty list of {', '.join(APIS)}, got {value!r}")
    bad = [item for item in value if item not in APIS]
    if bad:
        raise ValueError(f"unknown API {bad[0]!r}; choose from {', '.join(APIS)}")
    if len(set(value)) != len(value):
        raise ValueError("lists an API twice")
    return tuple(value)


_CONFIG_KEYS = (
    "AWS_REGION",
    "AWS_CREDENTIAL_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_KEY_FILE",
    "AWS_PROXY_HOST",
    "AWS_PROXY_PORT",
    "AWS_CONNECTION_TIMEOUT_MS",
    "AWS_REQUEST_RETRY_ATTEMPTS",
    "AWS_INSTANCE_PENDING_TIMEOUT_SEC",
    "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS",
    "AWS_DESCRIBE_REQUEST_INTERVAL",
    "ACCEPT_PROPAGATED_LOG_SETTING",
)


def load_handler_settings(settings: Mapping[str, Any]) -> tuple[HandlerSettings, list[str]]:
    """Parse the ``aws`` section of ohfp.json; returns the settings and problems found."""
    top = _Reader(settings)
    top.seen.add("handlers")
    top.unknown()
    problems = top.problems
    section = settings.get("handlers") or {}
    if not isinstance(section, Mapping):
        return HandlerSettings(), [*problems, f"handlers: must be an object, got {section!r}"]
    reader = _Reader(section, "handlers.")
    order: tuple[str, ...] = reader.get("order", _api_list, DEFAULT_ORDER)
    enabled = set(APIS)
    values: dict[str, Any] = {}
    specs: dict[str, dict[str, tuple[str, Callable[[str, Any], Any], Any]]] = {
        "EC2Fleet": {
            "defaultFleetType": ("ec2fleet_default_type", _one_of(FLEET_TYPES), "request"),
            "maxSpotPercent": ("ec2fleet_max_spot_percent", _int_in(0, 100), 100),
        },
        "ASG": {
            "minSize": ("asg_min_size", _int_in(0, None), 0),
            "maxSize": ("asg_max_size", _int_in(1, None), None),
            "healthCheckType": ("asg_health_check_type", _one_of(HEALTH_CHECK_TYPES), "EC2"),
        },
        "SpotFleet": {
            "allocationStrategy": (
                "spotfleet_allocation_strategy",
                _one_of(SPOT_ALLOCATION_STRATEGIES),
                "capacityOptimized",
            ),
        },
        "RunInstances": {
            "maxPerCall": ("runinstances_max_per_call", _int_in(1, 1000), 100),
        },
    }
    for api, keys in specs.items():
        reader.seen.add(api)
        sub = section.get(api)
        if sub is None:
            continue
        if not isinstance(sub, Mapping):
            reader.problems.append(f"handlers.{api}: must be an object, got {sub!r}")
            continue
        sub_reader = _Reader(sub, f"handlers.{api}.")
        if not sub_reader.get("enabled", _bool, True):
            enabled.discard(api)
        for key, (attr, convert, default) in keys.items():
            values[attr] = sub_reader.get(key, convert, default)
        sub_reader.unknown()
        problems += sub_reader.problems
    reader.unknown()
    problems += reader.problems
    if not enabled:
        problems.append("handlers: every AWS API is disabled; enable at least one")
    return HandlerSettings(order=order, enabled=frozenset(enabled), **values), problems


def load_config(
    raw: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AwsConfig:
    """Parse IBM's AWS config keys and the ``aws`` settings section.

    :raises ConfigError: listing every problem, each naming its key
        (``AWS_REQUEST_RETRY_ATTEMPTS: must be 0..10, got 12``), unknown keys included.
    """
    env = os.environ if environ is None else environ
    if not isinstance(raw, Mapping):
        raise ConfigError("the AWS provider config must be a JSON object of AWS_* keys")
    reader = _Reader(raw)
    region = reader.get("AWS_REGION", _string, "") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        reader.problems.append(
            "AWS_REGION: required (set it in the provider config or the AWS_REGION environment variable)"
        )
    values: dict[str, Any] = {
        "credential_file": reader.get("AWS_CREDENTIAL_FILE", _string, None),
        "endpoint_url": reader.get("AWS_ENDPOINT_URL", _string, None),
        "key_file": reader.get("AWS_KEY_FILE", _string, None),
        "proxy_host": reader.get("AWS_PROXY_HOST", _string, None),
        "proxy_port": reader.get("AWS_PROXY_PORT", _int_in(1, 65535), None),
        "connection_timeout_ms": reader.get("AWS_CONNECTION_TIMEOUT_MS", _int_in(1, 600_000), 10000),
        "request_retry_attempts": reader.get("AWS_REQUEST_RETRY_ATTEMPTS", _int_in(0, 10), 3),
        "instance_pending_timeout_sec": reader.get("AWS_INSTANCE_PENDING_TIMEOUT_SEC", _int_in(1, None), 180),
        "describe_request_retry_attempts": reader.get(
            "AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS", _int_in(0, 10), 0
        ),
        "describe_request_interval_ms": reader.get("AWS_DESCRIBE_REQUEST_INTERVAL", _int_in(0, 60_000), 0),
        "accept_propagated_log_setting": reader.get("ACCEPT_PROPAGATED_LOG_SETTING", _bool, False),
    }
    if values["proxy_port"] is not None and values["proxy_host"] is None:
        reader.problems.append("AWS_PROXY_PORT: set AWS_PROXY_HOST too")
    reader.unknown()
    handlers, handler_problems = load_handler_settings(settings or {})
    problems = reader.problems + handler_problems
    if problems:
        raise ConfigError("invalid AWS provider configuration", problems)
    return AwsConfig(region=str(region), handlers=handlers, **values)

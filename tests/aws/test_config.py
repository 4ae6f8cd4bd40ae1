"""IBM's awsprov_config.json keys and the ``aws.handlers`` settings section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ohfp_aws.settings import (
    DEFAULT_ORDER,
    ASGSettings,
    EC2FleetSettings,
    HandlerSettings,
    RunInstancesSettings,
    SpotFleetSettings,
    load_config,
)
from ohfp_core.errors import ConfigError

DATA = Path(__file__).with_name("data")


def test_ibm_sample_config_is_accepted_unchanged() -> None:
    config = load_config(json.loads((DATA / "awsprov_config.json").read_text()), {}, environ={})
    assert config.region == "us-east-1"
    assert config.credential_file is not None and config.credential_file.endswith("/credentials")
    assert config.request_retry_attempts == 3
    assert config.describe_request_retry_attempts == 3
    assert config.describe_request_interval_ms == 500
    assert config.handlers == HandlerSettings()


def test_defaults() -> None:
    config = load_config({"AWS_REGION": "eu-west-1"}, environ={})
    assert config.connection_timeout_ms == 10000
    assert config.instance_pending_timeout_sec == 180
    assert config.endpoint_url is None and config.proxies is None
    assert config.handlers.order == DEFAULT_ORDER
    assert config.handlers.enabled == frozenset(DEFAULT_ORDER)


def test_every_problem_names_its_key() -> None:
    raw = {
        "AWS_REGION": "us-east-1",
        "AWS_REQUEST_RETRY_ATTEMPTS": 12,
        "AWS_CONNECTION_TIMEOUT_MS": "soon",
        "aws_endpoint_url": "http://localhost:5000",
        "COLOUR": "blue",
    }
    with pytest.raises(ConfigError) as info:
        load_config(raw, {"handlers": {"EC2Flet": {}}}, environ={})
    assert set(info.value.problems) == {
        "AWS_REQUEST_RETRY_ATTEMPTS: must be 0..10, got 12",
        "AWS_CONNECTION_TIMEOUT_MS: must be an integer 1..600000, got 'soon'",
        "aws_endpoint_url: unknown key; did you mean 'AWS_ENDPOINT_URL'?",
        "COLOUR: unknown key (none of the 12 keys known here is close to it)",
        "handlers.EC2Flet: unknown key; did you mean 'EC2Fleet'?",
    }


def test_every_problem_names_its_file(tmp_path: Path) -> None:
    config_file, settings_file = tmp_path / "awsinstprov_config.json", tmp_path / "ohfp.json"
    with pytest.raises(ConfigError) as info:
        load_config(
            {"AWS_REGON": "us-east-1"},
            {"evnts": {}},
            environ={},
            config_file=config_file,
            settings_file=settings_file,
        )
    assert info.value.problems == (
        f"{config_file}: $.AWS_REGON: unknown key; did you mean 'AWS_REGION'?",
        f"{settings_file}: $.aws.evnts: unknown key; did you mean 'events'?",
        f"{config_file}: $.AWS_REGION: required (set it in the provider config or the AWS_REGION"
        " environment variable)",
    )


def test_region_falls_back_to_the_environment() -> None:
    assert load_config({}, environ={"AWS_REGION": "ap-south-1"}).region == "ap-south-1"
    assert load_config({}, environ={"AWS_DEFAULT_REGION": "eu-north-1"}).region == "eu-north-1"
    assert load_config({"AWS_REGION": "us-west-2"}, environ={"AWS_REGION": "x"}).region == "us-west-2"
    with pytest.raises(ConfigError, match="AWS_REGION: required"):
        load_config({}, environ={})


def test_quoted_numbers_and_proxy() -> None:
    config = load_config(
        {
            "AWS_REGION": "us-east-1",
            "AWS_PROXY_HOST": "proxy.local",
            "AWS_PROXY_PORT": "3128",
            "AWS_REQUEST_RETRY_ATTEMPTS": "0",
            "ACCEPT_PROPAGATED_LOG_SETTING": "true",
        },
        environ={},
    )
    assert config.proxies == {"http": "http://proxy.local:3128", "https": "http://proxy.local:3128"}
    assert config.request_retry_attempts == 0
    assert config.accept_propagated_log_setting is True
    with pytest.raises(ConfigError, match="AWS_PROXY_PORT: set AWS_PROXY_HOST too"):
        load_config({"AWS_REGION": "us-east-1", "AWS_PROXY_PORT": 3128}, environ={})


def test_handler_settings_spelling() -> None:
    settings = {
        "handlers": {
            "order": ["RunInstances", "EC2Fleet"],
            "EC2Fleet": {"enabled": True, "defaultFleetType": "instant", "maxSpotPercent": 50},
            "ASG": {"enabled": False, "minSize": 1, "maxSize": 20, "healthCheckType": "ELB"},
            "SpotFleet": {"allocationStrategy": "diversified"},
            "RunInstances": {"maxPerCall": 10},
        }
    }
    handlers = load_config({"AWS_REGION": "us-east-1"}, settings, environ={}).handlers
    assert handlers == HandlerSettings(
        order=("RunInstances", "EC2Fleet"),
        ec2_fleet=EC2FleetSettings(enabled=True, default_fleet_type="instant", max_spot_percent=50),
        asg=ASGSettings(enabled=False, min_size=1, max_size=20, health_check_type="ELB"),
        spot_fleet=SpotFleetSettings(allocation_strategy="diversified"),
        run_instances=RunInstancesSettings(max_per_call=10),
    )
    assert handlers.enabled == frozenset({"EC2Fleet", "SpotFleet", "RunInstances"})


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"handler": {}}, "handler: unknown key"),
        ({"handlers": {"order": ["Lambda"]}}, "handlers.order: unknown API 'Lambda'"),
        ({"handlers": {"order": ["ASG", "ASG"]}}, "handlers.order: lists an API twice"),
        ({"handlers": {"ASG": {"maxsize": 3}}}, "handlers.ASG.maxsize: unknown key"),
        (
            {"handlers": {"EC2Fleet": {"maxSpotPercent": 101}}},
            "handlers.EC2Fleet.maxSpotPercent: must be 0..100",
        ),
        (
            {"handlers": {"EC2Fleet": {"defaultFleetType": "x"}}},
            "handlers.EC2Fleet.defaultFleetType: must be one of",
        ),
        (
            {"handlers": {"RunInstances": {"maxPerCall": 0}}},
            "handlers.RunInstances.maxPerCall: must be 1..1000",
        ),
        ({"handlers": {"Lambda": {}}}, "handlers.Lambda: unknown key"),
        ({"handlers": {"ASG": "off"}}, "handlers.ASG: must be an object"),
        (
            {"handlers": {api: {"enabled": False} for api in DEFAULT_ORDER}},
            "handlers: every AWS API is disabled",
        ),
    ],
)
def test_bad_settings(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"AWS_REGION": "us-east-1"}, settings, environ={})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems

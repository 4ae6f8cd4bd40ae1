"""AWS is reached through the typed service wrappers alone, each call crossing the error
boundary once and leaving one DEBUG line.

- no module outside ``ohfp_aws/access`` touches a botocore client (``clients.<service>``, a
  ``.client.`` call, a paginator) — the one place to log, retry or type a call stays one;
- every wrapper call, paginated or not, is logged with its operation, duration, attempts,
  HTTP status, AWS request id and error code, and masking applies to the line;
- a wrapper translates AWS's errors (the caller never sees botocore's).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ohfp_aws.provider import AwsProvider
from ohfp_core.errors import CloudError
from ohfp_core.logs import configure_logging, reset_logging

from .conftest import Network
from .fleet_support import answer

PACKAGE = Path(__file__).resolve().parents[2] / "ohfp_aws" / "src" / "ohfp_aws"
SERVICES = ("ec2", "autoscaling", "ssm", "sts", "sqs", "events", "service_quotas")
RAW_CLIENT = re.compile(
    rf"\bclients\.({'|'.join(SERVICES)})\b"  # a client of AwsClients
    r"|\.client\.[a-z_]+\("  # a wrapper's client, called
    r"|\bget_paginator\("  # a paginator, made
)


def test_nothing_outside_the_wrappers_calls_a_client() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.parent.name != "access"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if RAW_CLIENT.search(line)
    ]
    assert offenders == []


def test_the_guard_finds_a_raw_call() -> None:
    """The pattern above catches each spelling it is there for."""
    for line in (
        "ctx.clients.ec2.run_instances(**params)",
        "self.ctx.services.ec2.client.describe_fleets(FleetIds=ids)",
        "ec2.get_paginator('describe_instances')",
    ):
        assert RAW_CLIENT.search(line), line
    assert not RAW_CLIENT.search("ctx.services.ec2.fleets(ids)")


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Logging at DEBUG to a buffer, as ``OHFP_LOG_LEVEL=DEBUG`` configures it."""
    out = io.StringIO()
    configure_logging(logdir=None, instance="awsinst", level="DEBUG", stream=out)
    try:
        yield out
    finally:
        reset_logging()


def _calls(out: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == "aws call"]


def test_one_debug_line_per_call_and_page(
    aws_provider: AwsProvider, network: Network, debug_log: io.StringIO
) -> None:
    ec2 = aws_provider.aws.services.ec2
    assert ec2.subnets(list(network.subnet_ids))
    assert list(ec2.instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])) == []
    lines = _calls(debug_log)
    assert [line["aws_operation"] for line in lines] == ["DescribeSubnets", "DescribeInstances"]
    for line in lines:
        assert line["level"] == "debug"
        assert line["attempts"] == 1 and line["http_status"] == 200 and line["error_code"] is None
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["aws_request_id"]


def test_a_refused_call_is_translated_and_logged_with_its_code(
    aws_provider: AwsProvider, debug_log: io.StringIO
) -> None:
    with pytest.raises(CloudError) as refused:
        aws_provider.aws.services.ec2.subnets(["subnet-0000000000000dead"])
    assert refused.value.code == "InvalidSubnetID.NotFound"
    assert str(refused.value).startswith("DescribeSubnets: ")
    (line,) = _calls(debug_log)
    assert line["aws_operation"] == "DescribeSubnets"
    assert line["error_code"] == "InvalidSubnetID.NotFound"
    assert line["http_status"] == 400 and line["attempts"] == 1


def test_the_debug_line_is_masked(aws_provider: AwsProvider, debug_log: io.StringIO) -> None:
    """A request id (or anything AWS sends back) that carries a URL password is masked like
    every other line."""
    leaky = "https://user:hunter2@proxy.example/"
    client = aws_provider.clients.ec2
    answer(
        client,
        "DescribeAvailabilityZones",
        lambda params: {
            "AvailabilityZones": [],
            "ResponseMetadata": {"RequestId": leaky, "HTTPStatusCode": 200},
        },
    )
    aws_provider.aws.services.ec2.availability_zones()
    (line,) = _calls(debug_log)
    assert line["aws_request_id"] == "https://***@proxy.example/"
    assert "hunter2" not in debug_log.getvalue()

"""Logging: JSON lines with bound context, level filtering, private files, redaction, no stdout."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from ohfp_core.errors import ConfigError
from ohfp_core.logs import bound, configure_logging, get_logger, reset_logging


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    reset_logging()
    yield
    reset_logging()  # also closes a log file a test opened


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_file_lines_are_json_with_bound_context(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    configure_logging(logdir=logdir, instance="awsinst")
    structlog.contextvars.bind_contextvars(
        operation="requestMachines", instance="awsinst", request_id="req-1"
    )
    get_logger("ohfp.core").info("provisioned", count=2)
    get_logger().warning("slow cloud")

    records = lines((logdir / "ohfp-awsinst.log").read_text())

    assert [r["event"] for r in records] == ["provisioned", "slow cloud"]
    first = records[0]
    assert first["level"] == "info"
    assert first["logger"] == "ohfp.core"
    assert first["count"] == 2
    assert "logger" not in records[1]
    for record in records:
        assert record["operation"] == "requestMachines"
        assert record["instance"] == "awsinst"
        assert record["request_id"] == "req-1"
        stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
        assert stamp.utcoffset() == timedelta(0)


def test_bound_values_tag_the_lines_of_a_block_in_this_thread_only() -> None:
    """What a call works on (its request id) is on every line it logs, the provider's too,
    and on no line of another thread (a resident service serves calls in threads)."""
    import threading

    out = io.StringIO()
    configure_logging(logdir=None, instance="inst", stream=out)
    other_thread_ready, this_thread_done = threading.Event(), threading.Event()

    def other() -> None:
        other_thread_ready.set()
        this_thread_done.wait(10)
        get_logger("other").info("elsewhere")

    thread = threading.Thread(target=other)
    thread.start()
    other_thread_ready.wait(10)
    with bound(request_id="req-1", template_id="T1"):
        get_logger("ohfp_aws").info("provisioning")
        with bound(api="EC2Fleet"):
            get_logger("ohfp_aws").info("fleet created", request_id="req-own")
        this_thread_done.set()
        thread.join(10)
    get_logger().info("after")
    records = {r["event"]: r for r in lines(out.getvalue())}
    assert (records["provisioning"]["request_id"], records["provisioning"]["template_id"]) == ("req-1", "T1")
    created = records["fleet created"]
    assert (created["request_id"], created["api"]) == ("req-own", "EC2Fleet")
    assert "request_id" not in records["elsewhere"] and "request_id" not in records["after"]


def test_log_file_is_appended_and_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o002)
    try:
        configure_logging(logdir=tmp_path, instance="inst")
        get_logger().info("first")
        configure_logging(logdir=tmp_path, instance="inst")
        get_logger().info("second")
    finally:
        os.umask(old_umask)
    path = tmp_path / "ohfp-inst.log"

    assert [r["event"] for r in lines(path.read_text())] == ["first", "second"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_level_filtering() -> None:
    out = io.StringIO()
    configure_logging(logdir=None, instance="inst", level="WARNING", stream=out)
    log = get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [r["event"] for r in lines(out.getvalue())] == ["w", "e"]

    out = io.StringIO()
    configure_logging(logdir=None, instance="inst", level="debug", stream=out)
    get_logger().debug("d")
    assert [r["level"] for r in lines(out.getvalue())] == ["debug"]


def test_bad_level_and_instance_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log level"):
        configure_logging(logdir=None, instance="inst", level="LOUD")
    with pytest.raises(ConfigError, match="instance name"):
        configure_logging(logdir=tmp_path, instance="../escape")
    assert list(tmp_path.iterdir()) == []


def test_secrets_are_redacted_at_any_depth_and_inside_strings() -> None:
    out = io.StringIO()
    configure_logging(logdir=None, instance="inst", stream=out)
    structlog.contextvars.bind_contextvars(session_token="ctx-token-value")
    log = get_logger()
    log.info(
        "calling cloud with password=hunter2",
        password="pw-value",
        aws_secret_access_key="sak-value",
        SessionToken="st-value",
        key="key-value",
        Authorization="Bearer auth-value",
        region="us-east-1",
        config={
            "Credentials": {"AccessKeyId": "AKIA", "Expiration": 1},
            "nested": {"client_secret": "cs-value", "port": 443},
            "items": [{"api_token": "list-token-value"}, "AWS_SECRET_ACCESS_KEY: env-value"],
        },
        detail="secret_access_key = spaced-value and more",
        error=RuntimeError("bad 'password': 'repr-value'"),
        flags=(True, 3, 1.5, None),
    )
    try:
        raise ValueError("login failed with password: exc-value")
    except ValueError:
        log.exception("failed")

    text = out.getvalue()
    for secret in (
        "hunter2",
        "pw-value",
        "sak-value",
        "st-value",
        "key-value",
        "auth-value",
        "AKIA",
        "cs-value",
        "list-token-value",
        "env-value",
        "spaced-value",
        "exc-value",
        "ctx-token-value",
        "repr-value",
    ):
        assert secret not in text
    first, second = lines(text)
    assert first["event"] == "calling cloud with password=***"
    assert first["password"] == "***"
    assert first["Authorization"] == "***"
    assert first["session_token"] == "***"
    assert first["region"] == "us-east-1"
    assert first["config"]["Credentials"] == "***"
    assert first["config"]["nested"] == {"client_secret": "***", "port": 443}
    assert first["config"]["items"] == [{"api_token": "***"}, "AWS_SECRET_ACCESS_KEY: ***"]
    assert first["detail"] == "secret_access_key = *** and more"
    assert first["error"].startswith("RuntimeError(")
    assert first["flags"] == [True, 3, 1.5, None]
    assert "ValueError" in second["exception"]


def test_nothing_reaches_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("early").warning("before configure")
    get_logger("early").info("below the default level")
    configure_logging(logdir=None, instance="inst", level="DEBUG")
    get_logger().debug("after configure")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert [r["event"] for r in lines(captured.err)] == ["before configure", "after configure"]

"""Client settings come from the config and Host Factory's time for the call; botocore is
imported only when a client is made."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_aws.access.boundary import aws_call
from ohfp_aws.access.session import AwsClients, Budget
from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_aws.settings import load_config
from ohfp_core.errors import CloudError
from ohfp_core.models import Template

from .aws_support import failing, hooks_for
from .conftest import AMI_ID, REGION, Network, make_context, make_template
from .silent_endpoint import silent_endpoint


def test_clients_follow_the_config(aws_env: None) -> None:
    config = load_config(
        {
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://localhost:5000",
            "AWS_REQUEST_RETRY_ATTEMPTS": 5,
            "AWS_CONNECTION_TIMEOUT_MS": 2500,
            "AWS_PROXY_HOST": "proxy.local",
            "AWS_PROXY_PORT": 3128,
        },
        environ={},
    )
    clients = AwsClients(config)
    ec2 = clients.ec2
    assert clients.ec2 is ec2 and clients.created == [ec2]
    assert ec2.meta.region_name == "eu-west-1"
    assert ec2.meta.endpoint_url == "http://localhost:5000"
    settings: Any = ec2.meta.config  # botocore's Config keeps its options as attributes
    assert settings.retries == {"mode": "standard", "total_max_attempts": 6}
    assert settings.connect_timeout == 2.5
    assert settings.proxies == {"http": "http://proxy.local:3128", "https": "http://proxy.local:3128"}
    assert "ohfp" in settings.user_agent_extra
    assert clients.autoscaling.meta.service_model.service_name == "autoscaling"
    assert len(clients.created) == 2


def test_credential_file_is_set_on_the_session_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = AKIDFROMFILE\naws_secret_access_key = secretfromfile\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    clients = AwsClients(
        load_config({"AWS_REGION": "us-east-1", "AWS_CREDENTIAL_FILE": str(credentials)}, environ={})
    )
    assert clients.session.get_credentials().access_key == "AKIDFROMFILE"
    import os

    assert "AWS_SHARED_CREDENTIALS_FILE" not in os.environ


def test_provider_import_does_not_import_boto3() -> None:
    code = (
        "import sys, ohfp_aws.provider, ohfp_aws.cli\n"
        "print(any(m.split('.')[0] in ('boto3', 'botocore') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# Host Factory's time for a call -----------------------------------------------------------------
MARGIN_SEC = 10  # generous: a loaded machine must not make these fail


def test_the_budget_keeps_a_reserve() -> None:
    assert Budget(240).seconds == 235
    assert Budget(6).seconds == 3  # the reserve is at most half of the time
    frozen = Budget(20, clock=lambda: 100.0)
    assert frozen.left() == 15


def test_client_timeouts_are_capped_by_the_budget(aws_env: None) -> None:
    config = load_config({"AWS_REGION": REGION, "AWS_CONNECTION_TIMEOUT_MS": 10000}, environ={})
    settings: Any = AwsClients(config, Budget(8)).ec2.meta.config
    assert 0 < settings.connect_timeout <= 4
    assert 0 < settings.read_timeout <= 4


def test_a_spent_budget_sends_nothing(aws_env: None) -> None:
    sent: list[str] = []
    config = load_config({"AWS_REGION": REGION, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, environ={})
    clients = AwsClients(config, Budget(0))
    clients.sts.meta.events.register("before-send", lambda **_: sent.append("sent"))
    with pytest.raises(CloudError) as info, aws_call("GetCallerIdentity"):
        clients.sts.get_caller_identity()
    assert info.value.code == "ActionTimeout" and info.value.retryable
    assert info.value.message.startswith("GetCallerIdentity: no answer from AWS within the 0 s")
    assert sent == []  # stopped before the request went out


def test_a_retry_that_cannot_fit_is_not_made(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Always throttled, with 4.75 s of budget on a stopped clock: the first two retries'
    longest back-offs (1 s, 2 s) leave a second for the attempt, the third's (4 s) does not."""
    from moto.ec2.models.instances import InstanceBackend

    ctx = make_context(tmp_path, None, {"handlers": {"order": ["RunInstances"]}})
    config = load_config(ctx.config, ctx.settings, environ={})
    provider = AwsProvider(ctx, AwsClients(config, Budget(9.5, clock=lambda: 0.0)))
    with (
        failing(monkeypatch, InstanceBackend, "run_instances", "RequestLimitExceeded") as seen,
        pytest.raises(CloudError) as info,
    ):
        hooks_for(provider).provision("req-b", make_template(network), 1)
    assert info.value.code == "ActionTimeout"
    assert info.value.message.startswith("RunInstances: no answer from AWS within the 4.75 s")
    assert seen[0] == 3


@pytest.mark.slow
def test_provisioning_against_a_silent_endpoint_ends_within_the_budget(aws_env: None, tmp_path: Path) -> None:
    """An endpoint that accepts connections and never answers: provisioning fails with a clear
    CloudError inside Host Factory's time for the call (6 s here; before the budget it took
    minutes)."""
    with silent_endpoint() as endpoint:
        ctx = make_context(tmp_path, {"AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint})
        ctx = attrs.evolve(ctx, timeout_sec=6.0)
        started = time.monotonic()
        provider = make_provider(ctx)
        template = Template(
            template_id="T",
            max_number=5,
            fields={"imageId": AMI_ID, "vmType": "t3.micro", "providerApi": "RunInstances"},
        )
        with pytest.raises(CloudError) as info:
            hooks_for(provider).provision("req-silent", template, 1)
        elapsed = time.monotonic() - started
    assert info.value.code == "ActionTimeout" and info.value.retryable
    assert info.value.message.startswith("DescribeInstances: no answer from AWS within the 3 s")
    assert elapsed < ctx.timeout_sec + MARGIN_SEC


class _RotatingProvider:
    """A credential provider whose credentials expire within botocore's mandatory refresh
    window (10 minutes), so botocore refreshes them before each signature (as an assumed
    role's are near their end), each time new."""

    METHOD = "rotating"
    CANONICAL_NAME = "rotating"

    def __init__(self) -> None:
        self.issued: list[str] = []

    def fetch(self) -> dict[str, str]:
        from datetime import UTC, datetime, timedelta

        serial = f"{len(self.issued):04d}"
        self.issued.append(serial)
        return {
            "access_key": f"ROTATINGKEY{serial}",
            "secret_key": f"rotating-secret-{serial}",
            "token": f"rotating-token-{serial}",
            "expiry_time": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
        }

    def load(self) -> Any:
        from botocore.credentials import RefreshableCredentials

        return RefreshableCredentials.create_from_metadata(self.fetch(), self.fetch, self.METHOD)


def test_every_credential_a_client_signs_with_is_masked_refreshed_ones_too(moto_aws: None) -> None:
    from ohfp_aws.access.services import Services
    from ohfp_core.masking import forget_secrets, mask_secrets

    forget_secrets()
    clients = AwsClients(load_config({"AWS_REGION": REGION}, environ={}))
    rotating = _RotatingProvider()
    clients.session.get_component("credential_provider").insert_before("env", rotating)
    services = Services(clients)
    services.sts.account()
    services.ec2.availability_zones()
    assert len(rotating.issued) >= 3  # the first, and one refresh per signed call
    for serial in rotating.issued[1:]:  # the first is refreshed before it signs anything
        for value in (f"ROTATINGKEY{serial}", f"rotating-secret-{serial}", f"rotating-token-{serial}"):
            assert mask_secrets(f"echoed: {value}") == "echoed: ***", value
    forget_secrets()

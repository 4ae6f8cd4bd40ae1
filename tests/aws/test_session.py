"""Client settings come from the config; boto3 is imported only when a client is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ohfp_aws.config import load_config
from ohfp_aws.session import AwsClients


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
    assert ec2.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    assert ec2.meta.config.connect_timeout == 2.5
    assert ec2.meta.config.proxies == {"http": "http://proxy.local:3128", "https": "http://proxy.local:3128"}
    assert "ohfp" in ec2.meta.config.user_agent_extra
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

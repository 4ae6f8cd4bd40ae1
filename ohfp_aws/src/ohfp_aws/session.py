"""AWS clients for one provider instance, created on first use.

botocore is imported only when a client is first needed, so HF calls that never reach AWS
(and importing :mod:`ohfp_aws.provider`) do not pay for it. Clients come straight from a
botocore session: they are the clients boto3 would make, without importing boto3's
resource and S3 transfer layers. The process keeps one botocore session (per credentials
file; a process serves one provider instance, so in practice one), which parses each AWS
service model once.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ohfp_aws.config import AwsConfig

READ_TIMEOUT_SEC = 60
USER_AGENT = "ohfp"

# One botocore session per process and credentials file (see the module docstring).
_SESSIONS: dict[str | None, Any] = {}


def botocore_session(credential_file: str | None) -> Any:
    """The process's botocore session reading credentials from ``credential_file`` (the
    default chain when None), made on first use. The file is set on the session only: the
    process environment is left alone."""
    if credential_file not in _SESSIONS:
        import botocore.session

        session = botocore.session.get_session()
        if credential_file:
            session.set_config_variable("credentials_file", credential_file)
        _SESSIONS[credential_file] = session
    return _SESSIONS[credential_file]


class AwsClients:
    """Lazily created, cached clients for the configured region, endpoint and credentials.

    Retries use botocore's ``standard`` mode with ``AWS_REQUEST_RETRY_ATTEMPTS`` retries
    (so ``total_max_attempts`` is one more). ``AWS_CREDENTIAL_FILE`` is set on the botocore
    session only (the process environment is left alone); without it the default
    credential chain applies.
    """

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self.created: list[Any] = []  # every client made, in order (tests hook their events)

    @cached_property
    def session(self) -> Any:
        """The botocore session all clients share (one credential resolution per process)."""
        return botocore_session(self.config.credential_file)

    @cached_property
    def client_config(self) -> Any:
        """The botocore ``Config`` every client uses."""
        from botocore.config import Config

        return Config(
            region_name=self.config.region,
            retries={"mode": "standard", "total_max_attempts": self.config.request_retry_attempts + 1},
            connect_timeout=self.config.connection_timeout_ms / 1000,
            read_timeout=READ_TIMEOUT_SEC,
            proxies=self.config.proxies,
            user_agent_extra=USER_AGENT,
        )

    def client(self, service: str) -> Any:
        """A new client for ``service`` (prefer the cached properties)."""
        client = self.session.create_client(
            service,
            region_name=self.config.region,
            config=self.client_config,
            endpoint_url=self.config.endpoint_url,
        )
        self.created.append(client)
        return client

    @cached_property
    def ec2(self) -> Any:
        return self.client("ec2")

    @cached_property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @cached_property
    def ssm(self) -> Any:
        return self.client("ssm")

    @cached_property
    def sts(self) -> Any:
        return self.client("sts")

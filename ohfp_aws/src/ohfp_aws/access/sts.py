"""STS as ohfp calls it: who the credentials are, through the error boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import call

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient


class Sts:
    """The STS operations ohfp uses, on one botocore client (``client``)."""

    def __init__(self, client: STSClient) -> None:
        self.client = client

    def account(self) -> str:
        """GetCallerIdentity: the account the credentials belong to."""
        return call("GetCallerIdentity", self.client.get_caller_identity).get("Account", "")

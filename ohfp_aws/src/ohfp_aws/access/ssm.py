"""Systems Manager as ohfp calls it: parameters (AMI ids by path), through the error boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import call

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


class Ssm:
    """The SSM operations ohfp uses, on one botocore client (``client``)."""

    def __init__(self, client: SSMClient) -> None:
        self.client = client

    def parameter(self, name: str) -> str:
        """GetParameter: the value of parameter ``name``."""
        return call("GetParameter", self.client.get_parameter, Name=name)["Parameter"].get("Value", "")

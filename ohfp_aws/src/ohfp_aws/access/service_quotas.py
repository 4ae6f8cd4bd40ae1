"""Service Quotas as ohfp calls it: an account's quotas, through the error boundary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import call

if TYPE_CHECKING:
    from mypy_boto3_service_quotas import ServiceQuotasClient
    from mypy_boto3_service_quotas.type_defs import ServiceQuotaTypeDef


class ServiceQuotas:
    """The Service Quotas operations ohfp uses, on one botocore client (``client``)."""

    def __init__(self, client: ServiceQuotasClient) -> None:
        self.client = client

    def quota(self, service: str, code: str) -> ServiceQuotaTypeDef:
        """GetServiceQuota: the account's applied quota (NoSuchResourceException: none)."""
        return call("GetServiceQuota", self.client.get_service_quota, ServiceCode=service, QuotaCode=code)[
            "Quota"
        ]

    def default_quota(self, service: str, code: str) -> ServiceQuotaTypeDef:
        """GetAWSDefaultServiceQuota: AWS's default for the quota."""
        reply = call(
            "GetAWSDefaultServiceQuota",
            self.client.get_aws_default_service_quota,
            ServiceCode=service,
            QuotaCode=code,
        )
        return reply["Quota"]

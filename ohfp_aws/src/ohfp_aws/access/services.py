"""The AWS services of one provider instance, each a small typed wrapper made on first use.

Every module of ``ohfp_aws`` reaches AWS through these (``ctx.services.ec2.fleets(…)``),
never through a botocore client: the wrappers are the one place each call crosses the error
boundary and is logged (:mod:`ohfp_aws.access.boundary`). A wrapper's module and its client
are made only when a call needs the service.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ohfp_aws.access.autoscaling import AutoScaling
    from ohfp_aws.access.ec2 import Ec2
    from ohfp_aws.access.eventbridge import EventBridge
    from ohfp_aws.access.service_quotas import ServiceQuotas
    from ohfp_aws.access.session import AwsClients
    from ohfp_aws.access.sqs import Sqs
    from ohfp_aws.access.ssm import Ssm
    from ohfp_aws.access.sts import Sts


class Services:
    """EC2, Auto Scaling, SSM, STS, SQS, EventBridge and Service Quotas on ``clients``."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    @cached_property
    def ec2(self) -> Ec2:
        from ohfp_aws.access.ec2 import Ec2

        return Ec2(self.clients.ec2)

    @cached_property
    def autoscaling(self) -> AutoScaling:
        from ohfp_aws.access.autoscaling import AutoScaling

        return AutoScaling(self.clients.autoscaling)

    @cached_property
    def ssm(self) -> Ssm:
        from ohfp_aws.access.ssm import Ssm

        return Ssm(self.clients.ssm)

    @cached_property
    def sts(self) -> Sts:
        from ohfp_aws.access.sts import Sts

        return Sts(self.clients.sts)

    @cached_property
    def sqs(self) -> Sqs:
        from ohfp_aws.access.sqs import Sqs

        return Sqs(self.clients.sqs)

    @cached_property
    def events(self) -> EventBridge:
        from ohfp_aws.access.eventbridge import EventBridge

        return EventBridge(self.clients.events)

    @cached_property
    def service_quotas(self) -> ServiceQuotas:
        from ohfp_aws.access.service_quotas import ServiceQuotas

        return ServiceQuotas(self.clients.service_quotas)

"""Auto Scaling as ohfp calls it: one method per operation, each through the error boundary
(see :mod:`ohfp_aws.access.ec2`); parameters typed by the published Auto Scaling stubs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import call, pages

if TYPE_CHECKING:
    from typing import Unpack

    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_autoscaling.type_defs import (
        ActivityTypeDef,
        AutoScalingGroupTypeDef,
        CreateAutoScalingGroupTypeTypeDef,
    )


class AutoScaling:
    """The Auto Scaling operations ohfp uses, on one botocore client (``client``)."""

    def __init__(self, client: AutoScalingClient) -> None:
        self.client = client

    def create_group(self, **params: Unpack[CreateAutoScalingGroupTypeTypeDef]) -> None:
        """CreateAutoScalingGroup."""
        call("CreateAutoScalingGroup", self.client.create_auto_scaling_group, **params)

    def groups(self, names: Sequence[str], page_size: int) -> Iterator[AutoScalingGroupTypeDef]:
        """DescribeAutoScalingGroups of ``names``, ``page_size`` groups a page, every page."""
        paginate = self.client.get_paginator("describe_auto_scaling_groups").paginate
        found = pages(
            "DescribeAutoScalingGroups",
            paginate,
            AutoScalingGroupNames=list(names),
            PaginationConfig={"PageSize": page_size},
        )
        for page in found:
            yield from page.get("AutoScalingGroups", [])

    def any_group(self) -> None:
        """DescribeAutoScalingGroups of one group at most: the service answers (health)."""
        call("DescribeAutoScalingGroups", self.client.describe_auto_scaling_groups, MaxRecords=1)

    def activities(self, name: str, limit: int) -> list[ActivityTypeDef]:
        """The group's latest ``limit`` scaling activities, newest first (one call)."""
        reply = call(
            "DescribeScalingActivities",
            self.client.describe_scaling_activities,
            AutoScalingGroupName=name,
            MaxRecords=limit,
        )
        return reply.get("Activities", [])

    def update_min_size(self, name: str, min_size: int) -> None:
        """UpdateAutoScalingGroup: the group's MinSize."""
        call(
            "UpdateAutoScalingGroup",
            self.client.update_auto_scaling_group,
            AutoScalingGroupName=name,
            MinSize=min_size,
        )

    def detach_instances(self, name: str, instance_ids: Sequence[str], *, decrement: bool) -> None:
        """DetachInstances (at most 20), lowering the desired capacity when ``decrement``."""
        call(
            "DetachInstances",
            self.client.detach_instances,
            AutoScalingGroupName=name,
            InstanceIds=list(instance_ids),
            ShouldDecrementDesiredCapacity=decrement,
        )

    def delete_group(self, name: str, *, force: bool) -> None:
        """DeleteAutoScalingGroup; ``force`` terminates its instances too."""
        call(
            "DeleteAutoScalingGroup",
            self.client.delete_auto_scaling_group,
            AutoScalingGroupName=name,
            ForceDelete=force,
        )

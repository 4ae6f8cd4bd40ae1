"""EC2 as ohfp calls it: one method per operation, each through the error boundary.

Describe calls yield the items of every page (botocore's paginators, where botocore has one;
DescribeFleetInstances has none and is paged by its ``NextToken`` here); other calls return
AWS's reply. Every call is :func:`~ohfp_aws.access.boundary.call` or
:func:`~ohfp_aws.access.boundary.pages`: errors are ohfp's, and each call is one DEBUG line.
Parameters are typed by the published EC2 stubs, so mypy checks every name and value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ohfp_aws.access.boundary import call, error_code, pages
from ohfp_core.errors import CloudError

if TYPE_CHECKING:
    from typing import Unpack

    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        ActiveInstanceTypeDef,
        AvailabilityZoneTypeDef,
        CancelSpotFleetRequestsResponseTypeDef,
        CreateFleetRequestTypeDef,
        CreateFleetResultTypeDef,
        CreateLaunchTemplateRequestTypeDef,
        DeleteFleetsResultTypeDef,
        DescribeInstancesRequestPaginateTypeDef,
        FilterTypeDef,
        FleetDataTypeDef,
        HistoryRecordEntryTypeDef,
        HistoryRecordTypeDef,
        ImageTypeDef,
        InstanceTypeDef,
        InstanceTypeInfoTypeDef,
        LaunchTemplateTypeDef,
        ModifyFleetRequestTypeDef,
        ModifySpotFleetRequestRequestTypeDef,
        ReservationResponseTypeDef,
        RunInstancesRequestTypeDef,
        SpotFleetRequestConfigDataTypeDef,
        SpotFleetRequestConfigTypeDef,
        SpotInstanceRequestTypeDef,
        SubnetTypeDef,
        TagDescriptionTypeDef,
    )


FILTER_VALUES = 200
"""The most values one Describe* filter takes."""
_LAUNCH_TEMPLATE_NOT_FOUND = frozenset(
    {
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateId.Malformed",
        "InvalidLaunchTemplateName.NotFoundException",
    }
)


def _filter_batches(ids: Sequence[str]) -> Iterator[list[str]]:
    """``ids`` without repeats, in lists a filter takes."""
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), FILTER_VALUES):
        yield unique[start : start + FILTER_VALUES]


class Ec2:
    """The EC2 operations ohfp uses, on one botocore client (``client``, for tests' events)."""

    def __init__(self, client: EC2Client) -> None:
        self.client = client

    @property
    def endpoint_url(self) -> str:
        """The URL EC2 calls go to (configured or botocore's default; no call)."""
        return str(self.client.meta.endpoint_url)

    # -- instances ------------------------------------------------------------------------

    def instances(
        self, **params: Unpack[DescribeInstancesRequestPaginateTypeDef]
    ) -> Iterator[InstanceTypeDef]:
        """The instances DescribeInstances lists for ``params`` (ids, filters), every page."""
        for page in pages(
            "DescribeInstances", self.client.get_paginator("describe_instances").paginate, **params
        ):
            for reservation in page.get("Reservations", []):
                yield from reservation.get("Instances", [])

    def run_instances(self, **params: Unpack[RunInstancesRequestTypeDef]) -> ReservationResponseTypeDef:
        """RunInstances: the reservation of the instances AWS launched."""
        return call("RunInstances", self.client.run_instances, **params)

    def terminate_instances(self, instance_ids: Sequence[str]) -> None:
        """TerminateInstances of ``instance_ids`` (at most 1000)."""
        call("TerminateInstances", self.client.terminate_instances, InstanceIds=list(instance_ids))

    def spot_instance_requests(
        self, filters: Sequence[FilterTypeDef]
    ) -> Iterator[SpotInstanceRequestTypeDef]:
        """The spot instance requests DescribeSpotInstanceRequests lists for ``filters``."""
        paginate = self.client.get_paginator("describe_spot_instance_requests").paginate
        for page in pages("DescribeSpotInstanceRequests", paginate, Filters=list(filters)):
            yield from page.get("SpotInstanceRequests", [])

    # -- what instances launch from ---------------------------------------------------------

    def images(self, image_ids: Sequence[str]) -> list[ImageTypeDef]:
        """DescribeImages of ``image_ids``."""
        return call("DescribeImages", self.client.describe_images, ImageIds=list(image_ids)).get("Images", [])

    # -- what exists (templates validate --online) ---------------------------------------------

    def existing_images(self, image_ids: Sequence[str]) -> set[str]:
        """Which of ``image_ids`` exist and can be launched from (DescribeImages)."""
        return self._existing(
            "DescribeImages", self.client.describe_images, "image-id", ("Images", "ImageId"), image_ids
        )

    def existing_subnets(self, subnet_ids: Sequence[str]) -> set[str]:
        """Which of ``subnet_ids`` exist (DescribeSubnets)."""
        return self._existing(
            "DescribeSubnets", self.client.describe_subnets, "subnet-id", ("Subnets", "SubnetId"), subnet_ids
        )

    def existing_security_groups(self, group_ids: Sequence[str]) -> set[str]:
        """Which of ``group_ids`` exist (DescribeSecurityGroups)."""
        describe = self.client.describe_security_groups
        return self._existing(
            "DescribeSecurityGroups", describe, "group-id", ("SecurityGroups", "GroupId"), group_ids
        )

    def _existing(
        self,
        operation: str,
        describe: Callable[..., Any],
        id_filter: str,
        items: tuple[str, str],
        ids: Sequence[str],
    ) -> set[str]:
        """The ``ids`` ``describe`` finds, filtered by ``id_filter`` (a missing id is left out,
        not an error as it is when asked by id), in batches a filter takes; ``items`` says
        where the reply lists them and their ids (``("Subnets", "SubnetId")``)."""
        listed, id_key = items
        found: set[str] = set()
        for batch in _filter_batches(ids):
            reply = call(operation, describe, Filters=[{"Name": id_filter, "Values": batch}])
            found.update(str(item.get(id_key, "")) for item in reply.get(listed, []))
        return found

    def existing_launch_templates(self, launch_template_ids: Sequence[str]) -> set[str]:
        """Which of ``launch_template_ids`` exist: one DescribeLaunchTemplates of them all
        (AWS has no id filter and refuses the call when one is missing); only then one call
        per id, to tell which."""
        ids = list(dict.fromkeys(launch_template_ids))
        if not ids:
            return set()
        try:
            return self._launch_templates_by_id(ids)
        except CloudError as exc:
            if error_code(exc) not in _LAUNCH_TEMPLATE_NOT_FOUND:
                raise
        if len(ids) == 1:
            return set()
        return {i for i in ids if self.existing_launch_templates([i])}

    def _launch_templates_by_id(self, ids: list[str]) -> set[str]:
        reply = call("DescribeLaunchTemplates", self.client.describe_launch_templates, LaunchTemplateIds=ids)
        return {t.get("LaunchTemplateId", "") for t in reply.get("LaunchTemplates", [])}

    def instance_types(self, names: Sequence[str]) -> Iterator[InstanceTypeInfoTypeDef]:
        """DescribeInstanceTypes of ``names`` (at most 100), every page."""
        paginate = self.client.get_paginator("describe_instance_types").paginate
        for page in pages("DescribeInstanceTypes", paginate, InstanceTypes=list(names)):  # type: ignore[arg-type]
            yield from page.get("InstanceTypes", [])

    def subnets(self, subnet_ids: Sequence[str]) -> list[SubnetTypeDef]:
        """DescribeSubnets of ``subnet_ids``."""
        return call("DescribeSubnets", self.client.describe_subnets, SubnetIds=list(subnet_ids)).get(
            "Subnets", []
        )

    def availability_zones(self) -> list[AvailabilityZoneTypeDef]:
        """DescribeAvailabilityZones of the region."""
        return call("DescribeAvailabilityZones", self.client.describe_availability_zones).get(
            "AvailabilityZones", []
        )

    def create_launch_template(
        self, **params: Unpack[CreateLaunchTemplateRequestTypeDef]
    ) -> LaunchTemplateTypeDef:
        """CreateLaunchTemplate: the launch template made."""
        return call("CreateLaunchTemplate", self.client.create_launch_template, **params)["LaunchTemplate"]

    def launch_templates(self, names: Sequence[str]) -> list[LaunchTemplateTypeDef]:
        """DescribeLaunchTemplates of ``names``."""
        reply = call(
            "DescribeLaunchTemplates", self.client.describe_launch_templates, LaunchTemplateNames=list(names)
        )
        return reply.get("LaunchTemplates", [])

    def delete_launch_template(self, launch_template_id: str) -> None:
        """DeleteLaunchTemplate."""
        call("DeleteLaunchTemplate", self.client.delete_launch_template, LaunchTemplateId=launch_template_id)

    def tags(self, filters: Sequence[FilterTypeDef]) -> Iterator[TagDescriptionTypeDef]:
        """The tags DescribeTags lists for ``filters`` (resource type, key, value …), every page."""
        for page in pages(
            "DescribeTags", self.client.get_paginator("describe_tags").paginate, Filters=list(filters)
        ):
            yield from page.get("Tags", [])

    # -- EC2 Fleet ------------------------------------------------------------------------

    def create_fleet(self, **params: Unpack[CreateFleetRequestTypeDef]) -> CreateFleetResultTypeDef:
        """CreateFleet."""
        return call("CreateFleet", self.client.create_fleet, **params)

    def fleets(self, fleet_ids: Sequence[str]) -> Iterator[FleetDataTypeDef]:
        """DescribeFleets of ``fleet_ids``, every page."""
        for page in pages(
            "DescribeFleets", self.client.get_paginator("describe_fleets").paginate, FleetIds=list(fleet_ids)
        ):
            yield from page.get("Fleets", [])

    def fleet_instances(self, fleet_id: str) -> Iterator[ActiveInstanceTypeDef]:
        """The active instances of an EC2 Fleet (DescribeFleetInstances, paged by its token:
        botocore has no paginator for it)."""
        token = ""
        while True:
            if token:
                page = call(
                    "DescribeFleetInstances",
                    self.client.describe_fleet_instances,
                    FleetId=fleet_id,
                    NextToken=token,
                )
            else:
                page = call("DescribeFleetInstances", self.client.describe_fleet_instances, FleetId=fleet_id)
            yield from page.get("ActiveInstances", [])
            token = page.get("NextToken", "")
            if not token:
                return

    def fleet_history(self, fleet_id: str, since: datetime, limit: int) -> list[HistoryRecordEntryTypeDef]:
        """The first ``limit`` records of an EC2 Fleet's history since ``since`` (one call)."""
        reply = call(
            "DescribeFleetHistory",
            self.client.describe_fleet_history,
            FleetId=fleet_id,
            StartTime=since,
            MaxResults=limit,
        )
        return reply.get("HistoryRecords", [])

    def modify_fleet(self, **params: Unpack[ModifyFleetRequestTypeDef]) -> None:
        """ModifyFleet."""
        call("ModifyFleet", self.client.modify_fleet, **params)

    def delete_fleets(
        self, fleet_ids: Sequence[str], *, terminate_instances: bool
    ) -> DeleteFleetsResultTypeDef:
        """DeleteFleets of ``fleet_ids`` (AWS's batch limits are the caller's)."""
        return call(
            "DeleteFleets",
            self.client.delete_fleets,
            FleetIds=list(fleet_ids),
            TerminateInstances=terminate_instances,
        )

    # -- Spot Fleet -----------------------------------------------------------------------

    def request_spot_fleet(self, config: SpotFleetRequestConfigDataTypeDef) -> str:
        """RequestSpotFleet: the id of the Spot Fleet request."""
        reply = call("RequestSpotFleet", self.client.request_spot_fleet, SpotFleetRequestConfig=config)
        return reply["SpotFleetRequestId"]

    def spot_fleet_requests(self, request_ids: Sequence[str]) -> Iterator[SpotFleetRequestConfigTypeDef]:
        """DescribeSpotFleetRequests of ``request_ids``, every page."""
        paginate = self.client.get_paginator("describe_spot_fleet_requests").paginate
        for page in pages("DescribeSpotFleetRequests", paginate, SpotFleetRequestIds=list(request_ids)):
            yield from page.get("SpotFleetRequestConfigs", [])

    def spot_fleet_instances(self, request_id: str) -> Iterator[ActiveInstanceTypeDef]:
        """The active instances of a Spot Fleet request, every page."""
        paginate = self.client.get_paginator("describe_spot_fleet_instances").paginate
        for page in pages("DescribeSpotFleetInstances", paginate, SpotFleetRequestId=request_id):
            yield from page.get("ActiveInstances", [])

    def spot_fleet_history(self, request_id: str, since: datetime, limit: int) -> list[HistoryRecordTypeDef]:
        """The first ``limit`` records of a Spot Fleet request's history since ``since`` (one call)."""
        reply = call(
            "DescribeSpotFleetRequestHistory",
            self.client.describe_spot_fleet_request_history,
            SpotFleetRequestId=request_id,
            StartTime=since,
            MaxResults=limit,
        )
        return reply.get("HistoryRecords", [])

    def modify_spot_fleet_request(self, **params: Unpack[ModifySpotFleetRequestRequestTypeDef]) -> None:
        """ModifySpotFleetRequest."""
        call("ModifySpotFleetRequest", self.client.modify_spot_fleet_request, **params)

    def cancel_spot_fleet_requests(
        self, request_ids: Sequence[str], *, terminate_instances: bool
    ) -> CancelSpotFleetRequestsResponseTypeDef:
        """CancelSpotFleetRequests of ``request_ids`` (at most 100)."""
        return call(
            "CancelSpotFleetRequests",
            self.client.cancel_spot_fleet_requests,
            SpotFleetRequestIds=list(request_ids),
            TerminateInstances=terminate_instances,
        )

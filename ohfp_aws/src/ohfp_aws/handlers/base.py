"""What every AWS handler (EC2Fleet, ASG, SpotFleet, RunInstances) implements and shares.

A handler owns one AWS API. The provider (:mod:`ohfp_aws.provider`) picks a handler per
template, stores ``{"api": handler.api, …}`` as the request handle, and for status asks each
handler only what its fleet or group says (:meth:`Handler.inspect`); it then describes the
instances of every request in one batched DescribeInstances. This module imports no boto3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from attrs import frozen

if TYPE_CHECKING:
    from ohfp_aws.config import AwsConfig
    from ohfp_aws.session import AwsClients
    from ohfp_core.models import CloudRequest, Provisioned, ReturnItem

# The domain model lives in ohfp_aws.model; handlers still import these names from here.
from ohfp_aws.model import (
    APIS,
    FLEET_TYPES,
    TAG_INSTANCE,
    TAG_REQUEST,
    TAG_TEMPLATE,
    AwsTemplate,
    client_token,
)

__all__ = [
    "APIS",
    "FLEET_TYPES",
    "TAG_INSTANCE",
    "TAG_REQUEST",
    "TAG_TEMPLATE",
    "AwsTemplate",
    "client_token",
]


@frozen
class FleetState:
    """What a fleet or group says about one request, before instances are described.

    ``instance_ids`` are the instances it reports (core's provider describes them all in
    one batch). ``open`` is True while it may still deliver capacity. ``errors`` are the
    cloud's messages about capacity it could not deliver. ``handle`` replaces the stored
    handle when not None.
    """

    instance_ids: tuple[str, ...] = ()
    open: bool = False
    errors: tuple[str, ...] = ()
    handle: Mapping[str, Any] | None = None


class AwsContext(Protocol):
    """Shared services a handler uses (implemented by :mod:`ohfp_aws.provider`)."""

    clients: AwsClients
    config: AwsConfig
    instance_name: str

    def resolve_image(self, image_id: str) -> str:
        """An AMI id for ``image_id`` (resolving an SSM parameter path)."""
        ...

    def tags_for(self, request_id: str, template: AwsTemplate) -> dict[str, str]:
        """The tags every resource of this request carries (ohfp's plus instanceTags)."""
        ...

    def terminate_instances(self, instance_ids: Sequence[str]) -> dict[str, str]:
        """Terminate instances in batches; an error message per id that failed."""
        ...


class Handler(Protocol):
    """One AWS API that provisions, reports and returns machines."""

    api: ClassVar[str]
    actions: ClassVar[tuple[str, ...]]  # every IAM action the handler calls, e.g. "ec2:CreateFleet"

    def unsupported(self, template: AwsTemplate) -> str | None:
        """Why this handler cannot serve ``template``, or None when it can."""
        ...

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        """Create the fleet/group/instances; idempotent on ``request_id`` (client token).
        The handle must include ``"api": self.api``. Raises CloudError when refused."""
        ...

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        """One describe per fleet or group (batched where the API allows)."""
        ...

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        """Lower capacity so nothing is replaced, terminate the instances, and delete the
        fleet/group and any launch template ohfp made for it once its last machine goes.
        Returns an error message per machine id that could not be terminated."""
        ...

    def cancel(self, request_id: str) -> None:
        """Delete the fleets or group this API made for ``request_id`` (terminating their
        instances), found by the request id alone: the handle was lost with the provisioning
        call. Only resources tagged with the request id and this provider instance go; the
        provider itself terminates the tagged instances left and deletes the launch
        template. Idempotent; raises CloudError when AWS refused."""
        ...

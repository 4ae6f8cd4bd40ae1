"""What every AWS handler (EC2Fleet, ASG, SpotFleet, RunInstances) implements.

A handler owns one AWS API. The provider picks a handler per template
(:class:`ohfp_aws.apis.HandlerSet`), stores the handle it returns, and for status asks
each handler only what its fleets, groups or handles say (:meth:`Handler.inspect`); it then
describes the instances of every request in one batched DescribeInstances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from ohfp_aws.vocabulary import AwsTemplate, FleetState
    from ohfp_core.models import CloudRequest, Provisioned, ReturnItem


class Handler(Protocol):
    """One AWS API that provisions, reports and returns machines."""

    api: ClassVar[str]
    actions: ClassVar[tuple[str, ...]]  # every IAM action the handler calls, e.g. "ec2:CreateFleet"

    def unsupported(self, template: AwsTemplate) -> str | None:
        """Why this handler cannot serve ``template``, or None when it can (offline)."""
        ...

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        """Create the fleet/group/instances; idempotent on ``request_id`` (client token).
        The handle is a dumped :mod:`ohfp_aws.apis.handles` handle whose ``api`` is this API.
        Raises CloudError when refused."""
        ...

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        """A state per acquire request of this API: one describe per fleet or group
        (batched where the API allows)."""
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

"""moto made to do what AWS does, where ohfp-aws relies on it and moto does not (MOTO.md).

ohfp-aws is written for AWS alone; what the emulator lacks is supplied here, to the moto of
this process (in-process mocks and the moto servers the tests run in this process alike):

- **DescribeTags lists Spot Fleet requests.** moto keeps a request's tags on the request
  only; AWS's DescribeTags lists them (resource type ``spot-fleet-request``), which is how
  ohfp finds the requests of a provisioning call that died. Here RequestSpotFleet also
  records the request's tags with moto's tag store.
- **A fleet with no instances left is deleted** by DeleteFleets and CancelSpotFleetRequests
  with TerminateInstances. moto then asks its own TerminateInstances to end an empty list
  and refuses the whole call (InvalidParameterCombination); here an empty list ends nothing.
  ohfp itself never sends TerminateInstances without ids.
- **A cancelled Spot Fleet request stays**, cancelled, as AWS keeps it (``cancelled_terminating``,
  then ``cancelled``); moto dropped it, and then failed to terminate its instances again
  (``'NoneType' object has no attribute 'launch_specs'``).
- **A second Auto Scaling group of the same name is refused** with AlreadyExists, as AWS
  refuses it; moto replaced the first group silently.

Each is tested against moto as it is (``tests/aws/test_moto_as_aws.py``), so a moto that
learns one of these shows up.

One more, asked for apart (:func:`boot_over_time`), as it needs a clock that the test moves:
**instances boot over time.** AWS launches an instance ``pending`` and runs it a while later;
moto's run on their first describe. With it, moto's new instances stay ``pending`` until
:meth:`Boots.boot` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import pytest


def _tags_recorded(original: Callable[..., Any]) -> Callable[..., Any]:
    def request_spot_fleet(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = original(self, *args, **kwargs)
        tags = request.tags.get("spot-fleet-request", {})
        if tags:
            self.create_tags([request.id], tags)
        return request

    return request_spot_fleet


def _empty_list_ends_nothing(original: Callable[..., Any]) -> Callable[..., Any]:
    def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
        return original(self, instance_ids) if instance_ids else []

    return terminate_instances


def _cancelled_kept(original: Callable[..., Any]) -> Callable[..., Any]:
    def cancel_spot_fleet_requests(self: Any, request_ids: list[str], terminate_instances: bool) -> Any:
        cancelled = original(self, request_ids, terminate_instances)
        if terminate_instances:  # moto dropped them
            for request in cancelled:
                request.state = "cancelled_terminating"
                self.spot_fleet_requests[request.id] = request
        return cancelled

    return cancel_spot_fleet_requests


def _duplicates_refused(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_auto_scaling_group(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        from moto.autoscaling.exceptions import AutoscalingClientError

        if name in self.autoscaling_groups:
            raise AutoscalingClientError(
                "AlreadyExists", f"AutoScalingGroup by this name already exists - {name}"
            )
        return original(self, name, *args, **kwargs)

    return create_auto_scaling_group


def act_like_aws(patch: pytest.MonkeyPatch) -> None:
    """Make moto behave as AWS in the ways above, undone with ``patch`` (give a test its own
    ``monkeypatch``, so its own patches of the same methods are undone in order)."""
    from moto.autoscaling.models import AutoScalingBackend
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.models.spot_requests import SpotRequestBackend

    for owner, name, fix in (
        (SpotRequestBackend, "request_spot_fleet", _tags_recorded),
        (InstanceBackend, "terminate_instances", _empty_list_ends_nothing),
        (SpotRequestBackend, "cancel_spot_fleet_requests", _cancelled_kept),
        (AutoScalingBackend, "create_auto_scaling_group", _duplicates_refused),
    ):
        patch.setattr(owner, name, fix(getattr(owner, name)))


@contextmanager
def like_aws() -> Iterator[None]:
    """While it lasts, moto behaves as AWS in the ways above."""
    with pytest.MonkeyPatch.context() as patch:
        act_like_aws(patch)
        yield


@attrs.define
class Boots:
    """The instances moto launched pending (:func:`boot_over_time`), until they boot."""

    pending: list[Any] = attrs.field(factory=list)

    def boot(self) -> list[str]:
        """Run every instance still pending (one terminated meanwhile stays as it is); their ids."""
        booted = [instance for instance in self.pending if instance.state == "pending"]
        for instance in booted:
            instance.instance_state.name, instance.instance_state.code = "running", 16
        self.pending.clear()
        return [instance.id for instance in booted]


def boot_over_time(patch: pytest.MonkeyPatch) -> Boots:
    """From now until ``patch`` is undone, moto's new instances (from RunInstances, fleets, Spot
    Fleet and Auto Scaling groups alike) are ``pending`` until the returned
    :meth:`Boots.boot` runs them, as AWS boots them."""
    from moto.ec2.models.instances import Instance, InstanceState

    boots = Boots()
    born = Instance.__init__

    def launched_pending(self: Any, *args: Any, **kwargs: Any) -> None:
        born(self, *args, **kwargs)
        self._state = InstanceState("pending", 0)
        boots.pending.append(self)

    patch.setattr(Instance, "__init__", launched_pending)
    return boots

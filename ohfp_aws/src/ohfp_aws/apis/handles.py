"""Request handles: what a handler stores with core to find a request's fleet, group or
instances again (``Provisioned.handle``, handed back as ``CloudRequest.handle``).

Each handle is a frozen attrs class, stored as a flat JSON mapping whose ``api`` names the
handler. The keys are those ohfp-aws has always written (``fleet_id``,
``spot_fleet_request_id``, ``group_name``, ``launch_template_id`` …), so handles already in
a work dir's state load unchanged. :func:`dump` writes a handle, :func:`load` reads one
(unknown keys are ignored: a later version may add some). cattrs is imported on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import field, frozen

from ohfp_aws.launch.launch_templates import LaunchTemplateRef
from ohfp_aws.vocabulary import ASG, EC2_FLEET, RUN_INSTANCES, SPOT_FLEET, Shortfall

if TYPE_CHECKING:
    import cattrs


@frozen(kw_only=True)
class CapacityHandle(LaunchTemplateRef):
    """A fleet or group made by ``api``: ``target`` units asked for, ``weights`` per
    instance type, ``valid_until`` (epoch seconds) when ohfp stops waiting for it to
    fill (None: an instant fleet, which never fills later), and why offerings fell short
    (``shortfalls``, as last learned)."""

    api: str
    target: int
    weights: Mapping[str, int] = field(factory=dict)
    valid_until: int | None = None
    shortfalls: tuple[Shortfall, ...] = ()


@frozen(kw_only=True)
class FleetHandle(CapacityHandle):
    """An EC2 Fleet or Spot Fleet request. An instant fleet also keeps what CreateFleet
    launched (``instance_ids``) and the errors it reported for the rest."""

    fleet_type: str
    fleet_id: str
    instance_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@frozen(kw_only=True)
class GroupHandle(CapacityHandle):
    """An Auto Scaling group."""

    group_name: str


@frozen(kw_only=True)
class InstancesHandle:
    """Instances RunInstances launched, and why fewer than asked (nothing adds more later):
    ``errors`` as said, ``shortfalls`` per instance type × subnet."""

    api: str = RUN_INSTANCES
    instance_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    shortfalls: tuple[Shortfall, ...] = ()


Handle = FleetHandle | GroupHandle | InstancesHandle
H = TypeVar("H", FleetHandle, GroupHandle, InstancesHandle)

KINDS: Mapping[str, type[Handle]] = {
    EC2_FLEET: FleetHandle,
    SPOT_FLEET: FleetHandle,
    ASG: GroupHandle,
    RUN_INSTANCES: InstancesHandle,
}
"""The handle class of each API."""

_KEYS = {SPOT_FLEET: {"fleet_id": "spot_fleet_request_id"}}
"""Keys an API stores under another name than the attribute's."""


@functools.cache
def _converter() -> cattrs.Converter:
    from ohfp_core.parsing import make_converter

    return make_converter(forbid_extra_keys=False)


def api_of(stored: Mapping[str, Any]) -> str:
    """The API a stored handle names (empty for none, e.g. a provisioning call that died)."""
    api = stored.get("api")
    return api if isinstance(api, str) else ""


def load(stored: Mapping[str, Any], kind: type[H]) -> H:
    """A stored handle as ``kind``.

    :raises ValueError: when it is not a handle of that kind (another API's, or broken).
    """
    api = api_of(stored)
    if KINDS.get(api) is not kind:
        raise ValueError(f"the request's handle names the AWS API {api!r}: not a {kind.__name__}")
    renamed = {attribute: stored[key] for attribute, key in _KEYS.get(api, {}).items() if key in stored}
    from ohfp_core.errors import InputError
    from ohfp_core.parsing import structure

    try:
        return structure({**stored, **renamed}, kind, converter=_converter(), error=InputError, message="")
    except InputError as exc:
        raise ValueError("the request's handle cannot be read: " + "; ".join(exc.problems)) from None


def dump(handle: Handle) -> dict[str, Any]:
    """The JSON mapping core stores for ``handle``."""
    stored: dict[str, Any] = _converter().unstructure(handle)
    for attribute, key in _KEYS.get(handle.api, {}).items():
        stored[key] = stored.pop(attribute)
    return stored

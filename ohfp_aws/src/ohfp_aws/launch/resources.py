"""One INFO line per cloud resource ohfp creates or deletes, so grepping the log for a fleet id,
a group name or a launch template id finds both ends of its life.

While core provisions or terminates, the call's ``request_id`` (and ``template_id``) are bound
to every line; a deletion also names ``made_for``, the request the resource was made for
(during a return, the bound request is the return's).
"""

from __future__ import annotations

from ohfp_core.logs import get_logger

log = get_logger("ohfp.aws")


def created(kind: str, resource_id: str, **about: object) -> None:
    """Log that ohfp created the resource ``resource_id`` of ``kind`` (``EC2 fleet``, ``Auto
    Scaling group``, ``launch template`` …), with more ``about`` it."""
    log.info("cloud resource created", kind=kind, resource_id=resource_id, **about)


def launched(instance_ids: list[str], **about: object) -> None:
    """Log the instances one RunInstances call launched (a fleet's or group's are named by
    core's ``machine ready`` lines)."""
    log.info("instances launched", instance_ids=instance_ids, **about)


def deleted(kind: str, resource_id: str, made_for: str | None, **about: object) -> None:
    """Log that ohfp deleted (or cancelled) the resource ``resource_id`` of ``kind``, made for
    the request ``made_for``."""
    log.info("cloud resource deleted", kind=kind, resource_id=resource_id, made_for=made_for, **about)

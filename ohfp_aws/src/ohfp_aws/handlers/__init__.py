"""The AWS APIs ohfp provisions with, one handler class per API, imported on demand."""

from __future__ import annotations

from importlib import import_module

HANDLERS: dict[str, str] = {
    "EC2Fleet": "ohfp_aws.handlers.ec2_fleet:EC2FleetHandler",
    "ASG": "ohfp_aws.handlers.asg:ASGHandler",
    "SpotFleet": "ohfp_aws.handlers.spot_fleet:SpotFleetHandler",
    "RunInstances": "ohfp_aws.handlers.run_instances:RunInstancesHandler",
}


def handler_class(api: str) -> type:
    """The handler class for ``api`` (a key of :data:`HANDLERS`), imported now.

    :raises KeyError: for an API ohfp does not know.
    :raises ImportError: when the handler's module is missing.
    """
    module_name, _, class_name = HANDLERS[api].partition(":")
    cls = getattr(import_module(module_name), class_name)
    if not isinstance(cls, type):
        raise TypeError(f"{HANDLERS[api]} is not a class")
    return cls

"""The least-privilege IAM policy the AWS provider needs, built from what the code calls.

Each handler class lists the IAM actions it calls (``Handler.actions``); the provider's own,
whatever the API, are :data:`ohfp_aws.vocabulary.PROVIDER_ACTIONS`, plus
:data:`~ohfp_aws.vocabulary.QUEUE_ACTIONS` with an interruption queue and
:data:`~ohfp_aws.vocabulary.QUOTA_ACTIONS` with quota-aware capacity. ``iam:PassRole`` gets its own
statement limited to the services that receive the roles (instance profiles and the Spot
Fleet role).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ohfp_aws.apis import HANDLERS, handler_class
from ohfp_aws.vocabulary import ASG, PROVIDER_ACTIONS, QUEUE_ACTIONS, QUOTA_ACTIONS

PASS_ROLE = "iam:PassRole"  # noqa: S105 (an IAM action, not a password)
PASS_ROLE_SERVICES = ("ec2.amazonaws.com", "spotfleet.amazonaws.com")
POLICY_VERSION = "2012-10-17"


def actions_for(enabled: Iterable[str], *, events: bool = False, quotas: bool = False) -> set[str]:
    """Every IAM action the provider may call with the ``enabled`` APIs, an interruption
    queue (``events``) and quota-aware capacity (``quotas``).

    :raises KeyError: for an API ohfp does not know.
    """
    actions = set(PROVIDER_ACTIONS) | {PASS_ROLE}
    if events:
        actions.update(QUEUE_ACTIONS)
    if quotas:
        actions.update(QUOTA_ACTIONS)
    for api in enabled:
        if api not in HANDLERS:
            raise KeyError(f"unknown AWS API {api!r}; choose from {', '.join(HANDLERS)}")
        actions.update(getattr(handler_class(api), "actions", ()))
        if api == ASG:
            actions.add("autoscaling:DescribeAutoScalingGroups")  # the health check
    return actions


def policy_for(enabled: Iterable[str], *, events: bool = False, quotas: bool = False) -> dict[str, Any]:
    """An IAM policy document allowing exactly :func:`actions_for` these."""
    actions = actions_for(enabled, events=events, quotas=quotas)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OhfpProvider",
            "Effect": "Allow",
            "Action": sorted(actions - {PASS_ROLE}),
            "Resource": "*",
        }
    ]
    if PASS_ROLE in actions:
        statements.append(
            {
                "Sid": "OhfpPassRole",
                "Effect": "Allow",
                "Action": PASS_ROLE,
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:PassedToService": list(PASS_ROLE_SERVICES)}},
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}

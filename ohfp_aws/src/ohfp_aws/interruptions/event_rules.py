"""The interruption queue and the EventBridge rules that feed it (``ohfp-aws events setup``).

:func:`setup` makes, or brings up to date (every step is idempotent):

- an SQS queue ``<name>-ec2-events`` keeping messages :data:`RETENTION_SEC` (a notice older
  than that is past its use: DescribeInstances tells the rest), encrypted with SQS-managed keys;
- one EventBridge rule per kind of EC2 event on the default bus, ``<name>-spot-interruption``,
  ``<name>-rebalance`` and ``<name>-state-change`` (only stopping, stopped, shutting-down and
  terminated), each targeting the queue;
- the queue's policy: only EventBridge, and only from these rules, may send to it.

:func:`teardown` removes the rules' targets, the rules and the queue. Both return what they
did as a JSON-ready mapping (the CLI prints it); an AWS refusal raises
:class:`~ohfp_core.errors.CloudError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ohfp_aws.access.boundary import error_code
from ohfp_aws.access.services import Services
from ohfp_aws.interruptions.notices import GONE_STATES
from ohfp_core.errors import CloudError

RETENTION_SEC = 300
TARGET_ID = "ohfp-queue"
RULES: Mapping[str, dict[str, Any]] = {
    "spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state-change": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": list(GONE_STATES)},
    },
}
"""Rule suffix → its event pattern."""

SETUP_ACTIONS = (
    "sqs:CreateQueue",
    "sqs:GetQueueAttributes",
    "sqs:SetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:DeleteQueue",
    "events:PutRule",
    "events:PutTargets",
    "events:RemoveTargets",
    "events:DeleteRule",
)
"""What the administrator running setup and teardown needs (not the provider)."""

_GONE = ("ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def queue_name(name: str) -> str:
    return f"{name}-ec2-events"


def rule_name(name: str, suffix: str) -> str:
    return f"{name}-{suffix}"


def queue_policy(queue_arn: str, rule_arns: list[str]) -> dict[str, Any]:
    """Only EventBridge, from these rules, may send messages to the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OhfpEc2Events",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
            }
        ],
    }


def setup(services: Services, name: str) -> dict[str, Any]:
    """Make the queue, its rules and its policy (idempotent). :raises CloudError:"""
    sqs, events = services.sqs, services.events
    url = sqs.create_queue(
        queue_name(name), {"MessageRetentionPeriod": str(RETENTION_SEC), "SqsManagedSseEnabled": "true"}
    )
    arn = sqs.queue_arn(url)
    rules: list[dict[str, str]] = []
    for suffix, pattern in RULES.items():
        description = f"ohfp: {pattern['detail-type'][0]} to {queue_name(name)}"
        rule_arn = events.put_rule(rule_name(name, suffix), json.dumps(pattern), description)
        rules.append(
            {"name": rule_name(name, suffix), "arn": rule_arn, "detailType": pattern["detail-type"][0]}
        )
    sqs.set_attributes(url, {"Policy": json.dumps(queue_policy(arn, [r["arn"] for r in rules]))})
    for rule in rules:
        failed = events.put_targets(rule["name"], [{"Id": TARGET_ID, "Arn": arn}])
        if failed:
            raise CloudError(f"PutTargets: rule {rule['name']}: {failed[0].get('ErrorMessage', 'failed')}")
    return {
        "message": f"EC2 events reach queue {queue_name(name)} through {len(rules)} EventBridge rules.",
        "queueUrl": url,
        "queueArn": arn,
        "rules": rules,
        "settings": {"aws": {"events": {"queueUrl": url}}},
    }


def teardown(services: Services, name: str) -> dict[str, Any]:
    """Remove the rules (their targets first) and the queue; what is already gone is fine.
    :raises CloudError:"""
    sqs, events = services.sqs, services.events
    removed: list[str] = []
    for suffix in RULES:
        rule = rule_name(name, suffix)
        try:
            events.remove_targets(rule, [TARGET_ID])
            events.delete_rule(rule)
            removed.append(rule)
        except CloudError as exc:
            if error_code(exc) not in _GONE:
                raise
    queue = None
    try:
        url = sqs.queue_url(queue_name(name))
        sqs.delete_queue(url)
        queue = url
    except CloudError as exc:
        if error_code(exc) not in _GONE:
            raise
    return {
        "message": f"removed {len(removed)} EventBridge rules and {'the' if queue else 'no'} queue"
        f" {queue_name(name)}; remove aws.events.queueUrl from ohfp.json.",
        "rules": removed,
        "queueUrl": queue,
    }

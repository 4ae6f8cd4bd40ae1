"""EventBridge as ohfp calls it: the rules that feed the interruption queue, through the
error boundary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import call

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutTargetsResultEntryTypeDef, TargetTypeDef


class EventBridge:
    """The EventBridge operations ohfp uses, on one botocore client (``client``)."""

    def __init__(self, client: EventBridgeClient) -> None:
        self.client = client

    def put_rule(self, name: str, pattern: str, description: str) -> str:
        """PutRule (enabled, on the default bus): the rule's ARN."""
        reply = call(
            "PutRule",
            self.client.put_rule,
            Name=name,
            EventPattern=pattern,
            State="ENABLED",
            Description=description,
        )
        return reply["RuleArn"]

    def put_targets(self, rule: str, targets: Sequence[TargetTypeDef]) -> list[PutTargetsResultEntryTypeDef]:
        """PutTargets: the targets that failed."""
        reply = call("PutTargets", self.client.put_targets, Rule=rule, Targets=list(targets))
        return reply.get("FailedEntries", []) if reply.get("FailedEntryCount") else []

    def remove_targets(self, rule: str, target_ids: Sequence[str]) -> None:
        """RemoveTargets."""
        call("RemoveTargets", self.client.remove_targets, Rule=rule, Ids=list(target_ids))

    def delete_rule(self, name: str) -> None:
        """DeleteRule."""
        call("DeleteRule", self.client.delete_rule, Name=name)

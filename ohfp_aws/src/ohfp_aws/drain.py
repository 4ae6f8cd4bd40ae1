"""Drain the interruption queue (``aws.events.queueUrl``) into the provider's memory.

getRequestStatus and getReturnRequests call :func:`drain` when a queue is set. It reads at
most ``aws.events.maxBatches`` ReceiveMessage batches of 10 (short polls: it never waits for
messages), and stops early when the queue is empty or half of Host Factory's time for the
call is spent. Of each batch it keeps the notices (:mod:`ohfp_aws.notices`) of instances ohfp
holds: those the call names, and any other carrying this provider instance's ``ohfp:instance``
tag (one DescribeInstances, by filter, for the batch's other ids). Rebalance recommendations are kept
only when ``aws.events.reportRebalance`` is set.

Between calls the resident service long-polls the queue (:func:`listen`, the provider's
``ohfp_wait_for_events``): notices are stored as they arrive, and while it listens calls
skip their own ReceiveMessage (:data:`LISTENING`).

**Nothing is lost if the call dies mid-drain**: a batch is deleted from the queue only after
its notices are stored; a message received and not deleted becomes visible again after
:data:`VISIBILITY_SEC` and the next call stores it again, which changes nothing (the newest
notice per instance and kind wins). A queue that cannot be read is logged and skipped:
polling still finds every reclaimed host, later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from attrs import frozen

from ohfp_aws import notices
from ohfp_aws.context import AwsContext
from ohfp_aws.errors import aws_call
from ohfp_aws.model import TAG_INSTANCE
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger

log = get_logger("ohfp.aws")

BATCH = 10
"""ReceiveMessage and DeleteMessageBatch take at most 10 messages."""
VISIBILITY_SEC = 30
"""How long a received message stays hidden from other calls; after a crash it comes back."""
MAX_WAIT_SEC = 20
"""SQS's longest ``WaitTimeSeconds``."""
LISTENING = "events.listening"
"""Stored (expiring) while the resident service long-polls the queue: calls then answer from
the notices it stores instead of polling the queue themselves."""


@frozen(kw_only=True)
class Drained:
    """What one drain did: messages received and deleted, notices kept (of instances ohfp
    holds), and batches read."""

    received: int = 0
    kept: int = 0
    deleted: int = 0
    batches: int = 0


def drain(ctx: AwsContext, held: Iterable[str], wait_sec: int = 0) -> Drained:
    """Move the queue's notices about ohfp's instances into ``ctx.values``; drop the rest.

    :param held: instance ids the call knows are ohfp's (others are checked by tag).
    :param wait_sec: how long the first ReceiveMessage may wait for messages (0 for a call,
        which skips the queue altogether while the service listens to it).
    Never raises a cloud error (logged; the call goes on without notices).
    """
    settings = ctx.config.events
    if not settings.queue_url or (not wait_sec and ctx.values.get(LISTENING)):
        return Drained()
    known = set(held)
    received = kept = deleted = batches = 0
    try:
        while batches < settings.max_batches and _time_left(ctx):
            with aws_call("ReceiveMessage"):
                reply = ctx.clients.sqs.receive_message(
                    QueueUrl=settings.queue_url,
                    MaxNumberOfMessages=BATCH,
                    WaitTimeSeconds=wait_sec if batches == 0 else 0,
                    VisibilityTimeout=VISIBILITY_SEC,
                )
            batches += 1
            messages: list[dict[str, Any]] = reply.get("Messages", []) or []
            if not messages:
                break
            received += len(messages)
            found = [n for n in (notices.parse(str(m.get("Body", ""))) for m in messages) if n is not None]
            if not settings.report_rebalance:
                found = [n for n in found if n.kind != notices.REBALANCE]
            ours = _ours(ctx, {n.instance_id for n in found}, known)
            kept += notices.keep(ctx.values, [n for n in found if n.instance_id in ours])
            deleted += _delete(ctx, settings.queue_url, messages)  # only now: the effect is stored
            if len(messages) < BATCH:
                break
    except CloudError as exc:
        log.warning("interruption queue unavailable; reclaims are found by polling", error=str(exc))
    drained = Drained(received=received, kept=kept, deleted=deleted, batches=batches)
    if received:
        log.info("interruption queue drained", received=received, kept=kept, deleted=deleted)
    return drained


def listen(ctx: AwsContext, seconds: float) -> Drained:
    """Long-poll the queue for up to ``seconds`` (at most :data:`MAX_WAIT_SEC`) between calls,
    storing notices as :func:`drain` does; calls skip the queue meanwhile (:data:`LISTENING`,
    expiring a little after the poll, so a service that dies stops it within seconds)."""
    if not ctx.config.events.queue_url:
        return Drained()
    wait = max(0, min(MAX_WAIT_SEC, int(seconds)))
    ctx.clients.call_started(2 * wait + 30.0)  # a long poll needs more than half of the budget left
    ctx.values.put(LISTENING, True, wait + 5)
    return drain(ctx, (), wait_sec=wait)


def _time_left(ctx: AwsContext) -> bool:
    """True while less than half of the call's AWS time is spent (always without a budget)."""
    budget = ctx.clients.budget
    return budget is None or budget.left() > budget.seconds / 2


def _ours(ctx: AwsContext, instance_ids: set[str], known: set[str]) -> set[str]:
    """The ids among ``instance_ids`` that are ohfp's: known to the call, or tagged with this
    provider instance (one DescribeInstances for the others)."""
    from ohfp_aws.instances import describe_instances

    ours = instance_ids & known
    others = sorted(instance_ids - known)
    if others:
        # Filters, not InstanceIds: an id EC2 no longer knows is left out, not an error.
        filters = [
            {"Name": f"tag:{TAG_INSTANCE}", "Values": [ctx.instance_name]},
            {"Name": "instance-id", "Values": others},
        ]
        ours |= {i["InstanceId"] for i in describe_instances(ctx.clients.ec2, filters=filters)}
    return ours


def _delete(ctx: AwsContext, queue_url: str, messages: Sequence[dict[str, Any]]) -> int:
    """DeleteMessageBatch; how many went. A message not deleted comes back and is stored
    again later (harmless)."""
    entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
    with aws_call("DeleteMessageBatch"):
        reply = ctx.clients.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    failed = reply.get("Failed", []) or []
    if failed:
        log.warning("queue messages not deleted; they come back", count=len(failed))
    return len(entries) - len(failed)

"""Drain the interruption queue (``aws.events.queueUrl``) into the provider's memory.

getReturnRequests calls :func:`drain` (:mod:`~ohfp_aws.interruptions.reclaims`), on every call
when a queue is set, before it reports; no other call reads the queue. A drain reads at most
``aws.events.maxBatches`` ReceiveMessage batches of 10 (short polls: it never waits for
messages), and stops early when the queue is empty or half of Host Factory's time for the
call is spent. Of each batch it keeps the notices (:mod:`~ohfp_aws.interruptions.notices`)
of instances ohfp holds: those the call names, and any other carrying this provider
instance's ``ohfp:instance`` tag (one DescribeInstances, by filter, for the batch's other
ids). Rebalance recommendations are kept only when ``aws.events.reportRebalance`` is set.

Between calls the resident service long-polls the queue (:func:`listen`, the provider's
``ohfp_wait_for_events``): notices are stored as each poll ends. **A call skips its own
drain only while** :func:`listening`: in the service's own process, its listener for this
instance and queue last received from the queue without error at most
``aws.events.checkSeconds`` ago (each long poll waits at most half that, so a healthy
listener always has). A listener whose receive failed, that hangs, or that no longer runs
stops counting at once or within ``checkSeconds``; a call in its own process (no service,
``OHFP_SERVICE=off``) or in another host's service always drains.

**Nothing is lost if the call dies mid-drain**: the notices go to the provider's values,
which core stores with the call's outcome (or as the service's wait ends); a batch is
deleted from the queue only after that commit (``Values.after_commit``). A message received
and not deleted becomes visible again after :data:`VISIBILITY_SEC` and a later call stores it
again, which changes nothing (the newest notice per instance and kind wins). A queue that
cannot be read is logged and skipped: polling still finds every reclaimed host, later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from attrs import frozen

from ohfp_aws.context import AwsContext
from ohfp_aws.interruptions import notices
from ohfp_aws.vocabulary import TAG_INSTANCE
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

log = get_logger("ohfp.aws")

BATCH = 10
"""ReceiveMessage and DeleteMessageBatch take at most 10 messages."""
VISIBILITY_SEC = 30
"""How long a received message stays hidden from other calls; after a crash it comes back."""
MAX_WAIT_SEC = 20
"""SQS's longest ``WaitTimeSeconds``."""
_heard: dict[tuple[str, str], float] = {}
"""(instance, queue) -> when (``time.monotonic``) this process's listener last received
from the queue without error; dropped when a receive fails."""
_heard_lock = threading.Lock()


@frozen(kw_only=True)
class Drained:
    """What one drain did: messages received, notices kept (of instances ohfp holds),
    messages to delete once those are stored (all received), batches read, and whether a
    receive failed."""

    received: int = 0
    kept: int = 0
    acknowledged: int = 0
    batches: int = 0
    failed: bool = False


def drain(ctx: AwsContext, held: Iterable[str], wait_sec: int = 0) -> Drained:
    """Move the queue's notices about ohfp's instances into ``ctx.values``; drop the rest.

    :param held: instance ids the call knows are ohfp's (others are checked by tag).
    :param wait_sec: how long the first ReceiveMessage may wait for messages (0 for a call,
        which skips the queue altogether while :func:`listening`).
    Never raises a cloud error (logged; the call goes on without notices).
    """
    settings = ctx.config.events
    if not settings.queue_url or (not wait_sec and listening(ctx)):
        return Drained()
    known = set(held)
    received = kept = acknowledged = batches = 0
    failed = False
    try:
        while batches < settings.max_batches and _time_left(ctx):
            messages = ctx.services.sqs.receive(
                settings.queue_url,
                count=BATCH,
                visibility_sec=VISIBILITY_SEC,
                wait_sec=wait_sec if batches == 0 else 0,
            )
            batches += 1
            if not messages:
                break
            received += len(messages)
            found = [n for n in (notices.parse(str(m.get("Body", ""))) for m in messages) if n is not None]
            if not settings.report_rebalance:
                found = [n for n in found if n.kind != notices.REBALANCE]
            ours = _ours(ctx, {n.instance_id for n in found}, known)
            kept += notices.keep(ctx.values, [n for n in found if n.instance_id in ours])
            ctx.values.after_commit(partial(_delete, ctx, settings.queue_url, messages))
            acknowledged += len(messages)
            if len(messages) < BATCH:
                break
    except CloudError as exc:
        failed = True
        log.warning("interruption queue unavailable; reclaims are found by polling", error=str(exc))
    drained = Drained(received=received, kept=kept, acknowledged=acknowledged, batches=batches, failed=failed)
    if received:
        log.info("interruption queue drained", received=received, kept=kept)
    return drained


def listen(ctx: AwsContext, seconds: float) -> Drained:
    """Long-poll the queue for up to ``seconds`` (at most :data:`MAX_WAIT_SEC`, and half of
    ``aws.events.checkSeconds``) between calls, storing notices as :func:`drain` does; then
    record whether it received without error (:func:`listening`). After a failed receive it
    waits out the poll's time, so a queue that fails is not asked again at once."""
    settings = ctx.config.events
    if not settings.queue_url:
        return Drained()
    wait = max(0, min(MAX_WAIT_SEC, int(seconds), settings.check_seconds // 2))
    ctx.clients.call_started(2 * wait + 30.0)  # a long poll needs more than half of the budget left
    heard = (ctx.instance_name, settings.queue_url)
    drained = Drained(failed=True)
    try:
        drained = drain(ctx, (), wait_sec=wait)
    finally:
        with _heard_lock:
            if drained.failed:
                _heard.pop(heard, None)
            else:
                _heard[heard] = time.monotonic()
    if drained.failed:
        time.sleep(wait)  # a queue that fails is not asked again at once
    return drained


def listening(ctx: AwsContext) -> bool:
    """True while this process's listener for the instance's queue last received from it
    without error at most ``aws.events.checkSeconds`` ago: a call then answers from the
    notices the listener stored, without an API call of its own."""
    settings = ctx.config.events
    if not settings.queue_url:
        return False
    with _heard_lock:
        last = _heard.get((ctx.instance_name, settings.queue_url))
    return last is not None and time.monotonic() - last <= settings.check_seconds


def _time_left(ctx: AwsContext) -> bool:
    """True while less than half of the call's AWS time is spent (always without a budget)."""
    budget = ctx.clients.budget
    return budget is None or budget.left() > budget.seconds / 2


def _ours(ctx: AwsContext, instance_ids: set[str], known: set[str]) -> set[str]:
    """The ids among ``instance_ids`` that are ohfp's: known to the call, or tagged with this
    provider instance (one DescribeInstances for the others)."""
    from ohfp_aws.access.instances import describe_instances

    ours = instance_ids & known
    others = sorted(instance_ids - known)
    if others:
        # Filters, not InstanceIds: an id EC2 no longer knows is left out, not an error.
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{TAG_INSTANCE}", "Values": [ctx.instance_name]},
            {"Name": "instance-id", "Values": others},
        ]
        ours |= {i["InstanceId"] for i in describe_instances(ctx.services.ec2, filters=filters)}
    return ours


def _delete(ctx: AwsContext, queue_url: str, messages: Sequence[MessageTypeDef]) -> None:
    """DeleteMessageBatch, once the messages' notices are stored. A message not deleted
    comes back and is stored again later (harmless): a failure is logged."""
    entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
        {"Id": str(n), "ReceiptHandle": m.get("ReceiptHandle", "")} for n, m in enumerate(messages)
    ]
    try:
        failed = len(ctx.services.sqs.delete_batch(queue_url, entries))
    except CloudError as exc:
        log.warning("queue messages not deleted; they come back", count=len(entries), error=str(exc))
        return
    if failed:
        log.warning("queue messages not deleted; they come back", count=failed)

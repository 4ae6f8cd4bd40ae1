"""SQS as ohfp calls it: the interruption queue, through the error boundary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ohfp_aws.access.boundary import call

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import (
        BatchResultErrorEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageTypeDef,
    )


class Sqs:
    """The SQS operations ohfp uses, on one botocore client (``client``)."""

    def __init__(self, client: SQSClient) -> None:
        self.client = client

    def receive(
        self, queue_url: str, *, count: int, visibility_sec: int, wait_sec: int = 0
    ) -> list[MessageTypeDef]:
        """ReceiveMessage: at most ``count`` messages, hidden from other readers for
        ``visibility_sec``, waiting up to ``wait_sec`` for one (0: a short poll)."""
        reply = call(
            "ReceiveMessage",
            self.client.receive_message,
            QueueUrl=queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait_sec,
            VisibilityTimeout=visibility_sec,
        )
        return reply.get("Messages", [])

    def delete_batch(
        self, queue_url: str, entries: Sequence[DeleteMessageBatchRequestEntryTypeDef]
    ) -> list[BatchResultErrorEntryTypeDef]:
        """DeleteMessageBatch (at most 10): the entries not deleted."""
        reply = call(
            "DeleteMessageBatch", self.client.delete_message_batch, QueueUrl=queue_url, Entries=list(entries)
        )
        return reply.get("Failed", [])

    def create_queue(self, name: str, attributes: Mapping[QueueAttributeNameType, str]) -> str:
        """CreateQueue (or the queue of that name, when its attributes match): its URL."""
        return call("CreateQueue", self.client.create_queue, QueueName=name, Attributes=dict(attributes))[
            "QueueUrl"
        ]

    def queue_arn(self, queue_url: str) -> str:
        """GetQueueAttributes: the queue's ARN."""
        reply = call(
            "GetQueueAttributes",
            self.client.get_queue_attributes,
            QueueUrl=queue_url,
            AttributeNames=["QueueArn"],
        )
        return reply["Attributes"]["QueueArn"]

    def waiting(self, queue_url: str) -> int:
        """GetQueueAttributes: about how many messages the queue holds (visible or not)."""
        reply = call(
            "GetQueueAttributes",
            self.client.get_queue_attributes,
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        return sum(int(value) for value in reply.get("Attributes", {}).values())

    def set_attributes(self, queue_url: str, attributes: Mapping[QueueAttributeNameType, str]) -> None:
        """SetQueueAttributes."""
        call(
            "SetQueueAttributes",
            self.client.set_queue_attributes,
            QueueUrl=queue_url,
            Attributes=dict(attributes),
        )

    def queue_url(self, name: str) -> str:
        """GetQueueUrl of the queue ``name``."""
        return call("GetQueueUrl", self.client.get_queue_url, QueueName=name)["QueueUrl"]

    def delete_queue(self, queue_url: str) -> None:
        """DeleteQueue."""
        call("DeleteQueue", self.client.delete_queue, QueueUrl=queue_url)

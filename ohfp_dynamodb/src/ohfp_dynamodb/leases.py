"""DynamoDB's in-flight leases: an item per request in the making, kept alive while its call runs.

The lease of a request (:mod:`ohfp_core.reconcile`) is the item ``LEASE``/``<request id>``
naming its holder (a token of the call) and when it lapses (``expires``, epoch seconds).
A call takes it with a conditional write that succeeds only when there is no such item or
it has lapsed; a thread of the holding process pushes ``expires`` forward every third of
``callLeaseSeconds`` (conditional on still holding it), and the call deletes the item when
it is done with the request. A call that dies stops renewing: within ``callLeaseSeconds``
its lease lapses and a call on any host takes it and reconciles the request. The hosts'
clocks must agree to well within ``callLeaseSeconds`` (NTP), as for the write lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from ohfp_core.logs import get_logger
from ohfp_dynamodb import items as it

log = get_logger("ohfp.dynamodb")

LEASES = "LEASE"


def _conflict(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoLease:
    """A held lease (a :class:`~ohfp_core.storage.Lease`): ending it deletes its item."""

    def __init__(self, leases: CallLeases, request_id: str, token: str) -> None:
        self.leases = leases
        self.request_id = request_id
        self.token = token

    def release(self) -> None:
        self.leases.end(self.request_id, self.token)

    drop = release  # the item is the lease: letting go is ending it


class CallLeases:
    """The leases a store's calls hold in ``table``, lasting ``seconds`` unless renewed."""

    def __init__(self, client: Any, table: str, seconds: float) -> None:
        self.client = client
        self.table = table
        self.seconds = seconds
        self._held: dict[str, str] = {}
        """Request id → token, of the leases this process renews."""
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def claim(self, request_id: str, new: bool) -> DynamoLease | None:
        """The request's lease (``new``: a request nobody has recorded yet), or None when
        another call holds it and it has not lapsed."""
        token, now = uuid.uuid4().hex, time.time()
        item = {
            **it.key(LEASES, request_id),
            "owner": {"S": token},
            "expires": {"N": repr(now + self.seconds)},
        }
        args: dict[str, Any] = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        if not new:  # or it lapsed
            args["ConditionExpression"] += " OR #expires < :now"
            args["ExpressionAttributeNames"] = {"#expires": "expires"}
            args["ExpressionAttributeValues"] = {":now": {"N": repr(now)}}
        try:
            self.client.put_item(**args)
        except ClientError as exc:
            if _conflict(exc):
                return None
            raise
        with self._lock:
            self._held[request_id] = token
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew, name="ohfp-dynamodb-leases", daemon=True)
                self._renewer.start()
        return DynamoLease(self, request_id, token)

    def end(self, request_id: str, token: str) -> None:
        """Delete a lease this process holds (unless it lapsed and another call took it). If
        DynamoDB cannot be told, the lease lapses by itself: nothing renews it any more."""
        with self._lock:
            if self._held.get(request_id) != token:
                return
            del self._held[request_id]
        try:
            self.client.delete_item(**self._mine(request_id, token))
        except ClientError as exc:
            if not _conflict(exc):
                log.warning("lease not deleted: it lapses by itself", request_id=request_id, error=str(exc))
        except Exception as exc:  # out of time, unreachable: it lapses by itself
            log.warning("lease not deleted: it lapses by itself", request_id=request_id, error=str(exc))

    def _mine(self, request_id: str, token: str) -> dict[str, Any]:
        return {
            "TableName": self.table,
            "Key": it.key(LEASES, request_id),
            "ConditionExpression": "#owner = :me",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":me": {"S": token}},
        }

    def _renew(self) -> None:
        """Push every held lease's expiry forward, every third of the lease, while any is held."""
        while True:
            time.sleep(self.seconds / 3)
            with self._lock:
                held = dict(self._held)
                if not held:
                    self._renewer = None
                    return
            for request_id, token in held.items():
                mine = self._mine(request_id, token)
                mine["ExpressionAttributeNames"]["#expires"] = "expires"
                mine["ExpressionAttributeValues"][":expires"] = {"N": repr(time.time() + self.seconds)}
                try:
                    self.client.update_item(**mine, UpdateExpression="SET #expires = :expires")
                except ClientError as exc:
                    if _conflict(exc):  # it lapsed and another call took it: ours no more
                        with self._lock:
                            if self._held.get(request_id) == token:
                                del self._held[request_id]
                    log.warning("lease not renewed", request_id=request_id, error=str(exc))
                except Exception as exc:  # the next round tries again, while the lease lasts
                    log.warning("lease not renewed", request_id=request_id, error=str(exc))

"""DynamoDB's leases: items a call holds while it runs, which lapse soon after it dies.

Two kinds, kept alive the same way by a thread of the holding process (:class:`Renewer`):
every third of its lease it pushes the item's ``expires`` (epoch seconds) forward, on
condition that the item still names the holder's token as ``owner``. A call that dies, or
freezes, stops renewing, and the item lapses a lease later. The hosts' clocks must agree to
well within a lease (NTP).

- The write lock (``META``/``lock``, ``lockLeaseSeconds``): a dead writer blocks the other
  writers for at most the lease, however long a live one's write takes.
- In-flight leases (:mod:`ohfp_core.reconcile`): the item ``LEASE``/``<request id>`` of a
  request a call is making (or reconciling), ``callLeaseSeconds``; taken with a conditional
  write that succeeds only when there is no such item or it has lapsed, deleted when the
  call is done with the request. A call on any host takes a dead call's lease once it has
  lapsed, and reconciles the request.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from ohfp_core.logs import get_logger
from ohfp_dynamodb import items as it
from ohfp_dynamodb.items import Key

log = get_logger("ohfp.dynamodb")

LEASES = "LEASE"


def _conflict(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def mine(table: str, key: Key, token: str) -> dict[str, Any]:
    """Arguments addressing the item ``key`` on condition that ``token`` holds it."""
    return {
        "TableName": table,
        "Key": it.key(*key),
        "ConditionExpression": "#owner = :me",
        "ExpressionAttributeNames": {"#owner": "owner"},
        "ExpressionAttributeValues": {":me": {"S": token}},
    }


class Renewer:
    """Keeps the items this process holds alive (see the module docstring); one thread,
    running while anything is kept."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        self._kept: dict[Key, tuple[str, float]] = {}
        """Item key → (the holder's token, its lease in seconds)."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def keep(self, key: Key, token: str, seconds: float) -> None:
        """Renew ``key`` while ``token`` holds it, until :meth:`drop`."""
        with self._lock:
            self._kept[key] = (token, seconds)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ohfp-dynamodb-renew", daemon=True)
                self._thread.start()
        self._wake.set()

    def drop(self, key: Key, token: str) -> bool:
        """Stop renewing ``key``; whether ``token`` was still keeping it."""
        with self._lock:
            if self._kept.get(key, ("", 0.0))[0] != token:
                return False
            del self._kept[key]
            return True

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._kept:
                    self._thread = None
                    return
                tick = min(seconds for _, seconds in self._kept.values()) / 3
            self._wake.wait(tick)
            self._wake.clear()
            with self._lock:
                kept = dict(self._kept)
            for key, (token, seconds) in kept.items():
                self._renew(key, token, seconds)

    def _renew(self, key: Key, token: str, seconds: float) -> None:
        args = mine(self.table, key, token)
        args["ExpressionAttributeNames"]["#expires"] = "expires"
        args["ExpressionAttributeValues"][":expires"] = {"N": repr(time.time() + seconds)}
        try:
            self.client.update_item(**args, UpdateExpression="SET #expires = :expires")
        except ClientError as exc:
            if _conflict(exc):  # it lapsed and another call took it: ours no more
                self.drop(key, token)
            log.warning("lease not renewed", key="/".join(key), error=str(exc))
        except Exception as exc:  # the next round tries again, while the lease lasts
            log.warning("lease not renewed", key="/".join(key), error=str(exc))


class DynamoLease:
    """A held in-flight lease (a :class:`~ohfp_core.storage.Lease`): ending it deletes its item."""

    def __init__(self, leases: CallLeases, request_id: str, token: str) -> None:
        self.leases = leases
        self.request_id = request_id
        self.token = token

    def release(self) -> None:
        self.leases.end(self.request_id, self.token)

    drop = release  # the item is the lease: letting go is ending it


class CallLeases:
    """The in-flight leases a store's calls hold in ``table``, lasting ``seconds`` unless renewed."""

    def __init__(self, client: Any, table: str, seconds: float, renewer: Renewer) -> None:
        self.client = client
        self.table = table
        self.seconds = seconds
        self.renewer = renewer

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
        self.renewer.keep((LEASES, request_id), token, self.seconds)
        return DynamoLease(self, request_id, token)

    def end(self, request_id: str, token: str) -> None:
        """Delete a lease this process holds (unless it lapsed and another call took it). If
        DynamoDB cannot be told, the lease lapses by itself: nothing renews it any more."""
        if not self.renewer.drop((LEASES, request_id), token):
            return
        try:
            self.client.delete_item(**mine(self.table, (LEASES, request_id), token))
        except ClientError as exc:
            if not _conflict(exc):
                log.warning("lease not deleted: it lapses by itself", request_id=request_id, error=str(exc))
        except Exception as exc:  # out of time, unreachable: it lapses by itself
            log.warning("lease not deleted: it lapses by itself", request_id=request_id, error=str(exc))

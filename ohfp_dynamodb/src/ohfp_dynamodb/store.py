"""The request store in one DynamoDB table (botocore only).

Writes are serialized by a **lock item** (``META``/``lock``) taken with a conditional
update and held for a lease (``lockLeaseSeconds``) that a thread renews while the writer
lives (:mod:`ohfp_dynamodb.leases`): a writer that died (or froze) blocks the others for at
most the lease, a live one keeps the lock however long its write takes. Inside
:meth:`DynamoStorage.transaction` — and around every write method called on its own —
writes are buffered and reads see them; at the end they are committed with the lock's
release:

- up to 99 items: one ``TransactWriteItems`` holding them and the lock's conditional
  delete — all or nothing, and nothing if the lock was lost (its lease ran out unrenewed);
- more (DynamoDB allows 100 items per transaction): the items are first written as a
  journal, then the lock item is made to point at it (the commit point, conditional on still
  holding the lock), then the items are applied in transactions of 99 that each check the
  lock, then the lock goes. A writer killed after the commit point leaves the journal in the
  lock item: the next writer, once the lease is over, applies it before anything else. Until
  then readers may see part of that group — the only case where a reader sees half a write.

Every query reads a base-table partition or keys with ``ConsistentRead`` (see
:mod:`ohfp_dynamodb.items`): the maxNumber accounting, read inside a transaction, sees every
write committed before the lock was taken. No lookup scans the table; :meth:`iter_requests`,
:meth:`iter_machines` and the counts of :meth:`check` (administration only) do.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from ohfp_core.deadline import LOCK_SPARE_SEC, Deadline
from ohfp_core.errors import StorageError, StorageFailure
from ohfp_core.inflight import call_owner
from ohfp_core.masking import mask_secrets
from ohfp_core.models import RequestKind
from ohfp_core.storage import MachineRecord, RequestRecord, StorageContext, StoredValue, dumps
from ohfp_core.storage_rules import (
    chunks,
    in_find_order,
    lock_held_too_long,
    oldest_first,
    out_of_time,
    refuse_newer,
    refuse_other_instance,
    unique,
)
from ohfp_dynamodb import items as it
from ohfp_dynamodb.client import make_client
from ohfp_dynamodb.items import Item, Key
from ohfp_dynamodb.leases import CallLeases, DynamoLease, Renewer, mine
from ohfp_dynamodb.settings import DynamoSettings
from ohfp_dynamodb.table import create_table, describe_table

SCHEMA_VERSION = 1
TRANSACTION_ITEMS = 100
"""DynamoDB's limit of items in one TransactWriteItems."""
BATCH_GET = 100
BATCH_WRITE = 25
JOURNAL_PART_BYTES = 300_000
"""Most bytes of journal in one item (DynamoDB's item limit is 400 KB)."""
QUERY_THREADS = 8
LOCK: Key = (it.META, it.LOCK_SK)


def _error_text(exc: Exception) -> str:
    return mask_secrets(str(exc))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class DynamoStorage:
    """A :class:`~ohfp_core.storage.Storage` in one DynamoDB table. One instance serves one
    thread (queries of many partitions fan out over a few threads of its own, and a thread
    renews the leases of calls in flight: :mod:`ohfp_dynamodb.leases`). Every request keeps
    within the deadline of the call using the store (:mod:`ohfp_dynamodb.client`).

    ``owner`` names where its calls run (:attr:`~ohfp_core.storage.RequestRecord.owner`).
    """

    threadsafe = False

    def __init__(
        self,
        settings: DynamoSettings,
        instance: str,
        deadline: Deadline | None = None,
        client: Any = None,
        owner: str = "",
    ) -> None:
        self.settings = settings
        self.table = settings.table
        self.instance = instance
        self.lease = settings.lock_lease_seconds
        self.deadline = deadline or Deadline.never()
        self.lease_owner = owner
        self.where = f"the DynamoDB state store (table {self.table!r})"
        self.client = (
            client if client is not None else make_client(settings, lambda: self.deadline, self.timed_out)
        )
        self._renewer = Renewer(self.client, self.table)
        self._leases = CallLeases(self.client, self.table, settings.call_lease_seconds, self._renewer)
        self._buffer: dict[Key, Item | None] | None = None
        self._seen: dict[Key, Item | None] = {}
        """Items read under the lock in this transaction (their state before its writes)."""
        self._token = ""
        self._next_seq = 0
        with self._translated():
            self._open()

    # -- time and leases -------------------------------------------------------------------------

    def use_deadline(self, deadline: Deadline) -> None:
        """Bound every request from now on by ``deadline`` (each call brings its own)."""
        self.deadline = deadline

    def timed_out(self) -> StorageError:
        """The error of a request the call's deadline cut short (or did not allow)."""
        return out_of_time(self.where, self.deadline)

    def hold_lease(self, request_id: str) -> DynamoLease:
        """Write the new request's lease item (see :meth:`Storage.hold_lease`)."""
        with self._translated():
            lease = self._leases.claim(request_id, new=True)
        if lease is None:
            raise StorageError(f"{self.where}: the lease of the new request {request_id} is held already")
        return lease

    def take_lease(self, request_id: str) -> DynamoLease | None:
        """The request's lease, if nobody holds it or it lapsed (its call stopped renewing it)."""
        with self._translated():
            return self._leases.claim(request_id, new=False)

    def sees_leases_of(self, owner: str) -> bool:
        """Every host's: the table holds the leases."""
        return True

    # -- errors --------------------------------------------------------------------------------

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """The store's one error boundary: botocore's errors become StorageError."""
        try:
            yield
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise StorageError(
                    f"{self.where} not found: create it with 'ohfp-dynamodb create-table' or set"
                    ' "createTable": true'
                ) from None
            raise StorageError(f"{self.where}: {_error_text(exc)}") from None
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise StorageError(f"{self.where}: {_error_text(exc)}", kind=StorageFailure.TIMED_OUT) from None
        except BotoCoreError as exc:
            raise StorageError(f"{self.where}: {_error_text(exc)}") from None

    # -- lifecycle -----------------------------------------------------------------------------

    def _open(self) -> None:
        if self.settings.create_table:
            create_table(self.client, self.table, wait_sec=self.deadline.bound(self.settings.lock_timeout))
        meta = self.client.get_item(
            TableName=self.table, Key=it.key(it.META, it.SCHEMA_SK), ConsistentRead=True
        ).get("Item")
        if meta is None:
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=it.make(it.META, it.SCHEMA_SK, version=SCHEMA_VERSION, instance=self.instance),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
            meta = self.client.get_item(
                TableName=self.table, Key=it.key(it.META, it.SCHEMA_SK), ConsistentRead=True
            )["Item"]
        refuse_newer(self.where, int(meta["version"]["N"]), SCHEMA_VERSION, "ohfp-dynamodb", "table")
        refuse_other_instance(self.where, meta.get("instance", {}).get("S"), self.instance, "table")

    def close(self) -> None:
        """Release the client's connections."""
        self.client.close()

    # -- the write lock --------------------------------------------------------------------------

    def _acquire(self) -> None:
        token = uuid.uuid4().hex
        wait = self.deadline.bound(self.settings.lock_timeout, spare=LOCK_SPARE_SEC)
        deadline = time.monotonic() + wait
        delay = 0.005
        while True:
            now = time.time()
            try:
                reply = self.client.update_item(
                    TableName=self.table,
                    Key=it.key(it.META, it.LOCK_SK),
                    UpdateExpression="SET #owner = :owner, #expires = :expires",
                    ConditionExpression="attribute_not_exists(#owner) OR #expires < :now",
                    ExpressionAttributeNames={"#owner": "owner", "#expires": "expires"},
                    ExpressionAttributeValues={
                        ":owner": {"S": token},
                        ":expires": {"N": repr(now + self.lease)},
                        ":now": {"N": repr(now)},
                    },
                    ReturnValues="ALL_NEW",
                )
                break
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
            if time.monotonic() + delay > deadline:
                raise lock_held_too_long(self.where, wait)
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self._token = token
        self._renewer.keep(LOCK, token, self.lease)
        journal = reply.get("Attributes", {}).get("journal")
        if journal is not None:
            self._roll_forward(journal["S"], int(reply["Attributes"]["parts"]["N"]))

    def _lock_condition(
        self, names: dict[str, str] | None = None, values: dict[str, Any] | None = None, token: str = ""
    ) -> dict[str, Any]:
        """Arguments addressing the lock item on condition that this store holds it (plus
        the expression ``names`` and ``values`` of an update)."""
        args = mine(self.table, LOCK, token or self._token)
        args["ExpressionAttributeNames"].update(names or {})
        args["ExpressionAttributeValues"].update(values or {})
        return args

    def _let_go(self) -> None:
        """Stop holding the lock (and renewing it): it is released, lost, or about to go."""
        self._renewer.drop(LOCK, self._token)
        self._token = ""

    def _release(self) -> None:
        token = self._token
        self._let_go()
        try:
            self.client.delete_item(**self._lock_condition(token=token))
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            # The lease ran out and another call has the lock: nothing of ours to release.

    def _lost_lock(self) -> StorageError:
        return StorageError(
            f"{self.where}: the write lock was lost (not renewed within its lease of {self.lease:g} s);"
            " nothing of this write was stored",
            kind=StorageFailure.LOCK_LOST,
        )

    # -- transactions ----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Take the write lock (waiting up to ``lockTimeout``), buffer the writes, commit them
        with the release (all or nothing); on an exception drop them and release. Not
        re-entrant."""
        if self._buffer is not None:
            raise RuntimeError("DynamoStorage.transaction() is not re-entrant")
        with self._translated():
            self._acquire()
        self._buffer = {}
        self._seen = {}
        try:
            yield
        except BaseException:
            self._buffer = None
            with self._translated():
                self._release()
            raise
        ops, self._buffer = self._buffer, None
        with self._translated():
            self._commit(ops)

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        if self._buffer is not None:
            yield
            return
        with self.transaction():
            yield

    def _commit(self, ops: dict[Key, Item | None]) -> None:
        if not ops:
            self._release()
            return
        if len(ops) < TRANSACTION_ITEMS:
            actions = [_action(self.table, k, v) for k, v in ops.items()]
            actions.append({"Delete": self._lock_condition()})
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                if _code(exc) == "TransactionCanceledException" and _lock_failed(exc, len(actions) - 1):
                    self._let_go()
                    raise self._lost_lock() from None
                self._release()
                raise
            self._let_go()
            return
        journal_id = self._token
        parts = _journal_parts(ops)
        for number, text in enumerate(parts):
            self.client.put_item(
                TableName=self.table, Item=it.make(f"J#{journal_id}", f"{number:05d}", ops=text)
            )
        try:
            self.client.update_item(
                **self._lock_condition(
                    names={"#journal": "journal", "#parts": "parts"},
                    values={":journal": {"S": journal_id}, ":parts": {"N": str(len(parts))}},
                ),
                UpdateExpression="SET #journal = :journal, #parts = :parts",
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                self._let_go()
                self._delete_journal(journal_id, len(parts))
                raise self._lost_lock() from None
            raise
        self._apply(ops)
        self._release()
        self._delete_journal(journal_id, len(parts))

    def _apply(self, ops: dict[Key, Item | None]) -> None:
        """Write ``ops`` in transactions of 99 that each check the lock is still ours."""
        for part in chunks(list(ops.items()), TRANSACTION_ITEMS - 1):
            actions = [_action(self.table, k, v) for k, v in part]
            actions.append({"ConditionCheck": self._lock_condition()})
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as exc:
                if _code(exc) == "TransactionCanceledException" and _lock_failed(exc, len(actions) - 1):
                    # The next writer applies the journal: the write group is not lost.
                    self._let_go()
                    raise StorageError(
                        f"{self.where}: the write lock ran out while a large write was applied;"
                        " the next call completes it",
                        kind=StorageFailure.LOCK_LOST,
                    ) from None
                raise

    def _roll_forward(self, journal_id: str, parts: int) -> None:
        """Apply the journal a dead writer committed, then clear it from the lock item."""
        texts = self._query_items(f"J#{journal_id}", "", consistent=True)
        if len(texts) != parts:
            raise StorageError(
                f"{self.where}: journal {journal_id} has {len(texts)} of {parts} parts;"
                " run 'ohfp storage check'",
                kind=StorageFailure.CORRUPT,
            )
        ops: dict[Key, Item | None] = {}
        for sk in sorted(texts):
            for pk, sk_, item in _journal_entries(texts[sk]["ops"]["S"]):
                ops[(pk, sk_)] = item
        self._apply(ops)
        self.client.update_item(
            **self._lock_condition(names={"#journal": "journal", "#parts": "parts"}),
            UpdateExpression="REMOVE #journal, #parts",
        )
        self._delete_journal(journal_id, parts)

    def _delete_journal(self, journal_id: str, parts: int) -> None:
        keys = [it.key(f"J#{journal_id}", f"{n:05d}") for n in range(parts)]
        for part in chunks(keys, BATCH_WRITE):
            self.client.batch_write_item(
                RequestItems={self.table: [{"DeleteRequest": {"Key": k}} for k in part]}
            )

    # -- reading ---------------------------------------------------------------------------------

    def _get_items(self, keys: Iterable[Key]) -> dict[Key, Item]:
        """Items by key (consistent), the transaction's own writes included."""
        wanted = unique(keys)
        found: dict[Key, Item] = {}
        fetch = []
        for k in wanted:
            if self._buffer is not None and k in self._buffer:
                item = self._buffer[k]
                if item is not None:
                    found[k] = item
            else:
                fetch.append(k)
        for part in chunks(fetch, BATCH_GET):
            request: dict[str, Any] = {
                self.table: {"Keys": [it.key(*k) for k in part], "ConsistentRead": True}
            }
            while request:
                reply = self.client.batch_get_item(RequestItems=request)
                for item in reply.get("Responses", {}).get(self.table, []):
                    found[it.key_of(item)] = item
                request = reply.get("UnprocessedKeys") or {}
        if self._buffer is not None:
            for k in fetch:
                self._seen[k] = found.get(k)
        return found

    def _query_items(self, pk: str, prefix: str, consistent: bool = True) -> dict[str, Item]:
        """The items of partition ``pk`` whose sort key starts with ``prefix``, by sort key,
        the transaction's own writes included."""
        args: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": consistent,
            "KeyConditionExpression": "pk = :pk" + (" AND begins_with(sk, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {":pk": {"S": pk}, **({":prefix": {"S": prefix}} if prefix else {})},
        }
        found: dict[str, Item] = {}
        while True:
            reply = self.client.query(**args)
            for item in reply.get("Items", []):
                found[item["sk"]["S"]] = item
            if "LastEvaluatedKey" not in reply:
                break
            args["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        if self._buffer:
            for (bpk, bsk), item in self._buffer.items():
                if bpk == pk and bsk.startswith(prefix):
                    if item is None:
                        found.pop(bsk, None)
                    else:
                        found[bsk] = item
        return found

    def _query_many(self, partitions: Sequence[str]) -> dict[str, dict[str, Item]]:
        """:meth:`_query_items` of several partitions, a few at a time."""
        if len(partitions) <= 1:
            return {pk: self._query_items(pk, "") for pk in partitions}
        with ThreadPoolExecutor(max_workers=min(QUERY_THREADS, len(partitions))) as pool:
            return dict(
                zip(partitions, pool.map(lambda pk: self._query_items(pk, ""), partitions), strict=True)
            )

    # -- writing ---------------------------------------------------------------------------------

    def _staged(self) -> dict[Key, Item | None]:
        """The writes buffered by the transaction (only inside one)."""
        assert self._buffer is not None  # noqa: S101 -- only called inside _atomic
        return self._buffer

    def _stage(self, ops: dict[Key, Item | None]) -> None:
        buffer = self._staged()
        for k, item in ops.items():
            buffer.pop(k, None)  # keep the order of the last write
            buffer[k] = item

    def _new_seq(self, index: int) -> int:
        """An increasing number for a machine's first store (microseconds, then position)."""
        seq = max(self._next_seq, time.time_ns() // 1000 * 1000 + index)
        self._next_seq = seq + 1
        return seq

    # -- requests --------------------------------------------------------------------------------

    def put_request(self, record: RequestRecord) -> None:
        """Insert or replace a request (and its index copies)."""
        with self._translated(), self._atomic():
            self._stage(it.request_items(record))

    def get_requests(self, request_ids: Sequence[str]) -> dict[str, RequestRecord]:
        """Requests by id, in the order asked; unknown ids are absent from the result."""
        ids = unique(request_ids)
        with self._translated():
            found = self._get_items(it.request_key(i) for i in ids)
        items = {i: found.get(it.request_key(i)) for i in ids}
        return {i: it.request_from_item(item) for i, item in items.items() if item is not None}

    def open_requests(self, kind: RequestKind | None = None) -> list[RequestRecord]:
        """Requests whose status is still ``running``, oldest first (then by id)."""
        with self._translated():
            found = self._query_items(it.OPEN, "" if kind is None else f"{kind.value}#")
        return oldest_first(map(it.request_from_item, found.values()))

    def undelivered_requests(self) -> list[RequestRecord]:
        """Running requests Host Factory has not got, oldest first (one partition)."""
        with self._translated():
            found = self._query_items(it.UNDELIVERED, "")
        return oldest_first(map(it.request_from_item, found.values()))

    # -- machines --------------------------------------------------------------------------------

    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        """Insert or replace machines by machine id, all or none; index copies follow."""
        if not records:
            return
        with self._translated(), self._atomic():
            buffer = self._staged()
            keys = [it.machine_key(r.machine_id) for r in records]
            self._get_items(k for k in keys if k not in self._seen and k not in buffer)
            for index, record in enumerate(records):
                k = it.machine_key(record.machine_id)
                old_item = buffer[k] if k in buffer else self._seen.get(k)
                old = it.machine_from_item(old_item) if old_item is not None else None
                seq = it.seq_of(old_item) if old_item is not None else self._new_seq(index)
                self._stage(it.machine_items(record, seq, old))

    def machines_of(self, request_ids: Sequence[str]) -> dict[str, list[MachineRecord]]:
        """Machines of acquire requests by request id (every id present), first stored first."""
        ids = unique(request_ids)
        with self._translated():
            found = self._query_many([f"RM#{i}" for i in ids])
        return {i: _by_seq(found[f"RM#{i}"].values()) for i in ids}

    def find_machines(
        self, machine_ids: Sequence[str] = (), names: Sequence[str] = ()
    ) -> list[MachineRecord]:
        """Machines by id (in the order given), then further ones by name (in the order given):
        :func:`ohfp_core.storage_rules.in_find_order` over the name index (``N#<name>``)."""
        ids, wanted = unique(machine_ids), unique(names)
        with self._translated():
            named = self._query_many([f"N#{name}" for name in wanted])
            by_name = [
                sk for pk in named for sk, _ in sorted(named[pk].items(), key=lambda kv: it.seq_of(kv[1]))
            ]
            items = self._get_items(it.machine_key(m) for m in [*ids, *by_name])
        records = {machine_id: it.machine_from_item(items[it.machine_key(machine_id)])
                   for machine_id in [*ids, *by_name] if it.machine_key(machine_id) in items}  # fmt: skip
        return in_find_order(
            ids,
            wanted,
            (records[m] for m in ids if m in records),
            (records[m] for m in by_name if m in records),
        )

    def held_machines(self, template_id: str | None = None) -> list[MachineRecord]:
        """Machines Host Factory holds, optionally of one template, first stored first."""
        with self._translated():
            found = self._query_items(it.HELD, "" if template_id is None else it.held_prefix(template_id))
        return _by_seq(found.values())

    # -- values ----------------------------------------------------------------------------------

    def put_values(self, values: Sequence[StoredValue]) -> None:
        """Insert or replace values by key, all or none."""
        if values:
            with self._translated(), self._atomic():
                self._stage(
                    {it.value_key(v.key): it.value_item(v.key, dumps(v.value), v.expires_at) for v in values}
                )

    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]:
        """Unexpired values by key."""
        with self._translated():
            found = self._get_items(it.value_key(k) for k in keys)
        return {sk: value for (_, sk), item in found.items() if (value := _live(item, now)) is not _EXPIRED}

    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]:
        """Unexpired values whose key starts with ``prefix`` (a key range of one partition)."""
        with self._translated():
            found = self._query_items(it.VALUES, prefix)
        return {sk: value for sk, item in found.items() if (value := _live(item, now)) is not _EXPIRED}

    def delete_values(self, keys: Sequence[str]) -> None:
        """Forget values by key."""
        if keys:
            with self._translated(), self._atomic():
                self._stage(dict.fromkeys((it.value_key(k) for k in keys), None))

    # -- administration ----------------------------------------------------------------------------

    def _scan(self, sk: str) -> list[Item]:
        args: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "sk = :sk",
            "ExpressionAttributeValues": {":sk": {"S": sk}},
        }
        found: list[Item] = []
        while True:
            reply = self.client.scan(**args)
            found += reply.get("Items", [])
            if "LastEvaluatedKey" not in reply:
                return found
            args["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def iter_requests(self) -> Iterator[RequestRecord]:
        """Every request, oldest first (a scan: administration only)."""
        with self._translated():
            found = self._scan("R")
        yield from oldest_first(map(it.request_from_item, found))

    def iter_machines(self) -> Iterator[MachineRecord]:
        """Every machine, in the order first stored (a scan: administration only)."""
        with self._translated():
            found = self._scan("M")
        yield from _by_seq(found)

    def iter_values(self) -> Iterator[StoredValue]:
        """Every value, expired ones included."""
        with self._translated():
            found = self._query_items(it.VALUES, "")
        for sk in sorted(found):
            item = found[sk]
            yield StoredValue(
                key=sk, value=json.loads(item["value"]["S"]), expires_at=int(item["expires"]["N"])
            )

    def check(self) -> dict[str, Any]:
        """Table status and key schema, schema version and instance, the lock, counts."""
        with self._translated():
            problems: list[str] = []
            table = describe_table(self.client, self.table)
            problems += table["problems"]
            meta = self.client.get_item(
                TableName=self.table, Key=it.key(it.META, it.SCHEMA_SK), ConsistentRead=True
            )
            meta_item = meta.get("Item", {})
            version = int(meta_item.get("version", {}).get("N", 0))
            if version != SCHEMA_VERSION:
                problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
            lock = self.client.get_item(
                TableName=self.table, Key=it.key(it.META, it.LOCK_SK), ConsistentRead=True
            )
            lock_item = lock.get("Item")
            if lock_item is not None and "journal" in lock_item:
                problems.append(
                    "a large write of a call that died is not applied yet (the next write applies it)"
                )
            requests = self._scan("R")
            machines = self._scan("M")
            values = self._query_items(it.VALUES, "")
            open_ids = {it.request_from_item(i).request_id for i in self._query_items(it.OPEN, "").values()}
            running = {r.request_id for r in map(it.request_from_item, requests) if not r.status.is_final}
            if open_ids != running:
                problems.append(
                    f"the index of running requests differs in {len(open_ids ^ running)} request(s)"
                )
            return {
                "backend": "dynamodb",
                "schemaVersion": version,
                "ok": not problems,
                "problems": problems,
                "counts": {"requests": len(requests), "machines": len(machines), "values": len(values)},
                "table": self.table,
                "region": self.client.meta.region_name,
                "tableStatus": table["status"],
                "instance": meta_item.get("instance", {}).get("S"),
                "lockHeld": lock_item is not None and "owner" in lock_item,
            }


_EXPIRED = object()


def _live(item: Item, now: int) -> Any:
    if int(item["expires"]["N"]) <= now:
        return _EXPIRED
    return json.loads(item["value"]["S"])


def _by_seq(found: Iterable[Item]) -> list[MachineRecord]:
    return [it.machine_from_item(item) for item in sorted(found, key=it.seq_of)]


def _action(table: str, k: Key, item: Item | None) -> dict[str, Any]:
    if item is None:
        return {"Delete": {"TableName": table, "Key": it.key(*k)}}
    return {"Put": {"TableName": table, "Item": item}}


def _lock_failed(exc: ClientError, position: int) -> bool:
    """Whether the lock's condition is among a cancelled transaction's reasons."""
    reasons = exc.response.get("CancellationReasons") or []
    if len(reasons) > position:
        return str(reasons[position].get("Code")) == "ConditionalCheckFailed"
    return "ConditionalCheckFailed" in str(exc)


def _journal_parts(ops: dict[Key, Item | None]) -> list[str]:
    parts: list[str] = []
    current: list[Any] = []
    size = 0
    for (pk, sk), item in ops.items():
        entry = [pk, sk, item]
        length = len(dumps(entry))
        if current and size + length > JOURNAL_PART_BYTES:
            parts.append(dumps(current))
            current, size = [], 0
        current.append(entry)
        size += length
    if current:
        parts.append(dumps(current))
    return parts


def _journal_entries(text: str) -> list[tuple[str, str, Item | None]]:
    return [(pk, sk, item) for pk, sk, item in json.loads(text)]


def open_store(settings: DynamoSettings, context: StorageContext) -> DynamoStorage:
    """The ``dynamodb`` backend's opener (:func:`ohfp_core.storage_backends.backend`)."""
    return DynamoStorage(settings, context.instance, context.deadline, owner=call_owner(context.workdir))

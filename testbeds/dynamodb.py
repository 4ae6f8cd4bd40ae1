"""DynamoDB on moto for the tests and the benchmarks: a local server whose requests are handled
one at a time, and a bulk loader straight into moto's backend.

DynamoDB applies each conditional write atomically; moto's threaded server does not promise
that (two requests may interleave inside moto), so :class:`SerialMotoServer` hands moto one
request at a time. That keeps the lock tests honest about ohfp's code, not moto's. The
server runs in the calling process, so it can also reach moto's backend directly
(:func:`load_into_moto`, for the 100,000-machine test and the benchmarks).

Two of moto's costs grow with the table where DynamoDB's do not, and :func:`fast_moto`
removes them so the 100,000-machine test runs in seconds: a base-table Query walks every
item of the table (DynamoDB reads only the partition, and of it only the sort-key range;
here moto is handed only those items too, so ``ScannedCount`` means what it means on AWS),
and TransactWriteItems deep-copies the
whole table once per item to be able to roll back (here it copies each partition's mapping
once per call; ohfp's transactions only put and delete whole items, which that restores).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from testbeds.hooked_moto import Forward, Response

if TYPE_CHECKING:
    from ohfp_core.storage import MachineRecord, RequestRecord, Storage

REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_tables = itertools.count()


TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
"""IAM authorizes a TransactWriteItems by the actions of its items."""


class SerialMotoServer:
    """moto's server app on 127.0.0.1 (a free port), requests handed to moto one at a time
    (the hooked server serializes every request its hook sees); records the IAM action of
    each DynamoDB request, whichever process made it."""

    def __init__(self) -> None:
        from testbeds.hooked_moto import HookedMotoServer

        self._server = HookedMotoServer()
        self._server.app.hook = self._record
        self._server.start()
        self._actions: set[str] = set()

    def _record(self, api: str, forward: Forward) -> Response:
        service, _, operation = api.partition(":")
        if service == "dynamodb" and operation == "TransactWriteItems":
            for entry in json.loads(self._server.app.body).get("TransactItems", []):
                self._actions.update(f"dynamodb:{TRANSACT_ACTIONS[kind]}" for kind in entry)
        elif service == "dynamodb":
            self._actions.add(api)
        return forward()

    @property
    def actions(self) -> set[str]:
        """Every IAM action a DynamoDB request to this server needed so far."""
        return set(self._actions)

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    def stop(self) -> None:
        self._server.stop()


def new_table(label: str = "t") -> str:
    return f"ohfp-test-{os.getpid()}-{label}-{next(_tables)}"


@attrs.frozen
class DynamoOpener:
    """Opens the store in one table of the server (picklable, for child processes)."""

    endpoint: str
    table: str
    instance: str = "kit"
    lease: float = 2.0
    call_lease: float = 2.0

    def __call__(self) -> Any:
        from ohfp_dynamodb.settings import DynamoSettings
        from ohfp_dynamodb.store import DynamoStorage

        for name, value in FAKE_ENV.items():
            os.environ.setdefault(name, value)
        settings = DynamoSettings(
            table=self.table,
            region=REGION,
            endpoint_url=self.endpoint,
            create_table=True,
            lock_lease_seconds=self.lease,
            call_lease_seconds=self.call_lease,
        )
        return DynamoStorage(settings, self.instance)


def load_into_moto(
    store: Storage, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
) -> None:
    """Store many records fast into a DynamoDB store served by moto in this process: straight
    into moto's backend, the items the store would write (:mod:`ohfp_dynamodb.items`),
    without a million HTTP round trips."""
    from ohfp_core.storage import dumps, machine_record_to_doc
    from ohfp_core.storage_rules import is_held
    from ohfp_dynamodb import items as it
    from ohfp_dynamodb.store import DynamoStorage

    assert isinstance(store, DynamoStorage)
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].get_table(store.table)

    def insert(item: dict[str, Any]) -> None:
        """moto's Item without its per-attribute size bookkeeping (quadratic here)."""
        made: Any = Item.__new__(Item)
        made.attrs = LimitedSizeDict()
        dict.update(
            made.attrs, {k: v if isinstance(v, DynamoType) else DynamoType(v) for k, v in item.items()}
        )
        made.hash_key, made.range_key = made.attrs["pk"], made.attrs["sk"]
        table.items[made.hash_key][made.range_key] = made

    for record in requests:
        for item in it.request_items(record).values():
            if item is not None:
                insert(item)
    # One document shape for all: ids, names and times filled in (json.dumps of a dict is
    # far cheaper than attrs.asdict per machine); the first is checked against the store's.
    shape = machine_record_to_doc(machines[0])
    for seq, machine in enumerate(machines, start=1):
        doc = {
            **shape,
            "request_id": machine.request_id,
            "template_id": machine.template_id,
            "result": machine.result.value,
            "return_request_id": machine.return_request_id,
            "reclaimed_at": machine.reclaimed_at,
            "updated_at": machine.updated_at,
            "machine": {**shape["machine"], "machine_id": machine.machine_id, "name": machine.name},
        }
        text, number, mid = (
            DynamoType({"S": dumps(doc)}),
            DynamoType({"N": str(seq)}),
            machine.machine_id,
        )
        made = [
            {"pk": {"S": f"M#{mid}"}, "sk": {"S": "M"}, "doc": text, "seq": number},
            {"pk": {"S": f"RM#{machine.request_id}"}, "sk": {"S": mid}, "doc": text, "seq": number},
        ]
        if is_held(machine):
            sk = it.held_prefix(machine.template_id) + mid
            made.append({"pk": {"S": it.HELD}, "sk": {"S": sk}, "doc": text, "seq": number})
        if machine.name:
            made.append({"pk": {"S": f"N#{machine.name}"}, "sk": {"S": mid}, "seq": number})
        if seq == 1:
            plain = [{k: v.to_json() if isinstance(v, DynamoType) else v for k, v in i.items()} for i in made]
            assert plain == [i for i in it.machine_items(machine, 1, None).values() if i is not None]
        for item in made:
            insert(item)


class _LightCopy:
    """Stands in for the ``copy`` module inside moto's TransactWriteItems: a table is copied
    partition mapping by partition mapping, once per call."""

    def __init__(self) -> None:
        self.copies: dict[int, Any] = {}

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        if not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        if id(value) not in self.copies:
            clone = copy.copy(value)
            clone.items = defaultdict(dict, {h: dict(r) for h, r in value.items.items()})
            self.copies[id(value)] = clone
        return self.copies[id(value)]


_patched = [0]


@contextlib.contextmanager
def fast_moto() -> Iterator[None]:
    """While inside, moto's Query reads one partition and TransactWriteItems copies cheaply
    (nested uses patch once)."""
    if _patched[0]:
        _patched[0] += 1
        try:
            yield
        finally:
            _patched[0] -= 1
        return
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_transact = DynamoDBBackend.transact_write_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or not self.has_range_key or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        stored = self.items.get(hash_key, {})
        comparison, values = (args[0], args[1]) if len(args) > 1 else (None, None)
        if comparison is not None and str(comparison).upper() == "BEGINS_WITH" and values:
            prefix = values[0].value  # a range of the sort key, as DynamoDB reads it
            partition = [item for range_key, item in stored.items() if range_key.value.startswith(prefix)]
        else:
            partition = list(stored.values())
        self.all_items = lambda: partition
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            self.__dict__.pop("all_items", None)

    def transact(self: Any, transact_items: Any) -> Any:
        models.copy = _LightCopy()  # type: ignore[attr-defined,assignment]
        try:
            return original_transact(self, transact_items)
        finally:
            models.copy = copy  # type: ignore[attr-defined]

    Table.query = query  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact  # type: ignore[method-assign]
    _patched[0] = 1
    try:
        yield
    finally:
        _patched[0] = 0
        Table.query = original_query  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items = original_transact  # type: ignore[method-assign]

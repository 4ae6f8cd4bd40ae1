"""The DynamoDB store: the storage kit on a moto server, the lock, settings, the table."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from ohfp_core.errors import ConfigError, StorageError, StorageFailure
from ohfp_core.models import RequestKind
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.storage import (
    MachineRecord,
    RequestRecord,
    Storage,
    StorageContext,
    StorageFactory,
    StoredValue,
)
from ohfp_core.storage_contract import StoreOpener, mrec
from ohfp_core.testing import StorageContract
from ohfp_dynamodb import items as it
from ohfp_dynamodb import plugin
from ohfp_dynamodb.settings import DynamoSettings
from ohfp_dynamodb.store import LOCK, SCHEMA_VERSION, DynamoStorage
from testbeds.dynamodb import REGION, DynamoOpener, SerialMotoServer, load_into_moto, new_table


def _is_a_store(settings: DynamoSettings) -> Storage:
    return DynamoStorage(settings, "i")  # mypy checks that the class satisfies the Storage protocol


def factory() -> StorageFactory:
    """The ``dynamodb`` backend as the plugin registers it."""
    return Hooks(make_manager(extensions=[("dynamodb", plugin)])).storage_factories()["dynamodb"]


READ_OPERATIONS = ("GetItem", "BatchGetItem", "Query", "Scan")


class ReadCounter:
    """Counts the items each read the store's client makes examines (``ScannedCount`` of a
    Query or Scan, the items a GetItem or BatchGetItem returns), from the parsed replies."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reads: list[tuple[str, int, int]] = []  # operation, items examined, items returned
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _after(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if name in ("Query", "Scan"):
            self.reads.append((name, int(parsed.get("ScannedCount", 0)), int(parsed.get("Count", 0))))
        elif name == "GetItem":
            self.reads.append((name, int("Item" in parsed), int("Item" in parsed)))
        elif name == "BatchGetItem":
            count = sum(len(found) for found in parsed.get("Responses", {}).values())
            self.reads.append((name, count, count))

    def stop(self) -> None:
        self.client.meta.events.unregister("after-call.dynamodb.*", self._after)


class TestDynamoContract(StorageContract):
    """The storage kit against moto, one fresh table per test.

    moto costs time per item it holds and per request, where DynamoDB does not, so two tests
    run smaller here and prove the same: 10,000 machines (40,000 items) for the indexed
    lookups, whose check fails any read that examines more than a few items beyond what it
    returns; 250 ids at once, more than twice the 100 keys of one BatchGetItem.
    """

    bulk_machines = 10_000
    many_ids = 250
    lease_lapse_sec = 2.0  # DynamoOpener's callLeaseSeconds

    @pytest.fixture
    def opener(self, dynamo_server: SerialMotoServer) -> StoreOpener:
        return DynamoOpener(dynamo_server.endpoint, new_table("kit"))

    def assert_indexed(self, store: Storage, lookup: Callable[[], object]) -> None:
        assert isinstance(store, DynamoStorage)
        counter = ReadCounter(store.client)
        try:
            result = lookup()
        finally:
            counter.stop()
        assert counter.reads, "the lookup read nothing"
        assert not [r for r in counter.reads if r[0] == "Scan"], "a lookup scanned the table"
        examined = sum(r[1] for r in counter.reads)
        returned = len(result) if isinstance(result, list | dict) else 0
        assert examined <= returned + 10, f"{examined} items read for {returned} results: {counter.reads}"

    def bulk_load(
        self, store: Storage, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        load_into_moto(store, requests, machines)

    def bump_schema_version(self, opener: StoreOpener) -> None:
        store = opener()
        assert isinstance(store, DynamoStorage)
        store.client.update_item(
            TableName=store.table,
            Key=it.key(it.META, it.SCHEMA_SK),
            UpdateExpression="SET version = :v",
            ExpressionAttributeValues={":v": {"N": str(SCHEMA_VERSION + 1)}},
        )
        store.close()

    def write_previous_version(
        self, opener: StoreOpener, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        raise NotImplementedError(
            f"ohfp-dynamodb knows one schema version ({SCHEMA_VERSION}): there is no earlier one to migrate"
        )


@pytest.fixture
def opener(dynamo_server: SerialMotoServer) -> DynamoOpener:
    return DynamoOpener(dynamo_server.endpoint, new_table("unit"))


@pytest.fixture
def dstore(opener: DynamoOpener) -> Iterator[DynamoStorage]:
    store = opener()
    yield store
    store.close()


def test_a_write_group_of_more_than_100_items_is_journalled_and_applied(dstore: DynamoStorage) -> None:
    calls: list[str] = []
    dstore.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    with dstore.transaction():
        dstore.put_request(RequestRecord(request_id="req-big", kind=RequestKind.ACQUIRE))
        dstore.put_machines([mrec(f"i-{n:03d}", "req-big", template_id="t") for n in range(120)])
    assert calls.count("TransactWriteItems") >= 4, calls  # 363 items in transactions of 99
    assert len(dstore.machines_of(["req-big"])["req-big"]) == 120
    lock = dstore.client.get_item(
        TableName=dstore.table, Key=it.key(it.META, it.LOCK_SK), ConsistentRead=True
    )
    assert "Item" not in lock, "the lock is released"
    journals = dstore.client.scan(TableName=dstore.table, FilterExpression="begins_with(pk, :j)",
                                  ExpressionAttributeValues={":j": {"S": "J#"}})  # fmt: skip
    assert journals["Count"] == 0, "the journal is removed"


def test_a_committed_journal_of_a_dead_writer_is_applied_by_the_next(
    dstore: DynamoStorage, opener: DynamoOpener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the writer right after its commit point (the lock names its journal)."""

    class Died(BaseException):
        pass

    def die(ops: Any) -> None:
        dstore._renewer.drop(LOCK, dstore._token)  # a dead process renews nothing
        raise Died

    monkeypatch.setattr(dstore, "_apply", die)
    with pytest.raises(Died), dstore.transaction():
        dstore.put_request(RequestRecord(request_id="req-j", kind=RequestKind.ACQUIRE))
        dstore.put_machines([mrec(f"i-{n:03d}", "req-j") for n in range(60)])
    assert dstore.get_requests(["req-j"]) == {}, "nothing applied before the commit point's apply"
    other = opener()
    try:
        with other.transaction():  # waits out the dead writer's lease, then rolls forward
            pass
        assert list(other.get_requests(["req-j"])) == ["req-j"]
        assert len(other.machines_of(["req-j"])["req-j"]) == 60
        assert other.check()["ok"] is True
    finally:
        other.close()


def test_a_writer_that_stops_renewing_its_lock_loses_it_and_stores_nothing(
    dstore: DynamoStorage, opener: DynamoOpener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen writer (nothing renews its lock): another call takes the lock once the lease
    has run out, and the frozen one's write, when it comes, stores nothing."""
    import time

    dstore.lease = 0.2
    monkeypatch.setattr(dstore._renewer, "keep", lambda *args: None)
    other = opener()
    try:
        with pytest.raises(StorageError, match=r"the write lock was lost") as lost, dstore.transaction():
            dstore.put_request(RequestRecord(request_id="req-late", kind=RequestKind.ACQUIRE))
            time.sleep(0.3)
            other.put_request(RequestRecord(request_id="req-other", kind=RequestKind.ACQUIRE))
        assert lost.value.kind is StorageFailure.LOCK_LOST
        assert list(other.get_requests(["req-late", "req-other"])) == ["req-other"]
    finally:
        other.close()


def test_a_writer_at_work_keeps_its_lock_past_its_lease(dstore: DynamoStorage, opener: DynamoOpener) -> None:
    """A live writer's lock is renewed: a write longer than three leases keeps it, the other
    call waits (and gives up at its own limit), and the long write is stored."""
    import time

    from ohfp_core.deadline import Deadline

    dstore.lease = 0.3
    other = opener()
    try:
        with dstore.transaction():
            dstore.put_request(RequestRecord(request_id="req-long", kind=RequestKind.ACQUIRE))
            time.sleep(1.0)
            other.use_deadline(Deadline.after(1.0))
            with pytest.raises(StorageError) as waited:
                other.put_request(RequestRecord(request_id="req-other", kind=RequestKind.ACQUIRE))
            assert waited.value.kind is StorageFailure.LOCK_TIMEOUT
        assert list(dstore.get_requests(["req-long", "req-other"])) == ["req-long"]
    finally:
        other.close()


def test_writers_in_threads_wait_for_each_other(opener: DynamoOpener) -> None:
    opener().close()
    errors: list[BaseException] = []

    def bump(worker: int) -> None:
        store = opener()
        try:
            for n in range(5):
                store.put_request(RequestRecord(request_id=f"req-{worker}-{n}", kind=RequestKind.ACQUIRE))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=bump, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = opener()
    assert len(store.open_requests()) == 20
    store.close()


def test_settings_and_errors(dynamo_server: SerialMotoServer, tmp_path: Any) -> None:
    with pytest.raises(ConfigError) as error:
        factory()(
            StorageContext(instance="i", workdir=tmp_path, settings={"table": "x", "lockLeaseSeconds": 0})
        )
    assert set(error.value.problems) == {
        '$.dynamodb.table: must be 3 to 255 characters of [A-Za-z0-9_.-], got "x"',
        "$.dynamodb.lockLeaseSeconds: must be 1..600, got 0.0",
    }
    with pytest.raises(
        StorageError, match="table 'absent-table'\\) not found: create it with 'ohfp-dynamodb create-table'"
    ):
        factory()(
            StorageContext(
                instance="i",
                workdir=tmp_path,
                settings={"table": "absent-table", "region": REGION, "endpointUrl": dynamo_server.endpoint},
            )
        )


def test_a_table_of_another_instance_is_refused(opener: DynamoOpener) -> None:
    import attrs

    opener().close()
    with pytest.raises(ConfigError, match="holds the state of provider instance 'kit', not 'other'"):
        attrs.evolve(opener, instance="other")()


def test_the_plugin_registers_dynamodb_without_importing_botocore() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from ohfp_core.plugins import Hooks, make_manager; import ohfp_dynamodb.plugin as p;"
        "print('dynamodb' in Hooks(make_manager(extensions=[('d', p)])).storage_factories(),"
        " 'botocore' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]


def test_the_environment_names_the_endpoint_and_region(
    dynamo_server: SerialMotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", dynamo_server.endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    store = factory()(
        StorageContext(
            instance="i", workdir=tmp_path, settings={"table": new_table("env"), "createTable": True}
        )
    )
    try:
        report = store.check()
    finally:
        store.close()
    assert report["ok"] is True and report["region"] == REGION and report["tableStatus"] == "ACTIVE"


def test_every_action_called_is_in_the_iam_policy(dynamo_server: SerialMotoServer, tmp_path: Any) -> None:
    """Every DynamoDB action this session needed — the storage kit above (its child
    processes included) and a full cycle here: create the table, small and journalled
    writes, every query, the administration reads — is allowed by ``iam-policy``."""
    from ohfp_dynamodb.iam import policy_for

    store = factory()(
        StorageContext(
            instance="iam",
            workdir=tmp_path,
            settings={"table": new_table("iam"), "region": REGION, "endpointUrl": dynamo_server.endpoint,
                      "createTable": True},
        )
    )  # fmt: skip
    assert isinstance(store, DynamoStorage)
    try:
        with store.transaction():
            store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, template_id="t"))
            store.put_machines([mrec(f"i-{n}", "req-1", template_id="t") for n in range(40)])
        store.put_machines([mrec("i-0", "req-1", template_id="t", return_request_id="ret-1")])
        store.get_requests(["req-1"])
        store.open_requests()
        store.undelivered_requests()
        store.machines_of(["req-1"])
        store.find_machines(["i-1"], names=["ip-i-2"])
        store.held_machines("t")
        store.put_values([StoredValue(key="k", value=1, expires_at=9)])
        store.get_values(["k"], now=0)
        store.values_with_prefix("k", now=0)
        store.delete_values(["k"])
        list(store.iter_requests())
        list(store.iter_machines())
        store.check()
    finally:
        store.close()
    policy = policy_for(store.table, create=True)
    [statement] = policy["Statement"]
    allowed = set(statement["Action"])
    called = dynamo_server.actions
    for expected in ("dynamodb:CreateTable", "dynamodb:PutItem",
                     "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem",
                     "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:GetItem",
                     "dynamodb:Scan", "dynamodb:DescribeTable"):  # fmt: skip
        assert expected in called, f"the session did not exercise {expected}"
    assert called - allowed == set(), f"called but not in the IAM policy: {sorted(called - allowed)}"
    assert statement["Resource"] == f"arn:aws:dynamodb:*:*:table/{store.table}"
    runtime = set(policy_for(store.table)["Statement"][0]["Action"])
    assert "dynamodb:CreateTable" not in runtime, "creating the table is opt-in"


def test_the_cli_prints_the_policy_and_creates_the_table(
    dynamo_server: SerialMotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from ohfp_dynamodb.cli import main
    from ohfp_dynamodb.iam import policy_for

    assert (
        main(["iam-policy", "--table", "hf-state", "--region", "eu-west-1", "--account", "123456789012"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == policy_for("hf-state", "eu-west-1", "123456789012")
    assert printed["Statement"][0]["Resource"] == "arn:aws:dynamodb:eu-west-1:123456789012:table/hf-state"
    table = new_table("cli")
    args = ["create-table", "--table", table, "--region", REGION, "--endpoint-url", dynamo_server.endpoint]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["message"] == f"table {table} created"
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["message"] == f"table {table} already exists"

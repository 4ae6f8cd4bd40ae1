"""The storage conformance kit: one pytest suite every storage backend runs in its own CI.

How a backend package uses it (``pip install ohfp-core[testing]``)::

    from ohfp_core.testing import StorageContract

    class TestMyStore(StorageContract):
        @pytest.fixture
        def opener(self, tmp_path):          # opens connections to ONE fresh, empty store
            return MyOpener(dsn=..., namespace=fresh_name())

        def assert_indexed(self, store, lookup):    # prove lookups use keys or indexes
            ...

The ``opener`` is called once per connection the kit needs, in this process and in
child processes (started with ``spawn``), so it must be picklable: a module-level class
or a :func:`functools.partial` of a module-level function. Every call opens the same
store. Optional hooks (:meth:`StorageContract.bulk_load`,
:meth:`StorageContract.write_previous_version`, :meth:`StorageContract.bump_schema_version`)
let a backend supply its fastest load path and its schema history; where a hook raises
NotImplementedError the tests that need it are skipped with that reason.

What is checked: a round trip of every record kind and of values (expiry honoured); every
query of :class:`~ohfp_core.storage.Storage`; reads inside a transaction see its writes
and a rollback leaves nothing; processes racing for the last units of a template never
get more than ``maxNumber`` (capacity read inside :meth:`Storage.transaction`, as core does);
a process killed at any moment of a stream of write groups leaves every group whole or
absent; processes opening a new store at once all succeed; a store written by a newer
schema is refused; one request's lookups stay indexed with 100,000 machines in state; a
request's lease is seen by every connection until released, and free once its holder dies
(within :attr:`~StorageContract.lease_lapse_sec`); round trips past the call's deadline are
refused, and a write waits for another at most what is left of the call's time.
"""

# A pytest suite shipped in the package: its checks are plain asserts.

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from ohfp_core import capacity
from ohfp_core.deadline import Deadline
from ohfp_core.errors import ConfigError, StorageError, StorageFailure
from ohfp_core.models import (
    Machine,
    MachineResult,
    MachineState,
    PriceType,
    RequestKind,
    RequestStatus,
    Template,
)
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, StoredValue

__all__ = ["StorageContract", "StoreOpener"]

StoreOpener = Callable[[], Storage]
"""Opens a new connection to the store under test (picklable)."""

RACE_WORKERS = 4
RACE_ATTEMPTS = 10
RACE_MAX = 15
KILL_GROUP = 150
"""Machines written with their request in each write group of the kill test (more than
the 100 items one DynamoDB transaction holds)."""
BULK_MACHINES = 100_000
MANY_IDS = 1203
"""Over twice SQLite's 500 ids per IN list, and not a multiple of any batch size."""
BULK_PER_REQUEST = 100
WAIT = 120.0


def machine(machine_id: str, name: str | None = None, **changes: Any) -> Machine:
    """A running machine named ``ip-<id>`` unless ``name`` is given."""
    return Machine(
        machine_id=machine_id,
        name=f"ip-{machine_id}" if name is None else name,
        state=MachineState.RUNNING,
        **changes,
    )


def mrec(machine_id: str, request_id: str = "req-1", **changes: Any) -> MachineRecord:
    """A machine record of ``request_id`` (``name=`` sets the machine's name)."""
    name = changes.pop("name", None)
    return MachineRecord(machine=machine(machine_id, name), request_id=request_id, **changes)


def full_request() -> RequestRecord:
    """A request with every field away from its default."""
    return RequestRecord(
        request_id="ret-7",
        kind=RequestKind.RETURN,
        status=RequestStatus.COMPLETE_WITH_ERROR,
        template_id="tpl-a",
        machine_count=3,
        handle={"fleet": "sfr-1", "ids": [1, 2], "nested": {"a": None, "b": True}},
        machine_ids=("i-2", "i-1", "i-3"),
        errors={"i-1": "InvalidInstanceID.NotFound"},
        message="déjà terminated ✓",
        created_at=1_700_000_000,
        updated_at=1_700_000_050,
        delivered=True,
        owner="host-a:/var/ohfp/work",
    )


def full_machine() -> MachineRecord:
    """A machine record with every field (and every machine field) away from its default."""
    return MachineRecord(
        machine=Machine(
            machine_id="i-0abc",
            name="ip-10-0-0-1.ec2.internal",
            state=MachineState.SHUTTING_DOWN,
            private_ip="10.0.0.1",
            public_ip="3.3.3.3",
            launch_time=1_700_000_000,
            instance_type="m5.large",
            price_type=PriceType.SPOT,
            weight=4,
            message="Server.SpotInstanceTermination",
            cloud_host_id="h-123",
            tags={"ohfp:request": "req-1", "Name": "grid"},
        ),
        request_id="req-1",
        template_id="tpl-a",
        result=MachineResult.FAIL,
        return_request_id="ret-2",
        reclaimed_at=1_700_000_100,
        updated_at=1_700_000_200,
    )


def _ids(records: Sequence[MachineRecord]) -> list[str]:
    return [m.machine_id for m in records]


# -- child processes (module level: started with spawn) ------------------------------------


def _open_and_insert(opener: StoreOpener, index: int, barrier: Any) -> None:
    barrier.wait(WAIT)
    store = opener()
    store.put_request(RequestRecord(request_id=f"req-open-{index}", kind=RequestKind.ACQUIRE))
    store.close()


def _race(opener: StoreOpener, worker: int, barrier: Any) -> None:
    """Ask for one unit at a time of a template limited to RACE_MAX, as requestMachines does."""
    template = Template(template_id="tpl-race", max_number=RACE_MAX)
    store = opener()
    barrier.wait(WAIT)
    for attempt in range(RACE_ATTEMPTS):
        with store.transaction():
            used = capacity.in_use(store, [template.template_id])[template.template_id]
            if capacity.free(template, used) >= 1:
                store.put_request(
                    RequestRecord(
                        request_id=f"req-race-{worker}-{attempt}",
                        kind=RequestKind.ACQUIRE,
                        template_id=template.template_id,
                        machine_count=1,
                        created_at=attempt,
                    )
                )
    store.close()


def _write_groups(opener: StoreOpener, progress: Any) -> None:
    """Commit write groups (a request and its KILL_GROUP machines) until killed."""
    store = opener()
    group = 0
    while True:
        request_id = f"req-kill-{group:05d}"
        with store.transaction():
            store.put_request(
                RequestRecord(request_id=request_id, kind=RequestKind.ACQUIRE, machine_count=KILL_GROUP)
            )
            store.put_machines(
                [
                    mrec(f"i-kill-{group:05d}-{n:03d}", request_id, template_id="tpl-kill")
                    for n in range(KILL_GROUP)
                ]
            )
        group += 1
        progress.value = group


def _hold_lease(opener: StoreOpener, request_id: str, ready: Any) -> None:
    """Hold a request's lease, as a call at work does, until killed."""
    store = opener()
    store.hold_lease(request_id)
    ready.set()
    time.sleep(WAIT * 2)


def _spawn() -> Any:
    return multiprocessing.get_context("spawn")


def _run_workers(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[int | None]:
    ctx = _spawn()
    barrier = ctx.Barrier(len(args))
    processes = [ctx.Process(target=target, args=(*a, barrier)) for a in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(WAIT * 2)
    for process in processes:
        if process.is_alive():
            process.kill()
    return [process.exitcode for process in processes]


class StorageContract:
    """Conformance tests of :class:`ohfp_core.storage.Storage`.

    Subclass it in a test module; provide the ``opener`` fixture and override
    :meth:`assert_indexed`.
    """

    bulk_machines = BULK_MACHINES
    """Machines in state for the indexed-lookup test."""
    many_ids = MANY_IDS
    """Ids looked up at once by the many-ids test: more than the most the backend reads in
    one statement or batch, so lookups that split ids are exercised."""
    lease_lapse_sec = 0.0
    """How long a lease may outlive the call holding it (0: the store sees it die at once)."""

    # -- what a backend supplies -------------------------------------------------------------

    @pytest.fixture
    def opener(self) -> StoreOpener:
        """Opens connections to one fresh, empty store (override)."""
        raise NotImplementedError("a StorageContract subclass must define the 'opener' fixture")

    def assert_indexed(self, store: Storage, lookup: Callable[[], object]) -> None:
        """Run ``lookup`` on ``store`` and fail unless every read it made used a key or an
        index: a query plan without a table scan, or a count of items read bounded by the
        result. Backends override it; this default fails."""
        raise NotImplementedError("a StorageContract subclass must override assert_indexed")

    def bulk_load(
        self, store: Storage, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        """Store many records fast (override with the backend's fastest path)."""
        with store.transaction():
            for record in requests:
                store.put_request(record)
        for start in range(0, len(machines), 1000):
            store.put_machines(machines[start : start + 1000])

    def write_previous_version(
        self, opener: StoreOpener, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]
    ) -> None:
        """Write, where ``opener`` opens, a store of the previous schema version holding these
        records (raise NotImplementedError when there is no previous version)."""
        raise NotImplementedError("the backend has no previous schema version")

    def bump_schema_version(self, opener: StoreOpener) -> None:
        """Mark the store as written by a newer schema version than this code knows."""
        raise NotImplementedError("the backend cannot set its schema version in tests")

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture
    def store(self, opener: StoreOpener) -> Iterator[Storage]:
        opened = opener()
        yield opened
        opened.close()

    # -- round trips -------------------------------------------------------------------------

    def test_request_round_trip_keeps_every_field(self, opener: StoreOpener) -> None:
        record = full_request()
        bare = RequestRecord(request_id="req-nohandle", kind=RequestKind.ACQUIRE)
        first = opener()
        first.put_request(record)
        first.put_request(bare)
        first.close()
        again = opener()
        try:
            got = again.get_requests(["ret-7", "req-nohandle"])
        finally:
            again.close()
        assert got == {"ret-7": record, "req-nohandle": bare}
        assert isinstance(got["ret-7"].machine_ids, tuple)
        assert got["req-nohandle"].handle is None

    def test_machine_round_trip_keeps_every_field(self, opener: StoreOpener) -> None:
        record = full_machine()
        bare = MachineRecord(
            machine=Machine(machine_id="i-bare", name="", state=MachineState.PENDING), request_id="req-2"
        )
        first = opener()
        first.put_machines([record, bare])
        first.close()
        again = opener()
        try:
            got = again.find_machines(["i-0abc", "i-bare"])
        finally:
            again.close()
        assert got == [record, bare]
        assert got[0].machine.price_type is PriceType.SPOT
        assert got[1].machine.price_type is None

    def test_values_round_trip_expire_and_match_by_prefix(self, store: Storage) -> None:
        store.put_values(
            [
                StoredValue(key="aws/types/m5", value={"vcpu": 2, "names": ["a", "ü"]}, expires_at=200),
                StoredValue(key="aws/types/t3", value=[1, 2.5, None, True], expires_at=100),
                StoredValue(key="aws/typesX", value="other", expires_at=200),
                StoredValue(key="aws0", value=0, expires_at=200),
                StoredValue(key="mock/x", value=None, expires_at=200),
            ]
        )
        assert store.get_values(["aws/types/m5", "aws/types/t3", "nope"], now=50) == {
            "aws/types/m5": {"vcpu": 2, "names": ["a", "ü"]},
            "aws/types/t3": [1, 2.5, None, True],
        }
        assert store.get_values(["aws/types/t3"], now=100) == {}, "a value expires at expires_at"
        assert store.values_with_prefix("aws/types/", now=150) == {
            "aws/types/m5": {"vcpu": 2, "names": ["a", "ü"]}
        }
        assert set(store.values_with_prefix("aws/", now=0)) == {"aws/types/m5", "aws/types/t3", "aws/typesX"}
        assert store.get_values(["mock/x"], now=0) == {"mock/x": None}
        store.put_values([StoredValue(key="aws0", value={"v": 2}, expires_at=300)])
        store.delete_values(["aws/typesX", "missing"])
        assert store.get_values(["aws0", "aws/typesX"], now=250) == {"aws0": {"v": 2}}
        everything = {v.key: (v.value, v.expires_at) for v in store.iter_values()}
        assert everything == {
            "aws/types/m5": ({"vcpu": 2, "names": ["a", "ü"]}, 200),
            "aws/types/t3": ([1, 2.5, None, True], 100),
            "aws0": ({"v": 2}, 300),
            "mock/x": (None, 200),
        }, "iter_values includes expired values"

    # -- upserts and queries -----------------------------------------------------------------

    def test_put_request_replaces_the_stored_request(self, store: Storage) -> None:
        store.put_request(
            RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, machine_count=2, created_at=10)
        )
        changed = RequestRecord(
            request_id="req-1",
            kind=RequestKind.ACQUIRE,
            status=RequestStatus.COMPLETE,
            machine_count=2,
            handle={"fleet": "f-1"},
            machine_ids=("i-1", "i-2"),
            created_at=10,
            updated_at=20,
            delivered=True,
        )
        store.put_request(changed)
        assert store.get_requests(["req-1"]) == {"req-1": changed}
        assert store.open_requests() == []
        assert store.undelivered_requests() == []

    def test_put_machines_replaces_by_id_and_keeps_first_stored_order(self, store: Storage) -> None:
        store.put_machines([mrec("i-3"), mrec("i-1"), mrec("i-2")])
        updated = mrec("i-3", name="host-3", result=MachineResult.SUCCEED, updated_at=5)
        store.put_machines([updated])
        machines = store.machines_of(["req-1"])["req-1"]
        assert _ids(machines) == ["i-3", "i-1", "i-2"]
        assert machines[0] == updated
        assert store.find_machines(names=["ip-i-3"]) == []
        assert store.find_machines(names=["host-3"]) == [updated]

    def test_a_machine_written_twice_in_one_write_ends_as_its_last_in_every_query(
        self, store: Storage
    ) -> None:
        last = mrec("i-1", "req-b", template_id="t2", name="two")
        store.put_machines([mrec("i-1", "req-a", template_id="t1", name="one"), last])
        assert store.machines_of(["req-a", "req-b"]) == {"req-a": [], "req-b": [last]}
        assert (store.held_machines("t1"), store.held_machines("t2")) == ([], [last])
        assert (store.find_machines(names=["one"]), store.find_machines(names=["two"])) == ([], [last])
        returning = mrec("i-2", "req-c", template_id="t1", return_request_id="ret-1")
        with store.transaction():
            store.put_machines([mrec("i-2", "req-a", template_id="t1")])
            store.put_machines([returning])
        assert store.machines_of(["req-a", "req-c"]) == {"req-a": [], "req-c": [returning]}
        assert store.held_machines("t1") == []

    def test_a_machine_moved_to_another_request_and_template_moves_in_every_query(
        self, store: Storage
    ) -> None:
        store.put_machines([mrec("i-1", "req-a", template_id="t1"), mrec("i-2", "req-a", template_id="t1")])
        store.put_machines([mrec("i-1", "req-b", template_id="t2")])
        found = store.machines_of(["req-a", "req-b"])
        assert {k: _ids(v) for k, v in found.items()} == {"req-a": ["i-2"], "req-b": ["i-1"]}
        assert _ids(store.held_machines("t1")) == ["i-2"]
        assert _ids(store.held_machines("t2")) == ["i-1"]

    def test_open_requests_are_running_only_oldest_first_and_filter_by_kind(self, store: Storage) -> None:
        for request_id, kind, created in (
            ("req-c", RequestKind.ACQUIRE, 30),
            ("ret-a", RequestKind.RETURN, 10),
            ("req-b", RequestKind.ACQUIRE, 20),
            ("req-a", RequestKind.ACQUIRE, 20),
        ):
            store.put_request(RequestRecord(request_id=request_id, kind=kind, created_at=created))
        store.put_request(
            RequestRecord(
                request_id="req-done", kind=RequestKind.ACQUIRE, status=RequestStatus.COMPLETE, created_at=1
            )
        )
        store.put_request(
            RequestRecord(
                request_id="ret-err",
                kind=RequestKind.RETURN,
                status=RequestStatus.COMPLETE_WITH_ERROR,
                created_at=2,
            )
        )
        assert [r.request_id for r in store.open_requests()] == ["ret-a", "req-a", "req-b", "req-c"]
        assert [r.request_id for r in store.open_requests(RequestKind.ACQUIRE)] == ["req-a", "req-b", "req-c"]
        assert [r.request_id for r in store.open_requests(RequestKind.RETURN)] == ["ret-a"]

    def test_undelivered_requests_are_running_and_not_delivered_oldest_first(self, store: Storage) -> None:
        store.put_request(RequestRecord(request_id="req-b", kind=RequestKind.ACQUIRE, created_at=20))
        store.put_request(
            RequestRecord(request_id="ret-a", kind=RequestKind.RETURN, created_at=10, owner="h:/w")
        )
        store.put_request(
            RequestRecord(request_id="req-seen", kind=RequestKind.ACQUIRE, created_at=5, delivered=True)
        )
        store.put_request(
            RequestRecord(
                request_id="req-ended",
                kind=RequestKind.ACQUIRE,
                created_at=1,
                status=RequestStatus.COMPLETE_WITH_ERROR,
            )
        )
        assert [r.request_id for r in store.undelivered_requests()] == ["ret-a", "req-b"]
        assert store.undelivered_requests()[0].owner == "h:/w"
        store.put_request(
            RequestRecord(request_id="req-b", kind=RequestKind.ACQUIRE, created_at=20, delivered=True)
        )
        assert [r.request_id for r in store.undelivered_requests()] == ["ret-a"]

    def test_held_machines_are_not_failed_and_not_returned(self, store: Storage) -> None:
        store.put_machines(
            [
                mrec("i-exec", template_id="t1"),
                mrec("i-ok", template_id="t2", result=MachineResult.SUCCEED),
                mrec("i-fail", template_id="t1", result=MachineResult.FAIL),
                mrec(
                    "i-returning", template_id="t1", result=MachineResult.SUCCEED, return_request_id="ret-1"
                ),
                mrec("i-reclaimed", template_id="t1", result=MachineResult.SUCCEED, reclaimed_at=99),
                mrec("i-none", template_id=None),
                mrec("i-t10", template_id="t10"),
            ]
        )
        assert _ids(store.held_machines()) == ["i-exec", "i-ok", "i-reclaimed", "i-none", "i-t10"]
        assert _ids(store.held_machines("t1")) == ["i-exec", "i-reclaimed"]
        assert store.held_machines("t-unknown") == []
        store.put_machines([mrec("i-exec", template_id="t1", return_request_id="ret-2")])
        assert _ids(store.held_machines("t1")) == ["i-reclaimed"]
        store.put_machines([mrec("i-fail", template_id="t1", result=MachineResult.SUCCEED)])
        assert _ids(store.held_machines("t1")) == ["i-fail", "i-reclaimed"]

    def test_find_machines_by_ids_and_names_returns_each_once(self, store: Storage) -> None:
        store.put_machines([mrec("i-1"), mrec("i-2"), mrec("i-3"), mrec("i-4"), mrec("i-5", name="ip-i-4")])
        assert _ids(store.find_machines(["i-3", "i-1", "i-missing"])) == ["i-3", "i-1"]
        assert _ids(store.find_machines(names=["ip-i-4", "nobody"])) == ["i-4", "i-5"]
        assert _ids(store.find_machines(["i-2", "i-2"], names=["ip-i-2", "ip-i-1"])) == ["i-2", "i-1"]
        assert store.find_machines() == []

    def test_get_requests_omits_unknown_and_machines_of_lists_every_id(self, store: Storage) -> None:
        store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
        store.put_machines([mrec("i-1", "req-1"), mrec("i-2", "req-1"), mrec("i-3", "req-3")])
        assert list(store.get_requests(["req-1", "req-unknown", "req-1"])) == ["req-1"]
        assert store.get_requests([]) == {}
        found = store.machines_of(["req-1", "req-2", "req-3"])
        assert {k: _ids(v) for k, v in found.items()} == {
            "req-1": ["i-1", "i-2"],
            "req-2": [],
            "req-3": ["i-3"],
        }
        assert store.machines_of([]) == {}

    def test_lookups_of_many_ids_at_once(self, store: Storage) -> None:
        count = self.many_ids
        request_ids = [f"req-{n:05d}" for n in range(count)]
        machine_ids = [f"i-{n:05d}" for n in range(count)]
        self.bulk_load(
            store,
            [
                RequestRecord(request_id=r, kind=RequestKind.ACQUIRE, created_at=n)
                for n, r in enumerate(request_ids)
            ],
            [mrec(m, r, template_id="t1") for m, r in zip(machine_ids, request_ids, strict=True)],
        )
        assert len(store.get_requests([*request_ids, "req-unknown"])) == count
        machines = store.machines_of(request_ids)
        assert len(machines) == count and all(len(found) == 1 for found in machines.values())
        assert _ids(store.find_machines(machine_ids)) == machine_ids
        assert len(store.find_machines(names=[f"ip-{m}" for m in machine_ids])) == count
        assert _ids(store.held_machines("t1")) == machine_ids
        assert [r.request_id for r in store.open_requests(RequestKind.ACQUIRE)] == request_ids

    def test_iterators_and_check_cover_everything(self, store: Storage) -> None:
        store.put_request(full_request())
        store.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE, created_at=1))
        store.put_machines([full_machine(), mrec("i-2", "req-2")])
        store.put_values([StoredValue(key="k", value=1, expires_at=1)])
        assert sorted(r.request_id for r in store.iter_requests()) == ["req-2", "ret-7"]
        assert _ids(list(store.iter_machines())) == ["i-0abc", "i-2"], "in the order first stored"
        assert [v.key for v in store.iter_values()] == ["k"]
        report = store.check()
        assert report["ok"] is True, report
        assert report["problems"] == []
        assert report["counts"] == {"requests": 2, "machines": 2, "values": 1}
        assert isinstance(report["backend"], str) and isinstance(report["schemaVersion"], int)

    # -- transactions ------------------------------------------------------------------------

    def test_transaction_rolls_back_on_exception(self, store: Storage) -> None:
        store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, message="before"))
        with pytest.raises(ValueError, match="boom"), store.transaction():
            store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, message="after"))
            store.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
            store.put_machines([mrec("i-1"), mrec("i-2")])
            store.put_values([StoredValue(key="k", value=1, expires_at=10)])
            raise ValueError("boom")
        assert store.get_requests(["req-1", "req-2"]) == {
            "req-1": RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, message="before")
        }
        assert store.find_machines(["i-1", "i-2"]) == []
        assert store.get_values(["k"], now=0) == {}
        with store.transaction():
            store.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
        assert list(store.get_requests(["req-2"])) == ["req-2"]

    def test_reads_inside_a_transaction_see_its_writes(self, store: Storage) -> None:
        store.put_machines([mrec("i-old", "req-1", template_id="t1")])
        with store.transaction():
            store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE, template_id="t1"))
            store.put_machines([mrec("i-new", "req-1", template_id="t1", name="new")])
            store.put_machines([mrec("i-old", "req-1", template_id="t1", return_request_id="ret-1")])
            store.put_values([StoredValue(key="p/k", value=2, expires_at=10)])
            assert list(store.get_requests(["req-1"])) == ["req-1"]
            assert [r.request_id for r in store.open_requests(RequestKind.ACQUIRE)] == ["req-1"]
            assert [r.request_id for r in store.undelivered_requests()] == ["req-1"]
            assert _ids(store.machines_of(["req-1"])["req-1"]) == ["i-old", "i-new"]
            assert _ids(store.held_machines("t1")) == ["i-new"]
            assert _ids(store.find_machines(names=["new"])) == ["i-new"]
            assert store.values_with_prefix("p/", now=0) == {"p/k": 2}

    def test_transaction_commits_for_other_connections_and_is_not_reentrant(
        self, store: Storage, opener: StoreOpener
    ) -> None:
        other = opener()
        try:
            with store.transaction():
                store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
                assert other.get_requests(["req-1"]) == {}
                with pytest.raises(RuntimeError, match="re-entrant"), store.transaction():
                    pass
            assert list(other.get_requests(["req-1"])) == ["req-1"]
        finally:
            other.close()

    # -- processes ---------------------------------------------------------------------------

    def test_processes_opening_a_new_store_at_once_all_succeed(self, opener: StoreOpener) -> None:
        workers = 4
        assert _run_workers(_open_and_insert, [(opener, n) for n in range(workers)]) == [0] * workers
        store = opener()
        try:
            assert len(store.get_requests([f"req-open-{n}" for n in range(workers)])) == workers
        finally:
            store.close()

    def test_processes_racing_for_the_last_units_never_exceed_max_number(self, opener: StoreOpener) -> None:
        opener().close()  # the schema exists before the race
        exitcodes = _run_workers(_race, [(opener, n) for n in range(RACE_WORKERS)])
        assert exitcodes == [0] * RACE_WORKERS
        store = opener()
        try:
            granted = store.open_requests(RequestKind.ACQUIRE)
            template = Template(template_id="tpl-race", max_number=RACE_MAX)
            assert len(granted) == RACE_MAX, (
                f"{len(granted)} units granted of a template limited to {RACE_MAX}"
            )
            assert capacity.in_use(store, ["tpl-race"]) == {"tpl-race": RACE_MAX}
            assert capacity.free(template, RACE_MAX) == 0
        finally:
            store.close()

    def test_a_process_killed_while_writing_leaves_each_write_group_whole_or_absent(
        self, opener: StoreOpener
    ) -> None:
        opener().close()
        ctx = _spawn()
        progress = ctx.Value("i", 0)
        child = ctx.Process(target=_write_groups, args=(opener, progress))
        child.start()
        deadline = time.monotonic() + WAIT
        while progress.value < 2 and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.is_alive(), f"the writer died by itself (exit {child.exitcode})"
        time.sleep(0.05 + (os.getpid() % 7) / 100)  # somewhere inside a later group
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(WAIT)
        store = opener()
        try:
            with store.transaction():  # waits for whatever the dead writer held
                pass
            requests = {r.request_id for r in store.iter_requests() if r.request_id.startswith("req-kill-")}
            assert len(requests) >= 2
            machines = store.machines_of(sorted(requests))
            for request_id in requests:
                assert len(machines[request_id]) == KILL_GROUP, f"{request_id} has a part of its machines"
            orphans = [m for m in store.iter_machines() if m.request_id not in requests]
            assert orphans == [], "machines were stored without their request"
            report = store.check()
            assert report["ok"] is True, report
        finally:
            store.close()

    # -- in-flight leases and time ------------------------------------------------------------

    def test_a_lease_is_seen_by_every_connection_until_it_is_released(self, opener: StoreOpener) -> None:
        holder, other = opener(), opener()
        try:
            lease = holder.hold_lease("req-lease")
            assert other.take_lease("req-lease") is None, "a live call's lease was taken"
            assert holder.take_lease("req-lease") is None, (
                "a live call's lease was taken on its own connection"
            )
            lease.release()
            taken = other.take_lease("req-lease")
            assert taken is not None, "a released lease is free for any call"
            assert holder.take_lease("req-lease") is None
            taken.drop()
            again = holder.take_lease("req-lease")
            assert again is not None, "a dropped lease is free for any call"
            again.release()
            assert holder.sees_leases_of(holder.lease_owner)
        finally:
            holder.close()
            other.close()

    def test_the_lease_of_a_call_that_died_is_free_for_the_next(self, opener: StoreOpener) -> None:
        opener().close()
        ctx = _spawn()
        ready = ctx.Event()
        child = ctx.Process(target=_hold_lease, args=(opener, "req-died", ready))
        child.start()
        store = opener()
        try:
            assert ready.wait(WAIT), f"the lease holder did not start (exit {child.exitcode})"
            time.sleep(self.lease_lapse_sec * 1.5)  # longer than one lease: a live holder keeps it
            assert store.take_lease("req-died") is None, "a live call's lease was taken"
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(WAIT)
            bound = time.monotonic() + self.lease_lapse_sec + 10
            taken = store.take_lease("req-died")
            while taken is None and time.monotonic() < bound:
                time.sleep(0.1)
                taken = store.take_lease("req-died")
            assert taken is not None, (
                f"a dead call's lease held {self.lease_lapse_sec + 10:g} s after its death"
            )
            taken.release()
        finally:
            if child.is_alive():
                child.kill()
            store.close()

    def test_a_round_trip_past_the_calls_deadline_is_refused(self, store: Storage) -> None:
        store.put_request(RequestRecord(request_id="req-1", kind=RequestKind.ACQUIRE))
        store.use_deadline(Deadline(time.monotonic() - 1, 17.0))
        with pytest.raises(StorageError) as error:
            store.get_requests(["req-1"])
        assert error.value.kind is StorageFailure.TIMED_OUT and "17 s" in str(error.value)
        with pytest.raises(StorageError):
            store.put_request(RequestRecord(request_id="req-2", kind=RequestKind.ACQUIRE))
        store.use_deadline(Deadline.never())
        assert list(store.get_requests(["req-1", "req-2"])) == ["req-1"]

    def test_a_write_waits_for_another_at_most_what_is_left_of_the_calls_time(
        self, store: Storage, opener: StoreOpener
    ) -> None:
        other = opener()
        try:
            with other.transaction():
                other.put_request(RequestRecord(request_id="req-other", kind=RequestKind.ACQUIRE))
                store.use_deadline(Deadline.after(1.0))
                with pytest.raises(StorageError) as error:
                    store.put_request(RequestRecord(request_id="req-mine", kind=RequestKind.ACQUIRE))
        finally:
            other.close()
        assert error.value.kind is StorageFailure.LOCK_TIMEOUT, error.value
        said = re.search(r"longer than ([\d.]+) s", str(error.value))
        assert said is not None and float(said.group(1)) <= 1.0, f"not the limit that applied: {error.value}"

    # -- schema ------------------------------------------------------------------------------

    def test_a_newer_schema_version_is_refused(self, opener: StoreOpener) -> None:
        opener().close()
        try:
            self.bump_schema_version(opener)
        except NotImplementedError as exc:
            pytest.skip(str(exc))
        with pytest.raises(ConfigError, match="newer"):
            opener()

    def test_a_store_of_the_previous_schema_version_is_migrated(self, opener: StoreOpener) -> None:
        running = RequestRecord(
            request_id="req-old",
            kind=RequestKind.ACQUIRE,
            template_id="t1",
            machine_count=1,
            handle={"f": 1},
            created_at=5,
            updated_at=6,
            delivered=True,
        )
        ended = RequestRecord(
            request_id="ret-old",
            kind=RequestKind.RETURN,
            status=RequestStatus.COMPLETE,
            handle={},
            machine_ids=("i-old",),
            created_at=7,
            updated_at=8,
            delivered=True,
        )
        machines = [mrec("i-old", "req-old", template_id="t1", result=MachineResult.SUCCEED, updated_at=6)]
        try:
            self.write_previous_version(opener, [running, ended], machines)
        except NotImplementedError as exc:
            pytest.skip(str(exc))
        store = opener()
        try:
            assert store.get_requests(["req-old", "ret-old"]) == {"req-old": running, "ret-old": ended}
            assert store.machines_of(["req-old"]) == {"req-old": machines}
            assert store.held_machines("t1") == machines
            assert store.undelivered_requests() == []
            store.put_values([StoredValue(key="new", value=1, expires_at=10)])
            assert store.get_values(["new"], now=0) == {"new": 1}
            assert store.check()["ok"] is True
        finally:
            store.close()

    # -- scale -------------------------------------------------------------------------------

    def test_one_requests_lookups_stay_indexed_with_many_machines(self, store: Storage) -> None:
        count = self.bulk_machines
        requests = [
            RequestRecord(
                request_id=f"req-bulk-{n:06d}",
                kind=RequestKind.ACQUIRE,
                status=RequestStatus.COMPLETE,
                template_id="tpl-bulk",
                machine_count=BULK_PER_REQUEST,
                handle={},
                created_at=n,
                delivered=True,
            )
            for n in range(count // BULK_PER_REQUEST)
        ]
        machines = [
            mrec(
                f"i-bulk-{n:07d}",
                f"req-bulk-{n // BULK_PER_REQUEST:06d}",
                template_id="tpl-bulk",
                result=MachineResult.SUCCEED,
                updated_at=n,
            )
            for n in range(count)
        ]
        self.bulk_load(store, requests, machines)
        target = RequestRecord(
            request_id="req-target",
            kind=RequestKind.ACQUIRE,
            template_id="tpl-t",
            machine_count=3,
            created_at=count,
        )
        store.put_request(target)
        mine = [mrec(f"i-t-{n}", "req-target", template_id="tpl-t") for n in range(3)]
        store.put_machines(mine)
        ids = _ids(mine)

        self.assert_indexed(store, lambda: store.get_requests(["req-target"]))
        self.assert_indexed(store, lambda: store.machines_of(["req-target"]))
        self.assert_indexed(store, lambda: store.find_machines(ids))
        self.assert_indexed(store, lambda: store.find_machines(names=[m.name for m in mine]))
        self.assert_indexed(store, lambda: store.undelivered_requests())
        self.assert_indexed(store, lambda: store.held_machines("tpl-t"))
        self.assert_indexed(store, lambda: store.open_requests(RequestKind.ACQUIRE))
        assert _ids(store.machines_of(["req-target"])["req-target"]) == ids
        assert _ids(store.find_machines(ids)) == ids
        assert [r.request_id for r in store.undelivered_requests()] == ["req-target"]
        assert _ids(store.held_machines("tpl-t")) == ids

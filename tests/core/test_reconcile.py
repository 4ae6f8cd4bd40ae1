"""Crash safety: the requests of calls that died are found by the next call and ended.

A call that dies leaves its records and its lock file, but the kernel drops its lock.
``_die`` does exactly that to an in-process Operations; ``_hold_in_child`` holds a lock from
another, living process. Subprocess kills at every instant are in tests/e2e/test_crash.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from ohfp_core import capacity
from ohfp_core.inflight import CallLock, CallLocks
from ohfp_core.models import MachineState, RequestKind, RequestStatus
from ohfp_core.operations import Operations
from ohfp_core.reconcile import CANCELLED, RETURNED
from ohfp_core.storage import RequestRecord
from tests.core.conftest import Instance


def _second_call(instance: Instance) -> Operations:
    """Another HF call of the same instance (its own Operations, as another process has)."""
    return Operations(instance.hooks, instance.store, instance.context)


def _die(ops: Operations) -> None:
    """What the kernel does when a call's process dies: its locks go, its files stay."""
    for _, lock in ops._made:
        assert isinstance(lock, CallLock) and lock._fd is not None
        os.close(lock._fd)
        lock._fd = None
    ops._made.clear()


def _host(machine: dict[str, str]) -> dict[str, str]:
    return {"name": machine["name"], "machineId": machine["machineId"]}


def _record(instance: Instance, request_id: str) -> RequestRecord:
    return instance.store.get_requests([request_id])[request_id]


@pytest.fixture
def child_lock() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        child.kill()
        child.wait()


def _hold_in_child(path: Path, children: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A living process holding the flock of ``path`` until killed."""
    code = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    children.append(child)
    assert child.stdout is not None and child.stdout.readline() == b"held\n"
    return child


def test_reply_written_delivers_and_removes_the_lock(instance: Instance) -> None:
    ops = _second_call(instance)
    reply = ops.request_machines({"template": {"templateId": "T1", "machineCount": 2}})
    rid = reply["requestId"]
    assert not _record(instance, rid).delivered
    assert (instance.workdir / "calls" / f"{rid}.lock").exists()
    ops.reply_written()
    assert _record(instance, rid).delivered
    assert list((instance.workdir / "calls").iterdir()) == []


def test_a_refused_request_leaves_no_lock(instance: Instance) -> None:
    ops = _second_call(instance)
    with pytest.raises(Exception, match="exceeds"):
        ops.request_machines({"template": {"templateId": "T1", "machineCount": 11}})
    assert list((instance.workdir / "calls").iterdir()) == []
    assert ops._made == []


def test_request_of_a_dead_call_is_cancelled_by_the_next_call(instance: Instance) -> None:
    ops = _second_call(instance)
    rid = ops.request_machines({"template": {"templateId": "T1", "machineCount": 4}})["requestId"]
    _die(ops)  # killed before Host Factory read the reply
    made = list(instance.cloud.by_request[rid])
    before = instance.ops.get_available_templates({})
    # the next call of any kind cancels it: its capacity is free again, its machines go
    assert {t["templateId"]: t.get("availableNumber") for t in before["templates"]}["T1"] == 10
    record = _record(instance, rid)
    assert record.status is RequestStatus.COMPLETE_WITH_ERROR
    assert record.message == CANCELLED
    assert all(instance.cloud.machines[m].state is MachineState.SHUTTING_DOWN for m in made)
    assert not (instance.workdir / "calls" / f"{rid}.lock").exists()
    # ended once: a later call does not cancel again
    calls = len(instance.cloud.calls)
    instance.ops.get_available_templates({})
    assert not [c for c in instance.cloud.calls[calls:] if c.startswith("terminate")]


def test_stored_machines_of_a_cancelled_request_are_no_longer_held(instance: Instance) -> None:
    instance.cloud.instant = True  # machines come back from provisioning, stored at once
    ops = _second_call(instance)
    rid = ops.request_machines({"template": {"templateId": "T1", "machineCount": 3}})["requestId"]
    assert len(instance.store.held_machines("T1")) == 3
    _die(ops)
    instance.ops.get_return_requests({})
    assert instance.store.held_machines("T1") == []
    machines = instance.store.machines_of([rid])[rid]
    assert {m.result.value for m in machines} == {"fail"}


def test_a_living_call_is_left_alone(instance: Instance, child_lock: list[subprocess.Popen[bytes]]) -> None:
    rid = "req-00000000-0000-0000-0000-00000000beef"
    locks = CallLocks(instance.workdir)
    instance.store.put_request(
        RequestRecord(
            request_id=rid,
            kind=RequestKind.ACQUIRE,
            template_id="T1",
            machine_count=1,
            created_at=int(time.time()) - 3600,  # old: only the lock tells it is alive
            owner=locks.owner,
        )
    )
    locks.directory.mkdir(mode=0o700, exist_ok=True)
    child = _hold_in_child(locks.directory / f"{rid}.lock", child_lock)
    instance.ops.get_available_templates({})
    assert _record(instance, rid).status is RequestStatus.RUNNING
    child.kill()
    child.wait()
    instance.ops.get_available_templates({})
    assert _record(instance, rid).status is RequestStatus.COMPLETE_WITH_ERROR


def test_another_hosts_request_waits_for_the_action_timeout(instance: Instance) -> None:
    now = int(time.time())
    young = RequestRecord(
        request_id="req-young",
        kind=RequestKind.ACQUIRE,
        template_id="T1",
        machine_count=1,
        created_at=now - 10,
        owner="other-host:/var/ohfp/work",
    )
    old = attrs.evolve(young, request_id="req-old", created_at=now - 3600)
    instance.store.put_request(young)
    instance.store.put_request(old)
    instance.ops.get_available_templates({})
    assert _record(instance, "req-young").status is RequestStatus.RUNNING  # timeout_sec is 60
    assert _record(instance, "req-old").status is RequestStatus.COMPLETE_WITH_ERROR


def test_a_status_poll_proves_host_factory_has_the_id(instance: Instance) -> None:
    ops = _second_call(instance)
    rid = ops.request_machines({"template": {"templateId": "T1", "machineCount": 1}})["requestId"]
    instance.status(rid)  # HF asks: it read the reply
    _die(ops)  # even if the call then died before marking it
    instance.ops.get_available_templates({})
    assert _record(instance, rid).status is RequestStatus.RUNNING
    assert _record(instance, rid).delivered


def test_return_of_a_dead_call_is_finished(instance: Instance) -> None:
    rid = instance.request(2)
    instance.ops.reply_written()
    instance.cloud.boot()
    [entry] = instance.status(rid)
    machines = [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]
    ops = _second_call(instance)
    instance.cloud.terminate_error = KeyboardInterrupt()  # type: ignore[assignment]  # killed right there
    with pytest.raises(KeyboardInterrupt):
        ops.request_return_machines({"machines": machines})
    instance.cloud.terminate_error = None
    _die(ops)
    [ret] = instance.store.undelivered_requests()
    assert ret.kind is RequestKind.RETURN
    assert instance.store.held_machines("T1") == []  # marked returned, still running
    assert all(instance.cloud.machines[m["machineId"]].state is MachineState.RUNNING for m in machines)

    instance.ops.get_return_requests({})

    # Terminated, not gone yet: the return waits for the cloud, its machines still count.
    assert all(instance.cloud.machines[m["machineId"]].state is MachineState.SHUTTING_DOWN for m in machines)
    waiting = _record(instance, ret.request_id)
    assert waiting.status is RequestStatus.RUNNING and not waiting.delivered
    assert capacity.in_use(instance.store, ["T1"]) == {"T1": 2}
    for m in machines:
        instance.cloud.set_state(m["machineId"], MachineState.TERMINATED)

    instance.ops.get_available_templates({})  # the next call of any kind sees them gone

    finished = _record(instance, ret.request_id)
    assert finished.status is RequestStatus.COMPLETE and finished.message == RETURNED
    assert capacity.in_use(instance.store, ["T1"]) == {"T1": 0}
    [entry] = instance.status(ret.request_id)  # as Host Factory would see it, had it got the id
    assert {m["result"] for m in entry["machines"]} == {"succeed"}
    assert instance.store.held_machines("T1") == []


def test_a_dead_return_whose_termination_fails_holds_the_machine_again(instance: Instance) -> None:
    rid = instance.request(1)
    instance.ops.reply_written()
    instance.cloud.boot()
    [entry] = instance.status(rid)
    [machine] = entry["machines"]
    ops = _second_call(instance)
    instance.cloud.terminate_error = KeyboardInterrupt()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        ops.request_return_machines(
            {"machines": [{"name": machine["name"], "machineId": machine["machineId"]}]}
        )
    instance.cloud.terminate_error = None
    _die(ops)
    instance.cloud.refuse.add(machine["machineId"])
    instance.ops.get_return_requests({})
    assert [m.machine_id for m in instance.store.held_machines("T1")] == [machine["machineId"]]


def test_a_cloud_refusal_postpones_the_cancel(instance: Instance) -> None:
    from ohfp_core.errors import CloudError

    ops = _second_call(instance)
    rid = ops.request_machines({"template": {"templateId": "T1", "machineCount": 1}})["requestId"]
    _die(ops)
    instance.cloud.fail_next = CloudError("throttled")
    instance.ops.get_available_templates({})
    assert _record(instance, rid).status is RequestStatus.RUNNING  # tried, refused: next call
    instance.ops.get_available_templates({})
    assert _record(instance, rid).status is RequestStatus.COMPLETE_WITH_ERROR


def test_a_failed_call_leaves_a_lock_file_only_for_what_needs_reconciling(instance: Instance) -> None:
    from ohfp_core.errors import CloudError

    ops = _second_call(instance)
    instance.cloud.fail_next = CloudError("no capacity")  # refused: the request ends at once
    ops.request_machines({"template": {"templateId": "T1", "machineCount": 1}})
    ops.call_failed()
    assert list((instance.workdir / "calls").iterdir()) == []
    ops = _second_call(instance)
    rid = ops.request_machines({"template": {"templateId": "T1", "machineCount": 1}})["requestId"]
    ops.call_failed()  # e.g. the reply could not be written: still running, left to reconcile
    assert [p.name for p in (instance.workdir / "calls").iterdir()] == [f"{rid}.lock"]
    instance.ops.get_available_templates({})
    assert _record(instance, rid).status is RequestStatus.COMPLETE_WITH_ERROR
    assert list((instance.workdir / "calls").iterdir()) == []


def test_a_returned_machine_counts_against_max_number_until_the_cloud_shows_it_gone(
    instance: Instance,
) -> None:
    """A live return (Host Factory polls it): the machines stay counted while they shut down."""
    rid = instance.request(3)
    instance.ops.reply_written()
    instance.cloud.boot()
    [entry] = instance.status(rid)
    hosts = [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]

    def available() -> int:
        [t1] = [t for t in instance.ops.get_available_templates({})["templates"] if t["templateId"] == "T1"]
        return int(t1["availableNumber"])

    assert available() == 7
    ret = instance.ops.request_return_machines({"machines": hosts[:2]})["requestId"]
    instance.ops.reply_written()
    [returning] = instance.status(ret)
    assert returning["status"] == "running"
    assert available() == 7, "machines shutting down still run: they count"
    instance.cloud.set_state(hosts[0]["machineId"], MachineState.TERMINATED)
    assert instance.status(ret)[0]["status"] == "running"
    assert available() == 8, "one is gone"
    instance.cloud.set_state(hosts[1]["machineId"], MachineState.TERMINATED)
    assert instance.status(ret)[0]["status"] == "complete"
    assert available() == 9

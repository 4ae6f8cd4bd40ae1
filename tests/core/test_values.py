"""A provider's memory between calls: expiring values, in memory until bound to the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.values import Values, recorded


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("bound", [False, True])
def test_values_expire_and_keep_to_their_namespace(bound: bool, tmp_path: Path) -> None:
    clock = Clock()
    values = Values("aws", clock)
    store = SQLiteStorage(tmp_path) if bound else None
    if store is not None:
        values.bind(store)
    values.put("quota:L-1216C47A", {"left": 96}, ttl_sec=60)
    values.put_many({"ice:m5.large:subnet-1": 1, "ice:c5.large:subnet-2": 2}, ttl_sec=30)
    other = values.scoped("budget")
    other.put("quota:L-1216C47A", "not aws's", ttl_sec=60)
    assert values.get("quota:L-1216C47A") == {"left": 96}
    assert values.with_prefix("ice:") == {"ice:m5.large:subnet-1": 1, "ice:c5.large:subnet-2": 2}
    assert other.get("quota:L-1216C47A") == "not aws's"
    clock.now += 31
    assert values.with_prefix("ice:") == {}
    assert values.get_many(["quota:L-1216C47A", "missing"]) == {"quota:L-1216C47A": {"left": 96}}
    values.delete(["quota:L-1216C47A"])
    assert values.get("quota:L-1216C47A") is None
    if store is not None:
        again = Values("aws", clock)
        again.bind(SQLiteStorage(tmp_path))
        assert again.get_many(["quota:L-1216C47A"]) == {}  # nothing is stored before the call's outcome
        with recorded(store, values):
            pass
        assert again.get("quota:L-1216C47A") is None and again.scoped("budget").get("quota:L-1216C47A")


def test_a_call_s_writes_go_with_its_outcome_and_effects_follow_the_commit(tmp_path: Path) -> None:
    """Bound, values are stored in the transaction that records the call's outcome (read back
    by the call at once); an after-commit effect runs once that commits, and never when the
    call fails first."""
    store = SQLiteStorage(tmp_path)
    values, reader = Values("aws"), Values("aws")
    values.bind(store)
    reader.bind(SQLiteStorage(tmp_path))
    done: list[str] = []
    values.put("notice:i-1", {"kind": "interruption"}, ttl_sec=60)
    values.after_commit(lambda: done.append(f"acknowledged after the commit: {reader.get('notice:i-1')}"))
    assert values.get("notice:i-1") == {"kind": "interruption"}
    assert reader.get("notice:i-1") is None and done == []
    with recorded(store, values):
        assert done == []  # not inside the transaction
    assert done == ["acknowledged after the commit: {'kind': 'interruption'}"] and not values.pending

    values.put("notice:i-2", 1, ttl_sec=60)
    values.after_commit(lambda: done.append("must not run"))
    with pytest.raises(RuntimeError, match="the outcome could not be stored"), recorded(store, values):
        raise RuntimeError("the outcome could not be stored")
    assert reader.get("notice:i-2") is None and done[-1] != "must not run"

    values.put("notice:i-3", 1, ttl_sec=60)
    values.after_commit(lambda: done.append("must not run either"))
    values.discard()
    with recorded(store, values):
        pass
    assert reader.get("notice:i-3") is None and done[-1] != "must not run either"


def test_unbound_effects_run_at_once() -> None:
    done: list[int] = []
    Values("aws").after_commit(lambda: done.append(1))
    assert done == [1]


def test_a_write_ahead_is_stored_at_once(tmp_path: Path) -> None:
    """What must survive the call being killed is stored before the outcome, and wins over
    what the call held for the same key."""
    store = SQLiteStorage(tmp_path)
    values, reader = Values("libvirt"), Values("libvirt")
    values.bind(store)
    reader.bind(SQLiteStorage(tmp_path))
    values.put("uris", ["qemu:///old"], ttl_sec=60)
    values.write_ahead({"uris": ["qemu+ssh://host-b/system"]}, ttl_sec=60)
    assert reader.get("uris") == ["qemu+ssh://host-b/system"]
    values.discard()  # the call is killed: the write ahead stays
    with recorded(store, values):
        pass
    assert reader.get("uris") == ["qemu+ssh://host-b/system"]

"""A provider's memory between calls: expiring values, in memory until bound to the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.values import Values


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
        assert again.get("quota:L-1216C47A") is None and again.scoped("budget").get("quota:L-1216C47A")

"""A provider's or plugin's own memory between Host Factory calls: values with an expiry.

Every HF call is a new process, so what a provider learns (a quota read from the cloud, an
instance type short of capacity, an interruption notice drained from a queue) is kept in
the instance's state store, where a failover host finds it too. :class:`Values` is that
memory for one namespace (the provider type, or a plugin's name): JSON values by key, each
forgotten at its expiry.

Core binds it to the store before any hook runs (``ProviderContext.values``); until then
(a provider built in a test, ``ohfp templates validate``) it keeps values in memory for the
process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from attrs import frozen


@frozen(kw_only=True)
class StoredValue:
    """A provider's or plugin's cached value (JSON), forgotten after ``expires_at`` (epoch s)."""

    key: str
    value: Any
    expires_at: int


class ValueStore(Protocol):
    """The part of :class:`ohfp_core.storage.Storage` that keeps values."""

    def put_values(self, values: Sequence[StoredValue]) -> None: ...

    def get_values(self, keys: Sequence[str], now: int) -> dict[str, Any]: ...

    def values_with_prefix(self, prefix: str, now: int) -> dict[str, Any]: ...

    def delete_values(self, keys: Sequence[str]) -> None: ...


class Values:
    """Expiring JSON values under ``namespace`` (keys are stored as ``<namespace>:<key>``)."""

    def __init__(self, namespace: str = "", clock: Callable[[], float] = time.time) -> None:
        self.namespace = namespace
        self.clock = clock
        self._store: ValueStore | None = None
        self._memory: dict[str, tuple[Any, int]] = {}

    def bind(self, store: ValueStore, namespace: str | None = None) -> None:
        """Keep values in ``store`` from now on (and under ``namespace``, when given)."""
        self._store = store
        if namespace is not None:
            self.namespace = namespace

    def scoped(self, namespace: str) -> Values:
        """The same memory under another namespace (a plugin's own)."""
        other = Values(namespace, self.clock)
        other._store, other._memory = self._store, self._memory
        return other

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _now(self) -> int:
        return int(self.clock())

    def get(self, key: str) -> Any | None:
        """The value of ``key``, or None when missing or expired."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Unexpired values by key (missing keys are absent)."""
        now = self._now()
        if self._store is not None:
            found = self._store.get_values([self._key(k) for k in keys], now)
            return {k: found[self._key(k)] for k in keys if self._key(k) in found}
        found = {}
        for key in keys:
            item = self._memory.get(self._key(key))
            if item is not None and item[1] > now:
                found[key] = item[0]
        return found

    def with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every unexpired value whose key starts with ``prefix``, by key."""
        now = self._now()
        full = self._key(prefix)
        strip = len(self._key(""))
        if self._store is not None:
            return {k[strip:]: v for k, v in self._store.values_with_prefix(full, now).items()}
        return {
            k[strip:]: v for k, (v, expires) in self._memory.items() if k.startswith(full) and expires > now
        }

    def put(self, key: str, value: Any, ttl_sec: float) -> None:
        """Keep ``value`` (JSON) under ``key`` for ``ttl_sec`` seconds."""
        self.put_many({key: value}, ttl_sec)

    def put_many(self, values: Mapping[str, Any], ttl_sec: float) -> None:
        """Keep several values, all or none, for ``ttl_sec`` seconds."""
        expires = self._now() + max(1, int(ttl_sec))
        if self._store is not None:
            self._store.put_values(
                [StoredValue(key=self._key(k), value=v, expires_at=expires) for k, v in values.items()]
            )
            return
        for key, value in values.items():
            self._memory[self._key(key)] = (value, expires)

    def delete(self, keys: Sequence[str]) -> None:
        """Forget values (missing keys are fine)."""
        if self._store is not None:
            self._store.delete_values([self._key(k) for k in keys])
            return
        for key in keys:
            self._memory.pop(self._key(key), None)

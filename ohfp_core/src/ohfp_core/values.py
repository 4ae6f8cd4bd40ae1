"""A provider's or plugin's own memory between Host Factory calls: values with an expiry.

Every HF call is a new process, so what a provider learns (a quota read from the cloud, an
instance type short of capacity, an interruption notice drained from a queue) is kept in
the instance's state store, where a failover host finds it too. :class:`Values` is that
memory for one namespace (the provider type, or a plugin's name): JSON values by key, each
forgotten at its expiry.

Core binds it to the store before any hook runs (``ProviderContext.values``); until then
(a provider built in a test, ``ohfp templates validate``) it keeps values in memory for the
process.

**What a call writes is committed with its outcome.** Once bound, values a hook writes (and
deletes) are held by the call and read back by it at once; core writes them in the same
store transaction that records the call's outcome (:func:`recorded`), so a call that dies
before that leaves none of them, and one that records its outcome leaves all of them. A
hook that must act only once its writes are stored (deleting queue messages whose notices
it kept, say) registers that with :meth:`Values.after_commit`: core runs it after the
commit, and never when the call fails first. What must survive the call being killed, and
so is written before the cloud is touched, goes to the store at once
(:meth:`Values.write_ahead`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from attrs import frozen

from ohfp_core.errors import OhfpError
from ohfp_core.logs import get_logger

log = get_logger("ohfp.values")


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


class Transactional(ValueStore, Protocol):
    """A value store with the transactions core records outcomes in."""

    def transaction(self) -> AbstractContextManager[None]: ...


class _Call:
    """What one call wrote (full key → value, None for a deletion) and the effects that wait
    for its commit; shared by every namespace of the memory."""

    def __init__(self) -> None:
        self.writes: dict[str, StoredValue | None] = {}
        self.effects: list[Callable[[], None]] = []


class Values:
    """Expiring JSON values under ``namespace`` (keys are stored as ``<namespace>:<key>``)."""

    def __init__(self, namespace: str = "", clock: Callable[[], float] = time.time) -> None:
        self.namespace = namespace
        self.clock = clock
        self._store: ValueStore | None = None
        self._memory: dict[str, tuple[Any, int]] = {}
        self._call = _Call()

    def bind(self, store: ValueStore, namespace: str | None = None) -> None:
        """Keep values in ``store`` from now on (and under ``namespace``, when given)."""
        self._store = store
        if namespace is not None:
            self.namespace = namespace

    def scoped(self, namespace: str) -> Values:
        """The same memory under another namespace (a plugin's own)."""
        other = Values(namespace, self.clock)
        other._store, other._memory, other._call = self._store, self._memory, self._call
        return other

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _now(self) -> int:
        return int(self.clock())

    def get(self, key: str) -> Any | None:
        """The value of ``key``, or None when missing or expired."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Unexpired values by key (missing keys are absent), this call's writes included."""
        now = self._now()
        if self._store is not None:
            stored = self._store.get_values([self._key(k) for k in keys], now)
            found = {k: stored[self._key(k)] for k in keys if self._key(k) in stored}
            for key in keys:
                if self._key(key) in self._call.writes:
                    written = self._call.writes[self._key(key)]
                    if written is None or written.expires_at <= now:
                        found.pop(key, None)
                    else:
                        found[key] = written.value
            return found
        found = {}
        for key in keys:
            item = self._memory.get(self._key(key))
            if item is not None and item[1] > now:
                found[key] = item[0]
        return found

    def with_prefix(self, prefix: str) -> dict[str, Any]:
        """Every unexpired value whose key starts with ``prefix``, by key, this call's writes
        included."""
        now = self._now()
        full = self._key(prefix)
        strip = len(self._key(""))
        if self._store is not None:
            found = {k[strip:]: v for k, v in self._store.values_with_prefix(full, now).items()}
            for key, written in self._call.writes.items():
                if not key.startswith(full):
                    continue
                if written is None or written.expires_at <= now:
                    found.pop(key[strip:], None)
                else:
                    found[key[strip:]] = written.value
            return found
        return {
            k[strip:]: v for k, (v, expires) in self._memory.items() if k.startswith(full) and expires > now
        }

    def put(self, key: str, value: Any, ttl_sec: float) -> None:
        """Keep ``value`` (JSON) under ``key`` for ``ttl_sec`` seconds."""
        self.put_many({key: value}, ttl_sec)

    def put_many(self, values: Mapping[str, Any], ttl_sec: float) -> None:
        """Keep several values, all or none, for ``ttl_sec`` seconds (stored with the call's
        outcome once bound)."""
        expires = self._now() + max(1, int(ttl_sec))
        if self._store is not None:
            for key, value in values.items():
                self._call.writes[self._key(key)] = StoredValue(
                    key=self._key(key), value=value, expires_at=expires
                )
            return
        for key, value in values.items():
            self._memory[self._key(key)] = (value, expires)

    def write_ahead(self, values: Mapping[str, Any], ttl_sec: float) -> None:
        """Store several values at once, in a transaction of their own, before the call's
        outcome: for what must survive the call being killed (where a request's machines are
        about to be made, so that cancelling it finds them). Everything else goes through
        :meth:`put_many`."""
        expires = self._now() + max(1, int(ttl_sec))
        if self._store is None:
            self.put_many(values, ttl_sec)
            return
        stored = [StoredValue(key=self._key(k), value=v, expires_at=expires) for k, v in values.items()]
        self._store.put_values(stored)
        for value in stored:
            self._call.writes.pop(value.key, None)  # this is newer than what the call held

    def delete(self, keys: Sequence[str]) -> None:
        """Forget values (missing keys are fine; deleted with the call's outcome once bound)."""
        if self._store is not None:
            self._call.writes.update(dict.fromkeys(map(self._key, keys)))
            return
        for key in keys:
            self._memory.pop(self._key(key), None)

    def after_commit(self, effect: Callable[[], None]) -> None:
        """Run ``effect`` once what this call wrote is committed (at once while unbound: there
        is nothing to wait for). It runs at most once, after the commit, never when the call
        fails first; an :class:`~ohfp_core.errors.OhfpError` it raises is logged, not raised
        (the outcome is stored)."""
        if self._store is None:
            effect()
            return
        self._call.effects.append(effect)

    @property
    def pending(self) -> bool:
        """True when this call wrote something, or waits to act, that is not committed yet."""
        return bool(self._call.writes or self._call.effects)

    def flush(self) -> list[Callable[[], None]]:
        """Write what this call wrote to the store (core calls it inside the transaction that
        records the call's outcome); the after-commit effects, for the caller to run once
        that transaction is committed (:func:`recorded`)."""
        writes, effects = self._call.writes, self._call.effects
        self._call.writes, self._call.effects = {}, []  # the object is shared: emptied in place
        if self._store is not None:
            kept = [value for value in writes.values() if value is not None]
            gone = [key for key, value in writes.items() if value is None]
            if kept:
                self._store.put_values(kept)
            if gone:
                self._store.delete_values(gone)
        return effects

    def discard(self) -> None:
        """Forget what this call wrote and its effects (the call failed before its outcome
        was recorded)."""
        self._call.writes.clear()
        self._call.effects.clear()


@contextmanager
def recorded(store: Transactional, values: Values) -> Iterator[None]:
    """A store transaction that records a call's outcome together with what the call's hooks
    wrote to ``values``; their after-commit effects run once it is committed.

    Several may follow one another in a call: what was written before each goes with it.
    """
    with store.transaction():
        yield
        effects = values.flush()
    for effect in effects:
        try:
            effect()
        except OhfpError as exc:
            log.warning("an effect after the commit failed", error=exc.message)

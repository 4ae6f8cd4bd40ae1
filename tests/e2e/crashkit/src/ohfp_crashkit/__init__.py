"""Test only: kill (or pause) the ohfp call at a chosen point, as a crash or ``kill -9`` would.

Inert unless ``OHFP_CRASH_RECORD``, ``OHFP_CRASH_AT``, ``OHFP_CRASH_HOLD`` or
``OHFP_CRASH_PAUSE`` is set in the call's environment (:func:`ohfp_core.environment.environ`:
in the resident service, the call's own; the kill then kills the service). Points are named
``before:<what>`` and ``after:<what>`` for every provider hook (the cloud calls) and every
write of a crash-point store (``put_request``, ``put_machines`` outside transactions,
``commit`` of a transaction). A point reached for the n-th time in a call is ``<point>#<n>``
(counted from ``ohfp_call_started``). Two storage backends carry the store points: ``crashy``
(SQLite underneath) and ``crashkit``, which wraps the backend its section names, with that
backend's section inside: ``{"storage": "crashkit", "crashkit": {"backend": "postgresql",
"postgresql": {…}}}``.

- ``OHFP_CRASH_RECORD=<file>``: append every point reached to the file, one per line.
- ``OHFP_CRASH_AT=<point>#<n>``: SIGKILL this process when it reaches that point.
- ``OHFP_CRASH_HOLD=<point>#<n>=<seconds>``: sleep there that long (a call that hangs).
- ``OHFP_CRASH_PAUSE=<point>#<n>`` and ``OHFP_CRASH_PAUSE_DIR=<dir>``: at that point write
  ``<dir>/<pid>.paused`` and wait until ``<dir>/go`` exists (a call held mid-way, alive).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from ohfp_core import hookimpl
from ohfp_core.environment import environ
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, StorageContext

_seen: Counter[str] = Counter()


def reach(point: str) -> None:
    """Note that the call reached ``point``; die, hang or pause here if asked to."""
    _seen[point] += 1
    name = f"{point}#{_seen[point]}"
    record = environ().get("OHFP_CRASH_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")
    hold, _, seconds = environ().get("OHFP_CRASH_HOLD", "").partition("=")
    if hold == name:
        time.sleep(float(seconds))
    if environ().get("OHFP_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if environ().get("OHFP_CRASH_PAUSE") == name:
        pause = Path(environ()["OHFP_CRASH_PAUSE_DIR"])
        (pause / f"{os.getpid()}.paused").touch()
        while not (pause / "go").exists():
            time.sleep(0.05)


class CrashPlugin:
    @hookimpl
    def ohfp_call_started(self, timeout_sec: float) -> None:
        _seen.clear()  # a warm service answers many calls: points are counted per call

    @hookimpl(wrapper=True)
    def ohfp_provision(self, request_id: str, template: Any, count: int) -> Generator[None, Any, Any]:
        reach("before:ohfp_provision")
        result = yield
        reach("after:ohfp_provision")
        return result

    @hookimpl(wrapper=True)
    def ohfp_machine_status(self, requests: Sequence[Any]) -> Generator[None, Any, Any]:
        reach("before:ohfp_machine_status")
        result = yield
        reach("after:ohfp_machine_status")
        return result

    @hookimpl(wrapper=True)
    def ohfp_terminate_machines(self, machines: Sequence[Any]) -> Generator[None, Any, Any]:
        reach("before:ohfp_terminate_machines")
        result = yield
        reach("after:ohfp_terminate_machines")
        return result

    @hookimpl(wrapper=True)
    def ohfp_cancel_request(self, request: Any) -> Generator[None, Any, Any]:
        reach("before:ohfp_cancel_request")
        result = yield
        reach("after:ohfp_cancel_request")
        return result

    @hookimpl
    def ohfp_register_storage(self, register: Callable[[str, Any], None]) -> None:
        register(
            "crashy", lambda context: CrashPoints(SQLiteStorage(context.workdir, deadline=context.deadline))
        )
        register("crashkit", wrapped)


def wrapped(context: StorageContext) -> CrashPoints:
    """The backend the ``crashkit`` section names, with its own section from inside it."""
    name = context.settings["backend"]
    factory = Hooks(make_manager(load_entry_points=True)).storage_factories()[name]
    return CrashPoints(factory(attrs.evolve(context, settings=context.settings.get(name, {}))))


class CrashPoints:
    """A store whose every write is a crash point; everything else is the store's own."""

    def __init__(self, store: Storage) -> None:
        self._store = store
        self._depth = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._store.transaction():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            reach("before:commit")
        reach("after:commit")

    def put_request(self, record: RequestRecord) -> None:
        if self._depth:
            self._store.put_request(record)
            return
        reach("before:put_request")
        self._store.put_request(record)
        reach("after:put_request")

    def put_machines(self, records: Sequence[MachineRecord]) -> None:
        if self._depth or not records:
            self._store.put_machines(records)
            return
        reach("before:put_machines")
        self._store.put_machines(records)
        reach("after:put_machines")


plugin = CrashPlugin()

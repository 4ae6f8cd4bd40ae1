"""Warm provider instances, each on a thread of its own.

A :class:`Worker` holds one instance's :class:`~ohfp_core.operations.Operations` (plugins,
provider with its clients, state store) and runs every job on its own thread: what a store
or provider opened (an SQLite connection) belongs to the thread that opened it. A worker
serves one call at a time; the :class:`Pool` keeps idle workers per :class:`InstanceKey`
and makes another when all are busy, so calls for different instances, and overlapping
calls for one, run in parallel as separate processes would.

An instance is keyed by the provider asked for, the call's ``HF_*``/``OHFP_*`` variables and
its config files' identity (name, inode, mtime, size of ``*prov_config.json``,
``*prov_templates.json`` and ``ohfp.json``, looked at per call): a changed file makes a new
key, so the next call builds the instance afresh and the old workers are retired.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from attrs import frozen

from ohfp_core.serve.wire import per_call

if TYPE_CHECKING:
    from ohfp_core.operations import Operations

CONFIG_SUFFIXES = ("prov_config.json", "prov_templates.json")
SETTINGS_NAME = "ohfp.json"
MAX_IDLE = 4
"""Idle workers kept per instance key (more are closed when they come back)."""


@frozen
class InstanceKey:
    """What makes two calls the same warm instance."""

    provider: str | None
    env: tuple[tuple[str, str], ...]
    config: tuple[tuple[str, int, int, int], ...]

    @property
    def name(self) -> str:
        return dict(self.env).get("HF_PROVIDER_NAME", "") or self.provider or "?"

    def same_instance(self, other: InstanceKey) -> bool:
        """The same provider and environment, whatever the config files."""
        return (self.provider, self.env) == (other.provider, other.env)


def config_identity(confdir: Path | None) -> tuple[tuple[str, int, int, int], ...]:
    """(name, inode, mtime, size) of the instance's config files in ``confdir``."""
    if confdir is None:
        return ()
    found = []
    with contextlib.suppress(OSError), os.scandir(confdir) as entries:
        for entry in entries:
            if entry.name == SETTINGS_NAME or entry.name.endswith(CONFIG_SUFFIXES):
                with contextlib.suppress(OSError):
                    info = entry.stat()
                    found.append((entry.name, info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(sorted(found))


def instance_key(provider: str | None, env: Mapping[str, str], confdir: Path | None) -> InstanceKey:
    own = tuple(sorted((k, v) for k, v in env.items() if per_call(k)))
    return InstanceKey(provider, own, config_identity(confdir))


class LogFiles:
    """The instances' log files, opened once and opened again when rotated away."""

    def __init__(self) -> None:
        self._files: dict[Path, TextIO] = {}
        self._lock = threading.Lock()

    def get(self, logdir: Path, instance: str) -> TextIO:
        """The open log of ``instance`` (:func:`ohfp_core.logs.open_log_file`'s rules)."""
        from ohfp_core.logs import open_log_file

        path = logdir / f"ohfp-{instance}.log"
        with self._lock:
            current = self._files.get(path)
            if current is not None and not _same_file(current, path):
                current.close()
                current = None
            if current is None:
                current = open_log_file(logdir, instance)
                self._files[path] = current
            return current

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


def _same_file(handle: TextIO, path: Path) -> bool:
    try:
        here, there = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


Job = Callable[["Worker"], Any]


class Worker:
    """One warm instance and the thread its jobs run on."""

    def __init__(
        self, key: InstanceKey, logs: LogFiles, on_build: Callable[[Operations], None] | None = None
    ) -> None:
        self.key = key
        self.logs = logs
        self.on_build = on_build
        self.ops: Operations | None = None
        self.log_setup: tuple[Path | None, str, str] | None = None
        self.calls = 0
        self.created = time.time()
        self._jobs: queue.SimpleQueue[tuple[Job, Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"ohfp-worker-{key.name}", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future[Any]:
        """Run ``job(self)`` on the worker's thread, after the jobs before it."""
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future

    def retire(self) -> None:
        """Close the instance once the jobs already submitted are done; the thread ends."""
        self._jobs.put(None)

    def route(self, logdir: Path | None, instance: str, level: str) -> None:
        """The service's :data:`~ohfp_core.assembly.LogSetup`: this thread's lines go to the
        instance's log file (the service answers only calls that have one)."""
        from ohfp_core.logs import route_call

        if logdir is not None:
            route_call(self.logs.get(logdir, instance), level)

    def operations(self, provider: str | None) -> Operations:
        """The instance's Operations, built on first use (on this thread) with logging
        routed to its log; later calls route the same way."""
        if self.ops is None:
            from ohfp_core.assembly import operations

            def setup(logdir: Path | None, instance: str, level: str) -> None:
                self.log_setup = (logdir, instance, level)
                self.route(logdir, instance, level)

            self.ops = operations(provider, log=setup)
            if self.on_build is not None:
                self.on_build(self.ops)
        elif self.log_setup is not None:
            self.route(*self.log_setup)
        return self.ops

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                self._close()
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job(self))
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

    def _close(self) -> None:
        if self.ops is not None:
            with contextlib.suppress(Exception):
                self.ops.store.close()
            self.ops = None


class Pool:
    """Idle workers by instance key; every worker made, for the status documents."""

    def __init__(self, logs: LogFiles | None = None) -> None:
        self.logs = logs or LogFiles()
        self.on_build: Callable[[Operations], None] | None = None
        """Told of every instance built (the metrics watch its hooks)."""
        self._idle: dict[InstanceKey, list[Worker]] = {}
        self._lock = threading.Lock()
        self.seen: dict[str, InstanceKey] = {}
        """The latest key per instance name: the instances this service has served."""

    def checkout(self, key: InstanceKey) -> Worker:
        """An idle worker of ``key``, else a new one. Idle workers of the same instance with
        other config files are retired."""
        stale: list[Worker] = []
        with self._lock:
            self.seen[key.name] = key
            for other in [k for k in self._idle if k != key and k.same_instance(key)]:
                stale += self._idle.pop(other)
            idle = self._idle.get(key)
            worker = idle.pop() if idle else None
        for old in stale:
            old.retire()
        return worker if worker is not None else Worker(key, self.logs, self.on_build)

    def checkin(self, worker: Worker) -> None:
        """A worker done with its call: kept idle if it holds a built instance still current."""
        with self._lock:
            idle = self._idle.setdefault(worker.key, [])
            current = self.seen.get(worker.key.name) == worker.key
            if worker.ops is not None and current and len(idle) < MAX_IDLE:
                idle.append(worker)
                return
        worker.retire()

    def idle_workers(self) -> int:
        with self._lock:
            return sum(len(workers) for workers in self._idle.values())

    def close(self) -> None:
        """Retire every idle worker."""
        with self._lock:
            workers = [w for idle in self._idle.values() for w in idle]
            self._idle.clear()
        for worker in workers:
            worker.retire()

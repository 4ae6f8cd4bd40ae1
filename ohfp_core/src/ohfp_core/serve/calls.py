"""One Host Factory call answered by the service, within its time.

The call runs as the in-process path runs it (:mod:`ohfp_core.replies` writes the reply,
:meth:`~ohfp_core.operations.Operations.answer` answers), on a warm worker's thread with the
call's own environment (:mod:`ohfp_core.environment`) and log file. The connection's thread
waits for it until the call's **limit**: ``HF_PROVIDER_ACTION_TIMEOUT`` less
:func:`reserve` (the script gives up a little later, Host Factory later still). A call
still running then is answered as failed (exit 3), and is never reported delivered: when it
ends, its requests' locks are let go as after any failed call, so the next call reconciles
them. Its worker is retired, and the service restarts if the call is still running one
timeout after that (:mod:`ohfp_core.serve.lifecycle`), so a hung plugin never holds a lock
for longer than a killed process would.

Crash safety is the in-process path's: a request's lock (:mod:`ohfp_core.inflight`) is an
open file of the service, released by the kernel if the service dies, and the reply is
reported delivered only once it was handed to the script's connection.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

from ohfp_core.serve.wire import frame
from ohfp_core.serve.workers import Pool, Worker, instance_key

if TYPE_CHECKING:
    from ohfp_core.operations import Operations

EXIT_OVERRUN = 3


@frozen
class CallRequest:
    """What a script sent: the call, ``--provider``, its environment and input file."""

    call: str
    provider: str | None
    env: Mapping[str, str]
    path: str
    content: bytes


@frozen
class Outcome:
    code: int
    stdout: bytes
    ops: Operations | None = None


def reserve(timeout: float) -> float:
    """Seconds kept back from the action timeout to answer an overrunning call in time."""
    return min(2.0, timeout / 2)


def call_timeout(env: Mapping[str, str]) -> float:
    """The call's ``HF_PROVIDER_ACTION_TIMEOUT`` (the default for an invalid one: the call
    itself then fails on it, as in its own process)."""
    from ohfp_core.config import DEFAULT_TIMEOUT_SEC, action_timeout
    from ohfp_core.errors import ConfigError

    try:
        return action_timeout(env)
    except ConfigError:
        return DEFAULT_TIMEOUT_SEC


def run_on(worker: Worker, request: CallRequest) -> Outcome:
    """The call, on ``worker``'s thread: the reply's bytes and exit code."""
    from ohfp_core import replies
    from ohfp_core.assembly import early_logging
    from ohfp_core.converter import parse_input
    from ohfp_core.environment import using

    made: list[Operations] = []
    with using(request.env):
        early_logging(request.provider, worker.route)

        def action() -> Any:
            data = parse_input(request.content, request.path)
            ops = worker.operations(request.provider)
            made.append(ops)
            return ops.answer(request.call, data)

        out = io.StringIO()
        code = replies.answer(request.call, action, out)
    worker.calls += 1
    return Outcome(code, out.getvalue().encode("utf-8", "surrogateescape"), made[0] if made else None)


def settle_on(worker: Worker, request: CallRequest, outcome: Outcome, delivered: bool) -> None:
    """After the answer, on ``worker``'s thread: the requests the call made are delivered
    (the reply reached the script) or let go (anything else), as the CLI does."""
    from ohfp_core import replies
    from ohfp_core.environment import using

    if outcome.ops is None:
        return
    ops = outcome.ops
    with using(request.env):
        if worker.log_setup is not None:
            worker.route(*worker.log_setup)
        replies.settle(request.call, delivered and outcome.code == 0, ops.reply_written, ops.call_failed)


def overrun_reply(call: str, timeout: float, limit: float) -> bytes:
    from ohfp_core.converter import dumps

    reply = {
        "message": f"{call} failed: the call did not finish within {limit:g} s of its {timeout:g} s"
        " (HF_PROVIDER_ACTION_TIMEOUT); it goes on in the ohfp service, and the next call reconciles"
        " whatever it leaves",
        "errors": [f"call still running after {limit:g} s"],
    }
    return (dumps(reply) + "\n").encode()


def internal_reply(call: str, exc: BaseException) -> bytes:
    from ohfp_core.converter import dumps

    reply = {
        "message": f"{call} failed: internal error ({type(exc).__name__}: {exc}); see the ohfp log",
        "errors": [f"{type(exc).__name__}: {exc}"],
    }
    return (dumps(reply) + "\n").encode()


@define
class Overrun:
    """A call answered as failed while its worker still runs it."""

    call: str
    instance: str
    since: float
    timeout: float
    worker: Worker


@define
class Stats:
    """Calls served, their durations per call name, those in flight, the last error."""

    started: float = field(factory=time.time)
    served: dict[str, int] = field(factory=lambda: defaultdict(int))
    by_exit: dict[tuple[str, int], int] = field(factory=lambda: defaultdict(int))
    durations: dict[str, deque[float]] = field(factory=lambda: defaultdict(lambda: deque(maxlen=1000)))
    in_flight: dict[int, tuple[str, str, float]] = field(factory=dict)
    last_error: dict[str, Any] | None = None
    overruns: list[Overrun] = field(factory=list)
    last_call: float = field(factory=time.monotonic)
    lock: threading.Lock = field(factory=threading.Lock)
    tokens: Iterator[int] = field(factory=itertools.count)
    observe: Callable[[str, str, int, float, bytes], None] | None = None
    """Also told of every call (the Prometheus metrics)."""

    def begin(self, call: str, instance: str) -> int:
        with self.lock:
            token = next(self.tokens)
            self.in_flight[token] = (call, instance, time.time())
            self.last_call = time.monotonic()
            return token

    def end(self, token: int, call: str, instance: str, code: int, seconds: float, stdout: bytes) -> None:
        with self.lock:
            self.in_flight.pop(token, None)
            self.served[call] += 1
            self.by_exit[(call, code)] += 1
            self.durations[call].append(seconds)
            self.last_call = time.monotonic()
            if code != 0:
                self.last_error = {
                    "call": call,
                    "instance": instance,
                    "exitCode": code,
                    "at": time.time(),
                    "reply": stdout.decode("utf-8", "replace")[:2000],
                }
        if self.observe is not None:
            self.observe(call, instance, code, seconds, stdout)


class Calls:
    """Runs calls on the pool's workers and answers each within its limit."""

    def __init__(self, pool: Pool, stats: Stats) -> None:
        self.pool = pool
        self.stats = stats

    def answer(self, request: CallRequest, send: Callable[[bytes], bool]) -> None:
        """Run ``request`` and ``send`` its 200 body (True when it reached the script)."""
        from ohfp_core.config import resolve_paths

        timeout = call_timeout(request.env)
        limit = timeout - reserve(timeout)
        key = instance_key(request.provider, request.env, resolve_paths(request.env).confdir)
        started = time.monotonic()
        token = self.stats.begin(request.call, key.name)
        worker = self.pool.checkout(key)
        future = worker.submit(lambda w: run_on(w, request))
        try:
            outcome = future.result(timeout=max(0.0, limit - (time.monotonic() - started)))
        except FutureTimeout:
            body = frame(EXIT_OVERRUN, overrun_reply(request.call, timeout, limit))
            send(body)
            self.stats.end(token, request.call, key.name, EXIT_OVERRUN, time.monotonic() - started, body)
            with self.stats.lock:
                self.stats.overruns.append(Overrun(request.call, key.name, time.monotonic(), timeout, worker))
            future.add_done_callback(lambda done: self._after_overrun(worker, request, done))
            return
        except Exception as exc:  # a bug outside the reply's own handling
            outcome = Outcome(1, internal_reply(request.call, exc))
        body = frame(outcome.code, outcome.stdout)
        delivered = send(body)
        self.stats.end(
            token, request.call, key.name, outcome.code, time.monotonic() - started, outcome.stdout
        )
        worker.submit(lambda w: settle_on(w, request, outcome, delivered))
        self.pool.checkin(worker)

    def _after_overrun(self, worker: Worker, request: CallRequest, done: Any) -> None:
        """The overrunning call ended: let go of what it made (never delivered), retire."""
        outcome = done.result() if done.exception() is None else None
        if outcome is not None:
            worker.submit(lambda w: settle_on(w, request, outcome, False))
        worker.retire()
        with self.stats.lock:
            self.stats.overruns = [o for o in self.stats.overruns if o.worker is not worker]

    def hung(self) -> list[Overrun]:
        """Overrunning calls still running one timeout after their answer."""
        now = time.monotonic()
        with self.stats.lock:
            return [o for o in self.stats.overruns if now - o.since > o.timeout]


def logdir_of(env: Mapping[str, str]) -> Path | None:
    from ohfp_core.config import resolve_paths

    return resolve_paths(env).logdir

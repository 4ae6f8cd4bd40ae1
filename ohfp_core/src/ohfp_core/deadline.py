"""A call's deadline: the moment by which Host Factory must have the call's reply.

Host Factory kills a call that takes longer than ``HF_PROVIDER_ACTION_TIMEOUT`` and then
knows nothing of what it did. So each call carries a :class:`Deadline` a little before that
(:func:`call_deadline`: the timeout less :func:`reserve`), and everything that waits on
something outside the process is bounded by what is left of it on the client side: every
state store round trip (connect, query, commit, lock wait), and the cloud calls. Past it a
store raises :class:`~ohfp_core.errors.StorageError` of kind ``TIMED_OUT``; the call then
answers with a JSON failure (exit 3) and the next call reconciles what it left. Should
anything still hold the call (a hang no bound reaches), :func:`last_resort` answers for it
between the deadline and Host Factory's timeout.

A deadline is a value the call carries, not process state: a process serving several calls
at once gives each its own.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from attrs import frozen

LOCK_SPARE_SEC = 0.25
"""A wait for another call's write lock ends this long before the deadline, so the call
learns the lock was held too long (and says so) rather than merely running out of time."""
RESERVE_SEC = 3.0
"""Kept back from Host Factory's time to write the reply after the deadline (at most a fifth
of the time)."""


def reserve(timeout_sec: float) -> float:
    """The seconds of ``timeout_sec`` kept back to answer once the deadline has passed."""
    return min(RESERVE_SEC, timeout_sec / 5)


@frozen
class Deadline:
    """``ends_at`` on the monotonic clock; ``budget`` the seconds the call was given (for
    messages: "within the 17 s this call may take")."""

    ends_at: float
    budget: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds, seconds)

    @classmethod
    def never(cls) -> Deadline:
        """No deadline (a store opened outside any call: tests, administration)."""
        return cls(math.inf, math.inf)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.ends_at - time.monotonic())

    def bound(self, seconds: float, spare: float = 0.0) -> float:
        """``seconds``, or what is left less ``spare`` when that is less (never negative)."""
        return max(0.0, min(seconds, self.remaining() - spare))

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.ends_at


def call_deadline(timeout_sec: float, begun_sec: float = 0.0) -> Deadline:
    """The deadline of a call Host Factory gives ``timeout_sec`` seconds, begun ``begun_sec``
    ago (Host Factory's clock runs from its start: :func:`process_age` for a call that is a
    process of its own)."""
    budget = timeout_sec - reserve(timeout_sec)
    return Deadline(time.monotonic() + budget - begun_sec, budget)


def process_age() -> float:
    """Seconds since this process started (Linux's ``/proc``; 0 where it cannot be read)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def last_resort(deadline: Deadline, answer: Callable[[], None]) -> threading.Timer:
    """Call ``answer`` (in a thread of its own) half the reserve after ``deadline`` (half of
    it before Host Factory's timeout) unless cancelled first: the last resort of a call that
    something outside every bound keeps from answering. ``answer`` replies for the call and
    ends the process; what the call left is reconciled by the next one, as after a crash."""
    grace_sec = min(RESERVE_SEC, deadline.budget / 4) / 2  # the reserve, from the budget it left
    timer = threading.Timer(deadline.remaining() + grace_sec, answer)
    timer.daemon = True
    timer.start()
    return timer

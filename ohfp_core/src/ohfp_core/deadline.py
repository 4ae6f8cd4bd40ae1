"""A call's deadline: the moment by which Host Factory must have the call's reply.

Host Factory kills a call that takes longer than ``HF_PROVIDER_ACTION_TIMEOUT`` and then
knows nothing of what it did. So each call carries a :class:`Deadline` a little before that
(:func:`call_deadline`: the timeout less :func:`reserve`), and everything that waits on
something outside the process is bounded by what is left of it on the client side: every
state store round trip (connect, query, commit, lock wait), and the cloud calls. Past it a
store raises :class:`~ohfp_core.errors.StorageError` of kind ``TIMED_OUT``; the call then
answers with a JSON failure (exit 3) and the next call reconciles what it left.

A deadline is a value the call carries, not process state: a process serving several calls
at once gives each its own.
"""

from __future__ import annotations

import math
import time

from attrs import frozen

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

    def bound(self, seconds: float) -> float:
        """``seconds``, or what is left when that is less."""
        return min(seconds, self.remaining())

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.ends_at


def call_deadline(timeout_sec: float) -> Deadline:
    """The deadline of a call Host Factory gives ``timeout_sec`` seconds, from now."""
    return Deadline.after(timeout_sec - reserve(timeout_sec))

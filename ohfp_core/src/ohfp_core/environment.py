"""The environment of the Host Factory call being answered.

A command run by Host Factory reads its instance, directories and settings from the
environment. In its own process that is ``os.environ``; the resident service
(:mod:`ohfp_core.serve`) answers calls of many instances in one process, each with the
environment its script forwarded. Core reads ``HF_*`` and ``OHFP_*`` variables through
:func:`environ`, and so should a plugin that reads variables of its own: it returns the
current call's environment inside :func:`using`, ``os.environ`` anywhere else.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

_CALL: ContextVar[Mapping[str, str] | None] = ContextVar("ohfp_call_environ", default=None)


def environ() -> Mapping[str, str]:
    """The environment of the call being answered (``os.environ`` outside the service)."""
    current = _CALL.get()
    return os.environ if current is None else current


@contextlib.contextmanager
def using(env: Mapping[str, str]) -> Iterator[None]:
    """Make ``env`` what :func:`environ` returns in this thread (context) for the block."""
    token = _CALL.set(env)
    try:
        yield
    finally:
        _CALL.reset(token)

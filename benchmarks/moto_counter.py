"""A moto server on a free local port that counts the AWS API calls it answers.

It is the hooked moto server of the test beds (:mod:`testbeds.hooked_moto`) with a hook that counts:
counting happens on the server side, so the provider under test needs no hook; every AWS
request is attributed to ``service:Action``. Retries count as calls, as on an AWS bill.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for testbeds

from testbeds.hooked_moto import Forward, HookedMotoServer, Response
from testbeds.moto_as_aws import like_aws


class Calls:
    """A hook for :class:`HookedMotoServer`: counts each request, then lets moto answer."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds = 0.0
        """moto's own time answering, in all."""
        self._lock = threading.Lock()

    def __call__(self, api: str, forward: Forward) -> Response:
        with self._lock:
            self.calls[api] += 1
        started = time.perf_counter()
        try:
            return forward()
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - started

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)


class CountingMotoServer:
    """A :class:`HookedMotoServer` that counts; ``counter.snapshot()`` gives the counts.

    While it runs, moto does what AWS does where ohfp relies on it (:mod:`testbeds.moto_as_aws`).
    """

    def __init__(self) -> None:
        self.counter = Calls()
        self._server = HookedMotoServer()
        self._server.app.hook = self.counter
        self._patches = ExitStack()

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    def __enter__(self) -> CountingMotoServer:
        self._patches.enter_context(like_aws())
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self._patches.close()

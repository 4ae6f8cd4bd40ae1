"""A toy cloud: machines are records in one JSON file in the provider's work directory.

A real provider calls its cloud's API instead. The file stands in for the cloud, so it has
to outlive each Host Factory call (every call is a new process) and survive calls that
overlap (a lock file serialises them). Below the cloud's API, what tests use to play the
cloud's part.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CLOUD_FILE = "example-cloud.json"
AFTER_WRITE: list[Callable[[], None]] = []
"""Tests only: called, and forgotten, right after the cloud's next change is written."""


@contextmanager
def cloud_state(workdir: Path) -> Iterator[dict[str, Any]]:
    """The cloud's state, locked for the block; changes are saved when it ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CLOUD_FILE
    with open(workdir / f"{CLOUD_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text()) if path.exists() else {"next": 1, "machines": {}}
        yield state
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, path)
    while AFTER_WRITE:
        AFTER_WRITE.pop()()


# What tests use to play the cloud's part ------------------------------------------------


def machines(workdir: Path) -> dict[str, Any]:
    """Every machine record by id, read without changing anything."""
    path = workdir / CLOUD_FILE
    return dict(json.loads(path.read_text())["machines"]) if path.exists() else {}


def interrupt(workdir: Path, machine_id: str) -> None:
    """Give a machine an interruption notice: it is taken away two minutes later."""
    with cloud_state(workdir) as cloud:
        cloud["machines"][machine_id]["notice"] = int(time.time())


def terminate_outside(workdir: Path, machine_id: str) -> None:
    """Terminate a machine behind Host Factory's back, as from a cloud console."""
    with cloud_state(workdir) as cloud:
        machine = cloud["machines"][machine_id]
        machine["state"] = "terminated"
        machine["message"] = "terminated from the console"

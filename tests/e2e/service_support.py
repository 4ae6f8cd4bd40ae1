"""Helpers for the tests of the resident service (``ohfp serve``) through the scripts."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from .conftest import HostFactory

REQUEST_ID = re.compile(r"\b(req|ret)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def service_env(hf: HostFactory) -> dict[str, str]:
    """The environment of ``ohfp serve`` commands for ``hf``'s service."""
    return {**hf.env()}


def status(hf: HostFactory) -> dict[str, Any] | None:
    """The service's ``/v1/status`` (via ``ohfp serve --status``), None when none runs."""
    done = hf.installation.run(hf.installation.ohfp, "serve", "--status", env=service_env(hf))
    if done.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def wait_serving(hf: HostFactory, timeout: float = 30.0, not_pid: int | None = None) -> dict[str, Any]:
    """Wait until a service (another than ``not_pid``) answers; its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = status(hf)
        if found is not None and found["pid"] != not_pid and found["state"] == "serving":
            return found
        time.sleep(0.1)
    raise AssertionError(f"no ohfp service came up within {timeout} s")


def start_service(hf: HostFactory) -> dict[str, Any]:
    """Start the service the way a first call does (that call's answer checked), and wait."""
    hf.call("getAvailableTemplates").ok()
    return wait_serving(hf)


def served(hf: HostFactory) -> int:
    """Calls the running service has answered so far."""
    found = status(hf)
    assert found is not None, "no service runs"
    return sum(c["served"] for c in found["calls"].values())


def stop_service(hf: HostFactory) -> None:
    hf.installation.run(hf.installation.ohfp, "serve", "--stop", env=service_env(hf))


def normalized(text: str, ids: dict[str, str]) -> str:
    """``text`` with every request id replaced by its order of first appearance (ids are
    random by design; everything else must match byte for byte)."""

    def name(found: re.Match[str]) -> str:
        return ids.setdefault(found[0], f"{found[1]}-#{len(ids) + 1}")

    return REQUEST_ID.sub(name, text)


def run_raw(
    hf: HostFactory, call: str, payload: Any, file: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """One call through its script, its exit code and output as they are
    (:meth:`HostFactory.run`)."""
    return hf.run(call, payload, file, **env)


def runtime_of(hf: HostFactory) -> Path:
    return Path(hf.env()["OHFP_RUNTIME_DIR"])


def socket_of(hf: HostFactory) -> Path:
    """The socket of ``hf``'s installation's service (named by the installation)."""
    found = status(hf)
    assert found is not None, "no service runs"
    return Path(found["socket"])


def service_log(hf: HostFactory) -> str:
    """The service's own log (one per installation) in ``hf``'s runtime directory."""
    return "".join(path.read_text() for path in sorted(runtime_of(hf).glob("ohfp-serve-*.log")))

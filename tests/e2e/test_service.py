"""The resident service (``ohfp serve``) behind the generated scripts, as Host Factory uses it.

- The same scenario (every call, good and bad inputs, a broken config) run through the
  scripts with the service off and on gives the same exit codes and the same stdout byte
  for byte (request ids, random by design, are compared by order of appearance), and the
  service answered every call of the second run.
- Each fallback case: no service (the call runs in its own process and starts one; ten at
  once start one), a stale socket, installed code that changed, ``OHFP_SERVICE=off``; a
  call whose environment the service cannot serve runs in its own process.
- A call that overruns its time is answered as failed in time, and never stalls the others.
- Another uid cannot use the socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import MOCK_CONFIG, HostFactory, Installation, make_instance
from .service_support import (
    normalized,
    run_raw,
    runtime_of,
    served,
    service_log,
    socket_of,
    start_service,
    status,
    stop_service,
    wait_serving,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_service(installation: Installation, mock_scripts: Path, tmp_path: Path) -> Iterator[HostFactory]:
    """A mock instance whose calls find their service in a runtime directory of the test's
    own (none runs at first); the service is stopped at the end."""
    hf = make_instance(installation, mock_scripts, tmp_path / "on", "mockinst")
    hf.write_config("config", MOCK_CONFIG)
    hf.env_extra["OHFP_RUNTIME_DIR"] = str(tmp_path / "rt")
    yield hf
    stop_service(hf)


BAD_INPUTS: list[tuple[str, Any]] = [
    ("requestMachines", {"template": {"templateId": "mock-small", "machineCount": 0}}),
    ("requestMachines", {"template": {"machineCount": 1}}),
    ("requestMachines", {"template": {"templateId": "no-such", "machineCount": 1}}),
    ("requestMachines", {"template": {"templateId": "mock-small", "machineCount": 51}}),
    ("requestMachines", '{"template": {"templateId": "mock-small",'),
    ("requestMachines", "[1, 2"),
    (
        "requestMachines",
        "\ufeff" + json.dumps({"template": {"templateId": "mock-small", "machineCount": "x"}}),
    ),
    ("requestReturnMachines", {"machines": "i-123"}),
    ("getRequestStatus", {"requests": [{"requestId": "req-does-not-exist"}, {"requestId": ""}]}),
    ("getRequestStatus", {"requests": "x"}),
    ("getReturnRequests", {"machines": [{"name": 7}]}),
    ("getAvailableTemplates", "not json"),
]


TIMES = re.compile(r'"(launchtime|gracePeriod)": (\d+)')


def scenario(pair: tuple[HostFactory, HostFactory]) -> list[list[tuple[str, int, str]]]:
    """A request's whole life, a reclaim, bad inputs and broken settings, each step run on
    both instances one after the other: (call, exit code, stdout) of each, per instance,
    the instance's directory (in file names) written ``<root>``."""
    outcomes: list[list[tuple[str, int, str]]] = [[], []]

    def call(name: str, payload: Callable[[int], Any] | Any = None) -> list[Any]:
        replies = []
        for side, hf in enumerate(pair):
            body = payload(side) if callable(payload) else payload
            step = len(outcomes[side])
            done = run_raw(hf, name, {} if body is None else body, file=hf.root / f"input-{step}.json")
            outcomes[side].append((name, done.returncode, done.stdout.replace(str(hf.root), "<root>")))
            replies.append(json.loads(done.stdout))
        return replies

    def mock(*args: str) -> None:
        for hf in pair:
            hf.mock(*args)

    def settings(text: str | None) -> None:
        for hf in pair:
            if text is None:
                (hf.confdir / "ohfp.json").unlink()
            else:
                (hf.confdir / "ohfp.json").write_text(text)

    call("getAvailableTemplates")
    asked = call("requestMachines", {"template": {"templateId": "mock-small", "machineCount": 3}})
    ids = [reply["requestId"] for reply in asked]
    call("getRequestStatus", lambda side: {"requests": [{"requestId": ids[side]}]})
    mock("advance", "40")
    done = call("getRequestStatus", lambda side: {"requests": [{"requestId": ids[side]}]})
    held = [
        [{"name": m["name"], "machineId": m["machineId"]} for m in r["requests"][0]["machines"]] for r in done
    ]
    call("getReturnRequests", lambda side: {"machines": held[side]})
    returns = [
        r["requestId"] for r in call("requestReturnMachines", lambda side: {"machines": held[side][1:]})
    ]
    call("getRequestStatus", lambda side: {"requests": {"requestId": returns[side]}})
    mock("advance", "30")
    call(
        "getRequestStatus",
        lambda side: {"requests": [{"requestId": returns[side]}, {"requestId": ids[side]}]},
    )
    for side, hf in enumerate(pair):
        hf.mock("reclaim", held[side][0]["machineId"], "--grace", "60")
    call("getReturnRequests", {})
    call("getReturnRequests", lambda side: {"machines": held[side]})
    call("requestReturnMachines", {"machines": [{"name": "nobody-knows", "machineId": "i-0"}]})
    call("getAvailableTemplates")
    for name, payload in BAD_INPUTS:
        call(name, payload)
    settings('{"logLevel": "LOUD"}')
    call("getAvailableTemplates")
    settings('{"storage": "nosuch"}')
    call("getRequestStatus", lambda side: {"requests": [{"requestId": ids[side]}]})
    settings(None)
    call("getAvailableTemplates")
    return outcomes


def same_but_times(on: str, off: str) -> bool:
    """Equal once ``launchtime`` and ``gracePeriod`` values (seconds of the clock, read a
    moment apart) are set aside; those differ by at most 5 s."""
    times_on, times_off = TIMES.findall(on), TIMES.findall(off)
    close = len(times_on) == len(times_off) and all(
        a[0] == b[0] and abs(int(a[1]) - int(b[1])) <= 5 for a, b in zip(times_on, times_off, strict=True)
    )
    return close and TIMES.sub(r'"\1": 0', on) == TIMES.sub(r'"\1": 0', off)


def test_replies_are_byte_identical_with_and_without_the_service(
    own_service: HostFactory, installation: Installation, mock_scripts: Path, tmp_path: Path
) -> None:
    off = make_instance(installation, mock_scripts, tmp_path / "off", "mockinst")
    off.write_config("config", MOCK_CONFIG)
    off.env_extra["OHFP_SERVICE"] = "off"
    warm = make_instance(installation, mock_scripts, tmp_path / "warm", "warminst")  # starts the service
    warm.env_extra["OHFP_RUNTIME_DIR"] = own_service.env_extra["OHFP_RUNTIME_DIR"]
    start_service(warm)
    before = served(own_service)

    without, with_service = scenario((off, own_service))

    assert served(own_service) - before == len(with_service), "the service did not answer every call"
    assert len(without) == len(with_service) > 25
    ids_off: dict[str, str] = {}
    ids_on: dict[str, str] = {}
    for (call, code_off, out_off), (_, code_on, out_on) in zip(without, with_service, strict=True):
        assert code_on == code_off, (call, out_off, out_on)
        assert same_but_times(normalized(out_on, ids_on), normalized(out_off, ids_off)), (
            call,
            out_off,
            out_on,
        )
    assert {code for _, code, _ in without} >= {0, 2, 3}
    log = (own_service.logdir / "ohfp-mockinst.log").read_text()
    assert '"operation": "requestMachines"' in log and "request recorded" in log


def test_no_service_runs_in_process_and_starts_one(own_service: HostFactory) -> None:
    assert status(own_service) is None
    reply = own_service.call("getAvailableTemplates").ok()
    assert reply["templates"]
    first = wait_serving(own_service)
    assert sum(c["served"] for c in first["calls"].values()) == 0  # the first call ran in its own process
    own_service.call("getAvailableTemplates").ok()
    assert served(own_service) == 1
    runtime = runtime_of(own_service)
    assert oct(runtime.stat().st_mode & 0o777) == "0o700"
    assert oct(socket_of(own_service).stat().st_mode & 0o777) == "0o600"


def test_the_thin_client_scripts_are_answered_by_the_service(
    own_service: HostFactory, installation: Installation, tmp_path: Path
) -> None:
    """Scripts that ask through the thin client (no suitable curl) get the curl scripts'
    reply, byte for byte, from the same service."""
    write = "import sys; from pathlib import Path; from ohfp_core.scripts import write_scripts;"
    write += " write_scripts(Path(sys.argv[1]), 'mock', service='client')"
    done = installation.run(installation.python, "-I", "-c", write, tmp_path / "client-scripts")
    assert done.returncode == 0, done.stderr
    assert "client.py" in (tmp_path / "client-scripts" / "getAvailableTemplates.sh").read_text()
    thin = make_instance(installation, tmp_path / "client-scripts", own_service.root, own_service.name)
    thin.env_extra.update(own_service.env_extra)
    start_service(own_service)
    before = served(own_service)
    by_curl = own_service.run("getAvailableTemplates", {})
    by_client = thin.run("getAvailableTemplates", {})
    assert (
        (by_client.returncode, by_client.stdout)
        == (by_curl.returncode, by_curl.stdout)
        == (0, by_curl.stdout)
    )
    assert served(own_service) == before + 2


def test_ten_calls_at_once_start_one_service(own_service: HostFactory) -> None:
    calls = [own_service.start("getAvailableTemplates", {}) for _ in range(10)]
    assert [own_service.finish(p).code for p in calls] == [0] * 10
    wait_serving(own_service)
    time.sleep(1.0)  # any second service would have started and given up by now
    log = service_log(own_service)
    assert log.count('"service started"') == 1, log


def test_a_stale_socket_is_replaced(own_service: HostFactory) -> None:
    first = start_service(own_service)
    os.kill(first["pid"], signal.SIGKILL)
    socket = Path(first["socket"])
    time.sleep(0.2)
    assert socket.exists()  # nothing removed it: the next call meets a refused connection
    own_service.call("getAvailableTemplates").ok()  # answered in its own process
    second = wait_serving(own_service, not_pid=first["pid"])
    own_service.call("getAvailableTemplates").ok()
    assert served(own_service) == 1 and second["pid"] != first["pid"]


def test_a_service_whose_code_changed_restarts(own_service: HostFactory, installation: Installation) -> None:
    first = start_service(own_service)
    record = next((installation.venv / "lib").glob("python*/site-packages/ohfp_mock-*.dist-info/RECORD"))
    original = record.read_bytes()
    try:
        record.write_bytes(original + b"# an upgrade\n")
        reply = own_service.call("getAvailableTemplates").ok()  # the service says restart: run here
        assert reply["templates"]
        second = wait_serving(own_service, not_pid=first["pid"])
        assert second["build"] != first["build"]
    finally:
        record.write_bytes(original)
    log = service_log(own_service)
    assert "installed code changed" in log


def test_scripts_of_another_build_are_still_answered(own_service: HostFactory, tmp_path: Path) -> None:
    start_service(own_service)
    for script in own_service.scripts.glob("*.sh"):
        text = script.read_text()
        build = text.split("Ohfp-Build: ", 1)[1][:20]
        copy = tmp_path / "old-scripts" / script.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(text.replace(build, "0" * 20))
        copy.chmod(0o755)
    own_service.scripts = tmp_path / "old-scripts"
    own_service.call("getAvailableTemplates").ok()
    assert served(own_service) == 1  # the installation is the service's own: it answers


def test_off_switch_and_foreign_environments_run_in_process(own_service: HostFactory) -> None:
    start_service(own_service)
    assert run_raw(own_service, "getAvailableTemplates", {}, OHFP_SERVICE="off").returncode == 0
    assert run_raw(own_service, "getAvailableTemplates", {}, AWS_PROFILE="other").returncode == 0
    assert run_raw(own_service, "getAvailableTemplates", {}, HF_PROVIDER_LOGDIR="").returncode == 0
    assert served(own_service) == 0
    log = service_log(own_service)
    assert '"variables": ["AWS_PROFILE"]' in log


def test_an_overrunning_call_is_answered_in_time_and_stalls_nothing(
    crash_installation: Installation, tmp_path: Path
) -> None:
    scripts = crash_installation.scripts("mock", tmp_path / "scripts")
    hf = make_instance(crash_installation, scripts, tmp_path / "inst", "mockinst")
    hf.write_config("config", {**MOCK_CONFIG, "MOCK_BOOT_SECONDS": 0})
    hf.env_extra["OHFP_RUNTIME_DIR"] = str(tmp_path / "rt")
    other = make_instance(crash_installation, scripts, tmp_path / "other", "otherinst")
    other.env_extra["OHFP_RUNTIME_DIR"] = str(tmp_path / "rt")
    pause = tmp_path / "pause"  # the slow call waits at its point until pause/go exists: never here
    pause.mkdir()
    try:
        serving = start_service(hf)
        ask = {"template": {"templateId": "mock-small", "machineCount": 2}}
        slow = hf.start_with(
            "requestMachines",
            ask,
            OHFP_CRASH_PAUSE="after:ohfp_provision#1",
            OHFP_CRASH_PAUSE_DIR=str(pause),
            HF_PROVIDER_ACTION_TIMEOUT="4",
        )
        bound = time.monotonic() + 60  # a hang guard, not a measure
        while not list(pause.glob("*.paused")):
            assert slow.poll() is None and time.monotonic() < bound, "the call did not reach its pause"
            time.sleep(0.05)
        other.call("getAvailableTemplates").ok()  # answered while the slow call holds its worker
        # In time, by order and by the configured bound: the service answers while the call is
        # still held (it cannot go on), at its limit under HF_PROVIDER_ACTION_TIMEOUT (the
        # script, left without an answer, would give up with a message of its own).
        reply = HostFactory.finish(slow)
        assert reply.code == 3, reply.stdout
        assert "did not finish within 2 s of its 4 s" in reply.doc["message"]
        assert "requestId" not in reply.doc
        # Still held one timeout after its answer, the call is hung: the service exits, and
        # with it what the call held. Never delivered, its request is the next call's to reconcile.
        bound = time.monotonic() + 60
        while (found := status(hf)) is not None and found["pid"] == serving["pid"]:
            assert time.monotonic() < bound, "the service outlived a hung call"
            time.sleep(0.1)
        hf.call("getReturnRequests").ok()
        assert [m for m in hf.mock("list")["machines"] if m["state"] in ("pending", "running")] == []
    finally:
        (pause / "go").touch()  # whatever still waits there goes on, and ends
        stop_service(hf)


def test_another_uid_cannot_use_the_socket(own_service: HostFactory) -> None:
    # A runtime directory nobody could reach if its modes let them (pytest's are private).
    runtime = Path(tempfile.mkdtemp(prefix="ohfp-uid-", dir="/tmp"))
    own_service.env_extra["OHFP_RUNTIME_DIR"] = str(runtime)
    first = start_service(own_service)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno); raise SystemExit\n"
        "try:\n"
        "    s.sendall(b'GET /v1/status HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
        "    print('answered' if s.recv(100) else 'dropped')\n"
        "except OSError:\n"
        "    print('dropped')\n"
    )
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "python3", "-I", "-c", probe]
    socket_path = str(socket_of(own_service))
    done = subprocess.run([*nobody, socket_path], capture_output=True, text=True, timeout=30, check=False)
    assert done.stdout.startswith("refused"), done.stdout + done.stderr  # the directory is 0700
    runtime.chmod(0o711)
    Path(socket_path).chmod(0o666)
    try:  # even let through the file modes, the peer's uid is checked
        done = subprocess.run([*nobody, socket_path], capture_output=True, text=True, timeout=30, check=False)
        assert done.stdout.strip() == "dropped", done.stdout + done.stderr
    finally:
        runtime.chmod(0o700)
        Path(socket_path).chmod(0o600)
    assert status(own_service)["pid"] == first["pid"]  # type: ignore[index]
    stop_service(own_service)
    shutil.rmtree(runtime, ignore_errors=True)

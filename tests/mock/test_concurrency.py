"""Host Factory calls overlap: several processes provisioning on one work dir at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ohfp_mock.cloud import MockCloud

PROCESSES = 8
PER_REQUEST = 3

# Each child waits for the go file, so all of them open the fresh database and provision together.
CHILD = """
import json, pathlib, sys, time
from ohfp_core.models import ProviderContext
from ohfp_mock.provider import make_provider
from ohfp_mock.templates import DEMO_TEMPLATES

work, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
request_id, count = sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
context = ProviderContext(instance="mockinst", provider_type="mock", confdir=work, workdir=work)
provider = make_provider(context)
machines = provider.ohfp_provision(request_id, DEMO_TEMPLATES[0], count).machines
print(json.dumps([[m.machine_id, m.private_ip, m.name] for m in machines]))
"""


def test_concurrent_provisioning_on_one_workdir(tmp_path: Path) -> None:
    work, go = tmp_path / "work", tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(work), str(go), f"req-{index}", str(PER_REQUEST)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESSES)
    ]
    go.touch()
    results = [child.communicate(timeout=60) for child in children]
    assert [child.returncode for child in children] == [0] * PROCESSES, [err for _, err in results]
    machines = [machine for out, _ in results for machine in json.loads(out)]
    assert len(machines) == PROCESSES * PER_REQUEST
    for column in range(3):
        assert len({machine[column] for machine in machines}) == len(machines)
    with MockCloud(work) as cloud:
        stored = cloud.machines()
    assert sorted(m.machine_id for m in stored) == sorted(machine[0] for machine in machines)
    assert {m.request_id for m in stored} == {f"req-{index}" for index in range(PROCESSES)}

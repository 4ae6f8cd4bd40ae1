"""Failover when a host dies mid-call: host A killed at every point, host B the only one calling.

Two hosts of the mock provider (their own work and log directories, so their own host
identities) share one store (PostgreSQL on the real server, DynamoDB on moto) and one
simulated cloud, with the test-only crash plugin (``tests/e2e/crashkit``) naming every point
of a call. Host A's requestMachines, then its requestReturnMachines, is SIGKILLed at each
point it reaches; from then on only host B calls, as Host Factory does after a failover,
with the default ``HF_PROVIDER_ACTION_TIMEOUT`` (240 s). At each point:

- B fills the template at once (every unit getAvailableTemplates offers): the cloud never
  runs more machines of the template than ``maxNumber``, however A died, a return it left
  half-way included;
- B polls (getAvailableTemplates, about once a second) until nothing A left runs that Host
  Factory does not hold: the **orphan lifetime**, from the kill to the end of the call of B
  that removed the last of it, must stay under :data:`ORPHAN_BOUND_SEC`.

PostgreSQL sees A's leases die with its connections, so B's first call cleans up. DynamoDB's
leases lapse ``callLeaseSeconds`` after A stops renewing them: every point runs with a 3 s
lease; one point runs again with the default (10 s), for the figure an administrator gets.
A call of A that is alive, held at a point for longer than a lease, is never touched by B.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.storage import Storage, StorageContext
from testbeds.dynamodb import FAKE_ENV, REGION, new_table
from testbeds.postgresql import PostgresServer
from tests.store_servers import postgres_server

from .conftest import HostFactory, Installation, make_instance
from .test_aws_scripts import MotoServer
from .test_crash import Figures, kill_at, record_points
from .test_failover import cloud_server

__all__ = ["cloud_server", "postgres_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.system]

MAX = 4
ASK = 2
ORPHAN_BOUND_SEC = 20.0
"""The issue's target: nothing Host Factory never got runs longer after a host's death."""
SHORT_LEASE_SEC = 3.0
TEMPLATE = {
    "templateId": "tight",
    "maxNumber": MAX,
    "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "512"]},
}


@attrs.define
class Site:
    """Hosts A and B of one instance, their store, and the cloud they share."""

    a: HostFactory
    b: HostFactory
    cloud_dir: Path
    backend: str
    section: dict[str, Any]
    figures: Figures = attrs.field(factory=Figures)
    lifetimes: list[float] = attrs.field(factory=list)
    most_live: int = 0

    def machines(self) -> list[dict[str, Any]]:
        done = self.a.installation.run(
            self.a.installation.python, "-I", "-m", "ohfp_mock", "--workdir", self.cloud_dir, "list"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        machines: list[dict[str, Any]] = json.loads(done.stdout)["machines"]
        return machines

    def live(self) -> list[dict[str, Any]]:
        """Machines that run (or boot): what is paid for, and what maxNumber bounds."""
        live = [m for m in self.machines() if m["state"] in ("pending", "running")]
        self.most_live = max(self.most_live, len(live))
        assert len(live) <= MAX, f"{len(live)} machines run for a template of maxNumber {MAX}: {live}"
        return live

    def store(self) -> Storage:
        """The shared store, opened from this test process."""
        for name, value in FAKE_ENV.items():  # moto's credentials, as the hosts have them
            os.environ.setdefault(name, value)
        factory = Hooks(make_manager(load_entry_points=True)).storage_factories()[self.backend]
        return factory(
            StorageContext(instance="mockinst", workdir=self.a.root / "probe", settings=self.section)
        )

    def returns_recorded(self) -> int:
        store = self.store()
        try:
            return sum(r.kind.value == "return" for r in store.iter_requests())
        finally:
            store.close()

    def acquire(self, hf: HostFactory, count: int) -> str:
        reply = hf.call("requestMachines", {"template": {"templateId": "tight", "machineCount": count}}).ok()
        return str(reply["requestId"])

    def available(self) -> int:
        templates = self.b.call("getAvailableTemplates").ok()["templates"]
        return int({t["templateId"]: t for t in templates}["tight"]["availableNumber"])

    def hosts(self, request_ids: list[str]) -> list[dict[str, str]]:
        """The hosts of requests Host Factory got, once complete (B answers for them)."""
        if not request_ids:
            return []
        entries = self.b.status(*request_ids)
        assert all(e["status"] != "running" for e in entries), entries
        return [{"name": m["name"], "machineId": m["machineId"]} for e in entries for m in e["machines"]
                if m["result"] == "succeed"]  # fmt: skip

    def hand_back(self, hosts: list[dict[str, str]]) -> None:
        """Host Factory returns what it holds, through B, to the end."""
        if hosts:
            return_id = self.b.call("requestReturnMachines", {"machines": hosts}).ok()["requestId"]
            [entry] = self.b.status(return_id)
            assert entry["status"] == "complete", entry

    def orphans(self, theirs: set[str]) -> list[dict[str, Any]]:
        """Machines that run and Host Factory does not hold (``theirs``: the requests whose
        machines it holds)."""
        return [m for m in self.live() if m["requestId"] not in theirs]

    def outlive(self, killed_at: float, left: list[dict[str, Any]], theirs: set[str]) -> None:
        """B polls until none of what A ``left`` (orphans seen right after the kill) runs;
        the orphan lifetime, from the kill to the end of the call of B that saw them gone,
        is recorded and bounded."""
        if not left:
            return
        self.figures.orphans += 1
        orphans = self.orphans(theirs)
        while orphans:
            took = time.monotonic() - killed_at
            assert took < ORPHAN_BOUND_SEC, f"{orphans} still run {took:.1f} s after host A died"
            time.sleep(1)
            self.b.call("getAvailableTemplates").ok()
            orphans = self.orphans(theirs)
        lifetime = time.monotonic() - killed_at
        self.lifetimes.append(lifetime)
        self.figures.longest_orphan_sec = max(self.figures.longest_orphan_sec, lifetime)

    def fill(self) -> str | None:
        """B takes every unit the template still offers (the request Host Factory makes)."""
        free = self.available()
        return self.acquire(self.b, free) if free else None


def site_for(
    backend: str,
    installation: Installation,
    postgres: PostgresServer,
    cloud: MotoServer,
    root: Path,
    lease_sec: float = SHORT_LEASE_SEC,
) -> Site:
    if backend == "postgresql":
        section: dict[str, Any] = {"dsn": postgres.dsn, "schema": postgres.new_schema("crash")}
        env: dict[str, str] = {}
    else:
        section = {"table": new_table("crash"), "region": REGION, "endpointUrl": cloud.endpoint,
                   "createTable": True, "callLeaseSeconds": lease_sec}  # fmt: skip
        env = dict(FAKE_ENV)
    scripts = installation.scripts("mock", root / "scripts")
    cloud_dir = root / "cloud"
    settings = {"storage": "crashkit", "crashkit": {"backend": backend, backend: section}}
    hosts = []
    for label in ("host-a", "host-b"):
        hf = make_instance(installation, scripts, root / label, "mockinst")
        hf.env_extra.update(env)
        hf.env_extra["OHFP_SERVICE"] = "off"  # a host's calls are its own processes: the kill is of one
        (hf.confdir / "ohfp.json").write_text(json.dumps(settings))
        hf.write_config("config", {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 3,
                                   "MOCK_CLOUD_DIR": str(cloud_dir)})  # fmt: skip
        hf.write_config("templates", {"templates": [TEMPLATE]})
        hosts.append(hf)
    site = Site(hosts[0], hosts[1], cloud_dir, backend, section)
    site.b.call("getAvailableTemplates").ok()  # the store exists: every later call takes one path
    return site


@pytest.fixture(params=["postgresql", "dynamodb"])
def site(
    request: pytest.FixtureRequest,
    crash_installation: Installation,
    postgres_server: PostgresServer,
    cloud_server: MotoServer,
    tmp_path: Path,
) -> Iterator[Site]:
    yield site_for(request.param, crash_installation, postgres_server, cloud_server, tmp_path)


def report(site: Site, what: str, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        line = site.figures.line("host A killed")
        print(f"\n{site.backend} {what}: {line}; most machines live {site.most_live} of maxNumber {MAX}")


def test_host_a_killed_at_every_point_of_request_machines(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    ask = {"template": {"templateId": "tight", "machineCount": ASK}}
    points, reply = record_points(site.a, "requestMachines", ask)
    site.hand_back(site.hosts([reply["requestId"]]))
    for point in points:
        killed = kill_at(site.a, "requestMachines", ask, point)
        site.figures.runs += 1
        site.figures.killed += 1
        site.figures.points.append(point)
        got = {killed.reply["requestId"]} if killed.reply and "requestId" in killed.reply else set()
        left = site.orphans(got)  # before any call of B's
        theirs = {*got, *filter(None, [site.fill()])}
        site.outlive(killed.at, left, theirs)
        site.hand_back(site.hosts(sorted(theirs)))
        assert site.live() == [], f"after host A was killed at {point}"
    assert site.figures.killed >= 8, site.figures
    report(site, "requestMachines", capsys)


def test_host_a_killed_at_every_point_of_request_return_machines(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    def prepared() -> list[dict[str, str]]:
        return site.hosts([site.acquire(site.a, ASK)])

    hosts = prepared()
    points, reply = record_points(site.a, "requestReturnMachines", {"machines": hosts})
    [entry] = site.b.status(reply["requestId"])  # Host Factory polls the return it got
    assert entry["status"] == "complete" and site.live() == [], entry
    for point in points:
        hosts = prepared()
        before = site.returns_recorded()
        killed = kill_at(site.a, "requestReturnMachines", {"machines": hosts}, point)
        site.figures.runs += 1
        site.figures.killed += 1
        site.figures.points.append(point)
        handed_back = site.returns_recorded() > before  # else the call failed: HF still holds them
        if killed.reply and "requestId" in killed.reply:
            site.b.status(killed.reply["requestId"])  # Host Factory polls the return it got
        mine = set() if handed_back else {m["requestId"] for m in site.live()}
        left = site.orphans(mine)  # before any call of B's
        filled = site.fill()
        theirs = mine | ({filled} if filled else set())
        site.outlive(killed.at, left, theirs)
        site.hand_back(site.hosts([filled] if filled else []) + (hosts if not handed_back else []))
        assert site.live() == [], f"after host A was killed at {point}"
    assert site.figures.killed >= 6, site.figures
    report(site, "requestReturnMachines", capsys)


def test_dynamodb_with_the_default_lease(
    crash_installation: Installation,
    postgres_server: PostgresServer,
    cloud_server: MotoServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Host A killed once its machines run and before Host Factory got the id, with
    callLeaseSeconds at its default: the orphans are gone within the bound all the same."""
    site = site_for("dynamodb", crash_installation, postgres_server, cloud_server, tmp_path, lease_sec=10.0)
    ask = {"template": {"templateId": "tight", "machineCount": ASK}}
    killed = kill_at(site.a, "requestMachines", ask, "after:ohfp_provision#1")
    site.figures.killed = 1
    site.figures.points.append("after:ohfp_provision#1")
    left = site.orphans(set())
    filled = site.fill()
    site.outlive(killed.at, left, {filled} if filled else set())
    assert site.lifetimes, "host A's machines were gone before B looked"
    site.hand_back(site.hosts([filled] if filled else []))
    report(site, "requestMachines, default lease", capsys)


def test_a_call_alive_on_host_a_is_never_touched_by_host_b(site: Site, tmp_path: Path) -> None:
    """A's call held after its cloud call for longer than a lease: B's calls leave it be."""
    pause = tmp_path / "pause"
    pause.mkdir()
    ask = {"template": {"templateId": "tight", "machineCount": ASK}}
    site.a.env_extra.update(
        {"OHFP_CRASH_PAUSE": "after:ohfp_provision#1", "OHFP_CRASH_PAUSE_DIR": str(pause)}
    )
    process = site.a.start("requestMachines", ask)
    bound = time.monotonic() + 60
    while not list(pause.glob("*.paused")):
        assert time.monotonic() < bound and process.poll() is None, "host A's call did not reach its pause"
        time.sleep(0.1)
    made = {m["machineId"] for m in site.live()}
    assert len(made) == ASK
    for _ in range(int(SHORT_LEASE_SEC * 2)):  # longer than a lease: only renewals keep it
        site.b.call("getAvailableTemplates").ok()
        time.sleep(1)
    assert {m["machineId"] for m in site.live()} == made, "B touched a live call's machines"
    (pause / "go").touch()
    reply = HostFactory.finish(process).ok()
    [entry] = site.b.status(reply["requestId"])
    assert entry["status"] == "complete", entry
    site.hand_back(site.hosts([reply["requestId"]]))
    assert site.live() == []

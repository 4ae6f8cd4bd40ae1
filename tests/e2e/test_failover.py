"""Host Factory failover end to end: two hosts, one shared store, the generated HF scripts.

Each "host" is an instance laid out as Host Factory lays it out on its own machine: the
same instance name and config, a work directory and a log directory of its own (so its
identity, :attr:`RequestRecord.owner <ohfp_core.storage.RequestRecord.owner>`, differs as it
would between hosts). Both run the one
installed virtualenv: what failover changes is the host's layout and the store they share,
not the installation, and a second build would double the session's set-up for nothing
the first does not prove. Host A takes requestMachines; host B answers getRequestStatus,
requestReturnMachines and getReturnRequests for it; A answers the return's status.

Every call here finishes and marks its request delivered before the other host looks; a
host killed mid-call is ``test_failover_crash.py``'s.

The live-migration test moves an installation from SQLite to PostgreSQL between two calls
(``ohfp storage migrate``, then the ``storage`` setting) and the next calls answer the
requests made before.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from testbeds.dynamodb import FAKE_ENV, REGION, SerialMotoServer, new_table
from testbeds.postgresql import PostgresServer
from tests.store_servers import postgres_server

from .aws_account import AMI_ID, add_network
from .conftest import MOCK_CONFIG, HostFactory, Installation, make_instance
from .test_aws_scripts import MotoServer, _attributes, aws_scripts

__all__ = ["aws_scripts", "postgres_server"]

pytestmark = [pytest.mark.e2e, pytest.mark.system]

BACKENDS = ("postgresql", "dynamodb")


@pytest.fixture(scope="module")
def cloud_server() -> Iterator[MotoServer]:
    """One moto server for AWS and DynamoDB (requests one at a time), with a VPC."""
    server = SerialMotoServer()
    try:
        yield MotoServer(server.endpoint, *add_network(server.endpoint, "10.1", "hf-failover"))
    finally:
        server.stop()


def store_settings(
    backend: str, postgres: PostgresServer, cloud: MotoServer
) -> tuple[dict[str, Any], dict[str, str]]:
    """ohfp.json and the extra environment of a host using ``backend``: PostgreSQL through
    libpq's environment, DynamoDB through its section and AWS's credential variables."""
    if backend == "postgresql":
        params = psycopg.conninfo.conninfo_to_dict(postgres.dsn)
        env = {
            name: str(params[key])
            for key, name in (
                ("host", "PGHOST"),
                ("port", "PGPORT"),
                ("dbname", "PGDATABASE"),
                ("user", "PGUSER"),
            )
            if key in params
        }
        return {"storage": "postgresql", "postgresql": {"schema": postgres.new_schema("failover")}}, env
    section = {
        "table": new_table("failover"),
        "region": REGION,
        "endpointUrl": cloud.endpoint,
        "createTable": True,
    }
    return {"storage": "dynamodb", "dynamodb": section}, dict(FAKE_ENV)


@attrs.frozen
class Hosts:
    a: HostFactory
    b: HostFactory
    advance: Callable[[int], None]


def two_hosts(
    installation: Installation,
    scripts: Path,
    root: Path,
    name: str,
    settings: dict[str, Any],
    env: dict[str, str],
) -> tuple[HostFactory, HostFactory]:
    hosts = []
    for label in ("host-a", "host-b"):
        hf = make_instance(installation, scripts, root / label, name)
        hf.env_extra.update(env)
        (hf.confdir / "ohfp.json").write_text(json.dumps(settings), encoding="utf-8")
        hosts.append(hf)
    return hosts[0], hosts[1]


@pytest.fixture(params=BACKENDS)
def mock_hosts(
    request: pytest.FixtureRequest,
    installation: Installation,
    mock_scripts: Path,
    postgres_server: PostgresServer,
    cloud_server: MotoServer,
    tmp_path: Path,
) -> Hosts:
    """Two hosts of the mock provider sharing a store and (MOCK_CLOUD_DIR) one simulated cloud."""
    settings, env = store_settings(request.param, postgres_server, cloud_server)
    a, b = two_hosts(installation, mock_scripts, tmp_path, "mockinst", settings, env)
    cloud_dir = tmp_path / "shared-cloud"
    for hf in (a, b):
        hf.write_config("config", {**MOCK_CONFIG, "MOCK_CLOUD_DIR": str(cloud_dir)})

    def advance(seconds: int) -> None:
        done = installation.run(
            installation.python, "-I", "-m", "ohfp_mock", "--workdir", cloud_dir, "advance", str(seconds)
        )
        assert done.returncode == 0, done.stdout + done.stderr

    return Hosts(a, b, advance)


@pytest.fixture(params=BACKENDS)
def aws_hosts(
    request: pytest.FixtureRequest,
    installation: Installation,
    aws_scripts: Path,
    postgres_server: PostgresServer,
    cloud_server: MotoServer,
    tmp_path: Path,
) -> Hosts:
    """Two hosts of the AWS provider (moto) sharing a store."""
    settings, env = store_settings(request.param, postgres_server, cloud_server)
    a, b = two_hosts(installation, aws_scripts, tmp_path, "awsinst", settings, env)
    for hf in (a, b):
        hf.write_aws_config(cloud_server.endpoint)
        hf.write_config(
            "templates",
            {
                "templates": [
                    {
                        "templateId": "OnDemand",
                        "maxNumber": 10,
                        "attributes": _attributes(2, 1024),
                        "providerApi": "RunInstances",
                        "vmType": "t3.micro",
                        "imageId": AMI_ID,
                        "subnetId": list(cloud_server.subnet_ids),
                        "securityGroupIds": [cloud_server.security_group_id],
                    }
                ]
            },
        )  # fmt: skip
    return Hosts(a, b, lambda seconds: time.sleep(0.2))


def poll(hf: HostFactory, request_id: str, advance: Callable[[int], None], tries: int = 15) -> dict[str, Any]:
    for _ in range(tries):
        [entry] = hf.status(request_id)
        assert entry["requestId"] == request_id
        if entry["status"] != "running":
            return entry
        advance(10)
    raise AssertionError(f"{request_id} still running after {tries} polls: {entry}")


def held(machines: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": m["name"], "machineId": m["machineId"]} for m in machines]


def failover(hosts: Hosts, template: str, max_number: int) -> None:
    a, b = hosts.a, hosts.b
    reply = a.call("requestMachines", {"template": {"templateId": template, "machineCount": 2}}).ok()
    request_id = reply["requestId"]

    done = poll(b, request_id, hosts.advance)  # host A is gone; B answers for A's request
    assert done["status"] == "complete", done
    machines = done["machines"]
    assert len(machines) == 2 and {m["result"] for m in machines} == {"succeed"}
    offered = {t["templateId"]: t for t in b.call("getAvailableTemplates").ok()["templates"]}
    assert offered[template]["availableNumber"] == max_number - 2, "B counts A's machines against maxNumber"
    assert b.call("getReturnRequests", {"machines": held(machines)}).ok()["requests"] == []

    returned = b.call("requestReturnMachines", {"machines": held(machines[:1])}).ok()
    return_id = returned["requestId"]
    finished = poll(a, return_id, hosts.advance)  # A is back and answers for B's return
    assert finished["status"] == "complete", finished
    assert [m["machineId"] for m in finished["machines"]] == [machines[0]["machineId"]]
    [kept] = a.status(request_id)
    assert kept["status"] == "complete"
    assert b.call("getReturnRequests", {"machines": held(machines[1:])}).ok()["requests"] == []
    offered = {t["templateId"]: t for t in a.call("getAvailableTemplates").ok()["templates"]}
    assert offered[template]["availableNumber"] == max_number - 1
    for hf in (a, b):
        assert not list(hf.workdir.glob("ohfp-state.sqlite3*")), (
            "the shared store holds the state, not the host"
        )
        assert (hf.logdir / f"ohfp-{hf.name}.log").is_file()


def test_mock_failover_through_a_shared_store(mock_hosts: Hosts) -> None:
    failover(mock_hosts, "mock-small", 50)


def test_aws_failover_through_a_shared_store(aws_hosts: Hosts) -> None:
    failover(aws_hosts, "OnDemand", 10)


def test_a_live_installation_moves_from_sqlite_to_postgresql_between_calls(
    mock_hf: HostFactory, postgres_server: PostgresServer
) -> None:
    running = mock_hf.call(
        "requestMachines", {"template": {"templateId": "mock-small", "machineCount": 2}}
    ).ok()
    request_id = running["requestId"]
    [entry] = mock_hf.status(request_id)
    assert entry["status"] == "running"
    settings, env = store_settings("postgresql", postgres_server, MotoServer("", (), ""))
    mock_hf.env_extra.update(env)
    (mock_hf.confdir / "ohfp.json").write_text(json.dumps({"postgresql": settings["postgresql"]}))

    done = mock_hf.installation.run(
        mock_hf.installation.ohfp,
        "storage",
        "migrate",
        "--to",
        "postgresql",
        "--provider",
        "mock",
        env=mock_hf.env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (
        report["copied"]["requests"] == 1 and report["copied"]["machines"] == 2 and report["verified"] is True
    )

    (mock_hf.confdir / "ohfp.json").write_text(json.dumps(settings))
    (mock_hf.workdir / "ohfp-state.sqlite3").rename(
        mock_hf.workdir / "old-state.sqlite3"
    )  # not read any more
    checked = mock_hf.installation.run(
        mock_hf.installation.ohfp, "storage", "check", "--provider", "mock", env=mock_hf.env()
    )
    assert checked.returncode == 0 and json.loads(checked.stdout)["backend"] == "postgresql", checked.stdout

    def advance(seconds: int) -> None:
        mock_hf.mock("advance", str(seconds))

    finished = poll(mock_hf, request_id, advance)
    assert finished["status"] == "complete" and len(finished["machines"]) == 2
    returned = mock_hf.call("requestReturnMachines", {"machines": held(finished["machines"])}).ok()
    assert poll(mock_hf, returned["requestId"], advance)["status"] == "complete"
    assert not (mock_hf.workdir / "ohfp-state.sqlite3").exists(), "SQLite is no longer used"

"""The AWS provider end to end, against a moto server: IBM's config files, the generated scripts.

The server runs in this test process (``ThreadedMotoServer`` on 127.0.0.1, a free port); the
HF calls are separate processes that reach it through ``AWS_ENDPOINT_URL`` in the instance's
``awsinstprov_config.json`` and read fake credentials from ``AWS_CREDENTIAL_FILE``, as an
IBM installation does: their environment holds nothing of AWS. moto marks instances running on
the first describe, so a request completes on the first polls; the short sleeps between polls
only let the provider's own describe calls catch up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.aws.silent_endpoint import silent_endpoint

from .aws_account import AMI_ID, REGION, add_network, client, leftovers
from .conftest import HostFactory, Installation, make_instance

pytestmark = pytest.mark.e2e


@attrs.frozen
class MotoServer:
    endpoint: str
    subnet_ids: tuple[str, ...]
    security_group_id: str

    def client(self, service: str) -> Any:
        return client(self.endpoint, service)

    def ec2(self) -> Any:
        return self.client("ec2")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    """A moto server on a free local port with a VPC: two subnets and a security group."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield MotoServer(endpoint, *add_network(endpoint, "10.0", "hf-e2e"))
    finally:
        server.stop()


@pytest.fixture(scope="session")
def aws_scripts(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installation.scripts("aws", tmp_path_factory.mktemp("aws-scripts"))


def _attributes(ncpus: int, nram: int) -> dict[str, list[str]]:
    return {"type": ["String", "X86_64"], "ncpus": ["Numeric", str(ncpus)], "nram": ["Numeric", str(nram)]}


@pytest.fixture
def aws_hf(
    installation: Installation, aws_scripts: Path, moto_server: MotoServer, tmp_path: Path
) -> HostFactory:
    """An ``awsinst`` instance with IBM-style config and templates files pointing at moto."""
    hf = make_instance(installation, aws_scripts, tmp_path, "awsinst")
    hf.write_aws_config(
        moto_server.endpoint,
        AWS_CONNECTION_TIMEOUT_MS=5000,
        AWS_REQUEST_RETRY_ATTEMPTS=1,
        AWS_INSTANCE_PENDING_TIMEOUT_SEC=180,
    )
    common = {
        "imageId": AMI_ID,
        "securityGroupIds": [moto_server.security_group_id],
        "instanceTags": "team=grid;suite=e2e",
    }
    hf.write_config(
        "templates",
        {
            "templates": [
                {
                    "templateId": "OnDemand-RunInstances",
                    "maxNumber": 10,
                    "attributes": _attributes(2, 1024),
                    "priceType": "ondemand",
                    "providerApi": "RunInstances",
                    "vmType": "t3.micro",
                    # moto launches MinCount (1) per RunInstances call, where AWS launches up to
                    # MaxCount; the handler tops a short call up on the next subnet, so with two
                    # subnets moto delivers the three machines these tests ask for.
                    "subnetId": list(moto_server.subnet_ids),
                    **common,
                },
                {
                    "templateId": "Fleet-instant",
                    "maxNumber": 10,
                    "attributes": _attributes(2, 1024),
                    "priceType": "ondemand",
                    "providerApi": "EC2Fleet",
                    "fleetType": "instant",
                    "vmTypes": {"t3.micro": 1, "t3a.micro": 1},
                    "subnetId": ",".join(moto_server.subnet_ids),
                    **common,
                },
                {
                    "templateId": "Fleet-request-spot",
                    "maxNumber": 10,
                    "attributes": _attributes(2, 1024),
                    "priceType": "spot",
                    "providerApi": "EC2Fleet",
                    "fleetType": "request",
                    "vmTypes": {"t3.micro": 1},
                    "subnetId": list(moto_server.subnet_ids),
                    **common,
                },
                {
                    "templateId": "ASG-ondemand",
                    "maxNumber": 10,
                    "attributes": _attributes(2, 4096),
                    "providerApi": "ASG",
                    "vmType": "t3.medium",
                    "subnetId": list(moto_server.subnet_ids),
                    **common,
                },
                {
                    "templateId": "Spot-fleet",
                    "maxNumber": 10,
                    "attributes": _attributes(2, 8192),
                    "priceType": "spot",
                    "providerApi": "SpotFleet",
                    "vmTypes": {"m5.large": 1},
                    "subnetId": ",".join(moto_server.subnet_ids),
                    "fleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
                    "allocationStrategy": "capacityOptimized",
                    "spotFleetRequestExpiry": 30,
                    **common,
                },
            ]
        },
    )
    return hf


def poll(hf: HostFactory, request_id: str, tries: int = 20) -> dict[str, Any]:
    for _ in range(tries):
        [entry] = hf.status(request_id)
        assert entry["requestId"] == request_id
        if entry["status"] != "running":
            return entry
        time.sleep(0.2)
    raise AssertionError(f"{request_id} still running after {tries} polls: {entry}")


def instance_states(server: MotoServer, ids: list[str]) -> dict[str, str]:
    reply = server.ec2().describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}


ALL_TEMPLATES = ["OnDemand-RunInstances", "Fleet-instant", "Fleet-request-spot", "ASG-ondemand", "Spot-fleet"]


def test_aws_lifecycle_with_a_console_termination(aws_hf: HostFactory, moto_server: MotoServer) -> None:
    """Every AWS API's template, side by side as Host Factory runs them: each call serves
    the five requests at once (one getRequestStatus, one return of a machine from each, …),
    so the lifecycle of each API costs no process of its own."""
    offered = aws_hf.call("getAvailableTemplates").ok()
    assert set(ALL_TEMPLATES) <= {t["templateId"] for t in offered["templates"]}
    before = leftovers(moto_server)

    asked = {
        template_id: aws_hf.call(
            "requestMachines", {"template": {"templateId": template_id, "machineCount": 3}}
        ).ok()["requestId"]
        for template_id in ALL_TEMPLATES
    }
    done = dict(zip(asked, poll_all(aws_hf, list(asked.values())), strict=True))
    held: dict[str, list[dict[str, Any]]] = {}
    for template_id, entry in done.items():
        assert entry["status"] == "complete", entry
        machines = entry["machines"]
        assert len(machines) == 3, (template_id, machines)
        ids = [m["machineId"] for m in machines]
        assert all(i.startswith("i-") for i in ids) and len(set(ids)) == 3
        assert {m["result"] for m in machines} == {"succeed"}
        assert all(m["name"] and m["privateIpAddress"] and isinstance(m["launchtime"], int) for m in machines)
        held[template_id] = [{"name": m["name"], "machineId": m["machineId"]} for m in machines]
    every = [ref for refs in held.values() for ref in refs]
    assert set(instance_states(moto_server, [r["machineId"] for r in every]).values()) == {"running"}
    assert aws_hf.call("getReturnRequests", {"machines": every}).ok()["requests"] == []

    firsts = [refs[0] for refs in held.values()]  # one machine of every API in one return
    returned = aws_hf.call("requestReturnMachines", {"machines": firsts}).ok()
    finished = poll(aws_hf, returned["requestId"])
    assert finished["status"] == "complete", finished
    assert sorted(m["machineId"] for m in finished["machines"]) == sorted(r["machineId"] for r in firsts)
    first_ids = [r["machineId"] for r in firsts]
    assert set(instance_states(moto_server, first_ids).values()) == {"terminated"}

    seconds = [refs[1] for refs in held.values()]
    moto_server.ec2().terminate_instances(InstanceIds=[r["machineId"] for r in seconds])  # the "console"
    for payload in ({"machines": every}, {}):
        reclaims = aws_hf.call("getReturnRequests", payload).ok()["requests"]
        assert sorted(reclaims, key=lambda r: r["machine"]) == sorted(
            ({"machine": r["name"], "gracePeriod": 0} for r in seconds), key=lambda r: r["machine"]
        ), reclaims

    rest = [ref for refs in held.values() for ref in refs[1:]]
    gone = aws_hf.call("requestReturnMachines", {"machines": rest}).ok()
    assert poll(aws_hf, gone["requestId"])["status"] == "complete"
    assert set(instance_states(moto_server, [r["machineId"] for r in every]).values()) == {"terminated"}
    assert leftovers(moto_server) == before, "the last return leaves no fleet, group or launch template"
    assert {stat_mode(p) for p in aws_hf.state_files()} == {0o600}


def poll_payload(hf: HostFactory, payload: dict[str, Any], tries: int = 20) -> list[dict[str, Any]]:
    """getRequestStatus with ``payload`` until no entry is ``running``."""
    for _ in range(tries):
        entries: list[dict[str, Any]] = hf.call("getRequestStatus", payload).ok()["requests"]
        if all(e["status"] != "running" for e in entries):
            return entries
        time.sleep(0.2)
    raise AssertionError(f"still running after {tries} polls: {entries}")


def poll_all(hf: HostFactory, request_ids: list[str]) -> list[dict[str, Any]]:
    """getRequestStatus of every id at once until none is ``running``; the entries in order."""
    entries = poll_payload(hf, {"requests": [{"requestId": i} for i in request_ids]})
    assert [e["requestId"] for e in entries] == request_ids
    return entries


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_aws_bad_template_id_is_refused_before_any_cloud_call(
    aws_hf: HostFactory, moto_server: MotoServer
) -> None:
    before = moto_server.ec2().describe_instances()["Reservations"]
    reply = aws_hf.call("requestMachines", {"template": {"templateId": "Nope", "machineCount": 1}})
    assert reply.code != 0 and "$.template.templateId" in str(reply.doc)
    assert moto_server.ec2().describe_instances()["Reservations"] == before


def test_spot_interruption_is_reported_with_its_grace(aws_hf: HostFactory, moto_server: MotoServer) -> None:
    """A spot fleet's instance interrupted by AWS shows up in getReturnRequests (grace 0 once
    it is terminated). moto has no interruption notices: the server runs in this process, so
    the test terminates the instance in moto's backend with AWS's spot state reason."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    reply = aws_hf.call("requestMachines", {"template": {"templateId": "Spot-fleet", "machineCount": 2}}).ok()
    done = poll(aws_hf, reply["requestId"])
    assert done["status"] == "complete", done
    victim, keeper = done["machines"]
    instance = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(victim["machineId"])
    instance.terminate()
    instance.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
    )
    reclaims = aws_hf.call("getReturnRequests", {}).ok()
    assert reclaims["requests"] == [{"machine": victim["name"], "gracePeriod": 0}], reclaims
    held = [{"name": m["name"], "machineId": m["machineId"]} for m in (victim, keeper)]
    returned = aws_hf.call("requestReturnMachines", {"machines": held}).ok()
    assert poll(aws_hf, returned["requestId"])["status"] == "complete"


@pytest.mark.slow
def test_request_machines_against_a_silent_endpoint_fails_within_hfs_time(aws_hf: HostFactory) -> None:
    """An AWS endpoint that accepts connections and never answers: requestMachines replies an
    IBM-style failure before Host Factory's action timeout (10 s here) is up, so core records
    the outcome; the old client settings (60 s reads, retried) took minutes."""
    timeout = 10
    config_file = aws_hf.confdir / f"{aws_hf.name}prov_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    with silent_endpoint() as endpoint:
        aws_hf.write_config("config", {**config, "AWS_ENDPOINT_URL": endpoint})
        aws_hf.env_extra["HF_PROVIDER_ACTION_TIMEOUT"] = str(timeout)
        started = time.monotonic()
        reply = aws_hf.call(
            "requestMachines", {"template": {"templateId": "OnDemand-RunInstances", "machineCount": 1}}
        )
        elapsed = time.monotonic() - started
    assert reply.code == 0 and "requestId" not in reply.doc, reply
    assert reply.doc["message"].startswith("Request VM from aws failed: "), reply.doc
    assert "no answer from AWS within" in reply.doc["message"], reply.doc
    assert elapsed < timeout + 15  # generous: process start-up on a loaded machine

"""An administrator's day with the AWS provider, end to end: ``ohfp health`` in a fresh process
against a hooked moto server (in this process), as the administrator runs it on a host laid out
as Host Factory lays it out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testbeds.hooked_moto import Forward, Response, error_response

from .aws_account import AMI_ID, Account
from .conftest import HostFactory, Installation, Reply
from .test_aws_ahead import ATTRIBUTES, instance, run_instances
from .test_aws_scripts import poll

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def admin_scripts(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installation.scripts("aws", tmp_path_factory.mktemp("admin-scripts"))


def aws_instance(
    installation: Installation,
    scripts: Path,
    account: Account,
    root: Path,
    settings: dict[str, Any] | None = None,
) -> HostFactory:
    """An ``awsinst`` instance on the account's server with one RunInstances template
    (``OnDemand``), ``settings`` as its ``ohfp.json``, each call in a process of its own."""
    hf = instance(installation, scripts, account, root, [run_instances("OnDemand", 4)])
    hf.env_extra["OHFP_SERVICE"] = "off"
    (hf.confdir / "ohfp.json").write_text(json.dumps(settings or {}), encoding="utf-8")
    return hf


def health(hf: HostFactory) -> tuple[Reply, dict[str, dict[str, Any]]]:
    """``ohfp health`` in a new process: its reply and its checks by name."""
    reply = Reply.of(hf.installation.run(hf.installation.ohfp, "health", "--provider", "aws", env=hf.env()))
    return reply, {c["name"]: c for c in reply.doc["checks"]}


# ohfp health ---------------------------------------------------------------------------------
def test_health_names_the_endpoint_region_and_where_credentials_come_from(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    hf = aws_instance(installation, admin_scripts, account, tmp_path)
    reply, checks = health(hf)
    assert reply.code == 0 and reply.doc["message"] == "healthy", reply.doc
    assert checks["aws.endpoint"]["detail"] == f"EC2 at {account.server.endpoint} (AWS_ENDPOINT_URL)"
    assert checks["aws.region"]["detail"].startswith("us-east-1 (partition aws")
    credentials = checks["aws.credentials"]["detail"]
    assert credentials.startswith("from shared-credentials-file (") and credentials.endswith(
        "; account 123456789012"
    ), credentials
    assert "testing" not in reply.stdout  # the fake keys' value
    assert "aws.interruptions" not in checks and "aws.quotas" not in checks  # neither is configured


def test_health_fails_a_region_botocore_does_not_know(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    """The region check reads botocore's endpoint data, whatever the endpoint answers."""
    hf = aws_instance(installation, admin_scripts, account, tmp_path)
    config = hf.confdir / "awsinstprov_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "AWS_REGION": "us-east-9"}))
    reply, checks = health(hf)
    assert reply.code == 4 and reply.doc["message"] == "unhealthy", reply.doc
    region = checks["aws.region"]
    assert not region["ok"] and "'us-east-9' is not in botocore" in region["detail"], region
    assert checks["aws.endpoint"]["ok"] and checks["aws.config"]["ok"]


def test_health_fails_a_deleted_interruption_queue(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    sqs = account.client("sqs")
    queue = sqs.create_queue(QueueName="admin-health")["QueueUrl"]
    hf = aws_instance(
        installation, admin_scripts, account, tmp_path, {"aws": {"events": {"queueUrl": queue}}}
    )
    reply, checks = health(hf)
    assert reply.code == 0 and checks["aws.interruptions"]["ok"], reply.doc
    assert checks["aws.interruptions"]["detail"] == f"{queue}: readable, about 0 messages waiting"

    sqs.delete_queue(QueueUrl=queue)
    reply, checks = health(hf)
    assert reply.code == 4 and reply.doc["message"] == "unhealthy", reply.doc
    failed = checks["aws.interruptions"]
    assert not failed["ok"] and failed["detail"].startswith("GetQueueAttributes: "), failed
    assert [name for name, check in checks.items() if not check["ok"]] == ["aws.interruptions"]


def test_health_reads_the_quotas_when_they_are_enabled(
    installation: Installation, admin_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """moto has no EC2 quotas in Service Quotas: the hook answers GetServiceQuota as AWS does,
    then refuses it, as AWS does to a role without servicequotas:GetServiceQuota."""
    answer: dict[str, Any] = {"Quota": {"QuotaName": "Running On-Demand Standard instances", "Value": 64.0}}
    refuse = False

    def quotas(api: str, forward: Any) -> Any:
        if api != "servicequotas:GetServiceQuota":
            return forward()
        if refuse:
            body = json.dumps({"__type": "AccessDeniedException", "message": "not allowed"}).encode()
            return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1")], body
        return "200 OK", [("Content-Type", "application/x-amz-json-1.1")], json.dumps(answer).encode()

    hooked.server.app.hook = quotas
    hf = aws_instance(installation, admin_scripts, hooked, tmp_path, {"aws": {"quotas": {"enabled": True}}})
    reply, checks = health(hf)
    assert reply.code == 0, reply.doc
    assert checks["aws.quotas"]["detail"] == "Running On-Demand Standard instances: 64 vCPUs"
    refuse = True
    reply, checks = health(hf)
    assert reply.code == 4 and not checks["aws.quotas"]["ok"], reply.doc
    assert "AccessDeniedException" in checks["aws.quotas"]["detail"]


def test_health_fails_an_unreachable_store(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    unreachable = {
        "storage": "postgresql",
        "postgresql": {"dsn": "host=127.0.0.1 port=9 dbname=ohfp connect_timeout=5"},
    }
    hf = aws_instance(installation, admin_scripts, account, tmp_path, unreachable)
    reply, checks = health(hf)
    assert reply.code == 4 and reply.doc["message"] == "unhealthy", reply.doc
    state = checks["ohfp.state"]
    assert not state["ok"] and "127.0.0.1" in state["detail"], state
    assert checks["aws.credentials"]["ok"]  # the provider's checks still ran


# masking -------------------------------------------------------------------------------------
KEY_ID = "OHFPKEYID0000000042"  # not shaped like an AWS key id: only the credential chain knows it
SECRET = "ohfp-secret-0123456789abcdef"
TOKEN = "ohfp-session-token-FwoGZXIvYXdzE0123"


def test_credentials_from_a_shared_file_echoed_by_the_endpoint_are_masked(
    installation: Installation, admin_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """The credentials come from the shared-credentials file (the calls' environment holds
    nothing of AWS); the endpoint quotes them back in its errors, as a misbehaving proxy may.
    They reach neither the replies, the log nor the state store."""
    hf = aws_instance(installation, admin_scripts, hooked, tmp_path)
    (hf.confdir / "credentials").write_text(
        f"[default]\naws_access_key_id = {KEY_ID}\n"
        f"aws_secret_access_key = {SECRET}\naws_session_token = {TOKEN}\n"
    )
    echoed = f"The security token {TOKEN} of {KEY_ID} (secret {SECRET}) is invalid"
    refused: set[str] = set()

    def echo(api: str, forward: Forward) -> Response:
        if api in refused:
            return error_response("AuthFailure", echoed)
        return forward()

    hooked.server.app.hook = echo
    asked = hf.call("requestMachines", {"template": {"templateId": "OnDemand", "machineCount": 1}}).ok()
    refused.add("ec2:DescribeInstances")
    polled = hf.run("getRequestStatus", {"requests": [{"requestId": asked["requestId"]}]})
    refused.add("ec2:RunInstances")
    failed = hf.run("requestMachines", {"template": {"templateId": "OnDemand", "machineCount": 1}})

    assert "invalid" in failed.stdout and "AuthFailure" in failed.stdout, failed.stdout
    log = (hf.logdir / "ohfp-awsinst.log").read_text()
    assert "AuthFailure" in log
    state = b"".join(path.read_bytes() for path in hf.state_files())
    assert b"***" in state, "the echoed error reached the store, masked"
    for value in (KEY_ID, SECRET, TOKEN):
        for where, text in (
            ("reply", polled.stdout + failed.stdout),
            ("stderr", polled.stderr + failed.stderr),
        ):
            assert value not in text, (where, text)
        assert value not in log, "the log"
        assert value.encode() not in state, "the state store"
    hooked.server.app.hook = None
    give_back(hf, asked["requestId"])


def give_back(hf: HostFactory, request_id: str) -> None:
    """Return the machines of ``request_id`` (once the endpoint answers again)."""
    [entry] = hf.status(request_id)
    held = [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]
    if held:
        hf.call("requestReturnMachines", {"machines": held}).ok()


# the log tells the whole story ---------------------------------------------------------------
def lines_with(log: str, needle: str) -> list[dict[str, Any]]:
    """The log's lines (one JSON object each) that mention ``needle``."""
    return [json.loads(line) for line in log.splitlines() if needle in line]


def test_the_log_follows_an_instance_and_a_fleet_through_their_lives(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    """requestMachines → getRequestStatus until complete → requestReturnMachines →
    getReturnRequests and getRequestStatus of the return, through the generated scripts; then
    the log file, grepped for one instance id, shows its request, launch, readiness and
    return, and grepped for the fleet id, its creation and deletion."""
    hf = aws_instance(installation, admin_scripts, account, tmp_path)
    fleet_template = {
        "templateId": "Fleet",
        "maxNumber": 4,
        "attributes": ATTRIBUTES,
        "providerApi": "EC2Fleet",
        "fleetType": "request",
        "vmTypes": {"t3.micro": 1},
        "imageId": AMI_ID,
        "securityGroupIds": [account.security_group_id],
        "subnetId": list(account.subnet_ids),
    }
    templates = json.loads((hf.confdir / "awsinstprov_templates.json").read_text())
    hf.write_config("templates", {"templates": [*templates["templates"], fleet_template]})
    held: dict[str, list[dict[str, str]]] = {}
    for template_id in ("OnDemand", "Fleet"):
        asked = hf.call("requestMachines", {"template": {"templateId": template_id, "machineCount": 1}}).ok()
        done = poll(hf, asked["requestId"])
        assert done["status"] == "complete", done
        held[asked["requestId"]] = [
            {"name": m["name"], "machineId": m["machineId"]} for m in done["machines"]
        ]
    machines = [m for refs in held.values() for m in refs]
    assert hf.call("getReturnRequests", {"machines": machines}).ok()["requests"] == []
    returned = hf.call("requestReturnMachines", {"machines": machines}).ok()
    assert poll(hf, returned["requestId"])["status"] == "complete"
    log = (hf.logdir / "ohfp-awsinst.log").read_text()

    (run_request, fleet_request) = held
    instance_id = held[run_request][0]["machineId"]
    about = lines_with(log, instance_id)
    events = [line["event"] for line in about]
    for event in (
        "instances launched",
        "request submitted",
        "machine ready",
        "return recorded",
        "machine returned",
    ):
        assert event in events, (event, events)
    launched = next(line for line in about if line["event"] == "instances launched")
    assert launched["request_id"] == run_request and launched["template_id"] == "OnDemand", launched
    ready = next(line for line in about if line["event"] == "machine ready")
    assert ready["request_id"] == run_request and ready["name"] == held[run_request][0]["name"], ready
    assert (
        next(line for line in about if line["event"] == "return recorded")["request_id"]
        == returned["requestId"]
    )

    created = [
        line for line in lines_with(log, "cloud resource created") if line["request_id"] == fleet_request
    ]
    fleet = next(line for line in created if line["kind"] == "EC2 fleet")
    assert fleet["template_id"] == "Fleet" and fleet["resource_id"].startswith("fleet-"), fleet
    template = next(line for line in created if line["kind"] == "launch template")
    assert fleet["launch_template_id"] == template["resource_id"]
    for resource in (fleet, template):
        ends = [
            line
            for line in lines_with(log, resource["resource_id"])
            if line["event"] == "cloud resource deleted"
        ]
        assert len(ends) == 1, (resource, ends)
        assert ends[0]["made_for"] == fleet_request and ends[0]["request_id"] == returned["requestId"], ends
    fleet_machine = held[fleet_request][0]["machineId"]
    assert {"machine ready", "machine returned"} <= {line["event"] for line in lines_with(log, fleet_machine)}


# errors point at the file and the fix --------------------------------------------------------
def test_templates_validate_lists_every_problem_in_its_file_with_the_closest_key(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    hf = aws_instance(installation, admin_scripts, account, tmp_path)
    templates = json.loads((hf.confdir / "awsinstprov_templates.json").read_text())["templates"]
    (good,) = templates
    typos = {**{k: v for k, v in good.items() if k != "vmType"}, "vmTyp": "t3.micro", "priceType": "cheap"}
    second = {**good, "templateId": "Second", "instanceTag": "team=grid"}
    templates_file = hf.write_config("templates", {"templates": [typos, second]})
    reply = Reply.of(
        hf.installation.run(hf.installation.ohfp, "templates", "validate", "--provider", "aws", env=hf.env())
    )
    assert reply.code == 3, reply.doc
    assert sorted(reply.doc["errors"]) == sorted(
        [
            f"{templates_file}: $.templates[OnDemand].vmTyp: unknown template field; did you mean 'vmType'?",
            f"{templates_file}: $.templates[OnDemand].priceType: must be one of ondemand, spot,"
            ' heterogeneous, got "cheap"',
            f"{templates_file}: $.templates[Second].instanceTag: unknown template field;"
            " did you mean 'instanceTags'?",
        ]
    )

    config_file = hf.confdir / "awsinstprov_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(
        json.dumps({**config, "AWS_REQUEST_RETRY_ATTEMPS": 1, "AWS_CONNECTION_TIMEOUT_MS": 0})
    )
    (hf.confdir / "ohfp.json").write_text(json.dumps({"aws": {"handlers": {"EC2Flet": {"enabled": False}}}}))
    reply = Reply.of(
        hf.installation.run(hf.installation.ohfp, "templates", "validate", "--provider", "aws", env=hf.env())
    )
    assert reply.code == 3, reply.doc
    assert sorted(reply.doc["errors"]) == sorted(
        [
            f"{config_file}: $.AWS_REQUEST_RETRY_ATTEMPS: unknown key;"
            " did you mean 'AWS_REQUEST_RETRY_ATTEMPTS'?",
            f"{config_file}: $.AWS_CONNECTION_TIMEOUT_MS: must be 1..600000, got 0",
            f"{hf.confdir / 'ohfp.json'}: $.aws.handlers.EC2Flet: unknown key; did you mean 'EC2Fleet'?",
        ]
    )


def test_templates_validate_online_names_every_missing_resource_by_template_and_field(
    installation: Installation, admin_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """``ohfp templates validate --online`` in a fresh process against the hooked moto server:
    every missing image, subnet, security group and launch template named by template and
    field, in one batched describe per kind."""
    hf = aws_instance(installation, admin_scripts, hooked, tmp_path)
    (good,) = json.loads((hf.confdir / "awsinstprov_templates.json").read_text())["templates"]
    ec2 = hooked.client("ec2")
    launch_template = ec2.create_launch_template(
        LaunchTemplateName="admin-online", LaunchTemplateData={"ImageId": AMI_ID}
    )["LaunchTemplate"]["LaunchTemplateId"]
    gone_group = ec2.create_security_group(
        GroupName="admin-gone", Description="deleted", VpcId=_vpc_of(ec2, hooked.subnet_ids[0])
    )["GroupId"]
    ec2.delete_security_group(GroupId=gone_group)
    broken = {
        **good,
        "templateId": "Broken",
        "imageId": "ami-00000000000000bad",
        "subnetId": [hooked.subnet_ids[0], "subnet-00000000000000bad"],
        "securityGroupIds": [hooked.security_group_id, gone_group],
    }
    by_launch_template = {
        key: value for key, value in good.items() if key not in ("imageId", "securityGroupIds")
    } | {"templateId": "FromLaunchTemplate", "launchTemplateId": launch_template}
    missing_launch_template = {
        **by_launch_template,
        "templateId": "NoLaunchTemplate",
        "launchTemplateId": "lt-00000000000000bad",
    }
    hf.write_config("templates", {"templates": [good, broken, by_launch_template, missing_launch_template]})
    seen: list[str] = []

    def record(api: str, forward: Forward) -> Response:
        """Counts the calls; answers DescribeLaunchTemplates of a missing id as AWS does
        (moto leaves the id out instead)."""
        seen.append(api)
        asked = [
            v
            for k, values in hooked.server.app.params.items()
            if k.startswith("LaunchTemplateId.")
            for v in values
        ]
        if api == "ec2:DescribeLaunchTemplates" and "lt-00000000000000bad" in asked:
            return error_response(
                "InvalidLaunchTemplateId.NotFound", "The specified launch template does not exist"
            )
        return forward()

    hooked.server.app.hook = record
    run = hf.installation.run(
        hf.installation.ohfp, "templates", "validate", "--provider", "aws", "--online", env=hf.env()
    )
    reply = Reply.of(run)
    assert reply.code == 3, reply.doc
    templates_file = hf.confdir / "awsinstprov_templates.json"
    assert sorted(reply.doc["errors"]) == sorted(
        f"{templates_file}: $.templates[{where}: {what} does not exist in us-east-1 ({call})"
        for where, what, call in (
            ("Broken].imageId", "image ami-00000000000000bad", "DescribeImages"),
            ("Broken].subnetId", "subnet subnet-00000000000000bad", "DescribeSubnets"),
            ("Broken].securityGroupIds", f"security group {gone_group}", "DescribeSecurityGroups"),
            (
                "NoLaunchTemplate].launchTemplateId",
                "launch template lt-00000000000000bad",
                "DescribeLaunchTemplates",
            ),
        )
    ), reply.doc
    describes = [api for api in seen if ":Describe" in api]
    assert sorted(set(describes)) == [
        "ec2:DescribeImages",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
    ]
    assert describes.count("ec2:DescribeImages") == describes.count("ec2:DescribeSubnets") == 1
    # one call for both launch templates; one more for each, only because one was missing
    assert describes.count("ec2:DescribeLaunchTemplates") == 3

    hf.write_config("templates", {"templates": [good, by_launch_template]})
    fine = Reply.of(
        hf.installation.run(
            hf.installation.ohfp, "templates", "validate", "--provider", "aws", "--online", env=hf.env()
        )
    )
    assert fine.code == 0 and fine.doc["templates"] == ["FromLaunchTemplate", "OnDemand"], fine.doc


def _vpc_of(ec2: Any, subnet_id: str) -> str:
    return str(ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"])


def test_debug_logs_each_store_transaction_and_info_does_not(
    installation: Installation, admin_scripts: Path, account: Account, tmp_path: Path
) -> None:
    """OHFP_LOG_LEVEL=DEBUG: one ``store transaction`` line per commit (backend, duration,
    rows written), beside a line per AWS call and per hook call; INFO has none of them."""
    logs, asked_at = {}, {}
    for level in ("DEBUG", "INFO"):
        hf = aws_instance(installation, admin_scripts, account, tmp_path / level)
        hf.env_extra["OHFP_LOG_LEVEL"] = level
        asked = hf.call("requestMachines", {"template": {"templateId": "OnDemand", "machineCount": 1}}).ok()
        asked_at[level] = asked["requestId"]
        done = poll(hf, asked["requestId"])
        held = [{"name": m["name"], "machineId": m["machineId"]} for m in done["machines"]]
        hf.call("requestReturnMachines", {"machines": held}).ok()
        logs[level] = [json.loads(line) for line in (hf.logdir / "ohfp-awsinst.log").read_text().splitlines()]
    commits = [line for line in logs["DEBUG"] if line["event"] == "store transaction"]
    assert commits and all(line["backend"] == "sqlite" and line["duration_ms"] >= 0 for line in commits)
    submitted = next(
        line
        for line in commits
        if line["operation"] == "requestMachines" and line["requests"] == 1 and line["machines"] == 1
    )
    assert submitted["level"] == "debug", submitted
    returned = [line for line in commits if line["operation"] == "requestReturnMachines"]
    assert any(line["requests"] == 1 and line["machines"] == 1 for line in returned), returned
    assert {"aws call", "hook call"} <= {line["event"] for line in logs["DEBUG"]}
    launch = next(line for line in logs["DEBUG"] if line.get("aws_operation") == "RunInstances")
    assert launch["operation"] == "requestMachines" and launch["request_id"] == asked_at["DEBUG"], launch
    assert not {"store transaction", "aws call", "hook call"} & {line["event"] for line in logs["INFO"]}


# an HTML error page ----------------------------------------------------------------------------
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center>\n<script>var tracking = 'a very long script';</script>"
    b"</body></html>\n"
)


def html_error(status: str) -> Response:
    return status, [("Content-Type", "text/html"), ("Content-Length", str(len(HTML_PAGE)))], HTML_PAGE


def test_an_html_error_page_from_a_proxy_is_a_short_retryable_error(
    installation: Installation, admin_scripts: Path, hooked: Account, tmp_path: Path
) -> None:
    """A proxy in front of the endpoint answers with its own HTML page (502, then 503): the
    call fails with the status and the page's first line of text, no HTML and no traceback,
    and the request is tried again on the next poll."""
    hf = aws_instance(installation, admin_scripts, hooked, tmp_path)
    failing: dict[str, str] = {"ec2:RunInstances": "502 Bad Gateway"}

    def proxy(api: str, forward: Forward) -> Response:
        return html_error(failing[api]) if api in failing else forward()

    hooked.server.app.hook = proxy
    refused = hf.run("requestMachines", {"template": {"templateId": "OnDemand", "machineCount": 1}})
    reply = Reply.of(refused)
    assert reply.code == 0 and "requestId" not in reply.doc, reply.doc
    message = reply.doc["message"]
    assert "RunInstances: HTTP 502 from the endpoint (not an AWS answer): 502 Bad Gateway" in message, message
    assert "Traceback" not in refused.stderr, refused.stderr

    failing.clear()
    asked = hf.call("requestMachines", {"template": {"templateId": "OnDemand", "machineCount": 1}}).ok()
    failing["ec2:DescribeInstances"] = "503 Service Unavailable"
    [entry] = hf.status(asked["requestId"])
    assert entry["status"] == "running", entry  # retryable: asked again on the next poll
    failing.clear()
    assert poll(hf, asked["requestId"])["status"] == "complete"
    log = (hf.logdir / "ohfp-awsinst.log").read_text()
    assert "HTTP 503 from the endpoint" in log
    for text in (refused.stdout, refused.stderr, log):
        assert "<html" not in text.lower() and "doctype" not in text.lower() and "tracking" not in text
    hooked.server.app.hook = None
    give_back(hf, asked["requestId"])

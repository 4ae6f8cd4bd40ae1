"""The interruption queue: ``ohfp-aws events setup``/``teardown``, draining it on
getReturnRequests (and only there), and the grace periods its notices give.

moto runs EventBridge → SQS as AWS does for events put on the default bus: rules match, the
queue target receives the event. moto never emits EC2's own events, so each test puts the
event AWS would send (source ``aws.ec2``, AWS's detail type and detail) with PutEvents; moto
does not enforce the queue policy (the policy document is checked as written).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ohfp_aws.cli import main
from ohfp_aws.interruptions import drain, event_rules, notices, reclaims
from ohfp_aws.provider import AwsProvider, make_provider
from ohfp_core.models import MachineRef, Template
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.values import Values, recorded

from .aws_support import acquire_request, count_calls, hooks_for
from .conftest import REGION, Network, make_context, make_template

WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE = "EC2 Instance State-change Notification"


@pytest.fixture
def queue(moto_aws: None) -> Iterator[str]:
    """The queue and rules ``ohfp-aws events setup`` makes, in moto."""
    from ohfp_aws.access.services import Services
    from ohfp_aws.access.session import AwsClients
    from ohfp_aws.settings import load_config

    made = event_rules.setup(Services(AwsClients(load_config({"AWS_REGION": REGION}))), "ohfp")
    yield str(made["queueUrl"])


def put_event(detail_type: str, detail: dict[str, Any], at: float | None = None) -> None:
    """What EC2 puts on the default bus (moto routes it through the rules)."""
    entry: Any = {"Source": "aws.ec2", "DetailType": detail_type, "Detail": json.dumps(detail)}
    if at is not None:
        entry["Time"] = at
    reply = boto3.client("events", region_name=REGION).put_events(Entries=[entry])
    assert reply["FailedEntryCount"] == 0


def waiting(queue_url: str) -> int:
    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def provider_with(tmp_path: Path, queue_url: str, **events: Any) -> AwsProvider:
    settings = {"handlers": {"order": ["RunInstances"]}, "events": {"queueUrl": queue_url, **events}}
    return make_provider(make_context(tmp_path, None, settings))


def launch(provider: AwsProvider, network: Network, count: int = 2) -> tuple[Template, list[str], Any]:
    template = make_template(network, priceType="spot")
    provisioned = hooks_for(provider).provision("req-ev", template, count)
    request = acquire_request("req-ev", template, count, provisioned)
    return template, list(provisioned.handle["instance_ids"]), request


# -- the event parsed ---------------------------------------------------------------------------


def body(detail_type: str, detail: dict[str, Any], source: str = "aws.ec2") -> str:
    return json.dumps(
        {"source": source, "detail-type": detail_type, "time": "2026-01-01T00:00:00Z", "detail": detail}
    )


def test_only_ec2_events_that_need_action_are_notices() -> None:
    warning = notices.parse(body(WARNING, {"instance-id": "i-0a", "instance-action": "terminate"}))
    assert warning == notices.Notice(
        instance_id="i-0a", kind="interruption", at=1767225600.0, detail="terminate"
    )
    assert notices.parse(body(REBALANCE, {"instance-id": "i-0a"})) is not None
    assert notices.parse(body(STATE, {"instance-id": "i-0a", "state": "stopping"})) is not None
    assert notices.parse(body(STATE, {"instance-id": "i-0a", "state": "running"})) is None
    assert notices.parse(body(WARNING, {"instance-id": "i-0a"}, source="my.app")) is None
    assert notices.parse(body("EC2 Fleet State Change", {"instance-id": "i-0a"})) is None
    assert notices.parse(body(WARNING, {"instance-action": "stop"})) is None
    assert notices.parse("not json") is None


def test_grace_counts_down_to_the_instance_action_time() -> None:
    warning = notices.Notice(instance_id="i-0a", kind="interruption", at=1000.0, detail="stop")
    assert notices.signal(warning, 1030.0, 900.0, None) == notices.Signal(
        grace_period=90, reason="spot interruption warning (stop)"
    )
    assert notices.signal(warning, 1200.0, 900.0, None).grace_period == 0  # type: ignore[union-attr]
    assert notices.signal(warning, 1030.0, 1001.0, None) is None  # launched again since: stale
    rebalance = notices.Notice(instance_id="i-0a", kind="rebalance", at=1000.0)
    assert notices.signal(rebalance, 1030.0, None, None) is None  # not reported
    assert notices.signal(rebalance, 1030.0, None, 300).grace_period == 270  # type: ignore[union-attr]


def test_the_newest_notice_wins_and_duplicates_change_nothing() -> None:
    from ohfp_core.values import Values

    values = Values("aws")
    newer = notices.Notice(instance_id="i-0a", kind="state", at=200.0, detail="terminated")
    older = notices.Notice(instance_id="i-0a", kind="state", at=100.0, detail="stopping")
    assert notices.keep(values, [newer]) == 1
    assert notices.keep(values, [older, newer]) == 1  # the same notice again: written, unchanged
    assert notices.keep(values, [older]) == 0
    assert notices.kept_for(values, ["i-0a", "i-0b"]) == {"i-0a": [newer]}


# -- setup and teardown -------------------------------------------------------------------------


def test_setup_makes_queue_rules_and_policy_and_events_reach_the_queue(queue: str) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "300"
    rules = {r["Name"]: r for r in events.list_rules(NamePrefix="ohfp-")["Rules"]}
    assert set(rules) == {"ohfp-spot-interruption", "ohfp-rebalance", "ohfp-state-change"}
    policy = json.loads(attributes["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == attributes["QueueArn"]
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        r["Arn"] for r in rules.values()
    )
    for name in rules:
        (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert target["Arn"] == attributes["QueueArn"]
    put_event(WARNING, {"instance-id": "i-0a", "instance-action": "terminate"})
    put_event(STATE, {"instance-id": "i-0a", "state": "pending"})  # not a state the rule passes
    assert waiting(queue) == 1


def test_setup_is_idempotent_and_teardown_removes_everything(
    moto_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert main(["events", "setup", "--name", "hf", "--region", REGION]) == 0
        made = json.loads(capsys.readouterr().out)
    assert made["settings"] == {"aws": {"events": {"queueUrl": made["queueUrl"]}}}
    assert [r["name"] for r in made["rules"]] == ["hf-spot-interruption", "hf-rebalance", "hf-state-change"]
    assert len(boto3.client("sqs", region_name=REGION).list_queues()["QueueUrls"]) == 1
    assert main(["events", "teardown", "--name", "hf", "--region", REGION]) == 0
    removed = json.loads(capsys.readouterr().out)
    assert removed["rules"] == [r["name"] for r in made["rules"]] and removed["queueUrl"] == made["queueUrl"]
    assert boto3.client("events", region_name=REGION).list_rules(NamePrefix="hf-")["Rules"] == []
    assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []
    assert main(["events", "teardown", "--name", "hf", "--region", REGION]) == 0  # nothing left: fine
    assert json.loads(capsys.readouterr().out)["rules"] == []


def test_setup_and_teardown_call_only_the_actions_the_docs_name(
    moto_aws: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.client import BaseClient

    called: set[str] = set()
    real = BaseClient._make_api_call  # type: ignore[attr-defined]  # private: botocore-stubs omit it

    def record(client: BaseClient, operation: str, params: Any) -> Any:
        called.add(f"{client.meta.service_model.signing_name}:{operation}")
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    for command in ("setup", "setup", "teardown", "teardown"):
        assert main(["events", command, "--name", "hf", "--region", REGION]) == 0
    capsys.readouterr()
    assert {"sqs:CreateQueue", "events:PutRule", "events:DeleteRule", "sqs:DeleteQueue"} <= called
    assert called <= set(event_rules.SETUP_ACTIONS), called - set(event_rules.SETUP_ACTIONS)
    documented = (Path(__file__).parents[2] / "docs" / "aws.md").read_text(encoding="utf-8")
    assert [a for a in event_rules.SETUP_ACTIONS if f"`{a}`" not in documented] == []


def test_a_bad_config_file_is_reported_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "awsprov_config.json"
    config.write_text(json.dumps({"AWS_REGION": REGION, "AWS_REQUEST_RETRY_ATTEMPTS": 99}))
    assert main(["events", "setup", "--config", str(config)]) == 3
    assert "AWS_REQUEST_RETRY_ATTEMPTS" in json.loads(capsys.readouterr().out)["message"]


# -- draining -----------------------------------------------------------------------------------


def test_reclaims_drain_the_queue_and_report_the_real_grace(
    queue: str, network: Network, tmp_path: Path
) -> None:
    """getReturnRequests drains the queue and reports; getRequestStatus never reads it."""
    provider = provider_with(tmp_path, queue)
    calls = count_calls(provider)
    hooks = hooks_for(provider)
    _, (victim, keeper), request = launch(provider, network)
    stranger = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId=network.ami_id, MinCount=1, MaxCount=1, InstanceType="t3.micro"
    )["Instances"][0]["InstanceId"]
    warned_at = float(int(time.time()) + 1)  # events carry whole seconds
    provider.aws.clock = lambda: warned_at + 30  # getReturnRequests comes 30 s after the warning
    put_event(WARNING, {"instance-id": victim, "instance-action": "terminate"}, at=warned_at)
    put_event(WARNING, {"instance-id": stranger, "instance-action": "terminate"}, at=warned_at)
    put_event(REBALANCE, {"instance-id": keeper}, at=warned_at)  # not reported by default
    hooks.machine_status([request])
    assert waiting(queue) == 3 and not [call for call in calls if call.startswith("sqs:")]
    reclaims = hooks.reclaimed_machines([MachineRef(name=i, machine_id=i) for i in (victim, keeper)])
    assert waiting(queue) == 0
    assert set(notices.kept_for(provider.aws.values, [victim, keeper, stranger])) == {victim}
    (reclaim,) = reclaims
    assert reclaim.machine_id == victim and reclaim.reason == "spot interruption warning (terminate)"
    assert reclaim.grace_period == 90


def test_held_instances_of_finished_requests_are_matched_by_tag(
    queue: str, network: Network, tmp_path: Path
) -> None:
    provider = provider_with(tmp_path, queue)
    _, (victim, _), _ = launch(provider, network)
    put_event(STATE, {"instance-id": victim, "state": "stopping"})
    assert drain.drain(provider.aws, []) == drain.Drained(received=1, kept=1, acknowledged=1, batches=1)
    (reclaim,) = hooks_for(provider).reclaimed_machines([MachineRef(name="h", machine_id=victim)])
    assert (reclaim.grace_period, reclaim.reason) == (0, "stopping (EC2 state-change event)")


def test_rebalance_recommendations_are_reported_when_asked(
    queue: str, network: Network, tmp_path: Path
) -> None:
    provider = provider_with(tmp_path, queue, reportRebalance=True, rebalanceGracePeriod=600)
    _, (victim, _), _ = launch(provider, network)
    recommended_at = float(int(time.time()) + 1)
    provider.aws.clock = lambda: recommended_at + 100
    put_event(REBALANCE, {"instance-id": victim}, at=recommended_at)
    (reclaim,) = hooks_for(provider).reclaimed_machines([MachineRef(name="h", machine_id=victim)])
    assert (reclaim.reason, reclaim.grace_period) == ("rebalance recommendation", 500)


def test_nothing_is_lost_when_a_call_dies_mid_drain(
    queue: str, network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = provider_with(tmp_path, queue)
    _, (victim, _), _ = launch(provider, network)
    put_event(WARNING, {"instance-id": victim, "instance-action": "stop"})
    monkeypatch.setattr(drain, "VISIBILITY_SEC", 0)  # what was received comes back at once

    class Died(BaseException):
        pass

    def die(*args: Any, **kwargs: Any) -> None:
        raise Died

    with monkeypatch.context() as patch:  # dies before the notice is stored
        patch.setattr(notices, "keep", die)
        with pytest.raises(Died):
            drain.drain(provider.aws, [victim])
    assert waiting(queue) == 1 and notices.kept_for(provider.aws.values, [victim]) == {}
    with monkeypatch.context() as patch:  # dies after storing, before deleting
        patch.setattr(drain, "_delete", die)
        with pytest.raises(Died):
            drain.drain(provider.aws, [victim])
    assert waiting(queue) == 1 and set(notices.kept_for(provider.aws.values, [victim])) == {victim}
    assert drain.drain(provider.aws, [victim]) == drain.Drained(received=1, kept=1, acknowledged=1, batches=1)
    assert waiting(queue) == 0
    (kept,) = notices.kept_for(provider.aws.values, [victim])[victim]
    assert kept.detail == "stop"


def test_messages_go_only_once_their_notices_are_stored_with_the_call(
    queue: str, network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound to the state store (as core binds it), the notices a drain keeps are stored in
    the transaction that records the call's outcome, and their messages are deleted from the
    queue only after that commit; a call that fails first deletes nothing."""
    provider = provider_with(tmp_path, queue)
    _, (victim, _), _ = launch(provider, network)
    monkeypatch.setattr(drain, "VISIBILITY_SEC", 0)  # a message not deleted comes back at once
    store = SQLiteStorage(tmp_path / "state")
    values = provider.aws.values
    values.bind(store, "aws")
    failover_host = Values("aws")
    failover_host.bind(SQLiteStorage(tmp_path / "state"))
    put_event(WARNING, {"instance-id": victim, "instance-action": "terminate"})

    assert drain.drain(provider.aws, [victim]).acknowledged == 1
    assert waiting(queue) == 1  # received, not deleted
    assert set(notices.kept_for(values, [victim])) == {victim}  # the call reads its own notice
    assert notices.kept_for(failover_host, [victim]) == {}
    values.discard()  # the call fails before its outcome is stored
    assert waiting(queue) == 1 and notices.kept_for(failover_host, [victim]) == {}

    assert drain.drain(provider.aws, [victim]).received == 1  # it came back
    with recorded(store, values):
        assert waiting(queue) == 1  # nothing is deleted inside the transaction
    assert set(notices.kept_for(failover_host, [victim])) == {victim}
    assert waiting(queue) == 0  # deleted after the commit


def test_a_drain_reads_at_most_max_batches(queue: str, network: Network, tmp_path: Path) -> None:
    provider = provider_with(tmp_path, queue, maxBatches=2)
    for n in range(25):
        put_event(STATE, {"instance-id": f"i-{n:017x}", "state": "terminated"})
    done = drain.drain(provider.aws, [])
    assert (done.batches, done.received, done.kept, done.acknowledged) == (2, 20, 0, 20)
    assert waiting(queue) == 5


def test_a_drain_stops_when_half_of_the_calls_time_is_spent(queue: str, tmp_path: Path) -> None:
    from ohfp_aws.access.session import Budget

    provider = provider_with(tmp_path, queue)
    put_event(STATE, {"instance-id": "i-0000000000000000a", "state": "terminated"})
    clock = [0.0]
    provider.clients.budget = Budget(20.0, clock=lambda: clock[0])
    clock[0] = 8.0  # 15 s for AWS, 7 left: less than half
    assert drain.drain(provider.aws, []) == drain.Drained()
    assert waiting(queue) == 1


def test_a_queue_that_cannot_be_read_leaves_polling_working(network: Network, tmp_path: Path) -> None:
    missing = f"https://sqs.{REGION}.amazonaws.com/123456789012/nope"
    provider = provider_with(tmp_path, missing)
    _, ids, request = launch(provider, network)
    snapshot = hooks_for(provider).machine_status([request])["req-ev"]
    assert len(snapshot.machines) == 2
    assert hooks_for(provider).reclaimed_machines([MachineRef(name=i, machine_id=i) for i in ids]) == []


def test_without_a_queue_nothing_is_drained(network: Network, tmp_path: Path) -> None:
    provider = make_provider(make_context(tmp_path, None, {"handlers": {"order": ["RunInstances"]}}))
    assert drain.drain(provider.aws, []) == drain.Drained()
    assert "sqs" not in provider.clients.__dict__  # no client was even made


# -- the resident service's listener ------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_listener() -> Iterator[None]:
    """Each test starts with no listener heard (:func:`drain.listening`) and no hosts
    described in full in this process."""
    for memory in (drain._heard, reclaims._described):
        memory.clear()
    yield
    for memory in (drain._heard, reclaims._described):
        memory.clear()


def test_while_the_listener_hears_the_queue_reclaims_need_no_api_call(
    queue: str, network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a long poll that received without error, getReturnRequests answers from the
    notices the listener stored (once the process has described the hosts in full, which it
    does again every ``recheckSeconds``); once the listener's receive fails, or its last
    good receive is older than ``checkSeconds``, the call drains and describes itself again."""
    from ohfp_aws.access.sqs import Sqs
    from ohfp_core.errors import CloudError

    provider = provider_with(tmp_path, queue, checkSeconds=30, recheckSeconds=60)
    calls = count_calls(provider)
    hooks = hooks_for(provider)
    _, (victim, keeper), _ = launch(provider, network)
    hosts = [MachineRef(name=i, machine_id=i) for i in (victim, keeper)]
    assert drain.listen(provider.aws, 1).kept == 0 and drain.listening(provider.aws)
    calls.clear()
    assert hooks.reclaimed_machines(hosts) == []
    assert calls == {"ec2:DescribeInstances": 1}, "the first call describes the hosts in full"

    put_event(STATE, {"instance-id": victim, "state": "stopping"})
    assert drain.listen(provider.aws, 1).kept == 1 and waiting(queue) == 0
    calls.clear()
    (reclaim,) = hooks.reclaimed_machines(hosts)
    assert (reclaim.machine_id, reclaim.grace_period) == (victim, 0)
    assert calls == {}, "answered from the listener's notices"

    # A host terminated without a notice (no state-change rule, an event never delivered) is found
    # by the full description recheckSeconds after the last.
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[keeper])
    assert [r.machine_id for r in hooks.reclaimed_machines(hosts)] == [victim]
    assert calls == {}
    described = (provider.aws.instance_name, queue)
    reclaims._described[described] -= 61
    assert {r.machine_id for r in hooks.reclaimed_machines(hosts)} == {victim, keeper}
    assert calls == {"ec2:DescribeInstances": 1}, "described again after recheckSeconds"

    heard = (provider.aws.instance_name, queue)
    drain._heard[heard] -= 31  # the last good receive is older than checkSeconds
    assert not drain.listening(provider.aws)
    calls.clear()
    assert {r.machine_id for r in hooks.reclaimed_machines(hosts)} == {victim, keeper}
    assert calls["sqs:ReceiveMessage"] == 1 and calls["ec2:DescribeInstances"] == 1

    assert not drain.listen(provider.aws, 1).failed and drain.listening(provider.aws)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise CloudError("injected", code="AccessDenied")

    monkeypatch.setattr(Sqs, "receive", refused)
    assert drain.listen(provider.aws, 1).failed
    assert not drain.listening(provider.aws), "a listener whose receive failed does not count"
    calls.clear()
    hooks.reclaimed_machines(hosts)
    assert calls["ec2:DescribeInstances"] == 1

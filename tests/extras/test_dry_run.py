"""The dry-run plugin: while enabled, provision, terminate and cancel never reach the provider."""

from __future__ import annotations

import pytest

from ohfp_core.errors import ConfigError
from ohfp_extras.dry_run import NOT_TERMINATED, STATUS_MESSAGE
from ohfp_mock.cloud import MockCloud

from .conftest import MakeOps, request, status

DRY = {"dry-run": {"enabled": True}}


def test_requested_machines_are_not_provisioned(make_ops: MakeOps) -> None:
    ops = make_ops(DRY)
    reply = request(ops, 3)
    assert reply["requestId"].startswith("req-")
    assert reply["message"] == (
        "Dry run: 3 machines of template 'mock-small' were not requested from mock;"
        " nothing reached the cloud."
    )
    entry = status(ops, reply["requestId"])
    assert (entry["status"], entry["message"], entry["machines"]) == (
        "complete_with_error",
        STATUS_MESSAGE,
        [],
    )
    with MockCloud(ops.context.workdir) as cloud:
        assert cloud.machines() == []
    # Still so once dry run is off: the request never had anything in the cloud.
    assert status(make_ops(), reply["requestId"])["message"] == STATUS_MESSAGE


def test_returned_machines_are_not_terminated_and_stay_held(make_ops: MakeOps) -> None:
    real = make_ops()
    made = request(real, 1)["requestId"]
    [machine] = status(real, made)["machines"]
    ops = make_ops(DRY)
    returned = ops.request_return_machines(
        {"machines": [{"name": machine["name"], "machineId": machine["machineId"]}]}
    )
    entry = status(ops, returned["requestId"])
    assert entry["status"] == "complete_with_error"
    assert [(m["result"], m["message"]) for m in entry["machines"]] == [("fail", NOT_TERMINATED)]
    with MockCloud(ops.context.workdir) as cloud:
        assert [m.state(cloud.now()).value for m in cloud.machines()] == ["running"]
    held = ops.get_return_requests(
        {"machines": [{"name": machine["name"], "machineId": machine["machineId"]}]}
    )
    assert held["requests"] == []  # held again, healthy: not reclaimed


def test_cancel_is_refused_until_dry_run_is_off(make_ops: MakeOps) -> None:
    from ohfp_core.errors import CloudError
    from ohfp_core.models import CloudRequest, RequestKind

    ops = make_ops(DRY)
    with pytest.raises(CloudError, match="dry run: cancelling is not sent"):
        ops.hooks.cancel_request(CloudRequest(request_id="req-x", kind=RequestKind.ACQUIRE))
    assert make_ops().hooks.cancel_request(CloudRequest(request_id="req-x", kind=RequestKind.ACQUIRE))


def test_disabled_or_absent_changes_nothing(make_ops: MakeOps) -> None:
    for settings in ({}, {"dry-run": {"enabled": False}}):
        ops = make_ops(settings)
        reply = request(ops, 1)
        assert reply["message"] == "Request VM success from mock."
        assert status(ops, reply["requestId"])["status"] == "complete"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"enabled": "yes"}, "$.dry-run.enabled: must be true or false, got 'yes'"),
        ({"enable": True}, "$.dry-run.enable: unknown key; did you mean 'enabled'?"),
    ],
)
def test_bad_settings_name_the_key(make_ops: MakeOps, section: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_ops({"dry-run": section})
    assert raised.value.problems == (problem,)

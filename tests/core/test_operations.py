"""The five HF calls over the fake provider: contract semantics owned by core."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from ohfp_core.errors import CapacityError, ConfigError, InputError
from ohfp_core.models import MachineState, RequestKind, RequestStatus
from tests.core.conftest import Instance
from tests.core.fake_provider import template_entry


def test_available_templates_with_availability(instance: Instance) -> None:
    reply = instance.ops.get_available_templates({})
    templates = {t["templateId"]: t for t in reply["templates"]}
    assert templates["T1"]["availableNumber"] == 10
    assert "availableNumber" not in templates["T2"]  # unlimited
    assert templates["T1"]["attributes"]["ncpus"] == ["Numeric", "2"]
    instance.request(3)
    reply = instance.ops.get_available_templates({})
    assert {t["templateId"]: t for t in reply["templates"]}["T1"]["availableNumber"] == 7


def test_invalid_templates_are_left_out_naming_the_field(instance: Instance) -> None:
    entry = template_entry("T1")
    del entry["attributes"]["nram"]
    instance.write_templates([entry, template_entry("T2", badKey=1), template_entry("T3")])
    reply = instance.ops.get_available_templates({})
    assert [t["templateId"] for t in reply["templates"]] == ["T3"]
    assert "$.templates[T1].attributes.nram: mandatory attribute missing" in reply["errors"]
    assert "$.templates[T2].badKey: not allowed" in reply["errors"]
    assert "2 template(s) left out as invalid: T1, T2" in reply["message"]
    report = instance.ops.validate_templates()
    assert report["T3"] == []
    assert "$.templates[T1].attributes.nram: mandatory attribute missing" in report["T1"]
    with pytest.raises(ConfigError) as exc:
        instance.ops.request_machines({"template": {"templateId": "T2", "machineCount": 1}})
    assert exc.value.problems == ("$.templates[T2].badKey: not allowed",)
    assert instance.ops.request_machines({"template": {"templateId": "T3", "machineCount": 1}})["requestId"]


def test_request_lifecycle(instance: Instance) -> None:
    rid = instance.request(2)
    assert rid.startswith("req-")
    [entry] = instance.status(rid)
    assert entry["status"] == "running"
    assert [m["result"] for m in entry["machines"]] == ["executing", "executing"]
    instance.cloud.boot()
    [entry] = instance.status(rid)
    assert entry["status"] == "complete"
    assert {m["result"] for m in entry["machines"]} == {"succeed"}
    assert all(isinstance(m["launchtime"], int) for m in entry["machines"])
    # a finished request is answered from the store, without the cloud
    calls = len(instance.cloud.calls)
    [again] = instance.status(rid)
    assert again["status"] == "complete"
    assert len(instance.cloud.calls) == calls


def test_never_complete_with_fewer_machines_than_asked(instance: Instance) -> None:
    instance.cloud.deliver = 1
    rid = instance.request(3)
    instance.cloud.boot()
    [entry] = instance.status(rid)
    assert entry["status"] == "complete_with_error"
    assert len(entry["machines"]) == 1
    assert entry["machines"][0]["result"] == "succeed"
    assert "1 of 3" in entry["message"]


def test_no_complete_with_error_while_executing(instance: Instance) -> None:
    rid = instance.request(2)
    first, _second = instance.cloud.by_request[rid]
    instance.cloud.set_state(first, MachineState.TERMINATED, "Server.InternalError")
    [entry] = instance.status(rid)
    assert entry["status"] == "running"
    failed = next(m for m in entry["machines"] if m["machineId"] == first)
    assert failed["result"] == "fail"
    assert failed["message"] == "Server.InternalError"
    instance.cloud.boot()
    [entry] = instance.status(rid)
    assert entry["status"] == "complete_with_error"


def test_machine_the_cloud_forgot_fails(instance: Instance) -> None:
    rid = instance.request(1)
    instance.cloud.boot()
    instance.status(rid)  # seen once
    (mid,) = instance.cloud.by_request[rid]
    instance.cloud.open[rid] = True  # still running? no: keep the request open to re-query
    del instance.cloud.machines[mid]
    record = instance.store.get_requests([rid])[rid]
    instance.store.put_request(attrs.evolve(record, status=RequestStatus.RUNNING))
    [entry] = instance.status(rid)
    assert entry["machines"][0]["result"] == "fail"
    assert "no longer knows" in entry["machines"][0]["message"]


def test_status_forms_unknown_and_malformed_ids(instance: Instance) -> None:
    rid = instance.request(1)
    single = instance.ops.get_request_status({"requests": {"requestId": rid}})
    assert [e["requestId"] for e in single["requests"]] == [rid]
    reply = instance.ops.get_request_status(
        {"requests": [{"requestId": "req-nope"}, {"requestId": rid}, {"requestId": 42}]}
    )
    unknown, known, malformed = reply["requests"]
    assert unknown == {
        "requestId": "req-nope",
        "status": "complete_with_error",
        "message": "unknown request id 'req-nope'",
        "machines": [],
    }
    assert known["requestId"] == rid
    assert malformed["requestId"] == "42"
    assert malformed["status"] == "complete_with_error"


def test_status_is_one_cloud_call_for_many_requests(instance: Instance) -> None:
    ids = [instance.request(1) for _ in range(3)]
    instance.cloud.calls.clear()
    instance.status(*ids)
    status_calls = [c for c in instance.cloud.calls if c.startswith("status:")]
    assert len(status_calls) == 1
    assert sorted(status_calls[0].removeprefix("status:").split(",")) == sorted(ids)


def test_more_than_available_is_refused_and_nothing_provisioned(instance: Instance) -> None:
    instance.request(8)
    with pytest.raises(InputError) as exc:
        instance.request(3)
    assert exc.value.problems[0].startswith("$.template.machineCount: 3 exceeds the 2 machines available")
    assert len([c for c in instance.cloud.calls if c.startswith("provision")]) == 1
    instance.request(2)  # exactly what is left is fine
    instance.request(50, "T2")  # unlimited


def test_unknown_template_is_invalid_input(instance: Instance) -> None:
    with pytest.raises(InputError) as exc:
        instance.request(1, "Nope")
    assert "$.template.templateId: unknown template 'Nope' (known: T1, T2)" in exc.value.problems
    assert not instance.cloud.calls or all(not c.startswith("provision") for c in instance.cloud.calls)


def test_cloud_refusal_is_an_ibm_style_failure_without_request_id(instance: Instance) -> None:
    instance.cloud.fail_next = CapacityError("no capacity for t3.micro", "InsufficientInstanceCapacity")
    reply = instance.ops.request_machines({"template": {"templateId": "T1", "machineCount": 1}})
    assert "requestId" not in reply
    assert "failed" in reply["message"] and "no capacity" in reply["message"]
    # the refused request no longer holds capacity
    assert instance.ops.get_available_templates({})["templates"][0]["availableNumber"] == 10


def return_machines(instance: Instance, machines: list[dict[str, str]]) -> dict[str, str]:
    return instance.ops.request_return_machines({"machines": machines})


def test_return_lifecycle_across_requests_by_id_and_by_name(instance: Instance) -> None:
    a, b = instance.request(2), instance.request(1)
    instance.cloud.boot()
    machines = {m["machineId"]: m for e in instance.status(a, b) for m in e["machines"]}
    ids = list(machines)
    reply = return_machines(
        instance,
        [
            {"name": machines[ids[0]]["name"], "machineId": ids[0]},
            {"name": machines[ids[2]]["name"]},  # by name only
        ],
    )
    ret = reply["requestId"]
    assert ret.startswith("ret-") and reply["message"] == "Delete VM success."
    terminate = [c for c in instance.cloud.calls if c.startswith("terminate:")]
    assert terminate == [f"terminate:{ids[0]},{ids[2]}"]
    [entry] = instance.status(ret)
    assert entry["status"] == "running"
    assert {m["result"] for m in entry["machines"]} == {"executing"}
    for mid in (ids[0], ids[2]):
        instance.cloud.set_state(mid, MachineState.TERMINATED)
    [entry] = instance.status(ret)
    assert entry["status"] == "complete"
    assert {m["machineId"] for m in entry["machines"]} == {ids[0], ids[2]}
    # returned machines are no longer held: availability comes back
    avail = {
        t["templateId"]: t.get("availableNumber")
        for t in instance.ops.get_available_templates({})["templates"]
    }
    assert avail["T1"] == 9


def test_what_the_cloud_no_longer_knows_may_be_left_out(instance: Instance) -> None:
    """The rule for returns (hooks.md): a provider leaves out what the cloud forgot, with no
    records kept for it. A return request left out whole completes, its machines terminated;
    an acquire request left out whole ends with its machines failed, never complete."""
    instance.cloud.forget_ended = True
    kept = instance.request(1)
    instance.cloud.boot()
    lost = instance.request(1)  # pending
    [entry, _] = instance.status(kept, lost)
    machine = entry["machines"][0]
    ret = return_machines(instance, [{"name": machine["name"], "machineId": machine["machineId"]}])[
        "requestId"
    ]
    [returning] = instance.status(ret)
    assert returning["status"] == "running"  # still shutting down: still reported
    instance.cloud.set_state(machine["machineId"], MachineState.TERMINATED)
    [(lost_id,)] = [instance.cloud.by_request[lost]]
    instance.cloud.set_state(lost_id, MachineState.TERMINATED, "")  # failed to boot; then forgotten
    returned, failed = instance.status(ret, lost)
    assert returned["status"] == "complete"
    assert [(m["machineId"], m["result"], m["status"]) for m in returned["machines"]] == [
        (machine["machineId"], "succeed", "terminated")
    ]
    assert failed["status"] == "complete_with_error"
    assert [(m["machineId"], m["result"]) for m in failed["machines"]] == [(lost_id, "fail")]
    assert "no longer knows" in failed["machines"][0]["message"]


def test_provider_learns_which_machines_hf_still_holds(instance: Instance) -> None:
    """ReturnItem.request.machine_ids: the request's machines HF holds, this return's included,
    earlier returns and failed machines excluded (the provider deletes a fleet on the last)."""
    rid = instance.request(3)
    a, b, c = instance.cloud.by_request[rid]
    instance.cloud.set_state(c, MachineState.TERMINATED, "failed to boot")
    instance.cloud.boot()
    [entry] = instance.status(rid)
    names = {m["machineId"]: m["name"] for m in entry["machines"]}
    return_machines(instance, [{"name": names[a], "machineId": a}])
    return_machines(instance, [{"name": names[b], "machineId": b}])
    first, second = instance.cloud.returned
    assert first.request is not None and sorted(first.request.machine_ids) == sorted([a, b])
    assert second.request is not None and second.request.machine_ids == (b,)
    assert second.request.request_id == rid


def test_return_of_nothing_active(instance: Instance) -> None:
    reply = return_machines(instance, [{"name": "ghost.example", "machineId": "i-0000000000000dead"}])
    assert reply["message"] == "No Active VM."  # the cloud does not know it
    [entry] = instance.status(reply["requestId"])
    assert entry["status"] == "complete"  # unknown to the cloud = already gone
    rid = instance.request(1)
    instance.cloud.boot()
    [acquired] = instance.status(rid)
    machine = acquired["machines"][0]
    instance.cloud.set_state(machine["machineId"], MachineState.TERMINATED)  # from the console
    reply = return_machines(instance, [{"name": machine["name"], "machineId": machine["machineId"]}])
    assert reply["message"] == "No Active VM."  # the stored state said running; the cloud knows better


def test_return_of_hosts_named_without_id(instance: Instance) -> None:
    """Hosts HF names without an id that core does not know go to the provider by name: gone
    from the cloud is succeed, a termination error is fail."""
    rid = instance.request(2)
    instance.cloud.boot()
    instance.status(rid)
    a, b = (instance.cloud.machines[i] for i in instance.cloud.by_request[rid])
    instance.cloud.refuse.add("stuck.example")
    reply = return_machines(instance, [{"name": "nobody.example"}, {"name": "stuck.example"}])
    assert reply["message"] == "No Active VM."
    [entry] = instance.status(reply["requestId"])
    results = {m["name"]: (m["result"], m["message"]) for m in entry["machines"]}
    assert results == {"nobody.example": ("succeed", ""), "stuck.example": ("fail", "termination refused")}
    assert entry["status"] == "complete_with_error"
    items = [i for i in instance.cloud.returned if not i.machine_id]
    assert [i.name for i in items] == ["nobody.example", "stuck.example"]
    # a known host by name only is matched by core to its machine
    return_machines(instance, [{"name": a.name}])
    assert instance.cloud.machines[a.machine_id].state is MachineState.SHUTTING_DOWN
    assert instance.cloud.machines[b.machine_id].state is MachineState.RUNNING


def test_termination_error_is_a_failed_machine(instance: Instance) -> None:
    rid = instance.request(1)
    instance.cloud.boot()
    instance.status(rid)
    (bad,) = instance.cloud.by_request[rid]
    instance.cloud.refuse.add(bad)
    ret = return_machines(instance, [{"name": "x", "machineId": bad}])["requestId"]
    [entry] = instance.status(ret)
    assert entry["status"] == "complete_with_error"
    assert entry["machines"][0]["result"] == "fail"
    assert entry["machines"][0]["message"] == "termination refused"
    # the machine is still running, so it is HF's again: held, and checked for reclaims
    assert [m.machine_id for m in instance.store.held_machines()] == [bad]


def test_refused_return_keeps_machines_held(instance: Instance) -> None:
    rid = instance.request(1)
    instance.cloud.boot()
    [entry] = instance.status(rid)
    machine = entry["machines"][0]
    instance.cloud.terminate_error = CapacityError("api down")
    reply = return_machines(instance, [{"name": machine["name"], "machineId": machine["machineId"]}])
    assert "requestId" not in reply and "failed" in reply["message"]
    assert [m.machine_id for m in instance.store.held_machines()] == [machine["machineId"]]


def test_reclaims_exclude_hosts_being_returned(instance: Instance) -> None:
    rid = instance.request(3)
    instance.cloud.boot()
    [entry] = instance.status(rid)
    m1, m2, m3 = entry["machines"]
    instance.cloud.reclaims = {m1["machineId"]: 95, m2["machineId"]: 30}
    return_machines(instance, [{"name": m2["name"], "machineId": m2["machineId"]}])
    reply = instance.ops.get_return_requests({})
    assert reply["requests"] == [{"machine": m1["name"], "gracePeriod": 95}]
    assert reply["message"] == "1 host is being reclaimed by the cloud."
    # HF's own list: an unknown host is reported with grace 0
    reply = instance.ops.get_return_requests(
        {"machines": [{"name": m3["name"], "machineId": m3["machineId"]}, {"name": "gone.example"}]}
    )
    assert reply["requests"] == [{"machine": "gone.example", "gracePeriod": 0}]


def test_reclaim_marks_and_events(instance: Instance) -> None:
    seen: list[str] = []

    class Observer:
        from ohfp_core import hookimpl

        @hookimpl
        def ohfp_machines_reclaimed(self, reclaims):  # type: ignore[no-untyped-def]
            seen.extend(r.name for r in reclaims)

    instance.hooks.pm.register(Observer())
    rid = instance.request(1)
    instance.cloud.boot()
    [entry] = instance.status(rid)
    name, mid = entry["machines"][0]["name"], entry["machines"][0]["machineId"]
    instance.cloud.reclaims = {mid: 100}
    instance.ops.get_return_requests({})
    instance.ops.get_return_requests({})
    assert seen == [name]  # the event fires once per host
    assert instance.store.find_machines([mid])[0].reclaimed_at is not None


def test_lifecycle_events(instance: Instance) -> None:
    events: list[tuple[str, str]] = []

    class Observer:
        from ohfp_core import hookimpl

        @hookimpl
        def ohfp_request_submitted(self, request):  # type: ignore[no-untyped-def]
            events.append(("submitted", request.kind.value))

        @hookimpl
        def ohfp_machines_ready(self, request, machines):  # type: ignore[no-untyped-def]
            events.append(("ready", str(len(machines))))

        @hookimpl
        def ohfp_machines_returned(self, request, machines):  # type: ignore[no-untyped-def]
            events.append(("returned", str(len(machines))))

    instance.hooks.pm.register(Observer())
    rid = instance.request(2)
    instance.cloud.boot()
    [entry] = instance.status(rid)
    instance.status(rid)
    ret = return_machines(
        instance, [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]
    )
    for mid in instance.cloud.by_request[rid]:
        instance.cloud.set_state(mid, MachineState.TERMINATED)
    instance.status(ret["requestId"])
    assert events == [("submitted", "acquire"), ("ready", "2"), ("submitted", "return"), ("returned", "2")]


def test_machines_running_at_provision_are_ready_at_once(instance: Instance) -> None:
    ready: list[str] = []

    class Observer:
        from ohfp_core import hookimpl

        @hookimpl
        def ohfp_machines_ready(self, request, machines):  # type: ignore[no-untyped-def]
            ready.extend(m.machine_id for m in machines)

    instance.hooks.pm.register(Observer())
    instance.cloud.instant = True
    rid = instance.request(2)
    assert sorted(ready) == sorted(instance.cloud.by_request[rid])
    instance.status(rid)
    assert len(ready) == 2  # not announced twice


def test_wrapper_plugin_can_veto_provisioning(instance: Instance) -> None:
    """An extension plugin wraps the provider hook (quota / dry-run style)."""
    from ohfp_core import hookimpl

    class Quota:
        @hookimpl(wrapper=True)
        def ohfp_provision(self, request_id, template, count):  # type: ignore[no-untyped-def]
            if count > 4:
                raise CapacityError("quota: at most 4 machines per request")
            return (yield)

    instance.hooks.pm.register(Quota())
    reply = instance.ops.request_machines({"template": {"templateId": "T1", "machineCount": 5}})
    assert "quota" in reply["message"] and "requestId" not in reply
    assert instance.request(4).startswith("req-")


def test_abandoned_request_is_cleaned_up(instance: Instance) -> None:
    """A crash after recording but before the handle was stored: machines are terminated."""
    rid = "req-crashed"
    from ohfp_core.storage import RequestRecord

    instance.store.put_request(
        RequestRecord(
            request_id=rid, kind=RequestKind.ACQUIRE, template_id="T1", machine_count=1, created_at=1
        )
    )
    template = instance.ops.offered()[0][0]
    instance.cloud.ohfp_provision(rid, template, 1)  # the cloud did create it
    instance.status("req-other")
    record = instance.store.get_requests([rid])[rid]
    assert record.status is RequestStatus.COMPLETE_WITH_ERROR
    assert "abandoned" in record.message
    (mid,) = instance.cloud.by_request[rid]
    assert instance.cloud.machines[mid].state is MachineState.SHUTTING_DOWN


def test_status_survives_a_cloud_outage(instance: Instance) -> None:
    rid = instance.request(1)
    instance.cloud.fail_next = CapacityError("describe throttled")
    [entry] = instance.status(rid)
    assert entry["status"] == "running"
    assert "cloud status unavailable" in entry["message"]


def test_health(instance: Instance, tmp_path: Path) -> None:
    from ohfp_core import health
    from ohfp_core.sqlite import SQLiteStorage

    checks = health.core_checks(instance.context, lambda: SQLiteStorage(instance.workdir))
    reply = health.report(instance.context, [*checks, *instance.hooks.health_check()])
    assert reply["message"] == "healthy", reply
    assert [c["name"] for c in reply["checks"]] == ["ohfp.workdir", "ohfp.state", "fake"]
    assert reply["checks"][-1] == {"name": "fake", "ok": True, "detail": "all good"}
    blocked = attrs.evolve(instance.context, workdir=tmp_path / "file")
    (tmp_path / "file").write_text("not a directory")
    failed = health.core_checks(blocked, lambda: SQLiteStorage(blocked.workdir))
    assert [c.ok for c in failed] == [False, False]


def test_abandoned_request_uses_the_providers_cancel(instance: Instance) -> None:
    from ohfp_core import hookimpl
    from ohfp_core.storage import RequestRecord

    cancelled: list[str] = []
    fail = [True]

    class Canceller:
        @hookimpl
        def ohfp_cancel_request(self, request):  # type: ignore[no-untyped-def]
            if fail[0]:
                raise CapacityError("throttled")
            cancelled.append(request.request_id)
            return True

    instance.hooks.pm.register(Canceller())
    instance.store.put_request(
        RequestRecord(request_id="req-dead", kind=RequestKind.ACQUIRE, template_id="T1", machine_count=1)
    )
    young = RequestRecord(
        request_id="req-young", kind=RequestKind.ACQUIRE, template_id="T1", machine_count=1, created_at=2**31
    )
    instance.store.put_request(young)  # still within HF's timeout: its call may be running
    instance.status("req-x")
    assert (
        instance.store.get_requests(["req-dead"])["req-dead"].status is RequestStatus.RUNNING
    )  # retried later
    fail[0] = False
    instance.status("req-x")
    assert cancelled == ["req-dead"]
    dead = instance.store.get_requests(["req-dead", "req-young"])
    assert dead["req-dead"].status is RequestStatus.COMPLETE_WITH_ERROR
    assert dead["req-young"].status is RequestStatus.RUNNING
    assert not [c for c in instance.cloud.calls if c.startswith("terminate")]  # the provider did it


def test_a_template_the_provider_cannot_serve_holds_nothing(instance: Instance) -> None:
    """The provider refuses the template (ConfigError, before the cloud): the request ends
    and does not keep holding capacity until the abandoned-request clean-up."""
    from ohfp_core import hookimpl

    class Picky:
        @hookimpl(tryfirst=True)
        def ohfp_provision(self, request_id, template, count):  # type: ignore[no-untyped-def]
            raise ConfigError("template T1: no enabled API can serve it")

    instance.hooks.pm.register(Picky())
    with pytest.raises(ConfigError):
        instance.request(4)
    assert instance.ops.get_available_templates({})["templates"][0]["availableNumber"] == 10
    assert instance.store.open_requests() == []


def test_a_provider_lowered_availability_is_named_when_it_refuses(instance: Instance) -> None:
    from ohfp_core.templates import load_templates

    templates = list(load_templates(instance.context).templates)
    instance.cloud.templates = [
        attrs.evolve(t, available_number=2, available_reason="account vCPU quota: 4 vCPUs left")
        for t in templates
    ]
    with pytest.raises(InputError) as exc:
        instance.request(3)
    assert exc.value.problems == (
        "$.template.machineCount: 3 exceeds the 2 machines available from template 'T1'"
        " (maxNumber 10, 0 in use; account vCPU quota: 4 vCPUs left)",
    )


def test_show_request_gives_the_record_machines_and_the_providers_details(instance: Instance) -> None:
    from ohfp_core import hookimpl

    class Details:
        @hookimpl
        def ohfp_request_details(self, request: object) -> dict[str, str]:
            return {"why": "insufficient capacity in subnet-1"}

    rid = instance.request(2)
    instance.status(rid)  # the machines are stored once seen
    shown = instance.ops.show_request(rid)
    assert shown["request"]["request_id"] == rid and shown["request"]["machine_count"] == 2
    assert len(shown["machines"]) == 2 and shown["details"] == {}
    instance.hooks.pm.register(Details())
    assert instance.ops.show_request(rid)["details"] == {"why": "insufficient capacity in subnet-1"}
    with pytest.raises(InputError, match="no request 'req-nope'"):
        instance.ops.show_request("req-nope")


def test_an_unlimited_template_is_bounded_by_what_the_provider_says_is_available(instance: Instance) -> None:
    from ohfp_core.templates import load_templates

    templates = list(load_templates(instance.context).templates)
    instance.cloud.templates = [
        attrs.evolve(t, available_number=3, available_reason="account vCPU quota: 6 vCPUs left")
        if t.unlimited
        else t
        for t in templates
    ]
    offered = {t["templateId"]: t for t in instance.ops.get_available_templates({})["templates"]}
    assert offered["T2"]["maxNumber"] == -1 and offered["T2"]["availableNumber"] == 3
    with pytest.raises(InputError) as exc:
        instance.request(4, "T2")
    assert exc.value.problems == (
        "$.template.machineCount: 4 exceeds the 3 machines available from template 'T2'"
        " (maxNumber -1, 0 in use; account vCPU quota: 6 vCPUs left)",
    )
    assert instance.request(3, "T2")

"""The mock cloud's knobs, templates, control CLI and database."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core.errors import CapacityError, CloudError, ConfigError, ThrottledError
from ohfp_core.models import (
    CloudRequest,
    MachineRef,
    MachineState,
    PriceType,
    ProviderContext,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_core.plugins import load_provider_factory
from ohfp_mock.cloud import DB_NAME, RECLAIM_WINDOW_SECONDS
from ohfp_mock.knobs import Knobs, read_knobs
from ohfp_mock.provider import MockProvider, make_provider
from ohfp_mock.templates import DEMO_TEMPLATES

MakeMock = Callable[..., MockProvider]
SMALL, SPOT = DEMO_TEMPLATES


def _status(provider: MockProvider, request_id: str, handle: Any = None) -> RequestSnapshot:
    request = CloudRequest(request_id=request_id, kind=RequestKind.ACQUIRE, handle=handle or {})
    return provider.ohfp_machine_status([request])[request_id]


def _template(**fields: Any) -> Template:
    return attrs.evolve(SMALL, fields=fields)


# clock and states ---------------------------------------------------------------------
def test_machines_boot_after_the_boot_delay(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=10)
    provisioned = provider.ohfp_provision("req-1", SMALL, 2)
    assert [m.state for m in provisioned.machines] == [MachineState.PENDING] * 2
    snapshot = _status(provider, "req-1", provisioned.handle)
    assert snapshot.open
    provider.cloud.advance(9)
    assert {m.state for m in _status(provider, "req-1").machines} == {MachineState.PENDING}
    provider.cloud.advance(1)
    snapshot = _status(provider, "req-1")
    assert {m.state for m in snapshot.machines} == {MachineState.RUNNING}
    assert not snapshot.open


def test_terminated_machines_shut_down_then_terminate(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0, MOCK_TERMINATE_SECONDS=5)
    machine = provider.ohfp_provision("req-1", SMALL, 1).machines[0]
    assert (
        provider.ohfp_terminate_machines([ReturnItem(machine_id=machine.machine_id, name=machine.name)]) == {}
    )
    ret = CloudRequest(
        request_id="ret-1", kind=RequestKind.RETURN, machine_ids=(machine.machine_id, "i-unknown")
    )
    assert [m.state for m in provider.ohfp_machine_status([ret])["ret-1"].machines] == [
        MachineState.SHUTTING_DOWN
    ]
    provider.cloud.advance(5)
    (gone,) = provider.ohfp_machine_status([ret])["ret-1"].machines
    assert gone.state is MachineState.TERMINATED
    assert gone.machine_id == machine.machine_id


def test_terminate_by_name_when_the_id_is_unknown_to_hf(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0, MOCK_TERMINATE_SECONDS=0)
    machine = provider.ohfp_provision("req-1", SMALL, 1).machines[0]
    provider.ohfp_terminate_machines([ReturnItem(machine_id="", name=machine.name)])
    assert _status(provider, "req-1").machines[0].state is MachineState.TERMINATED


def test_advance_rejects_going_back(make_mock: MakeMock) -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        make_mock().cloud.advance(-1)


# failures, capacity, API errors ---------------------------------------------------------
def test_failure_rate_one_kills_every_machine_while_pending(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_FAILURE_RATE=1, MOCK_BOOT_SECONDS=5)
    machines = provider.ohfp_provision("req-1", SMALL, 3).machines
    assert {m.state for m in machines} == {MachineState.PENDING}
    provider.cloud.advance(5)
    after = _status(provider, "req-1").machines
    assert {m.state for m in after} == {MachineState.TERMINATED}
    assert all("failed while pending" in m.message for m in after)
    reclaims = provider.ohfp_reclaimed_machines(
        [MachineRef(name=m.name, machine_id=m.machine_id) for m in after]
    )
    assert {(r.name, r.grace_period) for r in reclaims} == {(m.name, 0) for m in after}


def test_failure_rate_fails_a_fraction(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_FAILURE_RATE=0.5, MOCK_BOOT_SECONDS=0, MOCK_SEED=3)
    machines = provider.ohfp_provision("req-1", SMALL, 40).machines
    failed = sum(m.state is MachineState.TERMINATED for m in machines)
    assert 5 < failed < 35


def test_capacity_shortfall_closes_the_request(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_CAPACITY=3, MOCK_BOOT_SECONDS=10, MOCK_TERMINATE_SECONDS=0)
    provisioned = provider.ohfp_provision("req-1", SMALL, 5)
    assert len(provisioned.machines) == 3
    snapshot = _status(provider, "req-1", provisioned.handle)
    assert not snapshot.open
    assert "insufficient capacity" in snapshot.message
    assert "3 of 5" in snapshot.message
    with pytest.raises(CapacityError, match="MOCK_CAPACITY"):
        provider.ohfp_provision("req-2", SMALL, 1)
    first = provisioned.machines[0]
    provider.ohfp_terminate_machines([ReturnItem(machine_id=first.machine_id, name=first.name)])
    assert len(provider.ohfp_provision("req-2", SMALL, 1).machines) == 1


def test_capacity_within_limit_keeps_the_request_open_while_pending(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_CAPACITY=3, MOCK_BOOT_SECONDS=10)
    provisioned = provider.ohfp_provision("req-1", SMALL, 3)
    snapshot = _status(provider, "req-1", provisioned.handle)
    assert snapshot.open
    assert snapshot.message == ""


def test_api_error_rate_one_fails_every_cloud_call(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_API_ERROR_RATE=1)
    with pytest.raises(CloudError) as raised:
        provider.ohfp_provision("req-1", SMALL, 1)
    assert raised.value.retryable
    with pytest.raises(CloudError):
        provider.ohfp_machine_status([CloudRequest(request_id="req-1", kind=RequestKind.ACQUIRE)])
    assert make_mock().cloud.machines() == []  # nothing was created


def test_injected_error_fails_only_the_next_call(make_mock: MakeMock) -> None:
    provider = make_mock()
    provider.cloud.inject_errors(1)
    with pytest.raises(ThrottledError):
        provider.ohfp_provision("req-1", SMALL, 1)
    assert len(provider.ohfp_provision("req-1", SMALL, 1).machines) == 1


# machines ----------------------------------------------------------------------------------
def test_provision_is_idempotent_across_processes(make_mock: MakeMock) -> None:
    first = make_mock().ohfp_provision("req-1", SMALL, 2)
    again = make_mock().ohfp_provision("req-1", SMALL, 2)
    assert again.handle == first.handle
    assert [m.machine_id for m in again.machines] == [m.machine_id for m in first.machines]
    assert len(make_mock().cloud.machines()) == 2


def test_machines_look_like_cloud_machines(make_mock: MakeMock) -> None:
    machines = make_mock().ohfp_provision("req-1", SMALL, 300).machines
    ids = [m.machine_id for m in machines]
    ips = [m.private_ip for m in machines]
    assert len(set(ids)) == len(set(ips)) == 300
    for machine in machines:
        assert machine.machine_id.startswith("i-") and len(machine.machine_id) == 19
        int(machine.machine_id[2:], 16)
        assert machine.private_ip
        octets = [int(part) for part in machine.private_ip.split(".")]
        assert octets[0] == 10 and 0 < octets[3] < 255
        assert machine.name == f"ip-{machine.private_ip.replace('.', '-')}.mock.internal"
        assert machine.instance_type == "mock.small"
        assert machine.price_type is PriceType.ONDEMAND
        assert machine.launch_time > 0


def test_instance_type_weight_and_price_from_the_template(make_mock: MakeMock) -> None:
    provider = make_mock()
    weighted = _template(vmTypes={"mock.large": 2, "mock.small": 1}, priceType="spot")
    machines = provider.ohfp_provision("req-1", weighted, 5).machines
    assert [(m.instance_type, m.weight, m.price_type) for m in machines] == [
        ("mock.large", 2, PriceType.SPOT)
    ] * 3
    mixed = _template(vmType="mock.medium", priceType="heterogeneous", percentOnDemand=25)
    prices = [m.price_type for m in provider.ohfp_provision("req-2", mixed, 4).machines]
    assert prices == [PriceType.SPOT] * 3 + [PriceType.ONDEMAND]


def test_same_seed_same_calls_give_the_same_cloud(tmp_path: Path) -> None:
    def run(root: Path, seed: int) -> list[tuple[str, str, str, bool]]:
        knobs = {"MOCK_SEED": seed, "MOCK_FAILURE_RATE": 0.3, "MOCK_SPOT_RECLAIM_RATE": 0.5}
        provider = make_provider(
            ProviderContext(instance="i", provider_type="mock", confdir=root, workdir=root, config=knobs)
        )
        provider.ohfp_provision("req-1", SMALL, 4)
        provider.ohfp_provision("req-2", SPOT, 4)
        machines = provider.cloud.machines()
        result = [(m.machine_id, m.name, m.fail_message, m.notice_at is None) for m in machines]
        provider.close()
        return result

    first = run(tmp_path / "a", 42)
    # the run draws both outcomes of each random choice, so equal runs mean equal draws
    assert len({m[2] for m in first}) == 2
    assert len({m[3] for m in first[4:]}) == 2
    assert first == run(tmp_path / "b", 42)
    assert [m[0] for m in first] != [m[0] for m in run(tmp_path / "c", 43)]


# reclaims -------------------------------------------------------------------------------
def test_spot_notice_counts_down_with_the_clock(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0, MOCK_TERMINATE_SECONDS=10)
    machine, healthy = provider.ohfp_provision("req-1", SPOT, 2).machines
    refs = [MachineRef(name=machine.name, machine_id=machine.machine_id), MachineRef(name=healthy.name)]
    provider.cloud.reclaim(machine.name)
    assert [(r.machine_id, r.grace_period) for r in provider.ohfp_reclaimed_machines(refs)] == [
        (machine.machine_id, 120)
    ]
    provider.cloud.advance(50)
    assert [r.grace_period for r in provider.ohfp_reclaimed_machines(refs)] == [70]
    assert _status(provider, "req-1").machines[0].state is MachineState.RUNNING
    provider.cloud.advance(70)
    (reclaim,) = provider.ohfp_reclaimed_machines(refs)
    assert reclaim.grace_period == 0
    lost = _status(provider, "req-1").machines[0]
    assert lost.state is MachineState.SHUTTING_DOWN
    assert "reclaimed" in lost.message


def test_spot_reclaim_rate_interrupts_spot_machines_only(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_SPOT_RECLAIM_RATE=1, MOCK_RECLAIM_GRACE_SECONDS=60, MOCK_BOOT_SECONDS=0)
    spot = provider.ohfp_provision("req-1", SPOT, 3).machines
    ondemand = provider.ohfp_provision("req-2", SMALL, 3).machines
    refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in (*spot, *ondemand)]
    assert provider.ohfp_reclaimed_machines(refs) == []
    provider.cloud.advance(RECLAIM_WINDOW_SECONDS)
    reclaims = provider.ohfp_reclaimed_machines(refs)
    assert {r.machine_id for r in reclaims} == {m.machine_id for m in spot}
    assert all(0 <= r.grace_period <= 60 for r in reclaims)


def test_spot_reclaim_rate_zero_never_interrupts(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0)
    spot = provider.ohfp_provision("req-1", SPOT, 3).machines
    provider.cloud.advance(10 * RECLAIM_WINDOW_SECONDS)
    assert (
        provider.ohfp_reclaimed_machines([MachineRef(name=m.name, machine_id=m.machine_id) for m in spot])
        == []
    )


def test_console_termination_is_reclaimed_with_no_grace(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0)
    machine = provider.ohfp_provision("req-1", SMALL, 1).machines[0]
    provider.cloud.console_terminate(machine.machine_id)
    (reclaim,) = provider.ohfp_reclaimed_machines([MachineRef(name=machine.name)])
    assert (reclaim.machine_id, reclaim.grace_period) == (machine.machine_id, 0)
    assert "console" in reclaim.reason


def test_reclaiming_an_unknown_machine_is_a_lookup_error(make_mock: MakeMock) -> None:
    with pytest.raises(LookupError, match="i-nope"):
        make_mock().cloud.reclaim("i-nope")


# knobs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MOCK_BOOT_SECONDS", -1),
        ("MOCK_TERMINATE_SECONDS", "soon"),
        ("MOCK_FAILURE_RATE", 1.5),
        ("MOCK_CAPACITY", -2),
        ("MOCK_CAPACITY", 2.5),
        ("MOCK_SPOT_RECLAIM_RATE", True),
        ("MOCK_RECLAIM_GRACE_SECONDS", -5),
        ("MOCK_API_ERROR_RATE", [0.1]),
        ("MOCK_SEED", "abc"),
        ("MOCK_BOOT_SECOND", 1),
    ],
)
def test_bad_knob_names_the_key(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=key):
        make_provider(
            ProviderContext(
                instance="i", provider_type="mock", confdir=tmp_path, workdir=tmp_path, config={key: value}
            )
        )


def test_knobs_from_config_override_settings() -> None:
    knobs = read_knobs(
        {"MOCK_BOOT_SECONDS": "7", "MOCK_SEED": 5, "ACCEPT_PROPAGATED_LOG_SETTING": True},
        {"boot_seconds": 1, "MOCK_CAPACITY": 4, "terminate_seconds": 0},
    )
    assert knobs == Knobs(boot_seconds=7, terminate_seconds=0, capacity=4, seed=5)
    with pytest.raises(ConfigError, match=r"settings mock\.colour"):
        read_knobs({}, {"colour": "blue"})


def test_every_bad_knob_at_once_each_in_its_file_with_the_closest_key(tmp_path: Path) -> None:
    config_file, settings_file = tmp_path / "mockinstprov_config.json", tmp_path / "ohfp.json"
    with pytest.raises(ConfigError) as info:
        read_knobs(
            {"MOCK_BOOT_SECONDZ": 1, "MOCK_SEED": "x", "MOCK_FAILURE_RATE": 2},
            {"terminate_secs": 1},
            config_file=config_file,
            settings_file=settings_file,
        )
    assert sorted(info.value.problems) == sorted(
        [
            f"{settings_file}: $.mock.terminate_secs: unknown key; did you mean 'terminate_seconds'?",
            f"{config_file}: $.MOCK_BOOT_SECONDZ: unknown key; did you mean 'MOCK_BOOT_SECONDS'?",
            f"{config_file}: $.MOCK_SEED: must be a number, got 'x'",
            f"{config_file}: $.MOCK_FAILURE_RATE: must be between 0 and 1, got 2",
        ]
    )


def test_an_unknown_template_key_gets_the_closest_known_one(make_mock: MakeMock) -> None:
    typo = Template(template_id="typo", max_number=1, fields={"vmTyp": "mock.large"})
    assert [(p.path, p.message) for p in make_mock().ohfp_validate_template(typo)] == [
        ("vmTyp", "unknown template key; did you mean 'vmType'?")
    ]


def test_defaults() -> None:
    assert read_knobs({}) == Knobs(
        boot_seconds=3, terminate_seconds=2, failure_rate=0, capacity=-1, reclaim_grace_seconds=120
    )


# templates ---------------------------------------------------------------------------------
def test_demo_templates_offered_when_the_file_has_none(make_mock: MakeMock) -> None:
    offered = make_mock().ohfp_available_templates([])
    assert [(t.template_id, t.max_number) for t in offered] == [("mock-small", 50), ("mock-spot", 20)]
    assert offered[1].attributes["ncpus"].value == "2"
    assert offered[1].attributes["nram"].value == "4096"


def test_templates_from_the_file_get_derived_attributes(make_mock: MakeMock) -> None:
    bare = Template(template_id="from-file", max_number=5, fields={"vmType": "mock.large"})
    (offered,) = make_mock().ohfp_available_templates([bare])
    assert offered.attributes["ncpus"].value == "4"
    assert offered.attributes["nram"].value == "8192"


def test_aws_example_templates_are_accepted(make_mock: MakeMock) -> None:
    example = Path("/work/shared/hf/examples/awsprov_templates.json")
    if not example.exists():
        pytest.skip("IBM-style example templates not available")
    provider = make_mock()
    for entry in json.loads(example.read_text())["templates"]:
        fields = {k: v for k, v in entry.items() if k not in ("templateId", "maxNumber", "attributes")}
        template = Template(template_id=entry["templateId"], max_number=entry["maxNumber"], fields=fields)
        assert provider.ohfp_validate_template(template) == [], entry["templateId"]


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"colour": "blue"}, "colour"),
        ({"priceType": "cheap"}, "priceType"),
        ({"vmType": 3}, "vmType"),
        ({"vmTypes": ["mock.small"]}, "vmTypes"),
        ({"vmTypes": {"mock.small": 0}}, "vmTypes.mock.small"),
        ({"percentOnDemand": 101}, "percentOnDemand"),
        ({"providerApi": "Teleport"}, "providerApi"),
        ({"fleetType": "armada"}, "fleetType"),
    ],
)
def test_validation_names_the_key(make_mock: MakeMock, fields: dict[str, Any], path: str) -> None:
    problems = make_mock().ohfp_validate_template(_template(**fields))
    assert [p.path for p in problems] == [path]


# database, health, entry point ----------------------------------------------------------------
def test_database_is_private_and_health_checked(make_mock: MakeMock, tmp_path: Path) -> None:
    provider = make_mock()
    (check,) = provider.ohfp_health_check()
    assert check.ok, check
    assert stat.S_IMODE((tmp_path / "work" / DB_NAME).stat().st_mode) == 0o600


def test_health_check_reports_a_failing_api_without_raising(make_mock: MakeMock) -> None:
    provider = make_mock()
    provider.cloud.inject_errors(1)
    (check,) = provider.ohfp_health_check()
    assert not check.ok and "Rate exceeded" in check.detail
    (check,) = provider.ohfp_health_check()  # the injected error is spent
    assert check.ok, check


def test_resources_list_machines_until_they_are_on_their_way_out(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=10, MOCK_TERMINATE_SECONDS=10)
    first, second = provider.ohfp_provision("req-1", SMALL, 2).machines
    cloud = provider.cloud
    assert cloud.resources() == {first.machine_id: "pending", second.machine_id: "pending"}
    cloud.advance(10)
    provider.ohfp_terminate_machines([ReturnItem(machine_id=first.machine_id, name=first.name)])
    assert cloud.resources() == {second.machine_id: "running"}  # first is shutting down
    cloud.console_terminate(second.machine_id)
    assert cloud.resources() == {}


def test_health_check_fails_when_the_database_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    provider = make_provider(
        ProviderContext(instance="i", provider_type="mock", confdir=tmp_path, workdir=blocker)
    )
    (check,) = provider.ohfp_health_check()
    assert not check.ok


def test_entry_point_is_the_factory() -> None:
    assert load_provider_factory("mock") is make_provider


# control CLI -----------------------------------------------------------------------------------
def _cli(workdir: Path, *args: str) -> tuple[int, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "ohfp_mock", "--workdir", str(workdir), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_control_cli(make_mock: MakeMock, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    provider = make_mock(MOCK_BOOT_SECONDS=100)
    one, two = provider.ohfp_provision("req-1", SPOT, 2).machines
    code, listing = _cli(workdir, "list")
    assert code == 0
    assert [(m["machineId"], m["state"]) for m in listing["machines"]] == [
        (one.machine_id, "pending"),
        (two.machine_id, "pending"),
    ]
    code, advanced = _cli(workdir, "advance", "100")
    assert code == 0 and advanced["now"] >= listing["now"] + 100
    assert {m.state for m in _status(provider, "req-1").machines} == {MachineState.RUNNING}
    code, reclaimed = _cli(workdir, "reclaim", one.name, "--grace", "30")
    assert code == 0 and reclaimed["machine"]["gracePeriod"] == 30
    assert [r.grace_period for r in provider.ohfp_reclaimed_machines([MachineRef(name=one.name)])] == [30]
    code, terminated = _cli(workdir, "console-terminate", two.machine_id)
    assert code == 0 and terminated["machine"]["state"] == "shutting-down"
    code, failing = _cli(workdir, "fail-next")
    assert code == 0 and failing == {"failNext": 1}
    with pytest.raises(ThrottledError):
        provider.ohfp_machine_status([CloudRequest(request_id="req-1", kind=RequestKind.ACQUIRE)])
    code, error = _cli(workdir, "reclaim", "i-00000000000000000")
    assert code == 1 and "i-00000000000000000" in error["message"]


def test_control_cli_output_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``python -m ohfp_mock list | head``: the reader goes away; no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ohfp_mock", "--workdir", str(tmp_path / "work"), "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the child (still starting up) writes anything
    errors = process.stderr.read().decode()
    assert process.wait(60) == 0
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors

"""The libvirt provider's own rules on ``test:///default``, beyond the conformance kit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core.errors import AuthError, CapacityError, CloudError, ConfigError
from ohfp_core.models import (
    Attribute,
    CloudRequest,
    MachineRef,
    MachineState,
    ProviderContext,
    RequestKind,
    ReturnItem,
    Template,
)
from ohfp_libvirt import spec as specs
from ohfp_libvirt import states
from ohfp_libvirt.cloud import LibvirtCloud
from ohfp_libvirt.domain_xml import Tag, domain_xml, identity, read_domain
from ohfp_libvirt.errors import libvirt_call, translate
from ohfp_libvirt.hypervisor import Hypervisor
from ohfp_libvirt.provider import make_provider
from ohfp_libvirt.settings import read_settings

from .conftest import TEST_URI, TestDriver, kit_template, libvirt


def acquire(request_id: str, cloud_uri: str = TEST_URI) -> CloudRequest:
    return CloudRequest(
        request_id=request_id, kind=RequestKind.ACQUIRE, template_id="lv-small", handle={"uri": cloud_uri}
    )


# -- states, templates, settings, XML ----------------------------------------------------------------


def test_state_numbers_are_libvirts() -> None:
    assert (states.RUNNING, states.BLOCKED, states.PAUSED, states.SHUTOFF, states.CRASHED) == (
        libvirt.VIR_DOMAIN_RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED,
        libvirt.VIR_DOMAIN_PAUSED,
        libvirt.VIR_DOMAIN_SHUTOFF,
        libvirt.VIR_DOMAIN_CRASHED,
    )
    assert states.PAUSED_STARTING_UP == libvirt.VIR_DOMAIN_PAUSED_STARTING_UP
    assert states.SHUTOFF_NEVER_STARTED == libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN
    assert states.SHUTOFF_REASONS[2] and libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED == 2


@pytest.mark.parametrize(
    "state, reason, address, expected",
    [
        (states.RUNNING, 1, "192.0.2.7", MachineState.RUNNING),
        (states.RUNNING, 1, None, MachineState.PENDING),  # runs before it has an address
        (states.SHUTOFF, states.SHUTOFF_NEVER_STARTED, None, MachineState.PENDING),
        (states.PAUSED, states.PAUSED_STARTING_UP, None, MachineState.PENDING),
        (states.PAUSED, 1, "192.0.2.7", MachineState.STOPPED),
        (states.SHUTDOWN, 1, "192.0.2.7", MachineState.STOPPING),
        (states.SHUTOFF, 2, None, MachineState.STOPPED),
        (states.CRASHED, 0, None, MachineState.STOPPED),
        (states.PMSUSPENDED, 0, None, MachineState.STOPPED),
    ],
)
def test_machine_state(state: int, reason: int, address: str | None, expected: MachineState) -> None:
    found, message = states.machine_state(state, reason, address)
    assert found is expected
    assert (message == "") == (found in (MachineState.PENDING, MachineState.RUNNING))


BAD_TEMPLATES = {
    "unknown key": ({"imageId": "ami-1"}, "imageId"),
    "no boot source": ({"baseVolume": None}, "baseVolume"),
    "bad volume": ({"baseVolume": {"pool": "p"}}, "baseVolume"),
    "bad domain type": ({"domainType": "xen"}, "domainType"),
    "zero vcpus": ({"vcpus": 0}, "vcpus"),
    "no memory": ({"memoryMiB": 0}, "memoryMiB"),
    "initrd without kernel": ({"initrd": "/boot/initrd"}, "initrd"),
    "bad address source": ({"addressSource": "dns"}, "addressSource"),
    "bad host prefix": ({"hostPrefix": "Bad_Prefix"}, "hostPrefix"),
    "bad pool": ({"pool": ""}, "pool"),
    "user data not text": ({"userData": ["#cloud-config"]}, "userData"),
    "user data not Unicode": ({"userData": "#cloud-config \ud800"}, "userData"),
}


@pytest.mark.parametrize("fields, key", BAD_TEMPLATES.values(), ids=BAD_TEMPLATES.keys())
def test_template_problems_name_the_key(fields: dict[str, Any], key: str) -> None:
    template = kit_template(**fields)
    if fields.get("baseVolume", "") is None:
        template = attrs.evolve(
            template, fields={k: v for k, v in template.fields.items() if k != "baseVolume"}
        )
    assert key in [problem.path for problem in specs.problems(template)]
    with pytest.raises(ConfigError, match=rf"\$\.templates\[lv-small\]\.{key}: "):
        specs.parse(template)


def test_sizes_come_from_the_attributes_and_fill_them_in() -> None:
    from_attributes = Template(
        template_id="t",
        max_number=1,
        attributes={"ncpus": Attribute("Numeric", "2"), "nram": Attribute("Numeric", "512")},
        fields={"kernel": "/k"},
    )
    parsed = specs.parse(from_attributes)
    assert (parsed.vcpus, parsed.memory_mib, parsed.base_volume) == (2, 512, None)
    sized = kit_template(vcpus=4, memoryMiB=2048)
    completed = specs.complete(sized, specs.parse(sized))
    assert completed.attributes["ncpus"].value == "4" and completed.attributes["nram"].value == "2048"
    conflicting = attrs.evolve(from_attributes, fields={"kernel": "/k", "vcpus": 3})
    assert [p.path for p in specs.problems(conflicting)] == ["vcpus"]


def test_settings_name_bad_and_unknown_keys() -> None:
    assert read_settings({}, {"uri": "qemu+ssh://h/system"}).uri == "qemu+ssh://h/system"
    assert read_settings({"LIBVIRT_URI": "test:///default"}, {"uri": "x"}).uri == "test:///default"
    with pytest.raises(ConfigError, match="LIBVIRT_ADDRESS_SECONDS: must be"):
        read_settings({"LIBVIRT_ADDRESS_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="LIBVIRT_URL: unknown key"):
        read_settings({"LIBVIRT_URL": "qemu:///system"})
    assert read_settings({"ACCEPT_PROPAGATED_LOG_SETTING": True}).uri == "qemu:///system"


def test_the_factory_refuses_a_bad_config(tmp_path: Path) -> None:
    context = ProviderContext(
        instance="i", provider_type="libvirt", confdir=tmp_path, workdir=tmp_path, config={"LIBVIRT_URI": 7}
    )
    with pytest.raises(ConfigError, match="LIBVIRT_URI"):
        make_provider(context)


def test_metadata_round_trips_and_identity_is_stable() -> None:
    spec = specs.parse(kit_template(kernel="/boot/k", initrd="/boot/i", cmdline="console=ttyS0"))
    tag = Tag(
        instance="i", request_id="req-1", template_id="lv-small", created=1700000000, address_source="agent"
    )
    machine_uuid, name = identity("i", "req-1", 0, spec.host_prefix)
    assert (machine_uuid, name) == identity("i", "req-1", 0, "ohfp")
    assert machine_uuid != identity("i", "req-1", 1, "ohfp")[0] != identity("j", "req-1", 0, "ohfp")[0]
    assert name.startswith("ohfp-") and len(name) == len("ohfp-") + 12
    info = read_domain(domain_xml(spec, tag, machine_uuid, name))
    assert (info.name, info.uuid, info.tag) == (name, machine_uuid, tag)
    assert read_domain("<domain><name>x</name><uuid>u</uuid></domain>").tag is None


# -- errors ---------------------------------------------------------------------------------------


def test_libvirt_errors_become_cloud_errors(tmp_path: Path) -> None:
    connection = libvirt.open(TEST_URI)
    try:
        with pytest.raises(CloudError) as gone, libvirt_call("lookup"):
            connection.lookupByName("no-such-domain")
    finally:
        connection.close()
    assert gone.value.code == "VIR_ERR_NO_DOMAIN" and not gone.value.retryable
    assert gone.value.message.startswith("lookup: ") and "(VIR_ERR_NO_DOMAIN)" in gone.value.message
    with pytest.raises(CloudError) as lost:
        Hypervisor.open(f"qemu+unix:///system?socket={tmp_path}/no-such-socket", wait_seconds=0.5)
    assert lost.value.code == "VIR_ERR_SYSTEM_ERROR" and lost.value.retryable  # libvirtd not there (yet)
    error = libvirt.libvirtError("x")
    error.err = (libvirt.VIR_ERR_NO_MEMORY, 0, "out of memory", 0, "", "", "", 0, 0)
    assert isinstance(translate(error, "define"), CapacityError)
    error.err = (libvirt.VIR_ERR_ACCESS_DENIED, 0, "access denied", 0, "", "", "", 0, 0)
    assert isinstance(translate(error, "define"), AuthError)
    with pytest.raises(ZeroDivisionError), libvirt_call("a bug passes through"):
        _ = 1 / 0


# -- the cloud ------------------------------------------------------------------------------------


def test_provisioning_twice_defines_each_domain_once(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    cloud = make_cloud()
    for _ in range(2):
        provisioned = cloud.provision("req-twice", kit_template(), 3)
        assert provisioned.handle == {"uri": TEST_URI}
    assert len(driver.made()) == 3
    assert len(driver.volumes()) == 3  # one overlay each
    [snapshot] = cloud.status([acquire("req-twice")]).values()
    assert {m.state for m in snapshot.machines} == {MachineState.RUNNING}


def test_a_refused_request_leaves_nothing(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    cloud = make_cloud()
    _, taken = identity("lvinst", "req-clash", 1, "ohfp")
    driver.connection.defineXML(  # someone else's domain holds the second machine's name
        f"<domain type='test'><name>{taken}</name><memory unit='MiB'>64</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    with pytest.raises(CloudError, match="already exists"):
        cloud.provision("req-clash", kit_template(), 3)
    assert [d.name() for d in driver.made()] == [taken], "the first machine was removed again"
    assert driver.volumes() == set()


def test_a_defined_never_started_domain_is_pending_then_removed_at_the_deadline(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    now = [1_800_000_000.0]
    cloud = make_cloud(clock=lambda: now[0], LIBVIRT_ADDRESS_SECONDS=60)
    spec = specs.parse(kit_template())
    machine_uuid, name = identity("lvinst", "req-dead", 0, "ohfp")
    tag = Tag(instance="lvinst", request_id="req-dead", template_id="lv-small", created=int(now[0]))
    driver.connection.defineXML(domain_xml(spec, tag, machine_uuid, name))  # a call died before start
    [machine] = cloud.status([acquire("req-dead")])["req-dead"].machines
    assert (machine.machine_id, machine.state) == (machine_uuid, MachineState.PENDING)
    now[0] += 61
    [machine] = cloud.status([acquire("req-dead")])["req-dead"].machines
    assert machine.state is MachineState.TERMINATED and "no address after 61 s" in machine.message
    assert driver.made() == []


def test_cancel_finds_a_dead_calls_domains_and_volumes_by_the_request_id(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    cloud = make_cloud()
    cloud.provision("req-lost", kit_template(), 2)
    cloud.provision("req-kept", kit_template(), 1)
    lost = CloudRequest(request_id="req-lost", kind=RequestKind.ACQUIRE)  # no handle: the call died
    assert cloud.cancel(lost) is True
    assert cloud.cancel(lost) is True
    [kept] = driver.made()
    assert read_domain(kept.XMLDesc(0)).tag.request_id == "req-kept"  # type: ignore[union-attr]
    assert len(driver.volumes()) == 1


def test_other_domains_are_neither_reported_nor_touched(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    mine, theirs = make_cloud(), make_cloud()
    theirs.context = attrs.evolve(theirs.context, instance="otherinst")
    theirs.provision("req-other", kit_template(), 1)
    assert mine.status([acquire("req-other")])["req-other"].machines == ()
    failures = mine.terminate([ReturnItem(machine_id="", name="test")])  # the test driver's own domain
    assert failures == {"test": "test was not made by ohfp instance lvinst"}
    assert driver.connection.lookupByName("test").isActive()
    [other] = driver.made()
    assert other.isActive()


def test_reclaims_report_stopped_crashed_and_vanished_hosts(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    cloud = make_cloud()
    cloud.provision("req-r", kit_template(), 3)
    machines = cloud.status([acquire("req-r")])["req-r"].machines
    refs = [MachineRef(name=m.name, machine_id=m.machine_id) for m in machines]
    assert cloud.reclaimed(refs) == []
    driver.terminate_outside(machines[0].machine_id)
    gone = driver.domain(machines[1].machine_id)
    gone.destroy()
    gone.undefine()
    reasons = {r.name: (r.grace_period, r.reason) for r in cloud.reclaimed(refs)}
    assert reasons == {
        machines[0].name: (0, states.SHUTOFF_REASONS[2]),
        machines[1].name: (0, "unknown to libvirt"),
    }


def test_available_number_is_capped_by_free_memory(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    cloud = make_cloud()
    free = Hypervisor.open(TEST_URI, 0).free_memory()
    [offered] = cloud.available([kit_template(memoryMiB=32)])
    assert offered.available_number == free // (32 * 1024 * 1024)
    assert f"{TEST_URI} has {free // 1024 // 1024} MiB free" in offered.available_reason
    assert offered.attributes["nram"].value == "32"
    [unreachable] = make_cloud(LIBVIRT_URI="test:///no/such/host.xml").available([kit_template()])
    assert unreachable.available_number is None  # the host cannot be asked: not capped, logged


def test_returned_machines_are_gone_at_once(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    """A returned domain is destroyed, its overlay deleted and its definition removed: its
    return request's snapshot leaves it out, and core reports it terminated."""
    cloud = make_cloud()
    cloud.provision("req-ret", kit_template(), 2)
    machines = cloud.status([acquire("req-ret")])["req-ret"].machines
    by_name = [
        ReturnItem(machine_id="", name=machines[0].name),
        ReturnItem(machine_id=machines[1].machine_id, name=""),
    ]
    assert cloud.terminate(by_name) == {}
    assert driver.made() == [] and driver.volumes() == set()
    returned = CloudRequest(
        request_id="ret-1", kind=RequestKind.RETURN, machine_ids=tuple(m.machine_id for m in machines)
    )
    assert cloud.status([returned])["ret-1"].machines == ()
    assert cloud.terminate(by_name) == {}  # already gone: returned


def test_health_reports_each_hypervisor(make_cloud: Callable[..., LibvirtCloud], tmp_path: Path) -> None:
    [ok] = make_cloud().health()
    assert ok.ok and ok.name == f"libvirt {TEST_URI}" and "MiB free" in ok.detail
    [down] = make_cloud(
        LIBVIRT_URI=f"qemu+unix:///system?socket={tmp_path}/none", LIBVIRT_CONNECT_SECONDS=0
    ).health()
    assert not down.ok and "VIR_ERR_SYSTEM_ERROR" in down.detail


def test_a_call_lets_go_of_a_connection_libvirtd_dropped(make_cloud: Callable[..., LibvirtCloud]) -> None:
    """A provider kept warm by the resident service opens its connection again when libvirtd
    dropped it between calls (a restart); a live one is kept."""
    cloud = make_cloud()
    first = cloud.hypervisor(TEST_URI)
    cloud.call_started()
    assert cloud.hypervisor(TEST_URI) is first  # alive: kept
    first._connection.close()  # what a restarted libvirtd leaves behind
    assert not first.alive()
    cloud.call_started()
    second = cloud.hypervisor(TEST_URI)
    assert second is not first and second.alive()
    assert [h.ok for h in cloud.health()] == [True]

"""Real guests under QEMU through the generated Host Factory scripts (``nox -s guests``).

A private libvirtd runs in a network namespace of its own with isolated networks
(:mod:`testbeds.libvirt.lab_host`); the guests boot Debian's cloud kernel and a busybox
initramfs that takes a DHCP lease (:mod:`testbeds.libvirt.guest`). Every Host Factory call runs
the generated ``<call>.sh -f <input.json>`` in a new process, outside the namespace, reaching
libvirtd through its socket. The lab's own connection plays the hypervisor's administrator.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbeds.libvirt.guest import BootFiles
from testbeds.libvirt.lab_host import BASE_PREFIX, POOL, Lab
from tests.e2e.conftest import HostFactory, Installation, install, make_instance

from .conftest import read_seed

pytestmark = [pytest.mark.e2e, pytest.mark.guests]

REPO = Path(__file__).resolve().parents[2]
POLL_SECONDS = 180
ADDRESS_SECONDS = 150
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def guest_template(boot: BootFiles, template_id: str = "guest", **extra: Any) -> dict[str, Any]:
    """A template whose machines boot the test kernel and initramfs on the DHCP network."""
    return {
        "templateId": template_id,
        "maxNumber": 8,
        "domainType": "qemu",
        "vcpus": 1,
        "memoryMiB": 160,
        "kernel": str(boot.kernel),
        "initrd": str(boot.initrd),
        "cmdline": "console=ttyS0 quiet",
        "network": "ohfp-lab",
        "hostPrefix": "lab",
        **extra,
    }


@pytest.fixture(scope="session")
def lv_installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """The distributions with the test-only crash plugin (inert unless a test sets its
    variables); the service its scripts start is stopped at the end."""
    made = install(tmp_path_factory.mktemp("ohfp-libvirt-venv"), REPO / "tests" / "e2e" / "crashkit")
    yield made
    made.stop_service()


@pytest.fixture
def hf(lv_installation: Installation, lab: Lab, boot: BootFiles, tmp_path: Path) -> Iterator[HostFactory]:
    scripts = lv_installation.scripts("libvirt", tmp_path / "scripts")
    instance = make_instance(lv_installation, scripts, tmp_path / "inst", "lvinst")
    instance.write_config("config", {"LIBVIRT_URI": lab.uri, "LIBVIRT_ADDRESS_SECONDS": ADDRESS_SECONDS})
    instance.write_config("templates", {"templates": [guest_template(boot)]})
    yield instance
    lab.clear()


def request(hf: HostFactory, count: int, template: str = "guest") -> str:
    reply = hf.call("requestMachines", {"template": {"templateId": template, "machineCount": count}}).ok()
    request_id: str = reply["requestId"]
    return request_id


def wait(hf: HostFactory, request_id: str) -> dict[str, Any]:
    """getRequestStatus every second until the request is no longer running."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        [entry] = hf.status(request_id)
        if entry["status"] != "running":
            return entry
        assert time.monotonic() < deadline, f"still running after {POLL_SECONDS} s: {entry}"
        time.sleep(1)


def hosts(entry: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": m["name"], "machineId": m["machineId"]} for m in entry["machines"]]


def give_back(hf: HostFactory, held: list[dict[str, str]]) -> dict[str, Any]:
    return_id = hf.call("requestReturnMachines", {"machines": held}).ok()["requestId"]
    done = wait(hf, return_id)
    assert done["status"] == "complete", done
    assert sorted(m["machineId"] for m in done["machines"]) == sorted(h["machineId"] for h in held)
    assert {m["result"] for m in done["machines"]} == {"succeed"}
    return done


def domains(lab: Lab) -> dict[str, tuple[str, int]]:
    """Every domain in the lab: UUID → (name, state)."""
    with lab.connection() as connection:
        return {d.UUIDString(): (d.name(), d.state()[0]) for d in connection.listAllDomains(0)}


def domain_xml(lab: Lab, machine_id: str) -> str:
    with lab.connection() as connection:
        return str(connection.lookupByUUIDString(machine_id).XMLDesc(0))


def test_one_then_four_machines_complete_and_return(hf: HostFactory, lab: Lab) -> None:
    [offered] = hf.call("getAvailableTemplates").ok()["templates"]
    assert offered["attributes"]["ncpus"] == ["Numeric", "1"]
    assert offered["attributes"]["nram"] == ["Numeric", "160"]
    assert 0 < offered["availableNumber"] <= 8

    one = request(hf, 1)
    [first] = hf.status(one)
    assert first["status"] == "running"  # requestMachines returns before any guest boots
    done = wait(hf, one)
    assert done["status"] == "complete", done
    [machine] = done["machines"]
    assert machine["result"] == "succeed" and machine["status"] == "running"
    assert machine["privateIpAddress"].startswith("192.168.150."), machine
    assert UUID_RE.match(machine["machineId"])
    assert domains(lab)[machine["machineId"]][0] == machine["name"]
    assert one in domain_xml(lab, machine["machineId"])  # the request id is in the metadata

    four = request(hf, 4)
    done_four = wait(hf, four)
    assert done_four["status"] == "complete", done_four
    assert {m["result"] for m in done_four["machines"]} == {"succeed"}
    assert len({m["privateIpAddress"] for m in done_four["machines"]}) == 4

    held = hosts(done) + hosts(done_four)
    assert hf.call("getReturnRequests", {"machines": held}).ok()["requests"] == []
    give_back(hf, held)
    assert domains(lab) == {}, "a returned domain is destroyed and undefined"


def test_a_guest_destroyed_behind_host_factorys_back_is_reclaimed(hf: HostFactory, lab: Lab) -> None:
    done = wait(hf, request(hf, 2))
    assert done["status"] == "complete", done
    held = hosts(done)
    lost = held[0]
    with lab.connection() as connection:
        connection.lookupByUUIDString(lost["machineId"]).destroy()  # virsh destroy
    reclaims = hf.call("getReturnRequests", {"machines": held}).ok()["requests"]
    assert [(r["machine"], r["gracePeriod"]) for r in reclaims] == [(lost["name"], 0)], reclaims
    with lab.connection() as connection:
        connection.lookupByUUIDString(lost["machineId"]).undefine()  # virsh undefine: vanished
    reclaims = hf.call("getReturnRequests", {"machines": held}).ok()["requests"]
    assert [r["machine"] for r in reclaims] == [lost["name"]], reclaims
    give_back(hf, held)
    assert domains(lab) == {}


def test_a_request_larger_than_free_memory_is_refused(hf: HostFactory, lab: Lab, boot: BootFiles) -> None:
    with lab.connection() as connection:
        stats = connection.getMemoryStats(-1, 0)
    free_mib = sum(stats[k] for k in ("free", "buffers", "cached")) // 1024
    big = guest_template(boot, "big", memoryMiB=int(free_mib * 0.6))  # one fits, two do not
    hf.write_config("templates", {"templates": [big]})
    [offered] = hf.call("getAvailableTemplates").ok()["templates"]
    assert offered["availableNumber"] == 1, offered
    reply = hf.call("requestMachines", {"template": {"templateId": "big", "machineCount": 2}})
    assert reply.code == 2, reply.doc
    assert "$.template.machineCount" in reply.doc["message"] and "MiB free" in reply.doc["message"]
    assert "requestId" not in reply.doc
    assert domains(lab) == {}


def test_libvirtd_restarted_in_the_middle_of_a_request(hf: HostFactory, lab: Lab) -> None:
    request_id = request(hf, 2)
    lab.restart_libvirtd()  # while the guests boot
    [during] = hf.status(request_id)
    assert during["status"] == "running", during
    lab.restart_libvirtd()
    done = wait(hf, request_id)
    assert done["status"] == "complete", done
    alive = domains(lab)
    assert {alive[m["machineId"]][1] for m in done["machines"]} == {1}, "the guests survive libvirtd"
    give_back(hf, hosts(done))


def test_return_of_a_machine_already_gone(hf: HostFactory, lab: Lab) -> None:
    done = wait(hf, request(hf, 1))
    held = hosts(done)
    with lab.connection() as connection:
        domain = connection.lookupByUUIDString(held[0]["machineId"])
        domain.destroy()
        domain.undefine()
    give_back(hf, held)
    assert domains(lab) == {}


def test_a_guest_without_an_address_by_the_deadline_fails(hf: HostFactory, lab: Lab, boot: BootFiles) -> None:
    hf.write_config("config", {"LIBVIRT_URI": lab.uri, "LIBVIRT_ADDRESS_SECONDS": 8})
    hf.write_config("templates", {"templates": [guest_template(boot, "nodhcp", network="ohfp-nodhcp")]})
    request_id = request(hf, 1, "nodhcp")
    done = wait(hf, request_id)
    assert done["status"] == "complete_with_error", done
    [machine] = done["machines"]
    assert machine["result"] == "fail" and "no address after" in machine["message"], machine
    assert domains(lab) == {}, "a machine without an address by the deadline is destroyed"


def test_a_request_killed_after_defining_its_domains_leaves_nothing(hf: HostFactory, lab: Lab) -> None:
    ask = {"template": {"templateId": "guest", "machineCount": 2}}
    killed = subprocess.run(
        hf.command("requestMachines", ask),
        env={
            **hf.env(),
            "OHFP_CRASH_AT": "after:ohfp_provision#1",
            "OHFP_SERVICE": "off",
        },  # the call's own process
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    made = domains(lab)
    assert len(made) == 2, "the dead call defined and started its two domains, once each"
    tagged = {re.search(r"<ohfp:request>([^<]+)<", domain_xml(lab, machine_id)) for machine_id in made}
    assert len({match.group(1) for match in tagged if match}) == 1, "both carry the request id"
    hf.call("getAvailableTemplates").ok()  # the next call, whichever it is, reconciles first
    assert domains(lab) == {}, "the next call removed what the dead call made"
    log = (hf.logdir / "ohfp-lvinst.log").read_text()
    assert any(json.loads(line).get("event") == "domain removed" for line in log.splitlines())


# -- user data (NoCloud seed) and qcow2 overlays --------------------------------------------------

SEEN_SCRIPT = """#!/bin/sh
# What this machine saw, sent back as its DHCP host name: that this user data ran (TOKEN),
# the first line of its disk (the base volume's, read through its overlay) and its
# meta-data's local-hostname. Then it writes to its disk (the overlay, never the base).
waited=0
until [ -b /dev/vda ] || [ $waited -ge 100 ]; do sleep 0.1; waited=$((waited + 1)); done
host=$(sed -n 's/^local-hostname: //p' /seed/meta-data)
printf 'written-by-%s' "$host" | dd of=/dev/vda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
echo "TOKEN-$(head -n 1 /dev/vda)-$host" > /etc/hostname
"""
WRITTEN_AT = 512


@pytest.fixture(scope="session")
def base_volume(lab: Lab) -> tuple[str, str]:
    """A 1 MiB qcow2 base volume in the lab's pool whose first line is a marker: (name, marker)."""
    marker = f"base{secrets.token_hex(3)}"
    name = f"{BASE_PREFIX}{marker}.qcow2"
    raw = lab.root / f"{marker}.raw"
    raw.write_bytes(f"{marker}\n".encode().ljust(1024 * 1024, b"\0"))
    convert = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(lab.pool_dir / name)]
    subprocess.run(convert, check=True, capture_output=True)
    with lab.connection() as connection:
        connection.storagePoolLookupByName(POOL).refresh(0)
    return name, marker


def guest_view(image: Path, tmp_path: Path) -> bytes:
    """What a guest sees of a qcow2 image (backing chain included), read while QEMU runs it."""
    out = tmp_path / f"{image.name}.raw"
    convert = ["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(image), str(out)]
    subprocess.run(convert, check=True, capture_output=True)
    return out.read_bytes()


def download(lab: Lab, volume: str) -> bytes:
    """A volume's content through libvirt's stream API, as the provider wrote it."""
    received = bytearray()
    with lab.connection() as connection:
        stream = connection.newStream(0)
        connection.storagePoolLookupByName(POOL).storageVolLookupByName(volume).download(stream, 0, 0, 0)
        stream.recvAll(lambda _stream, data, into: into.extend(data), received)
        stream.finish()
    return bytes(received)


def test_user_data_and_the_overlay_reach_real_guests(
    hf: HostFactory, lab: Lab, boot: BootFiles, base_volume: tuple[str, str], tmp_path: Path
) -> None:
    """Two machines boot the test kernel with a qcow2 overlay of the base volume as their disk
    and their NoCloud seed as a CD-ROM; the guest runs the user data, which reports what the
    guest saw as its DHCP host name."""
    base, marker = base_volume
    token = f"ud{secrets.token_hex(3)}"
    script = SEEN_SCRIPT.replace("TOKEN", token)
    (hf.confdir / "seen.sh").write_text(script)
    seeded = guest_template(
        boot,
        "seeded",
        cmdline="console=ttyS0 quiet ohfp.seed",
        baseVolume={"pool": POOL, "volume": base},
        userDataFile="seen.sh",
    )
    hf.write_config("templates", {"templates": [seeded]})
    done = wait(hf, request(hf, 2, "seeded"))
    assert done["status"] == "complete", done
    machines = {m["name"]: m for m in done["machines"]}
    assert lab.volumes() == {f"{name}{end}" for name in machines for end in (".qcow2", "-cidata.iso")}
    with lab.connection() as connection:
        leases = connection.networkLookupByName("ohfp-lab").DHCPLeases()
    seen = {lease["ipaddr"]: lease.get("hostname") for lease in leases}
    for name, machine in machines.items():
        assert seen[machine["privateIpAddress"]] == f"{token}-{marker}-{name}", (name, leases)
        assert read_seed(download(lab, f"{name}-cidata.iso")) == {
            "user-data": script.encode(),
            "meta-data": f"instance-id: {machine['machineId']}\nlocal-hostname: {name}\n".encode(),
        }
        overlay = lab.pool_dir / f"{name}.qcow2"
        inspect = ["qemu-img", "info", "-U", "--output=json", str(overlay)]
        layers = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
        assert (layers["format"], layers["backing-filename"]) == ("qcow2", str(lab.pool_dir / base)), layers
        written = f"written-by-{name}".encode()
        assert guest_view(overlay, tmp_path)[WRITTEN_AT : WRITTEN_AT + len(written)] == written
    untouched = guest_view(lab.pool_dir / base, tmp_path)
    assert untouched.startswith(f"{marker}\n".encode()) and untouched[WRITTEN_AT:].strip(b"\0") == b""
    give_back(hf, hosts(done))
    assert domains(lab) == {} and lab.volumes() == set(), "each machine's overlay and seed went with it"

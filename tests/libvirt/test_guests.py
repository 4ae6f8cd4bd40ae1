"""Real guests under QEMU through the generated Host Factory scripts (``nox -s guests``).

A private libvirtd runs in a network namespace of its own with isolated networks
(:mod:`tests.libvirt.lab_host`); the guests boot Debian's cloud kernel and a busybox
initramfs that takes a DHCP lease (:mod:`tests.libvirt.guest`). Every Host Factory call runs
the generated ``<call>.sh -f <input.json>`` in a new process, outside the namespace, reaching
libvirtd through its socket. The lab's own connection plays the hypervisor's administrator.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import HostFactory, Installation, install, make_instance

from .guest import BootFiles
from .lab_host import Lab

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

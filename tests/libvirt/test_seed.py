"""User data as a NoCloud seed: the image, the seed volume, and its removal with the machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from ohfp_core.errors import CapacityError
from ohfp_core.models import CloudRequest, RequestKind, ReturnItem
from ohfp_core.testing import ProvisionInterrupted
from ohfp_libvirt import spec as specs
from ohfp_libvirt.cloud import LibvirtCloud
from ohfp_libvirt.domain_xml import identity, read_domain
from ohfp_libvirt.hypervisor import Guest, Hypervisor
from ohfp_libvirt.seed import seed_iso

from .conftest import POOL, TestDriver, kit_template, read_seed

SCRIPT = b"#!/bin/sh\necho seeded > /tmp/seeded\n"


def test_the_seed_image_is_a_cidata_volume_with_user_and_meta_data(tmp_path: Path) -> None:
    machine_uuid, name = "5d3f8c1e-0000-4c52-8e0d-2f6a1b9c7e44", "ohfp-0123456789ab"
    image = seed_iso(SCRIPT, machine_uuid, name)
    assert len(image) % 2048 == 0
    assert read_seed(image) == {
        "user-data": SCRIPT,
        "meta-data": f"instance-id: {machine_uuid}\nlocal-hostname: {name}\n".encode(),
    }
    if shutil.which("blkid") is None:
        pytest.skip("blkid (util-linux) is not installed: the label is checked by pycdlib alone")
    (tmp_path / "seed.iso").write_bytes(image)
    probe = subprocess.run(
        ["blkid", "-p", "-o", "export", str(tmp_path / "seed.iso")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {"TYPE=iso9660", "LABEL=cidata"} <= set(probe.stdout.split()), probe.stdout


def test_user_data_problems_name_the_key_and_never_echo_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"x" * (specs.MAX_USER_DATA_BYTES + 1))
    cases: dict[str, list[dict[str, Any]]] = {
        "userData": [
            {"userData": "s3cret" * 200_000},
            {"userData": {"password": "s3cret"}},
            {"userData": " "},
        ],
        "userDataFile": [
            {"userDataFile": "no-such-file.yaml"},
            {"userDataFile": "big.yaml"},
            {"userData": "a", "userDataFile": "big.yaml"},
        ],
    }
    for key, bad in cases.items():
        for fields in bad:
            [problem] = specs.problems(kit_template(**fields), tmp_path)
            assert problem.path == key, (fields, problem)
            assert "s3cret" not in problem.message
    [unreadable] = specs.problems(kit_template(userDataFile="no-such-file.yaml"), tmp_path)
    assert str(tmp_path / "no-such-file.yaml") in unreadable.message
    [too_big] = specs.problems(kit_template(userDataFile="big.yaml"), tmp_path)
    assert f"at most {specs.MAX_USER_DATA_BYTES}" in too_big.message
    assert "s3cret" not in repr(specs.parse(kit_template(userData="s3cret"), tmp_path))


def test_each_machine_gets_its_own_seed_volume_named_for_it(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver, tmp_path: Path
) -> None:
    (tmp_path / "user-data.sh").write_bytes(SCRIPT)  # a relative path is read from the config dir
    cloud = make_cloud()
    assert cloud.validate(kit_template(userDataFile="user-data.sh")) == []
    cloud.provision("req-seed", kit_template(userDataFile="user-data.sh"), 2)
    names = sorted(domain.name() for domain in driver.made())
    assert names == sorted(identity("lvinst", "req-seed", i, "ohfp")[1] for i in range(2))
    assert driver.volumes() == {f"{name}{suffix}" for name in names for suffix in (".qcow2", "-cidata.iso")}
    for domain in driver.made():
        name, machine_uuid = domain.name(), domain.UUIDString()
        seed = f"{name}-cidata.iso"
        assert read_seed(driver.uploads[seed]) == {
            "user-data": SCRIPT,
            "meta-data": f"instance-id: {machine_uuid}\nlocal-hostname: {name}\n".encode(),
        }
        volume = driver.pool.storageVolLookupByName(seed)
        assert volume.info()[1] == len(driver.uploads[seed])
        volume_xml = ET.fromstring(volume.XMLDesc(0))  # noqa: S314  (libvirt's own XML)
        assert volume_xml.findtext("target/permissions/mode") == "0600"
        root = ET.fromstring(domain.XMLDesc(0))  # noqa: S314
        [cdrom] = root.findall("devices/disk[@device='cdrom']")
        assert cdrom.find("source").attrib == {"pool": POOL, "volume": seed}  # type: ignore[union-attr]
        assert cdrom.find("readonly") is not None
        assert cdrom.find("target").get("bus") == "scsi"  # type: ignore[union-attr]
        assert root.find("devices/controller[@model='virtio-scsi']") is not None
        tag = read_domain(domain.XMLDesc(0)).tag
        assert tag is not None and [v.name for v in tag.volumes] == [f"{name}.qcow2", seed]


def test_a_template_without_user_data_has_no_seed_and_never_loads_pycdlib() -> None:
    probe = (
        "import sys\n"
        "from ohfp_core.models import Template\n"
        "from ohfp_libvirt import spec\n"
        "from ohfp_libvirt.domain_xml import Tag, domain_xml\n"
        "t = Template(template_id='t', max_number=1, fields={'vcpus': 1, 'memoryMiB': 64, 'kernel': '/k'})\n"
        "tag = Tag(instance='i', request_id='r', template_id='t', created=0)\n"
        "xml = domain_xml(spec.parse(t), tag, '5d3f8c1e-0000-4c52-8e0d-2f6a1b9c7e44', 'ohfp-x')\n"
        "import ohfp_libvirt.cloud, ohfp_libvirt.provider\n"
        "print('cdrom' in xml, 'pycdlib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_the_seed_goes_with_the_machine_on_return(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    cloud = make_cloud()
    cloud.provision("req-ret", kit_template(userData="#cloud-config\n"), 2)
    assert len(driver.volumes()) == 4
    assert (
        cloud.terminate([ReturnItem(machine_id=d.UUIDString(), name=d.name()) for d in driver.made()]) == {}
    )
    assert driver.made() == [] and driver.volumes() == set()


def test_a_call_killed_once_its_first_seed_exists_leaves_nothing_after_the_next_call(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed right after the first machine's seed was written: the domain's record names the
    seed, so cancelling the request by its id alone (the next call) removes it."""
    upload = Hypervisor.upload
    seen: list[set[str]] = []

    def upload_then_die(hypervisor: Hypervisor, pool: str, name: str, data: bytes) -> None:
        upload(hypervisor, pool, name, data)
        seen.append(driver.volumes())
        raise ProvisionInterrupted("killed")

    monkeypatch.setattr(Hypervisor, "upload", upload_then_die)
    with pytest.raises(ProvisionInterrupted):
        make_cloud().provision("req-killed", kit_template(userData="#cloud-config\n"), 3)
    monkeypatch.undo()
    [domain] = driver.made()
    tag = read_domain(domain.XMLDesc(0)).tag
    assert tag is not None and tag.request_id == "req-killed"
    assert seen == [{v.name for v in tag.volumes}] and len(seen[0]) == 2  # overlay and seed
    next_call = make_cloud()
    assert next_call.cancel(CloudRequest(request_id="req-killed", kind=RequestKind.ACQUIRE)) is True
    assert driver.made() == [] and driver.volumes() == set()


def test_a_machine_that_fails_to_start_takes_its_seed_with_it(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, starts = Guest.start, []

    def second_start_fails(guest: Guest) -> None:
        starts.append(guest.info.name)
        if len(starts) == 2:
            raise CapacityError("virDomainCreate: Cannot allocate memory", "VIR_ERR_INTERNAL_ERROR")
        start(guest)

    monkeypatch.setattr(Guest, "start", second_start_fails)
    with pytest.raises(CapacityError):
        make_cloud().provision("req-nomem", kit_template(userData="#cloud-config\n"), 2)
    assert {f"{name}-cidata.iso" for name in starts} == set(driver.uploads), "both seeds were written"
    assert driver.made() == [] and driver.volumes() == set(), "both machines and their volumes removed"


def test_a_kernel_template_makes_its_seed_in_its_pool(
    make_cloud: Callable[..., LibvirtCloud], driver: TestDriver
) -> None:
    with_base = kit_template(kernel="/boot/vmlinuz", userData="#cloud-config\n")
    assert specs.parse(with_base).pool == POOL  # the base volume's pool
    kernel_only = attrs.evolve(
        with_base, fields={k: v for k, v in with_base.fields.items() if k != "baseVolume"}
    )
    assert specs.parse(kernel_only).pool == specs.DEFAULT_POOL
    in_pool = attrs.evolve(kernel_only, fields={**kernel_only.fields, "pool": POOL})
    make_cloud().provision("req-kernel", in_pool, 1)
    [domain] = driver.made()
    assert driver.volumes() == {f"{domain.name()}-cidata.iso"}  # no base volume: no overlay

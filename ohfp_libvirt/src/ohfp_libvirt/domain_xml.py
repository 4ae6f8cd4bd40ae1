"""Domain XML: what ohfp writes into a domain's definition and reads back from it.

Every domain ohfp defines carries, in its ``<metadata>``, an ``<ohfp:machine>`` element
(namespace :data:`NAMESPACE`) naming the provider instance, the request and the template it
was made for, when it was made and the volumes made for it (its qcow2 overlay, its NoCloud
seed), whose names follow from the domain's. The metadata is part of the definition, so it
exists from the moment the domain does and before any of its volumes: after a crash, the
request id is how ``ohfp_cancel_request`` finds what a dead call made, as tags are on AWS.

A machine's UUID and name are derived from (instance, request id, index) alone, so a second
provisioning call for the same request defines the same domains again, which libvirt treats
as the same domain: it never makes a second set.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from attrs import frozen

from ohfp_libvirt.spec import Spec, Volume

NAMESPACE = "http://ohfp.invalid/libvirt/machine/1"
PREFIX = "ohfp"
_UUID_NAMESPACE = uuid.UUID("5d3f8c1e-9b7a-4c52-8e0d-2f6a1b9c7e44")
_Q = f"{{{NAMESPACE}}}"


@frozen(kw_only=True)
class Tag:
    """ohfp's record in a domain's metadata."""

    instance: str
    request_id: str
    template_id: str
    created: int
    volumes: tuple[Volume, ...] = ()
    address_source: str = "lease"


@frozen(kw_only=True)
class DomainInfo:
    """What a domain's XML says: its identity and, for ohfp's domains, its :class:`Tag`."""

    name: str
    uuid: str
    tag: Tag | None


def identity(instance: str, request_id: str, index: int, host_prefix: str) -> tuple[str, str]:
    """The UUID and name of machine ``index`` of a request: the same on every call."""
    machine = uuid.uuid5(_UUID_NAMESPACE, f"{instance}/{request_id}/{index}")
    return str(machine), f"{host_prefix}-{machine.hex[:12]}"


def overlay_of(spec: Spec, name: str) -> Volume | None:
    """The qcow2 overlay a machine named ``name`` boots from, when its template has a base volume."""
    if spec.base_volume is None:
        return None
    return Volume(pool=spec.pool, name=f"{name}.qcow2")


def seed_of(spec: Spec, name: str) -> Volume | None:
    """The NoCloud seed of a machine named ``name``, when its template has user data."""
    if spec.user_data is None:
        return None
    return Volume(pool=spec.pool, name=f"{name}-cidata.iso")


def volumes_of(spec: Spec, name: str) -> tuple[Volume, ...]:
    """Every volume made for a machine named ``name``: its overlay, then its seed."""
    return tuple(volume for volume in (overlay_of(spec, name), seed_of(spec, name)) if volume is not None)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def _metadata(parent: ET.Element, tag: Tag) -> None:
    machine = _sub(_sub(parent, "metadata"), f"{_Q}machine")
    _sub(machine, f"{_Q}instance", tag.instance)
    _sub(machine, f"{_Q}request", tag.request_id)
    _sub(machine, f"{_Q}template", tag.template_id)
    _sub(machine, f"{_Q}created", str(tag.created))
    _sub(machine, f"{_Q}address", source=tag.address_source)
    for volume in tag.volumes:
        _sub(machine, f"{_Q}volume", pool=volume.pool, name=volume.name)


def domain_xml(spec: Spec, tag: Tag, machine_uuid: str, name: str) -> str:
    """The definition of one machine of ``spec``, carrying ``tag`` in its metadata."""
    ET.register_namespace(PREFIX, NAMESPACE)
    domain = ET.Element("domain", {"type": spec.domain_type})
    _sub(domain, "name", name)
    _sub(domain, "uuid", machine_uuid)
    _metadata(domain, tag)
    _sub(domain, "memory", str(spec.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(spec.vcpus))
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64")
    if spec.kernel:
        _sub(os_, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_, "cmdline", spec.cmdline)
    else:
        _sub(os_, "boot", dev="hd")
    _sub(_sub(domain, "features"), "acpi")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    devices = _sub(domain, "devices")
    overlay = overlay_of(spec, name)
    if overlay is not None:
        disk = _sub(devices, "disk", type="volume", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2")
        _sub(disk, "source", pool=overlay.pool, volume=overlay.name)
        _sub(disk, "target", dev="vda", bus="virtio")
    seed = seed_of(spec, name)
    if seed is not None:  # on virtio-scsi: every cloud kernel has it, on any machine type
        cdrom = _sub(devices, "disk", type="volume", device="cdrom")
        _sub(cdrom, "driver", name="qemu", type="raw")
        _sub(cdrom, "source", pool=seed.pool, volume=seed.name)
        _sub(cdrom, "target", dev="sda", bus="scsi")
        _sub(cdrom, "readonly")
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    nic = _sub(devices, "interface", type="network")
    _sub(nic, "source", network=spec.network)
    _sub(nic, "model", type="virtio")
    _sub(devices, "serial", type="pty")
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    return ET.tostring(domain, encoding="unicode")


def overlay_xml(base_path: str, name: str, capacity_bytes: int) -> str:
    """A qcow2 volume named ``name`` backed by the volume at ``base_path``."""
    volume = ET.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", str(capacity_bytes), unit="bytes")
    _sub(_sub(volume, "target"), "format", type="qcow2")
    backing = _sub(volume, "backingStore")
    _sub(backing, "path", base_path)
    _sub(backing, "format", type="qcow2")
    return ET.tostring(volume, encoding="unicode")


def seed_volume_xml(name: str, size_bytes: int) -> str:
    """A raw volume of ``size_bytes`` for a seed image, readable by its owner alone (user data
    may hold secrets)."""
    volume = ET.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", str(size_bytes), unit="bytes")
    target = _sub(volume, "target")
    _sub(target, "format", type="raw")
    _sub(_sub(target, "permissions"), "mode", "0600")
    return ET.tostring(volume, encoding="unicode")


def _tag(root: ET.Element) -> Tag | None:
    machine = root.find(f"metadata/{_Q}machine")
    if machine is None:
        return None
    request_id = machine.findtext(f"{_Q}request")
    created = machine.findtext(f"{_Q}created") or "0"
    address = machine.find(f"{_Q}address")
    if not request_id:
        return None
    return Tag(
        instance=machine.findtext(f"{_Q}instance") or "",
        request_id=request_id,
        template_id=machine.findtext(f"{_Q}template") or "",
        created=int(created) if created.isdigit() else 0,
        volumes=tuple(
            Volume(pool=v.get("pool", ""), name=v.get("name", ""))
            for v in machine.findall(f"{_Q}volume")
            if v.get("pool") and v.get("name")
        ),
        address_source=address.get("source", "lease") if address is not None else "lease",
    )


def read_domain(text: str) -> DomainInfo:
    """A domain's identity and ohfp tag (None for a domain ohfp did not make) from its XML."""
    root = ET.fromstring(text)  # noqa: S314  (libvirt's own XML)
    return DomainInfo(name=root.findtext("name") or "", uuid=root.findtext("uuid") or "", tag=_tag(root))

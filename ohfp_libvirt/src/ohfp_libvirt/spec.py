"""A libvirt template: the keys of a templates-file entry, parsed once, problems by field.

Besides core's keys (``templateId``, ``maxNumber``, ``attributes``) a libvirt template has:

- ``uri``: the libvirt connection URI (default: the config's ``LIBVIRT_URI``);
- ``domainType``: ``kvm`` (default) or ``qemu`` (software emulation, no /dev/kvm);
- ``vcpus``: virtual CPUs; default the ``ncpus`` attribute, which it fills in;
- ``memoryMiB``: memory in MiB; default the ``nram`` attribute, which it fills in;
- ``baseVolume``: ``{"pool": P, "volume": V}``: each machine boots a qcow2 overlay of V;
- ``kernel``, ``initrd``, ``cmdline``: a kernel on the hypervisor host to boot directly;
- ``userData``: user data as text, or ``userDataFile``: the path of a file holding it (a
  relative path is taken from the instance's config directory): each machine gets a NoCloud
  seed (:mod:`ohfp_libvirt.seed`) holding it, at most :data:`MAX_USER_DATA_BYTES`;
- ``pool``: the storage pool of each machine's own volumes, its overlay and its seed
  (default: the base volume's pool, else ``default``);
- ``network``: the libvirt network of the machine's NIC (default ``default``);
- ``addressSource``: where the address comes from: ``lease`` (DHCP, default), ``agent``, ``arp``;
- ``hostPrefix``: domain (host) names are ``<hostPrefix>-<12 hex>`` (default ``ohfp``).

A template boots from ``baseVolume``, ``kernel`` or both (a kernel with a disk).
:func:`problems` reports every bad key by its name; :func:`parse` raises the first as a
:class:`~ohfp_core.errors.ConfigError`. Reading a template reads its ``userDataFile`` and
calls no hypervisor; the user data itself is never part of a message or a ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from ohfp_core.errors import ConfigError
from ohfp_core.models import Attribute, Problem, Template

DOMAIN_TYPES = ("kvm", "qemu")
ADDRESS_SOURCES = ("lease", "agent", "arp")
MIN_MEMORY_MIB = 1
DEFAULT_POOL = "default"
MAX_USER_DATA_BYTES = 1024 * 1024
"""The most user data a machine's seed carries (it is built in memory and sent once per machine)."""
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_CORE_KEYS = frozenset({"templateId", "maxNumber", "attributes", "availableNumber", "requestedMachines"})
KNOWN_KEYS = frozenset(
    {
        "uri",
        "domainType",
        "vcpus",
        "memoryMiB",
        "baseVolume",
        "kernel",
        "initrd",
        "cmdline",
        "network",
        "addressSource",
        "hostPrefix",
        "userData",
        "userDataFile",
        "pool",
    }
)


@frozen(kw_only=True)
class Volume:
    """A storage volume by pool and name."""

    pool: str
    name: str


@frozen(kw_only=True)
class Spec:
    """What a machine of a template is made of (every field checked)."""

    uri: str | None
    domain_type: str
    vcpus: int
    memory_mib: int
    base_volume: Volume | None
    kernel: str | None
    initrd: str | None
    cmdline: str | None
    network: str
    address_source: str
    host_prefix: str
    pool: str
    """Where the machine's own volumes (overlay, seed) are made."""
    user_data: bytes | None = attrs.field(default=None, repr=False)
    """The seed's ``user-data``, or None for a machine without a seed."""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _text(fields: Mapping[str, Any], key: str, found: list[Problem]) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        found.append(Problem(key, f"must be a non-empty string, got {value!r}"))
        return None
    return value


def _size(template: Template, key: str, attribute: str, least: int, found: list[Problem]) -> int:
    """``fields[key]``, else the attribute; a Problem when neither is a whole number ≥ least."""
    given = template.fields.get(key)
    from_attribute = template.attributes.get(attribute)
    value = _int(given) if given is not None else None
    if given is not None and (value is None or value < least):
        found.append(Problem(key, f"must be a whole number ≥ {least}, got {given!r}"))
        return least
    implied = _int(from_attribute.value) if from_attribute is not None else None
    if value is not None and implied is not None and implied != value:
        found.append(Problem(key, f"is {value} but attribute {attribute} says {implied}: give one of them"))
    if value is None:
        value = implied
    if value is None or value < least:
        found.append(Problem(key, f"missing: give {key} (a whole number ≥ {least}) or attribute {attribute}"))
        return least
    return value


def _volume(value: Any, found: list[Problem]) -> Volume | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        pool, name = value.get("pool"), value.get("volume")
        usable = isinstance(pool, str) and pool and isinstance(name, str) and name
        if usable and set(value) <= {"pool", "volume"}:
            return Volume(pool=str(pool), name=str(name))
    found.append(Problem("baseVolume", f'must be {{"pool": POOL, "volume": VOLUME}}, got {value!r}'))
    return None


def _read_file(named: str, confdir: Path | None) -> bytes | str:
    """The bytes of the file ``named`` (relative to ``confdir``), or why it cannot be read."""
    path = Path(named).expanduser()
    if not path.is_absolute() and confdir is not None:
        path = confdir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        return f"cannot read {str(path)!r}: {exc.strerror or exc}"


def _user_data(fields: Mapping[str, Any], confdir: Path | None, found: list[Problem]) -> bytes | None:
    """``userData`` as UTF-8, or the bytes of the ``userDataFile``; a Problem naming the key
    (never quoting the user data) when both are given, the text is not text, the file cannot
    be read, or the data is larger than :data:`MAX_USER_DATA_BYTES`."""
    inline, named = fields.get("userData"), _text(fields, "userDataFile", found)
    if inline is None and named is None:
        return None
    data: bytes | str  # the user data, or the problem with it
    if inline is not None and named is not None:
        data = "give userData or userDataFile, not both"
    elif named is not None:
        data = _read_file(named, confdir)
    elif not isinstance(inline, str) or not inline.strip():
        data = "must be non-empty text"
    else:
        try:
            data = inline.encode()
        except UnicodeEncodeError:
            data = "is not valid Unicode text"
    if isinstance(data, bytes) and len(data) > MAX_USER_DATA_BYTES:
        data = f"is {len(data)} bytes; a seed carries at most {MAX_USER_DATA_BYTES}"
    if isinstance(data, str):
        found.append(Problem("userDataFile" if named is not None else "userData", data))
        return None
    return data


def _choice(fields: Mapping[str, Any], key: str, allowed: tuple[str, ...], found: list[Problem]) -> str:
    value = fields.get(key, allowed[0])
    if value not in allowed:
        found.append(Problem(key, f"must be one of {', '.join(allowed)}, got {value!r}"))
        return allowed[0]
    return str(value)


def read(template: Template, confdir: Path | None = None) -> tuple[Spec, list[Problem]]:
    """The template's :class:`Spec` and every problem found (the spec is usable only without any).

    :param confdir: where a relative ``userDataFile`` is (the instance's config directory).
    """
    fields = template.fields
    found = [
        Problem(key, "unknown template key for the libvirt provider")
        for key in fields
        if key not in KNOWN_KEYS and key not in _CORE_KEYS
    ]
    kernel = _text(fields, "kernel", found)
    base = _volume(fields.get("baseVolume"), found)
    if kernel is None and base is None and "baseVolume" not in fields and "kernel" not in fields:
        found.append(Problem("baseVolume", "a template boots from baseVolume, kernel (with initrd) or both"))
    for key in ("initrd", "cmdline"):
        if key in fields and "kernel" not in fields:
            found.append(Problem(key, "needs kernel"))
    prefix = _text(fields, "hostPrefix", found) or "ohfp"
    if not _PREFIX_RE.match(prefix):
        found.append(
            Problem("hostPrefix", f"must be 1-40 of [a-z0-9-], starting alphanumeric, got {prefix!r}")
        )
    spec = Spec(
        uri=_text(fields, "uri", found),
        domain_type=_choice(fields, "domainType", DOMAIN_TYPES, found),
        vcpus=_size(template, "vcpus", "ncpus", 1, found),
        memory_mib=_size(template, "memoryMiB", "nram", MIN_MEMORY_MIB, found),
        base_volume=base,
        kernel=kernel,
        initrd=_text(fields, "initrd", found),
        cmdline=_text(fields, "cmdline", found),
        network=_text(fields, "network", found) or "default",
        address_source=_choice(fields, "addressSource", ADDRESS_SOURCES, found),
        host_prefix=prefix,
        pool=_text(fields, "pool", found) or (base.pool if base is not None else DEFAULT_POOL),
        user_data=_user_data(fields, confdir, found),
    )
    return spec, found


def problems(template: Template, confdir: Path | None = None) -> list[Problem]:
    """Every problem of ``template``'s libvirt keys, each naming its key."""
    return read(template, confdir)[1]


def parse(template: Template, confdir: Path | None = None) -> Spec:
    """The template's :class:`Spec`.

    :raises ConfigError: naming the first bad key as ``$.templates[<id>].<key>``.
    """
    spec, found = read(template, confdir)
    if found:
        first = found[0]
        raise ConfigError(f"$.templates[{template.template_id}].{first.path}: {first.message}")
    return spec


def complete(template: Template, spec: Spec) -> Template:
    """``template`` with ``type``, ``ncpus`` and ``nram`` filled in from its spec when missing."""
    derived = {
        "type": Attribute("String", "X86_64"),
        "ncpus": Attribute("Numeric", str(spec.vcpus)),
        "nram": Attribute("Numeric", str(spec.memory_mib)),
    }
    return attrs.evolve(template, attributes={**derived, **template.attributes})

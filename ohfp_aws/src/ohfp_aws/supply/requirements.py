"""Instance types chosen by shape: AWS's ``InstanceRequirements`` for a template.

A template may name the shape of its machines instead of (or beside) ``vmTypes``:

- flat keys in IBM's style: ``vCpusMin``, ``vCpusMax`` (vCPUs) and ``memoryMiBMin``,
  ``memoryMiBMax`` (MiB);
- ``instanceRequirements``: AWS's ``InstanceRequirements`` object as EC2 Fleet, Auto Scaling
  and Spot Fleet take it (``{"VCpuCount": {"Min": 2}, "MemoryMiB": {"Min": 4096},
  "CpuManufacturers": ["intel"], …}``), passed through as written.

The two merge into one object (:func:`merged`): the flat keys fill ``VCpuCount`` and
``MemoryMiB``, and ``vmTypes`` beside them becomes ``AllowedInstanceTypes``. AWS requires
``VCpuCount.Min`` and ``MemoryMiB.Min``. AWS leaves burstable types out unless
``BurstablePerformance`` says otherwise, and ``AllowedInstanceTypes`` only narrows what the
other keys allow: when an allowed type is burstable (:func:`burstable`) and the template does
not say, ``BurstablePerformance`` is ``included``, or those types would never launch.
:func:`problems` checks the object offline (known keys, the kind and range of each value,
units), naming each key as written. Host Factory's ``ncpus`` and ``nram`` come from the
lower bounds (:func:`attributes`).

RunInstances cannot launch by requirements; the other three APIs can (Auto Scaling lacks
:data:`NOT_IN_ASG`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

INT_RANGES = (
    "VCpuCount",
    "MemoryMiB",
    "AcceleratorCount",
    "AcceleratorTotalMemoryMiB",
    "BaselineEbsBandwidthMbps",
    "NetworkInterfaceCount",
)
FLOAT_RANGES = ("MemoryGiBPerVCpu", "NetworkBandwidthGbps", "TotalLocalStorageGB")
CHOICES: Mapping[str, tuple[str, ...]] = {
    "BareMetal": ("included", "required", "excluded"),
    "BurstablePerformance": ("included", "required", "excluded"),
    "LocalStorage": ("included", "required", "excluded"),
}
LIST_CHOICES: Mapping[str, tuple[str, ...]] = {
    "CpuManufacturers": ("intel", "amd", "amazon-web-services", "apple"),
    "InstanceGenerations": ("current", "previous"),
    "LocalStorageTypes": ("hdd", "ssd"),
    "AcceleratorTypes": ("gpu", "fpga", "inference", "media"),
}
LISTS = ("AcceleratorManufacturers", "AcceleratorNames", "AllowedInstanceTypes", "ExcludedInstanceTypes")
"""Lists of names AWS keeps adding to: checked as names, not against a closed list."""
PERCENTS = (
    "SpotMaxPricePercentageOverLowestPrice",
    "MaxSpotPriceAsPercentageOfOptimalOnDemandPrice",
    "OnDemandMaxPricePercentageOverLowestPrice",
)
FLAGS = ("RequireHibernateSupport", "RequireEncryptionInTransit")
OBJECTS = ("BaselinePerformanceFactors",)
KNOWN = (*INT_RANGES, *FLOAT_RANGES, *CHOICES, *LIST_CHOICES, *LISTS, *PERCENTS, *FLAGS, *OBJECTS)
"""Every key of AWS's InstanceRequirements ohfp passes through."""

NOT_IN_ASG = ("RequireEncryptionInTransit",)
"""Keys EC2 Fleet and Spot Fleet take and Auto Scaling does not."""

FLAT: Mapping[str, tuple[str, str]] = {
    "vCpusMin": ("VCpuCount", "Min"),
    "vCpusMax": ("VCpuCount", "Max"),
    "memoryMiBMin": ("MemoryMiB", "Min"),
    "memoryMiBMax": ("MemoryMiB", "Max"),
}
"""The flat template keys → where they go in InstanceRequirements."""

MIN_MEMORY_MIB = 512
"""No instance type has less memory (t3.nano): a smaller number is GiB written as MiB."""

_TYPE_NAME = re.compile(r"^[a-zA-Z0-9.*-]{1,30}$")
_BURSTABLE = re.compile(r"^t[0-9*]")
_MAX_TYPES = 400


def _number(value: Any, integral: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (not integral and isinstance(value, float))


def _range(name: str, value: Any) -> Iterator[tuple[str, str]]:
    integral = name in INT_RANGES
    kind = "an integer" if integral else "a number"
    if not isinstance(value, Mapping) or not value or set(value) - {"Min", "Max"}:
        yield name, f'must be an object {{"Min": …, "Max": …}} of {kind} each, got {value!r}'
        return
    for bound in ("Min", "Max"):
        if bound in value and (not _number(value[bound], integral) or value[bound] < 0):
            yield f"{name}.{bound}", f"must be {kind} ≥ 0, got {value[bound]!r}"
            return
    low, high = value.get("Min"), value.get("Max")
    if low is not None and high is not None and low > high:
        yield name, f"Min {low} is above Max {high}"
    if name == "VCpuCount" and "Min" in value and value["Min"] < 1:
        yield f"{name}.Min", "must be ≥ 1 (Host Factory's ncpus is the lower bound)"
    if name == "MemoryMiB":
        for bound in ("Min", "Max"):
            if bound in value and value[bound] < MIN_MEMORY_MIB:
                yield f"{name}.{bound}", memory_unit_message(value[bound])


def memory_unit_message(value: Any) -> str:
    """Why a memory size is not MiB (no instance type has fewer than 512 MiB)."""
    return (
        f"must be ≥ {MIN_MEMORY_MIB} MiB, got {value!r}: memory is in MiB "
        f"({value!r} GiB would be {value * 1024 if _number(value, False) else '…'})"
    )


def _names(name: str, value: Any, choices: Sequence[str] | None) -> Iterator[tuple[str, str]]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        yield name, f"must be a non-empty list of names, got {value!r}"
        return
    if choices is not None:
        bad = [v for v in value if v not in choices]
        if bad:
            yield name, f"{bad[0]!r} is not one of {', '.join(choices)}"
    if name in ("AllowedInstanceTypes", "ExcludedInstanceTypes"):
        bad = [v for v in value if not _TYPE_NAME.match(v)]
        if bad:
            yield name, f"{bad[0]!r} is not an instance type or pattern (like m5.large, c5*, m5a.*)"
        if len(value) > _MAX_TYPES:
            yield name, f"lists {len(value)} types; AWS takes at most {_MAX_TYPES}"


def _value(name: str, value: Any) -> Iterator[tuple[str, str]]:
    if name in INT_RANGES or name in FLOAT_RANGES:
        yield from _range(name, value)
    elif name in CHOICES:
        if value not in CHOICES[name]:
            yield name, f"must be one of {', '.join(CHOICES[name])}, got {value!r}"
    elif name in LIST_CHOICES:
        yield from _names(name, value, LIST_CHOICES[name])
    elif name in LISTS:
        yield from _names(name, value, None)
    elif name in PERCENTS:
        if not _number(value, True) or value < 0:
            yield name, f"must be an integer percentage ≥ 0, got {value!r}"
    elif name in FLAGS:
        if not isinstance(value, bool):
            yield name, f"must be true or false, got {value!r}"
    elif not isinstance(value, Mapping):
        yield name, f"must be an object, got {value!r}"


def problems(value: Any) -> list[tuple[str, str]]:
    """What is wrong with an ``instanceRequirements`` object: ``(key path, message)`` pairs,
    the path inside the object (``VCpuCount.Min``); empty when it is fine. Rules that need the
    template's other keys (the required bounds) are :func:`merged`'s callers'."""
    if not isinstance(value, Mapping) or not value:
        return [("", f"must be a non-empty object of AWS InstanceRequirements keys, got {value!r}")]
    found: list[tuple[str, str]] = []
    for name, item in value.items():
        if name not in KNOWN:
            found.append((str(name), f"unknown key; known: {', '.join(sorted(KNOWN))}"))
            continue
        found.extend(_value(name, item))
    for one, other in (
        ("AllowedInstanceTypes", "ExcludedInstanceTypes"),
        ("SpotMaxPricePercentageOverLowestPrice", "MaxSpotPriceAsPercentageOfOptimalOnDemandPrice"),
    ):
        if one in value and other in value:
            found.append((other, f"give {one} or {other}, not both"))
    return found


def merged(
    flat: Mapping[str, Any], given: Mapping[str, Any] | None, allowed: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The InstanceRequirements a template asks for: ``given`` (``instanceRequirements``) with
    the flat keys (:data:`FLAT`, None when left out) filled in and ``allowed`` (the template's
    ``vmTypes``) as ``AllowedInstanceTypes``; None when the template names no requirement."""
    if given is None and all(value is None for value in flat.values()):
        return None
    result: dict[str, Any] = {
        key: (dict(v) if isinstance(v, Mapping) else v) for key, v in (given or {}).items()
    }
    for key, (name, bound) in FLAT.items():
        if flat.get(key) is not None:
            if not isinstance(result.get(name), dict):  # (an invalid range is replaced; validation says so)
                result[name] = {}
            result[name][bound] = flat[key]
    if allowed:
        result["AllowedInstanceTypes"] = list(allowed)
    if "BurstablePerformance" not in result and burstable(result.get("AllowedInstanceTypes")):
        result["BurstablePerformance"] = "included"  # else AWS leaves the allowed T types out
    return result


def burstable(names: Any) -> list[str]:
    """The burstable performance types (the T families: ``t2``, ``t3``, ``t3a``, ``t4g`` …)
    among instance type names or patterns (``t3.micro``, ``t4g.*``, ``t*``); empty for
    anything else."""
    if not isinstance(names, list):
        return []
    return [name for name in names if isinstance(name, str) and _BURSTABLE.match(name.lower())]


def lower_bounds(requirements: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(vCPUs, MiB): the least a machine of these requirements has."""

    def low(name: str) -> int | None:
        bounds = requirements.get(name)
        value = bounds.get("Min") if isinstance(bounds, Mapping) else None
        return value if _number(value, True) else None

    return low("VCpuCount"), low("MemoryMiB")


def architecture(requirements: Mapping[str, Any]) -> str:
    """Host Factory's ``type``: ARM64 when only AWS Graviton processors are allowed, else
    X86_64 (the AMI decides in the end: set ``type`` in the attributes to say otherwise)."""
    makers = requirements.get("CpuManufacturers")
    return "ARM64" if makers == ["amazon-web-services"] else "X86_64"


def for_asg(requirements: Mapping[str, Any]) -> dict[str, Any]:
    """The requirements as Auto Scaling takes them (the same keys; :data:`NOT_IN_ASG` are
    refused earlier, by the handler)."""
    return {key: value for key, value in requirements.items() if key not in NOT_IN_ASG}

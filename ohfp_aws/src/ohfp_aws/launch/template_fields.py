"""IBM's AWS template fields (``awsprov_templates.json``), read in one pass.

:class:`TemplateFields` is one template entry as IBM spells it, each field with its rule;
:func:`parse_template` reads a core :class:`~ohfp_core.models.Template` into it and builds
the :class:`~ohfp_aws.vocabulary.AwsTemplate` handlers work with. Spellings follow IBM:
``vmType`` (one type) or ``vmTypes`` (type → weight), ``subnetId`` as one id, a
comma-separated list or an array, ``instanceTags`` as ``"k=v;k2=v2"``, and
``userDataScript`` as the *path* of a file whose content becomes the user data (a relative
path is taken from the provider's config directory). Instance types may also be chosen by
shape: ``vCpusMin``/``vCpusMax``, ``memoryMiBMin``/``memoryMiBMax`` and AWS's
``instanceRequirements`` object (:mod:`ohfp_aws.supply.requirements`). :class:`Templates` keeps each
template's parse for the rest of the call, so the file is read once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import attrs
from attrs import field, frozen

from ohfp_aws.documents import (
    AS_GIVEN,
    ID_LIST,
    PRICE,
    TAGS,
    USER_DATA,
    Checked,
    broken,
    integer,
    read,
    read_keys,
    text,
)
from ohfp_aws.supply import requirements
from ohfp_aws.vocabulary import (
    APIS,
    ASG,
    FLEET_TYPES,
    ON_DEMAND_STRATEGIES,
    RUN_INSTANCES,
    SPOT_STRATEGIES,
    AwsTemplate,
)
from ohfp_core.errors import ConfigError
from ohfp_core.models import Problem, Template
from ohfp_core.parsing import FieldError, key, one_of, rule
from ohfp_core.parsing import unknown_key as unknown_key_among
from ohfp_core.templates import MAX_UNITS

PRICE_TYPES = ("ondemand", "spot", "heterogeneous")
VOLUME_TYPES = ("gp2", "gp3", "io1", "io2", "standard")
IOPS_RANGE = {"io1": (100, 64000), "io2": (100, 256000), "gp3": (3000, 80000)}
MAX_NUMBER = MAX_UNITS  # core's bound: IBM's plugin stops at 10000, large grids go beyond
UNLISTED = "unlisted"  # metadata: a key accepted but never suggested for an unknown one

_INSTANCE_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9-]+$")

Given = Annotated[Any, AS_GIVEN]


def _image(value: Any) -> str | None:
    if not isinstance(value, str) or not (value.startswith("ami-") or value.startswith("/")):
        return f"must be an AMI id (ami-…) or an SSM parameter path (/…), got {value!r}"
    return None


def _instance_type(value: Any) -> str | None:
    if not isinstance(value, str) or not _INSTANCE_TYPE_RE.match(value):
        return f"must be an instance type (like t3.micro), got {value!r}"
    return None


def _ids(prefix: str) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, tuple):
            return f"must be an id, a comma-separated list or an array of ids, got {value!r}"
        bad = [item for item in value if not item.startswith(prefix)]
        return f"{bad[0]!r} is not a {prefix}… id" if bad else None

    return rule(check)


def _type_map(low: int, what: str) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping) or not value:
            return f"must be a non-empty object of instance type → {what}, got {value!r}"
        for name, number in value.items():
            if not isinstance(name, str) or not _INSTANCE_TYPE_RE.match(name):
                return f"{name!r} is not an instance type (like m5.large)"
            if integer(low)(number):
                return f"{name}: {what} must be an integer ≥ {low}, got {number!r}"
        return None

    return rule(check)


def _vcpus(value: Any) -> str | None:
    return integer(1)(value)


def _memory_mib(value: Any) -> str | None:
    if isinstance(value, str):
        return f"must be an integer number of MiB (16 GiB is 16384), got {value!r}"
    return integer(0)(value) or (
        requirements.memory_unit_message(value) if value < requirements.MIN_MEMORY_MIB else None
    )


@frozen(kw_only=True)
class TemplateFields:
    """One entry of ``awsprov_templates.json``, by IBM's keys (core's ``templateId`` and
    ``maxNumber`` included; ``attributes`` are core's alone)."""

    template_id: str | None = field(default=None, metadata={**key("templateId"), UNLISTED: True})
    max_number: Given = field(
        default=None, validator=rule(integer(-1, MAX_NUMBER)), metadata={**key("maxNumber"), UNLISTED: True}
    )
    price_type: Given = field(
        default="ondemand", metadata=key("priceType"), validator=rule(one_of(PRICE_TYPES))
    )
    image_id: Given = field(default=None, metadata=key("imageId"), validator=rule(_image))
    launch_template_id: Given = field(
        default=None, metadata=key("launchTemplateId"), validator=rule(text("lt-"))
    )
    subnet_ids: Annotated[tuple[str, ...], ID_LIST] = field(
        default=(), metadata=key("subnetId"), validator=_ids("subnet-")
    )
    vm_type: Given = field(default=None, metadata=key("vmType"), validator=rule(_instance_type))
    vm_types: Given = field(default=None, metadata=key("vmTypes"), validator=_type_map(1, "weight"))
    vm_types_on_demand: Given = field(
        default=None, metadata=key("vmTypesOnDemand"), validator=_type_map(1, "weight")
    )
    vm_types_priority: Given = field(
        default=None, metadata=key("vmTypesPriority"), validator=_type_map(0, "priority")
    )
    security_group_ids: Annotated[tuple[str, ...], ID_LIST] = field(
        default=(), metadata=key("securityGroupIds"), validator=_ids("sg-")
    )
    key_name: Given = field(default=None, metadata=key("keyName"), validator=rule(text()))
    instance_profile: Given = field(default=None, metadata=key("instanceProfile"), validator=rule(text()))
    root_device_volume_size: Given = field(
        default=None, metadata=key("rootDeviceVolumeSize"), validator=rule(integer(1, 16384))
    )
    volume_type: Given = field(default=None, metadata=key("volumeType"), validator=rule(one_of(VOLUME_TYPES)))
    iops: Given = field(default=None, validator=rule(integer(1)))  # its range depends on volumeType
    instance_tags: Annotated[Mapping[str, str], TAGS] = field(factory=dict, metadata=key("instanceTags"))
    user_data: Annotated[str | None, USER_DATA] = field(default=None, metadata=key("userDataScript"))
    fleet_role: Given = field(default=None, metadata=key("fleetRole"), validator=rule(text()))
    max_spot_price: Annotated[str | None, PRICE] = field(default=None, metadata=key("maxSpotPrice"))
    spot_fleet_request_expiry_min: Given = field(
        default=30, metadata=key("spotFleetRequestExpiry"), validator=rule(integer(1, 525600))
    )
    allocation_strategy: Given = field(
        default=None, metadata=key("allocationStrategy"), validator=rule(one_of(tuple(SPOT_STRATEGIES)))
    )
    allocation_strategy_on_demand: Given = field(
        default=None,
        metadata=key("allocationStrategyOnDemand"),
        validator=rule(one_of(tuple(ON_DEMAND_STRATEGIES))),
    )
    percent_on_demand: Given = field(
        default=None, metadata=key("percentOnDemand"), validator=rule(integer(0, 100))
    )
    pools_count: Given = field(default=None, metadata=key("poolsCount"), validator=rule(integer(1, 100)))
    v_cpus_min: Given = field(default=None, metadata=key("vCpusMin"), validator=rule(_vcpus))
    v_cpus_max: Given = field(default=None, metadata=key("vCpusMax"), validator=rule(_vcpus))
    memory_mib_min: Given = field(default=None, metadata=key("memoryMiBMin"), validator=rule(_memory_mib))
    memory_mib_max: Given = field(default=None, metadata=key("memoryMiBMax"), validator=rule(_memory_mib))
    instance_requirements: Annotated[
        Mapping[str, Any] | None, Checked("instanceRequirements", requirements.problems)
    ] = field(default=None, metadata=key("instanceRequirements"))
    provider_api: Given = field(default=None, metadata=key("providerApi"), validator=rule(one_of(APIS)))
    fleet_type: Given = field(default=None, metadata=key("fleetType"), validator=rule(one_of(FLEET_TYPES)))
    # IBM's plugin echoes these in getAvailableTemplates; accepted and ignored.
    pgrp_name: Given = field(default=None, metadata={**key("pgrpName"), UNLISTED: True})
    on_demand_capacity: Given = field(default=None, metadata={**key("onDemandCapacity"), UNLISTED: True})
    requested_machines: Given = field(default=None, metadata={**key("requestedMachines"), UNLISTED: True})

    def __attrs_post_init__(self) -> None:
        broken(TemplateFields, list(self._rules_between_fields()))

    def _rules_between_fields(self) -> Any:
        if self.image_id is None and self.launch_template_id is None:
            yield FieldError("imageId", "required (or give launchTemplateId)")
        if self.vm_type is not None and self.vm_types:
            yield FieldError("vmTypes", "give vmType or vmTypes, not both")
        if (
            self.vm_type is None
            and not self.vm_types
            and self.launch_template_id is None
            and not self.by_requirements
        ):
            yield FieldError(
                "vmType",
                "required: vmType (one type), vmTypes (type → weight) or instance requirements"
                " (vCpusMin and memoryMiBMin, or instanceRequirements)",
            )
        yield from self._requirement_rules()
        volume_type = self.volume_type or "gp2"
        if volume_type in ("io1", "io2") and self.iops is None:
            yield FieldError("iops", f"required when volumeType is {volume_type}")
        elif self.iops is not None and volume_type not in IOPS_RANGE:
            yield FieldError("iops", f"not allowed with volumeType {volume_type}")
        elif self.iops is not None:
            low, high = IOPS_RANGE[volume_type]
            if not low <= self.iops <= high:
                yield FieldError("iops", f"must be {low}..{high} for {volume_type}, got {self.iops}")
        if self.fleet_type is not None and self.provider_api in (ASG, RUN_INSTANCES):
            yield FieldError("fleetType", f"not used by providerApi {self.provider_api}")

    @property
    def flat_requirements(self) -> dict[str, Any]:
        """The flat requirement keys as written (None when left out)."""
        return {
            "vCpusMin": self.v_cpus_min,
            "vCpusMax": self.v_cpus_max,
            "memoryMiBMin": self.memory_mib_min,
            "memoryMiBMax": self.memory_mib_max,
        }

    @property
    def by_requirements(self) -> bool:
        """True when the template chooses instance types by shape."""
        return self.instance_requirements is not None or any(
            value is not None for value in self.flat_requirements.values()
        )

    def _requirement_rules(self) -> Any:
        """Rules of instance requirements: the object's own, and how they sit with the flat
        keys and ``vmTypes`` (each problem names the key as written)."""
        if not self.by_requirements:
            return

        given = self.instance_requirements
        flat = self.flat_requirements
        for low, high in (("vCpusMin", "vCpusMax"), ("memoryMiBMin", "memoryMiBMax")):
            name = requirements.FLAT[low][0]
            if (flat[low] is not None or flat[high] is not None) and given is not None and name in given:
                yield FieldError(low, f"give {low}/{high} or instanceRequirements.{name}, not both")
            elif isinstance(flat[low], int) and isinstance(flat[high], int) and flat[low] > flat[high]:
                yield FieldError(high, f"must be ≥ {low} ({flat[low]}), got {flat[high]}")
        merged = requirements.merged(flat, given) or {}
        for low in ("vCpusMin", "memoryMiBMin"):
            name = requirements.FLAT[low][0]
            bounds = merged.get(name)
            if not isinstance(bounds, Mapping) or bounds.get("Min") is None:
                yield FieldError(
                    low, f"required with instance requirements (or instanceRequirements.{name}.Min)"
                )
        types = self.vm_types if isinstance(self.vm_types, Mapping) else {}
        if any(weight != 1 for weight in types.values()):
            yield FieldError(
                "vmTypes",
                "beside instance requirements vmTypes lists the types allowed: every weight must be 1",
            )
        named = list(types) or ([self.vm_type] if isinstance(self.vm_type, str) else [])
        allowed = requirements.burstable(named or (given or {}).get("AllowedInstanceTypes"))
        if (given or {}).get("BurstablePerformance") == "excluded" and allowed:
            yield FieldError(
                "instanceRequirements",
                f"BurstablePerformance excluded, yet the allowed types {', '.join(allowed)} are burstable:"
                " they would never launch (leave BurstablePerformance out, or set it to included)",
            )
        if (types or self.vm_type) and given is not None:
            for key in ("AllowedInstanceTypes", "ExcludedInstanceTypes"):
                if key in given:
                    yield FieldError(
                        "instanceRequirements",
                        f"{key} is not allowed beside vmType/vmTypes (they become AllowedInstanceTypes)",
                    )
        for key, value in (
            ("vmTypesOnDemand", self.vm_types_on_demand),
            ("vmTypesPriority", self.vm_types_priority),
        ):
            if value:
                yield FieldError(key, "not used with instance requirements (AWS chooses the types)")
        if self.allocation_strategy == "capacityOptimizedPrioritized":
            yield FieldError(
                "allocationStrategy",
                "capacityOptimizedPrioritized needs vmTypesPriority, not instance requirements",
            )
        if self.allocation_strategy_on_demand == "prioritized":
            yield FieldError(
                "allocationStrategyOnDemand", "prioritized needs instance types, not instance requirements"
            )

    def aws_template(self, template: Template) -> AwsTemplate:
        """The template handlers work with: these fields plus core's id and ``maxNumber``.
        A template by requirements has no ``vm_types``: its ``vmTypes`` are the requirements'
        ``AllowedInstanceTypes``."""
        shared = {a.name for a in attrs.fields(AwsTemplate)}
        values = {name: value for name, value in attrs.asdict(self, recurse=False).items() if name in shared}
        vm_types = dict(self.vm_types or {}) or ({self.vm_type: 1} if self.vm_type else {})
        wanted = None
        if self.by_requirements:
            wanted = requirements.merged(self.flat_requirements, self.instance_requirements, list(vm_types))
        values.update(
            template_id=template.template_id,
            max_number=template.max_number,
            vm_types={} if wanted is not None else vm_types,
            vm_types_on_demand=dict(self.vm_types_on_demand or {}),
            vm_types_priority=dict(self.vm_types_priority or {}),
            instance_requirements=wanted,
        )
        return AwsTemplate(**values)


def _unknown_field(cl: type, key: str) -> str:
    suggested = unknown_key_among(key, read_keys(TemplateFields, leave_out=UNLISTED))
    return suggested.replace("unknown key", "unknown template field", 1)


def read_fields(fields: Mapping[str, Any], base_dir: Path | None = None) -> TemplateFields:
    """A template entry's fields (core's keys may be among them) in one pass; reads the
    ``userDataScript`` file (relative to ``base_dir``) but calls no cloud.

    :raises ConfigError: whose problems read ``key: message``, the key as written.
    """
    return read(fields, TemplateFields, message="invalid template", base_dir=base_dir, unknown=_unknown_field)


def _as_problems(exc: ConfigError) -> list[Problem]:
    """``key: message`` lines as problems whose path is the key."""
    problems = []
    for line in exc.problems:
        path, _, message = line.partition(": ")
        problems.append(Problem(path, message))
    return problems


def validate_fields(fields: Mapping[str, Any], base_dir: Path | None = None) -> list[Problem]:
    """Problems with a template's AWS fields; each ``path`` is the key as written."""
    try:
        read_fields(fields, base_dir)
    except ConfigError as exc:
        return _as_problems(exc)
    return []


def _entry(template: Template) -> dict[str, Any]:
    return {**template.fields, "templateId": template.template_id, "maxNumber": template.max_number}


def validate_template(template: Template, base_dir: Path | None = None) -> list[Problem]:
    """:func:`validate_fields` plus the ``maxNumber`` range (-1..1,000,000, core's bound)."""
    return validate_fields(_entry(template), base_dir)


def parse_template(template: Template, base_dir: Path | None = None) -> AwsTemplate:
    """The AWS view of a template.

    :raises ConfigError: listing the problems :func:`validate_template` finds.
    """
    try:
        return read_fields(_entry(template), base_dir).aws_template(template)
    except ConfigError as exc:
        raise ConfigError(f"template {template.template_id} is invalid", exc.problems) from None


class Templates:
    """One provider instance's templates, each parsed once per process (a Host Factory call
    validates, then provisions, the same :class:`Template`)."""

    def __init__(self, base_dir: Path | None) -> None:
        self.base_dir = base_dir
        self._parsed: dict[int, tuple[Template, AwsTemplate | ConfigError]] = {}

    def _parse(self, template: Template) -> AwsTemplate | ConfigError:
        entry = self._parsed.get(id(template))
        if entry is None or entry[0] is not template:
            try:
                result: AwsTemplate | ConfigError = parse_template(template, self.base_dir)
            except ConfigError as exc:
                result = exc
            entry = self._parsed[id(template)] = (template, result)
        return entry[1]

    def parse(self, template: Template) -> AwsTemplate:
        """:func:`parse_template`, once. :raises ConfigError: for an invalid template."""
        parsed = self._parse(template)
        if isinstance(parsed, ConfigError):
            raise ConfigError(parsed.message, parsed.problems)
        return parsed

    def problems(self, template: Template) -> list[Problem]:
        """:func:`validate_template`, from the same parse."""
        parsed = self._parse(template)
        return _as_problems(parsed) if isinstance(parsed, ConfigError) else []

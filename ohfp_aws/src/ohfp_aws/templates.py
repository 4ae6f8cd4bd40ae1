"""IBM's AWS template fields (``awsprov_templates.json``): validation and parsing.

:func:`validate_fields` checks every field offline and names the key in each problem;
:func:`parse_template` turns a valid template into an :class:`AwsTemplate`. Spellings follow
IBM: ``vmType`` (one type) or ``vmTypes`` (type → weight), ``subnetId`` as one id, a
comma-separated list or an array, ``instanceTags`` as ``"k=v;k2=v2"``, and
``userDataScript`` as the *path* of a file whose content becomes the user data (a relative
path is taken from the provider's config directory).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ohfp_aws.handlers.base import APIS, FLEET_TYPES, AwsTemplate
from ohfp_core.errors import ConfigError
from ohfp_core.models import Problem, Template

PRICE_TYPES = ("ondemand", "spot", "heterogeneous")
VOLUME_TYPES = ("gp2", "gp3", "io1", "io2", "standard")
IOPS_RANGE = {"io1": (100, 64000), "io2": (100, 256000), "gp3": (3000, 80000)}
ALLOCATION_STRATEGIES = (
    "capacityOptimized",
    "capacityOptimizedPrioritized",
    "diversified",
    "lowestPrice",
    "priceCapacityOptimized",
)
ON_DEMAND_ALLOCATION_STRATEGIES = ("lowestPrice", "prioritized")
MAX_NUMBER = 10000
MAX_USER_DATA_BYTES = 16 * 1024
# IBM's plugin echoes these in getAvailableTemplates; accepted and ignored.
PASSTHROUGH_KEYS = ("pgrpName", "onDemandCapacity", "requestedMachines")

_INSTANCE_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9-]+$")
_TAG_KEY_MAX, _TAG_VALUE_MAX = 128, 256


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(low: int, high: int | None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        span = f"{low}..{high}" if high is not None else f"≥ {low}"
        if not _is_int(value):
            return f"must be an integer {span}, got {value!r}"
        if value < low or (high is not None and value > high):
            return f"must be {span}, got {value}"
        return None

    return check


def _check_enum(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None

    return check


def _check_string(prefix: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return f"must be a non-empty string, got {value!r}"
        if prefix and not value.startswith(prefix):
            return f"must start with {prefix!r}, got {value!r}"
        return None

    return check


def _check_image(value: Any) -> str | None:
    if not isinstance(value, str) or not (value.startswith("ami-") or value.startswith("/")):
        return f"must be an AMI id (ami-…) or an SSM parameter path (/…), got {value!r}"
    return None


def _check_price(value: Any) -> str | None:
    try:
        price = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        price = -1.0
    if price <= 0:
        return f"must be a positive price in USD per hour, got {value!r}"
    return None


def _id_list(value: Any) -> list[str] | None:
    """A list of ids from an array or a comma-separated string; None when malformed."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        return None
    return items if items and all(items) else None


def _check_ids(prefix: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        items = _id_list(value)
        if items is None:
            return f"must be an id, a comma-separated list or an array of ids, got {value!r}"
        bad = [item for item in items if not item.startswith(prefix)]
        if bad:
            return f"{bad[0]!r} is not a {prefix}… id"
        return None

    return check


def _check_type_map(low: int, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, Mapping) or not value:
            return f"must be a non-empty object of instance type → {what}, got {value!r}"
        for key, number in value.items():
            if not isinstance(key, str) or not _INSTANCE_TYPE_RE.match(key):
                return f"{key!r} is not an instance type (like m5.large)"
            if not _is_int(number) or number < low:
                return f"{key}: {what} must be an integer ≥ {low}, got {number!r}"
        return None

    return check


def _check_instance_type(value: Any) -> str | None:
    if not isinstance(value, str) or not _INSTANCE_TYPE_RE.match(value):
        return f"must be an instance type (like t3.micro), got {value!r}"
    return None


def parse_tags(value: Any) -> dict[str, str]:
    """``"k=v;k2=v2"`` (or an object) as a dict. :raises ValueError: naming the bad pair."""
    if isinstance(value, Mapping):
        pairs = [(str(k), "" if v is None else str(v)) for k, v in value.items()]
    elif isinstance(value, str):
        pairs = []
        for part in value.split(";"):
            if not part.strip():
                continue
            key, sep, tag_value = part.partition("=")
            if not sep:
                raise ValueError(f"{part.strip()!r} is not key=value (pairs are separated by ';')")
            pairs.append((key.strip(), tag_value.strip()))
    else:
        raise ValueError(f"must be a string like 'k=v;k2=v2', got {value!r}")
    tags: dict[str, str] = {}
    for key, tag_value in pairs:
        if not key:
            raise ValueError("a tag has an empty key")
        if key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r}: the aws: prefix is reserved")
        if len(key) > _TAG_KEY_MAX or len(tag_value) > _TAG_VALUE_MAX:
            raise ValueError(f"tag {key!r}: keys are ≤ 128 and values ≤ 256 characters")
        tags[key] = tag_value
    return tags


def _check_tags(value: Any) -> str | None:
    try:
        parse_tags(value)
    except ValueError as exc:
        return str(exc)
    return None


def _user_data_path(value: str, base_dir: Path | None) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def read_user_data(value: str, base_dir: Path | None = None) -> str:
    """The content of the ``userDataScript`` file. :raises ValueError: when unreadable."""
    path = _user_data_path(value, base_dir)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if len(data) > MAX_USER_DATA_BYTES:
        raise ValueError(f"{str(path)!r} is {len(data)} bytes; AWS allows at most {MAX_USER_DATA_BYTES}")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not UTF-8 text") from exc


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "priceType": _check_enum(PRICE_TYPES),
    "imageId": _check_image,
    "launchTemplateId": _check_string("lt-"),
    "subnetId": _check_ids("subnet-"),
    "vmType": _check_instance_type,
    "vmTypes": _check_type_map(1, "weight"),
    "vmTypesOnDemand": _check_type_map(1, "weight"),
    "vmTypesPriority": _check_type_map(0, "priority"),
    "securityGroupIds": _check_ids("sg-"),
    "keyName": _check_string(),
    "instanceProfile": _check_string(),
    "rootDeviceVolumeSize": _check_int(1, 16384),
    "volumeType": _check_enum(VOLUME_TYPES),
    "iops": _check_int(100, 256000),
    "instanceTags": _check_tags,
    "userDataScript": _check_string(),
    "fleetRole": _check_string(),
    "maxSpotPrice": _check_price,
    "spotFleetRequestExpiry": _check_int(1, 525600),
    "allocationStrategy": _check_enum(ALLOCATION_STRATEGIES),
    "allocationStrategyOnDemand": _check_enum(ON_DEMAND_ALLOCATION_STRATEGIES),
    "percentOnDemand": _check_int(0, 100),
    "poolsCount": _check_int(1, 100),
    "providerApi": _check_enum(APIS),
    "fleetType": _check_enum(FLEET_TYPES),
}


def validate_fields(fields: Mapping[str, Any], base_dir: Path | None = None) -> list[Problem]:
    """Problems with a template's AWS fields; each ``path`` is the key as written.

    Offline: reads the ``userDataScript`` file (relative to ``base_dir``) but calls no cloud.
    """
    problems: list[Problem] = []
    for key, value in fields.items():
        if key in PASSTHROUGH_KEYS:
            continue
        check = CHECKS.get(key)
        if check is None:
            problems.append(Problem(key, f"unknown template field; known: {', '.join(sorted(CHECKS))}"))
            continue
        if value is None:
            continue
        message = check(value)
        if message is None and key == "userDataScript":
            try:
                read_user_data(value, base_dir)
            except ValueError as exc:
                message = str(exc)
        if message:
            problems.append(Problem(key, message))

    def given(key: str) -> bool:
        return fields.get(key) is not None

    if not given("imageId") and not given("launchTemplateId"):
        problems.append(Problem("imageId", "required (or give launchTemplateId)"))
    if given("vmType") and given("vmTypes"):
        problems.append(Problem("vmTypes", "give vmType or vmTypes, not both"))
    if not given("vmType") and not given("vmTypes") and not given("launchTemplateId"):
        problems.append(Problem("vmType", "required: vmType (one type) or vmTypes (type → weight)"))
    volume_type = fields.get("volumeType") or "gp2"
    iops = fields.get("iops")
    if volume_type in ("io1", "io2") and iops is None:
        problems.append(Problem("iops", f"required when volumeType is {volume_type}"))
    elif iops is not None and _is_int(iops):
        if volume_type not in IOPS_RANGE:
            problems.append(Problem("iops", f"not allowed with volumeType {volume_type}"))
        else:
            low, high = IOPS_RANGE[volume_type]
            if not low <= iops <= high:
                problems.append(Problem("iops", f"must be {low}..{high} for {volume_type}, got {iops}"))
    if fields.get("fleetType") is not None and fields.get("providerApi") in ("ASG", "RunInstances"):
        problems.append(Problem("fleetType", f"not used by providerApi {fields['providerApi']}"))
    return problems


def validate_template(template: Template, base_dir: Path | None = None) -> list[Problem]:
    """:func:`validate_fields` plus IBM's ``maxNumber`` range (-1..10000)."""
    problems = validate_fields(template.fields, base_dir)
    if template.max_number > MAX_NUMBER:
        problems.append(Problem("maxNumber", f"must be -1..{MAX_NUMBER}, got {template.max_number}"))
    return problems


def parse_template(template: Template, base_dir: Path | None = None) -> AwsTemplate:
    """The AWS view of a validated template.

    :raises ConfigError: listing the problems :func:`validate_template` finds.
    """
    problems = validate_template(template, base_dir)
    if problems:
        raise ConfigError(f"template {template.template_id} is invalid", [str(p) for p in problems])
    f = template.fields
    vm_types = dict(f["vmTypes"]) if f.get("vmTypes") else ({f["vmType"]: 1} if f.get("vmType") else {})
    user_data = read_user_data(f["userDataScript"], base_dir) if f.get("userDataScript") else None
    max_price = f.get("maxSpotPrice")
    return AwsTemplate(
        template_id=template.template_id,
        max_number=template.max_number,
        image_id=f.get("imageId"),
        launch_template_id=f.get("launchTemplateId"),
        price_type=f.get("priceType") or "ondemand",
        provider_api=f.get("providerApi"),
        fleet_type=f.get("fleetType"),
        subnet_ids=tuple(_id_list(f["subnetId"]) or ()) if f.get("subnetId") else (),
        vm_types=vm_types,
        vm_types_on_demand=dict(f.get("vmTypesOnDemand") or {}),
        vm_types_priority=dict(f.get("vmTypesPriority") or {}),
        security_group_ids=tuple(_id_list(f["securityGroupIds"]) or ()) if f.get("securityGroupIds") else (),
        key_name=f.get("keyName"),
        instance_profile=f.get("instanceProfile"),
        root_device_volume_size=f.get("rootDeviceVolumeSize"),
        volume_type=f.get("volumeType"),
        iops=f.get("iops"),
        instance_tags=parse_tags(f["instanceTags"]) if f.get("instanceTags") else {},
        user_data=user_data,
        fleet_role=f.get("fleetRole"),
        max_spot_price=None if max_price is None else str(max_price),
        spot_fleet_request_expiry_min=f.get("spotFleetRequestExpiry") or 30,
        allocation_strategy=f.get("allocationStrategy"),
        allocation_strategy_on_demand=f.get("allocationStrategyOnDemand"),
        percent_on_demand=f.get("percentOnDemand"),
        pools_count=f.get("poolsCount"),
    )

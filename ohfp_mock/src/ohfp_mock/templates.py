"""The mock's templates: built-in demo templates, attributes derived from instance types and
the template keys it accepts (IBM's AWS template keys, so an AWS templates file runs on the mock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ohfp_core.models import MANDATORY_ATTRIBUTES, Attribute, Problem, Template
from ohfp_core.parsing import unknown_key

# Mock instance types: (ncpus, nram in MB).
INSTANCE_TYPES: Mapping[str, tuple[int, int]] = {
    "mock.small": (1, 1024),
    "mock.medium": (2, 4096),
    "mock.large": (4, 8192),
    "mock.xlarge": (8, 16384),
}


def _attributes(ncpus: int, nram: int) -> dict[str, Attribute]:
    return {
        "type": Attribute("String", "X86_64"),
        "ncpus": Attribute("Numeric", str(ncpus)),
        "ncores": Attribute("Numeric", str(ncpus)),
        "nram": Attribute("Numeric", str(nram)),
    }


DEMO_TEMPLATES: tuple[Template, ...] = (
    Template(
        template_id="mock-small",
        max_number=50,
        attributes=_attributes(1, 1024),
        fields={"vmType": "mock.small", "priceType": "ondemand"},
    ),
    Template(
        template_id="mock-spot",
        max_number=20,
        attributes=_attributes(2, 4096),
        fields={"vmType": "mock.medium", "priceType": "spot"},
    ),
)
"""Offered when the instance's templates file gives none."""

# IBM's AWS template keys (CONTRACT.md §3) and ohfp's extensions; core keys in case they stay in
# ``fields``.
KNOWN_KEYS = frozenset(
    {
        "templateId", "maxNumber", "attributes", "availableNumber", "requestedMachines",
        "priceType", "imageId", "subnetId", "vmType", "vmTypes", "vmTypesOnDemand", "vmTypesPriority",
        "rootDeviceVolumeSize", "volumeType", "iops", "instanceTags", "keyName", "securityGroupIds",
        "instanceProfile", "fleetRole", "maxSpotPrice", "spotFleetRequestExpiry", "allocationStrategy",
        "allocationStrategyOnDemand", "percentOnDemand", "poolsCount", "userDataScript",
        "launchTemplateId", "providerApi", "fleetType",
    }
)  # fmt: skip
PRICE_TYPES = ("ondemand", "spot", "heterogeneous")
PROVIDER_APIS = ("EC2Fleet", "ASG", "SpotFleet", "RunInstances")
FLEET_TYPES = ("instant", "request", "maintain")


def complete(template: Template) -> Template:
    """``template`` with missing mandatory attributes derived from its mock instance type."""
    if all(name in template.attributes for name in MANDATORY_ATTRIBUTES):
        return template
    vm_type = template.fields.get("vmType")
    vm_types = template.fields.get("vmTypes")
    if not isinstance(vm_type, str) and isinstance(vm_types, Mapping) and vm_types:
        vm_type = next(iter(vm_types))
    known = INSTANCE_TYPES.get(vm_type if isinstance(vm_type, str) else "mock.small")
    if known is None:
        return template
    derived = _attributes(*known)
    return attrs.evolve(template, attributes={**derived, **template.attributes})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def problems(template: Template) -> list[Problem]:
    """What the mock cannot accept in ``template.fields``: unknown keys and badly typed
    ``priceType``, ``vmType``, ``vmTypes``, ``percentOnDemand``, ``providerApi``, ``fleetType``."""
    found = [
        Problem(key, unknown_key(key, KNOWN_KEYS).replace("unknown key", "unknown template key", 1))
        for key in template.fields
        if key not in KNOWN_KEYS
    ]
    fields = template.fields
    if "priceType" in fields and fields["priceType"] not in PRICE_TYPES:
        found.append(
            Problem("priceType", f"must be one of {', '.join(PRICE_TYPES)}, got {fields['priceType']!r}")
        )
    if "vmType" in fields and not (isinstance(fields["vmType"], str) and fields["vmType"]):
        found.append(Problem("vmType", f"must be an instance type name, got {fields['vmType']!r}"))
    if "vmTypes" in fields:
        vm_types = fields["vmTypes"]
        if not isinstance(vm_types, Mapping) or not vm_types:
            found.append(Problem("vmTypes", "must be a non-empty map of instance type to integer weight"))
        else:
            found.extend(
                Problem(f"vmTypes.{name}", f"weight must be an integer ≥ 1, got {weight!r}")
                for name, weight in vm_types.items()
                if not _is_int(weight) or weight < 1
            )
    if "percentOnDemand" in fields:
        percent = fields["percentOnDemand"]
        if not _is_int(percent) or not 0 <= percent <= 100:
            found.append(Problem("percentOnDemand", f"must be an integer from 0 to 100, got {percent!r}"))
    for key, allowed in (("providerApi", PROVIDER_APIS), ("fleetType", FLEET_TYPES)):
        if key in fields and fields[key] not in allowed:
            found.append(Problem(key, f"must be one of {', '.join(allowed)}, got {fields[key]!r}"))
    return found

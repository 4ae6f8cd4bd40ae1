"""Template attributes from instance types (``ohfp_available_templates``).

A template that leaves out ``type``, ``ncpus`` or ``nram`` gets them from
DescribeInstanceTypes for its ``vmType`` (or the first of ``vmTypes``): one batched call for
every template of the file. A template by instance requirements gets them from the lower
bounds it asks for (``vCpusMin``, ``memoryMiBMin`` or ``instanceRequirements``), without a
call. The file's own attributes win. Read only; a failing describe leaves the templates as
they are (validation then names what is missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from ohfp_aws.context import AwsContext
from ohfp_core.errors import OhfpError
from ohfp_core.logs import get_logger
from ohfp_core.models import MANDATORY_ATTRIBUTES, Attribute, Template

log = get_logger("ohfp.aws")

ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64", "i386": "X86", "x86_64_mac": "X86_64"}


def with_attributes(ctx: AwsContext, templates: Sequence[Template]) -> Sequence[Template]:
    """``templates``, those missing a mandatory attribute completed from their instance type."""
    wanted: dict[int, str] = {}
    result = list(templates)
    for index, template in enumerate(templates):
        if all(name in template.attributes for name in MANDATORY_ATTRIBUTES):
            continue
        shaped = shape_attributes(template)
        if shaped:
            result[index] = attrs.evolve(template, attributes={**shaped, **template.attributes})
            continue
        vm_type = first_instance_type(template)
        if vm_type:
            wanted[index] = vm_type
    if not wanted:
        return result
    try:
        found = describe(ctx, sorted(set(wanted.values())))
    except OhfpError as exc:
        log.warning("cannot describe instance types; templates keep their attributes", error=str(exc))
        return result
    for index, vm_type in wanted.items():
        attributes = found.get(vm_type)
        if attributes is None:
            log.warning("unknown instance type", vm_type=vm_type, template_id=templates[index].template_id)
            continue
        result[index] = attrs.evolve(
            templates[index], attributes={**attributes, **templates[index].attributes}
        )
    return result


def describe(ctx: AwsContext, names: Sequence[str]) -> dict[str, dict[str, Attribute]]:
    """``ncpus``, ``nram`` (MiB) and ``type`` (architecture) per instance type AWS knows."""
    found: dict[str, dict[str, Attribute]] = {}
    for item in ctx.services.ec2.instance_types(names):
        attributes = {
            "ncpus": Attribute("Numeric", str(item.get("VCpuInfo", {}).get("DefaultVCpus"))),
            "nram": Attribute("Numeric", str(item.get("MemoryInfo", {}).get("SizeInMiB"))),
        }
        arches = item.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
        if arches:
            attributes["type"] = Attribute("String", ARCHITECTURES.get(arches[0], str(arches[0]).upper()))
        found[item.get("InstanceType", "")] = attributes
    return found


def shape_attributes(template: Template) -> dict[str, Attribute]:
    """``ncpus``, ``nram`` (MiB) and ``type`` from the lower bounds of a template by instance
    requirements, read as written (empty for any other template, or bounds not yet valid)."""
    from ohfp_aws.supply import requirements

    fields = template.fields
    given = fields.get("instanceRequirements")
    flat = {key: fields.get(key) for key in requirements.FLAT}
    wanted = requirements.merged(flat, given if isinstance(given, Mapping) else None)
    if wanted is None:
        return {}
    vcpus, memory = requirements.lower_bounds(wanted)
    if vcpus is None or memory is None:
        return {}
    return {
        "type": Attribute("String", requirements.architecture(wanted)),
        "ncpus": Attribute("Numeric", str(vcpus)),
        "nram": Attribute("Numeric", str(memory)),
    }


def first_instance_type(template: Template) -> str | None:
    """The instance type whose size a template's missing attributes are taken from:
    ``vmType``, else the first of ``vmTypes``; read as written (an invalid template still
    gets its attributes, and validation names what is wrong)."""
    vm_type = template.fields.get("vmType")
    vm_types = template.fields.get("vmTypes")
    if not isinstance(vm_type, str) and isinstance(vm_types, Mapping) and vm_types:
        vm_type = next(iter(vm_types))
    return vm_type if isinstance(vm_type, str) else None

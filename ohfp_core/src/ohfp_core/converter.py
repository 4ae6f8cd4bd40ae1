"""Host Factory's JSON, in and out.

One private cattrs converter structures HF's input files into small wire classes whose
attribute names are HF's own camelCase keys, so cattrs' error paths read exactly as the
user wrote them (``$.template.machineCount``). Value rules cattrs cannot express are checked
right after, with the same path style. Replies are built from core models by the
``*_json`` functions, which own HF's spelling exceptions (``launchtime``).

HF's inputs are read leniently (extra keys are ignored: HF versions add keys); configuration
files are read strictly by :mod:`ohfp_core.config`.

cattrs is imported when a document needs structuring, not at start-up: getRequestStatus and
getAvailableTemplates (most HF calls) never need it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ohfp_core.errors import ConfigError, InputError
from ohfp_core.models import (
    ATTRIBUTE_TYPES,
    TEMPLATE_ID_RE,
    Attribute,
    Machine,
    MachineResult,
    Reclaim,
    Template,
)

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")


# --------------------------------------------------------------------------------------
# Wire classes: HF's input documents, attribute names in HF's spelling.
# --------------------------------------------------------------------------------------


@attrs.frozen
class _TemplateAsk:
    templateId: str
    machineCount: int


@attrs.frozen
class RequestMachinesInput:
    template: _TemplateAsk


@attrs.frozen
class MachineInput:
    name: str
    machineId: str | None = None


@attrs.frozen
class MachinesInput:
    machines: list[MachineInput] = attrs.field(factory=list)


def _strict_int(value: Any, _: type) -> int:
    # cattrs would accept "3" and 3.7; HF sends numbers, and a float count is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {json.dumps(value)}")
    return value


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {json.dumps(value)}")
    return value


@functools.cache
def _converter() -> cattrs.Converter:
    import cattrs

    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(str, _strict_str)
    return converter


def _format_exception(exc: BaseException, type_: Any) -> str:
    import cattrs

    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ValueError) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def _structure(data: Any, cls: type[T], what: str) -> T:
    import cattrs

    try:
        return _converter().structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            problems = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
            problems = [_flip(p) for p in problems]
        else:
            problems = [f"$: {exc}"]
        raise InputError(f"invalid {what} input", problems) from None


def _flip(message: str) -> str:
    """cattrs says ``msg @ $.path``; ohfp says ``$.path: msg``."""
    text, sep, path = message.rpartition(" @ ")
    return f"{path}: {text}" if sep else message


def read_input(path: Path | str) -> Any:
    """Read HF's ``-f`` file: a JSON document (an empty file counts as ``{}``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read input file {str(path)!r}: {exc.strerror or exc}") from None
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"input file {str(path)!r} is not valid JSON",
            [f"line {exc.lineno} column {exc.colno}: {exc.msg}"],
        ) from None


def _require_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InputError(f"invalid {what} input", [f"$: expected a JSON object, got {type(data).__name__}"])
    return data


def parse_request_machines(data: Any) -> tuple[str, int]:
    """``{"template": {"templateId": …, "machineCount": …}}`` → (template id, count)."""
    ask = _structure(
        _require_object(data, "requestMachines"), RequestMachinesInput, "requestMachines"
    ).template
    problems = []
    if not TEMPLATE_ID_RE.match(ask.templateId):
        problems.append("$.template.templateId: must be 1 to 64 characters of [0-9A-Za-z_-]")
    if ask.machineCount < 1:
        problems.append(f"$.template.machineCount: must be ≥ 1, got {ask.machineCount}")
    if problems:
        raise InputError("invalid requestMachines input", problems)
    return ask.templateId, ask.machineCount


def parse_machines(data: Any, what: str, *, required: bool) -> list[MachineInput]:
    """``{"machines": [{"name": …, "machineId": …}, …]}``; ``{}`` when not ``required``."""
    obj = _require_object(data, what)
    if required and "machines" not in obj:
        raise InputError(f"invalid {what} input", ["$.machines: required field missing"])
    machines = _structure(obj, MachinesInput, what).machines
    problems = [
        f"$.machines[{i}].name: must not be empty" for i, m in enumerate(machines) if not m.name.strip()
    ]
    if required and not machines:
        problems.append("$.machines: must list at least one machine")
    if problems:
        raise InputError(f"invalid {what} input", problems)
    return machines


def parse_request_ids(data: Any) -> list[tuple[str, bool]]:
    """The ids of getRequestStatus, in input order, in either form HF uses.

    ``{"requests": [{"requestId": …}, …]}`` or ``{"requests": {"requestId": …}}``. Each id
    comes with whether it is well-formed; a malformed entry is answered on its own (its
    value echoed as text), never fatal to the call.
    """
    obj = _require_object(data, "getRequestStatus")
    if "requests" not in obj:
        raise InputError("invalid getRequestStatus input", ["$.requests: required field missing"])
    entries = obj["requests"]
    if isinstance(entries, Mapping):
        entries = [entries]
    if not isinstance(entries, list):
        raise InputError(
            "invalid getRequestStatus input", ['$.requests: expected a list of {"requestId": …} objects']
        )
    ids: list[tuple[str, bool]] = []
    for entry in entries:
        value = entry.get("requestId") if isinstance(entry, Mapping) else None
        if isinstance(value, str) and value.strip():
            ids.append((value, True))
        else:
            ids.append(("" if value is None else str(value), False))
    return ids


# --------------------------------------------------------------------------------------
# Templates file (configuration: strict about the core fields).
# --------------------------------------------------------------------------------------

_CORE_TEMPLATE_KEYS = ("templateId", "maxNumber", "attributes", "availableNumber")


def _attribute(name: str, value: Any, path: str) -> Attribute:
    if isinstance(value, list | tuple):
        if len(value) != 2 or not isinstance(value[0], str):
            raise ValueError(f"{path}: expected [type, value], got {json.dumps(value)}")
        kind, raw = value
        if kind not in ATTRIBUTE_TYPES:
            raise ValueError(f"{path}[0]: type must be one of {', '.join(ATTRIBUTE_TYPES)}, got {kind!r}")
    elif isinstance(value, bool):
        kind, raw = "Boolean", value
    elif isinstance(value, int | float):
        kind, raw = "Numeric", value
    elif isinstance(value, str):
        kind, raw = ("String", value)
    else:
        raise ValueError(f"{path}: expected [type, value] or a scalar, got {json.dumps(value)}")
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))
    else:
        text = str(raw)
    return Attribute(type=kind, value=text)


def template_from_json(entry: Any, path: str) -> Template:
    """One templates-file entry → :class:`Template` (attributes as pairs or scalars).

    :raises ConfigError: naming the field, e.g. ``$.templates[1].maxNumber``.
    """
    if not isinstance(entry, Mapping):
        raise ConfigError("invalid template", [f"{path}: expected an object"])
    problems: list[str] = []
    template_id = entry.get("templateId")
    if not isinstance(template_id, str) or not TEMPLATE_ID_RE.match(template_id):
        problems.append(f"{path}.templateId: required, 1 to 64 characters of [0-9A-Za-z_-]")
    max_number = entry.get("maxNumber", -1)
    if isinstance(max_number, bool) or not isinstance(max_number, int) or max_number < -1:
        problems.append(
            f"{path}.maxNumber: must be an integer ≥ -1 (-1 = unlimited), got {json.dumps(max_number)}"
        )
    available = entry.get("availableNumber")
    if available is not None and (
        isinstance(available, bool) or not isinstance(available, int) or available < 0
    ):
        problems.append(f"{path}.availableNumber: must be an integer ≥ 0")
    attributes: dict[str, Attribute] = {}
    raw_attributes = entry.get("attributes", {})
    if not isinstance(raw_attributes, Mapping):
        problems.append(f"{path}.attributes: expected an object of name → [type, value]")
    else:
        for name, value in raw_attributes.items():
            try:
                attributes[name] = _attribute(name, value, f"{path}.attributes.{name}")
            except ValueError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("invalid template", problems)
    fields = {key: value for key, value in entry.items() if key not in _CORE_TEMPLATE_KEYS}
    return Template(
        template_id=str(template_id),
        max_number=max_number,
        attributes=attributes,
        available_number=available,
        fields=fields,
    )


# --------------------------------------------------------------------------------------
# Replies.
# --------------------------------------------------------------------------------------

# Template keys IBM's AWS plugin echoes in getAvailableTemplates; others stay private.
_ECHOED_TEMPLATE_FIELDS = ("pgrpName", "onDemandCapacity", "vmTypes", "instanceTags", "priceType", "vmType")


def template_json(template: Template) -> dict[str, Any]:
    """A template as getAvailableTemplates reports it (attributes always as pairs)."""
    reply: dict[str, Any] = {
        "templateId": template.template_id,
        "maxNumber": template.max_number,
    }
    if template.available_number is not None:
        reply["availableNumber"] = template.available_number
    reply["attributes"] = {name: [a.type, a.value] for name, a in template.attributes.items()}
    reply["pgrpName"] = None
    reply["onDemandCapacity"] = 0
    for key in _ECHOED_TEMPLATE_FIELDS:
        if key in template.fields:
            reply[key] = template.fields[key]
    return reply


def machine_json(machine: Machine, result: MachineResult, message: str | None = None) -> dict[str, Any]:
    """A machine entry of getRequestStatus. ``message`` overrides the machine's own."""
    reply: dict[str, Any] = {
        "machineId": machine.machine_id,
        "name": machine.name,
        "result": result.value,
        "status": machine.state.value,
        "privateIpAddress": machine.private_ip,
        "publicIpAddress": machine.public_ip,
        "launchtime": int(machine.launch_time),
        "message": machine.message if message is None else message,
    }
    if machine.price_type is not None:
        reply["priceType"] = machine.price_type.value
    if machine.instance_type is not None:
        reply["instanceType"] = machine.instance_type
    if machine.cloud_host_id is not None:
        reply["cloudHostId"] = machine.cloud_host_id
    if machine.tags:
        reply["instanceTags"] = ";".join(f"{k}={v}" for k, v in sorted(machine.tags.items()))
    return reply


def reclaim_json(reclaim: Reclaim) -> dict[str, Any]:
    return {"machine": reclaim.name, "gracePeriod": int(reclaim.grace_period)}


def dumps(reply: Mapping[str, Any] | Sequence[Any]) -> str:
    """The one JSON style of every reply on stdout."""
    return json.dumps(reply, indent=2, ensure_ascii=False)

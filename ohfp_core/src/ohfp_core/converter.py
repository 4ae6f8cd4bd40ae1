"""Host Factory's JSON, in and out.

In: :func:`read_input` reads HF's ``-f`` file within :data:`MAX_INPUT_BYTES` (UTF-8, plain
JSON: no NaN, no integer literal longer than a 64-bit integer, no absurd nesting); the
``parse_*`` functions structure it through :mod:`ohfp_core.parsing` into small wire classes
whose aliases are HF's own keys, so every error reads ``$.template.machineCount: …``. HF's
inputs are read leniently (extra keys are ignored: HF versions add keys).

Out: the ``*_json`` and ``*_entry`` functions build every reply document from core models and
own HF's spelling exceptions (``launchtime``); :func:`dumps` is the one JSON style on stdout.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import field, frozen

from ohfp_core.errors import InputError
from ohfp_core.masking import mask_secrets
from ohfp_core.models import (
    TEMPLATE_ID_RE,
    Machine,
    MachineResult,
    MachineState,
    Reclaim,
    RequestStatus,
    Template,
)
from ohfp_core.parsing import input_converter, key, matching, not_blank, rule, structure

MAX_INPUT_BYTES = 16 * 1024 * 1024
"""Largest input file read (50,000 machines of a return fit in a few MB)."""
MAX_MACHINE_COUNT = 50_000
"""Most units one requestMachines may ask for."""
MAX_MACHINES = 100_000
"""Most machines one requestReturnMachines or getReturnRequests may name."""
MAX_REQUEST_IDS = 10_000
"""Most ids one getRequestStatus may ask about."""
MAX_NAME_LENGTH = 255
"""Longest host name, machine id or request id (a DNS name is at most 253 characters)."""
_MAX_INT_DIGITS = 19  # a signed 64-bit integer
_TEMPLATE_ID_RULE = rule(matching(TEMPLATE_ID_RE, "1 to 64 characters of [0-9A-Za-z_-]"))


def _count(value: int) -> str | None:
    if value < 1:
        return f"must be ≥ 1, got {value}"
    if value > MAX_MACHINE_COUNT:
        return f"must be at most {MAX_MACHINE_COUNT} per request, got {value}"
    return None


def _short(text: str) -> str | None:
    if len(text) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters, got {len(text)}"
    return not_blank(text)


# --------------------------------------------------------------------------------------
# Wire classes: HF's input documents, keys in HF's spelling.
# --------------------------------------------------------------------------------------


@frozen(kw_only=True)
class TemplateAsk:
    template_id: str = field(metadata=key("templateId"), validator=_TEMPLATE_ID_RULE)
    machine_count: int = field(metadata=key("machineCount"), validator=rule(lambda n: _count(n)))


@frozen(kw_only=True)
class RequestMachinesInput:
    template: TemplateAsk


@frozen(kw_only=True)
class MachineInput:
    """A host HF names: ``name`` always, ``machine_id`` when HF knows it."""

    name: str = field(validator=rule(_short))
    machine_id: str | None = field(default=None, metadata=key("machineId"), validator=rule(_short))


@frozen(kw_only=True)
class MachinesInput:
    machines: tuple[MachineInput, ...] = field(
        default=(), validator=rule(lambda items: _at_most(items, MAX_MACHINES, "machines"))
    )


def _at_most(items: Sequence[Any], limit: int, what: str) -> str | None:
    return f"at most {limit} {what} per call, got {len(items)}" if len(items) > limit else None


# --------------------------------------------------------------------------------------
# Reading the input file.
# --------------------------------------------------------------------------------------


class _TooLong(ValueError):
    pass


def _int_literal(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise _TooLong(f"an integer of {digits} digits (at most {_MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _TooLong(f"{name} is not a JSON number")


def _read_bytes(path: Path | str) -> bytes:
    flags = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(f"cannot read input file {str(path)!r}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise InputError(f"input file {str(path)!r} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_INPUT_BYTES:
            raise InputError(
                f"input file {str(path)!r} is {info.st_size} bytes; at most {MAX_INPUT_BYTES} are read"
            )
        data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"input file {str(path)!r} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def read_input(path: Path | str) -> Any:
    """Read HF's ``-f`` file: a JSON document (an empty file counts as ``{}``).

    :raises InputError: for a file that is missing, not a regular file, larger than
        :data:`MAX_INPUT_BYTES`, not UTF-8, not JSON, nested beyond what the parser allows,
        or holding NaN/Infinity or an integer beyond 64 bits.
    """
    return parse_input(_read_bytes(path), path)


def parse_input(data: bytes, path: Path | str) -> Any:
    """HF's ``-f`` file's content, read elsewhere (the resident service gets it from the
    script), parsed as :func:`read_input` parses it; ``path`` names the file in errors.

    :raises InputError: as :func:`read_input`, for content over :data:`MAX_INPUT_BYTES` too.
    """
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"input file {str(path)!r} is {len(data)} bytes; at most {MAX_INPUT_BYTES} are read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"input file {str(path)!r} is not UTF-8 text", [f"byte {exc.start}: {exc.reason}"]
        ) from None
    if not text.strip():
        return {}
    where = f"input file {str(path)!r} is not valid JSON"
    try:
        return json.loads(text, parse_int=_int_literal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(where, [f"line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    except _TooLong as exc:
        raise InputError(where, [str(exc)]) from None
    except RecursionError:
        raise InputError(where, ["nested too deeply"]) from None


# --------------------------------------------------------------------------------------
# The inputs.
# --------------------------------------------------------------------------------------


def _require_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InputError(f"invalid {what} input", [f"$: expected a JSON object, got {type(data).__name__}"])
    return data


def parse_request_machines(data: Any) -> tuple[str, int]:
    """``{"template": {"templateId": …, "machineCount": …}}`` → (template id, count)."""
    what = "requestMachines"
    parsed = structure(
        _require_object(data, what),
        RequestMachinesInput,
        converter=input_converter(),
        error=InputError,
        message=f"invalid {what} input",
    )
    return parsed.template.template_id, parsed.template.machine_count


def parse_machines(data: Any, what: str, *, required: bool) -> list[MachineInput]:
    """``{"machines": [{"name": …, "machineId": …}, …]}``; ``{}`` when not ``required``."""
    obj = _require_object(data, what)
    if required and "machines" not in obj:
        raise InputError(f"invalid {what} input", ["$.machines: required field missing"])
    machines = structure(
        obj, MachinesInput, converter=input_converter(), error=InputError, message=f"invalid {what} input"
    ).machines
    if required and not machines:
        raise InputError(f"invalid {what} input", ["$.machines: must list at least one machine"])
    return list(machines)


def _well_formed_id(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _echo(value: Any) -> str:
    """A malformed id as text for its reply entry (cut short, valid UTF-8)."""
    text = "" if value is None else str(value)
    return text[:MAX_NAME_LENGTH].encode("utf-8", "replace").decode("utf-8")


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
    if len(entries) > MAX_REQUEST_IDS:
        raise InputError(
            "invalid getRequestStatus input",
            [f"$.requests: at most {MAX_REQUEST_IDS} requests per call, got {len(entries)}"],
        )
    ids: list[tuple[str, bool]] = []
    for entry in entries:
        value = entry.get("requestId") if isinstance(entry, Mapping) else None
        ids.append((str(value), True) if _well_formed_id(value) else (_echo(value), False))
    return ids


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
    for name in _ECHOED_TEMPLATE_FIELDS:
        if name in template.fields:
            reply[name] = template.fields[name]
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


def named_host_json(name: str, error: str) -> tuple[dict[str, Any], MachineResult]:
    """The entry of a host HF returned by name only: ``succeed`` unless the provider reported
    an error for it."""
    host = Machine(machine_id="", name=name, state=MachineState.TERMINATED)
    result = MachineResult.FAIL if error else MachineResult.SUCCEED
    return machine_json(host, result, error), result


def request_entry(
    request_id: str, state: RequestStatus, message: str, machines: list[dict[str, Any]]
) -> dict[str, Any]:
    """One request of getRequestStatus' reply."""
    return {"requestId": request_id, "status": state.value, "message": message, "machines": machines}


def unknown_entry(request_id: str, message: str) -> dict[str, Any]:
    """The entry for an id core cannot answer: ``complete_with_error``, no machines."""
    return request_entry(request_id, RequestStatus.COMPLETE_WITH_ERROR, message, [])


def reclaim_json(reclaim: Reclaim) -> dict[str, Any]:
    return {"machine": reclaim.name, "gracePeriod": int(reclaim.grace_period)}


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, Mapping):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value


def dumps(reply: Mapping[str, Any] | Sequence[Any]) -> str:
    """The one JSON style of every reply on stdout, credentials masked
    (:func:`~ohfp_core.masking.mask_secrets`). Text is written as itself, except that a reply
    holding text UTF-8 cannot carry (a lone surrogate echoed from bad input) is written with
    ``\\uXXXX`` escapes instead: the reply is always valid JSON that stdout can encode."""
    masked = _masked(reply)
    text = json.dumps(masked, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(masked, indent=2, ensure_ascii=True)
    return text

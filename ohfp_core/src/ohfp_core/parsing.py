"""Parse once: JSON documents structured by cattrs into attrs classes that hold the rules.

Every document ohfp reads (Host Factory's inputs, ``ohfp.json``, a provider's config and
templates) is one attrs class per object, with:

- the user's key spelling given by :func:`key` in the field's metadata
  (``field(metadata=key("templateId"))``), else the field's ``alias``; Python code keeps
  the attribute names;
- validators built with :func:`rule` (or raising :class:`FieldError`), so a value rule
  names its field however deep it sits;
- strict scalars: ``int`` refuses ``true`` and ``"3"``, ``str`` refuses numbers and lone
  surrogates, a list field refuses a string (it is never walked character by character)
  and an object field refuses anything but an object.

:func:`structure` runs the converter and turns every failure into one error listing
problems as ``$.path.key: message``, the path spelled as the user wrote the document.

cattrs is imported when the first document is structured, not at start-up.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ohfp_core.errors import InputError

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")
E = TypeVar("E", bound=InputError)

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""Every integer read from a document fits a signed 64-bit integer."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


KEY = "ohfp.key"
"""The metadata entry holding a field's key as the user spells it."""


def key(name: str) -> dict[str, str]:
    """Field metadata naming the field's key in the document: ``field(metadata=key("maxNumber"))``."""
    return {KEY: name}


NOT_READ = {"ohfp.not-read": True}
"""Field metadata for a field set by code, never read from the document."""


def key_of(attribute: attrs.Attribute[Any]) -> str:
    """The key a field is read from: its :func:`key`, else its alias, else its name."""
    return str(attribute.metadata.get(KEY) or attribute.alias or attribute.name)


class FieldError(ValueError):
    """A rule broken by one field: ``key`` is the field as the user spells it (a list index
    for an item of a list)."""

    def __init__(self, key: str | int, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def json_text(value: Any) -> str:
    """``value`` as JSON text, non-ASCII as itself but a lone surrogate (which UTF-8 cannot
    carry) as its ``\\uXXXX`` escape, so a message quoting bad input can always be written.

    :raises TypeError, ValueError: for a value JSON cannot hold.
    """
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


def describe(value: Any) -> str:
    """A short rendering of a bad value for a message (long values are cut)."""
    try:
        text = json_text(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def rule(check: Callable[[Any], str | None]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """An attrs validator from ``check(value) -> message or None``; the message names the
    field by its alias. None values pass (an optional field left out).

    The converter also runs it right after structuring the field, so a document with several
    bad fields gets every problem in one reply.
    """

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        message = check(value)
        if message:
            raise FieldError(key_of(attribute), message)

    validate.field_rule = True  # type: ignore[attr-defined]
    return validate


def between(low: int | float, high: int | float | None = None) -> Callable[[Any], str | None]:
    """A check that a number is in ``low..high`` (no upper bound when ``high`` is None)."""

    def check(value: Any) -> str | None:
        span = f"{low}..{high}" if high is not None else f"≥ {low}"
        if value < low or (high is not None and value > high):
            return f"must be {span}, got {value}"
        return None

    return check


def one_of(choices: Sequence[str]) -> Callable[[Any], str | None]:
    """A check that a value is one of ``choices``."""

    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}, got {describe(value)}"
        return None

    return check


def matching(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    """A check that a string matches ``pattern``; ``what`` describes it (``1 to 64 characters …``)."""

    def check(value: Any) -> str | None:
        if not pattern.match(value):
            return f"must be {what}, got {describe(value)}"
        return None

    return check


def not_blank(value: Any) -> str | None:
    """A check that a string holds more than white space."""
    return None if value.strip() else "must not be empty"


# --------------------------------------------------------------------------------------
# Strict scalar and collection hooks.
# --------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def strict_int(value: Any, _: Any = None) -> int:
    """An integer, not a boolean, a float or a numeric string; within 64 bits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {describe(value)}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"integer out of range (at most {INT_MAX})")
    return value


def strict_float(value: Any, _: Any = None) -> float:
    """A finite number (an integer is fine), not a boolean or a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {describe(value)}")
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        raise ValueError("number out of range")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def strict_str(value: Any, _: Any = None) -> str:
    """A string of valid Unicode (a lone surrogate such as ``"\\ud800"`` is refused)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


def strict_bool(value: Any, _: Any = None) -> bool:
    """``true`` or ``false``, nothing else."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def _sequence_factory(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    origin = getattr(type_, "__origin__", type_)
    inner = (
        homogenous_tuple_structure_factory(type_, converter)
        if origin is tuple
        else list_structure_factory(type_, converter)
    )

    def structure_sequence(value: Any, cl: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {_kind(value)}")
        return inner(value, cl)

    return structure_sequence


def _mapping_factory(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    # cattrs.cols' factory only builds the function; Converter.gen_structure_mapping would also
    # register it as the type's own hook, shadowing this strict one for later lookups.
    from cattrs.cols import mapping_structure_factory

    inner = mapping_structure_factory(type_, converter)

    def structure_mapping(value: Any, cl: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object, got {_kind(value)}")
        return inner(value, cl)

    return structure_mapping


def _checked(converter: cattrs.Converter, attribute: attrs.Attribute[Any]) -> Callable[[Any, Any], Any]:
    """The field's structure hook followed by its :func:`rule` validator."""
    base = converter.get_structure_hook(attribute.type)
    check = attribute.validator
    assert check is not None  # noqa: S101 -- only called for fields that have one

    convert = attribute.converter if callable(attribute.converter) else None

    def structure_field(value: Any, cl: Any) -> Any:
        result = base(value, cl)
        check(None, attribute, convert(result) if convert is not None else result)
        return result

    return structure_field


def _class_factory(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    from cattrs.gen import make_dict_structure_fn, override

    attrs.resolve_types(type_)
    overrides = {
        a.name: override(omit=True)
        if a.metadata.get("ohfp.not-read")
        else override(
            rename=key_of(a),
            struct_hook=_checked(converter, a) if getattr(a.validator, "field_rule", False) else None,
        )
        for a in attrs.fields(type_)
        if a.init
    }
    inner = make_dict_structure_fn(type_, converter, **overrides)  # type: ignore[arg-type]

    def structure_object(value: Any, cl: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object, got {_kind(value)}")
        return inner(value, cl)

    return structure_object


def make_converter(*, forbid_extra_keys: bool) -> cattrs.Converter:
    """A cattrs converter with ohfp's strict hooks, reading fields by their alias.

    ``forbid_extra_keys``: unknown keys are errors (configuration) or ignored (Host
    Factory's inputs, to which new HF versions add keys). Register hooks of your own on the
    result for types of your own (a lenient spelling, say).
    """
    import cattrs
    from cattrs.cols import is_mapping, is_sequence

    converter = cattrs.Converter(
        detailed_validation=True, forbid_extra_keys=forbid_extra_keys, use_alias=True
    )
    converter.register_structure_hook(int, strict_int)
    converter.register_structure_hook(float, strict_float)
    converter.register_structure_hook(str, strict_str)
    converter.register_structure_hook(bool, strict_bool)
    converter.register_structure_hook_factory(is_sequence, lambda t: _sequence_factory(t, converter))
    converter.register_structure_hook_factory(is_mapping, lambda t: _mapping_factory(t, converter))
    converter.register_structure_hook_factory(attrs.has, lambda t: _class_factory(t, converter))
    return converter


@functools.cache
def input_converter() -> cattrs.Converter:
    """The shared converter for Host Factory's inputs (unknown keys ignored)."""
    return make_converter(forbid_extra_keys=False)


@functools.cache
def config_converter() -> cattrs.Converter:
    """The shared converter for configuration files (unknown keys refused)."""
    return make_converter(forbid_extra_keys=True)


# --------------------------------------------------------------------------------------
# Errors in the user's spelling.
# --------------------------------------------------------------------------------------


def _aliases(cl: Any) -> dict[str, str]:
    if not attrs.has(cl):
        return {}
    return {a.name: key_of(a) for a in attrs.fields(cl)}


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    return f"{path}.{text}" if _IDENTIFIER.match(text) else f"{path}[{json_text(text)}]"


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, FieldError):
        return exc.message
    text = str(exc)
    if isinstance(exc, ValueError | TypeError) and text:
        return text
    return f"invalid value ({type(exc).__name__})"


def problems_of(
    exc: BaseException, path: str = "$", unknown: Callable[[type, str], str] | None = None
) -> list[str]:
    """``$.path.key: message`` lines for a failure of :func:`structure`'s converter.

    :param unknown: the message for an unknown key of a class (default:
        :func:`unknown_key` over the class's keys).
    """
    from cattrs import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

    if isinstance(exc, ClassValidationError):
        names = _aliases(exc.cl)
        lines: list[str] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            where = _join(path, names.get(note.name, note.name))
            if isinstance(sub, FieldError):  # a rule checked while the field was structured
                lines.append(f"{where}: {sub.message}")
            else:
                lines += problems_of(sub, where, unknown)
        for sub in without:
            if isinstance(sub, ForbiddenExtraKeysError):
                for key in sorted(map(str, sub.extra_fields)):
                    text = unknown(sub.cl, key) if unknown else _unknown_key(sub.cl, key)
                    lines.append(f"{_join(path, key)}: {text}")
            elif isinstance(sub, FieldError):
                lines.append(f"{_join(path, sub.key)}: {sub.message}")
            else:
                lines += problems_of(sub, path, unknown)
        return lines
    if isinstance(exc, IterableValidationError):
        lines = []
        indexed, rest = exc.group_exceptions()
        for sub, item in indexed:
            lines += problems_of(sub, _join(path, item.index), unknown)
        for sub in rest:
            lines += problems_of(sub, path, unknown)
        return lines
    if isinstance(exc, FieldError):
        return [f"{_join(path, exc.key)}: {exc.message}"]
    return [f"{path}: {_message(exc)}"]


LIST_AT_MOST = 8
"""An unknown key's message lists the known keys only when there are this few."""
LIKENESS = 0.75
"""How alike (difflib's ratio, case ignored) a known key must be to be suggested: a typo of
one or two letters scores 0.85 and more; two names sharing only a prefix (``AWS_SECRET`` and
``AWS_REGION``: 0.6) are not suggested."""


def unknown_key(key: str, known: Iterable[str]) -> str:
    """The message for an unknown ``key`` among ``known``: the closest known key as a
    suggestion (``vmTyp`` → ``did you mean 'vmType'?``, case ignored, at least
    :data:`LIKENESS` alike), else the known keys
    when there are at most :data:`LIST_AT_MOST`, else their number."""
    import difflib

    names = sorted(set(known))
    by_lower = {name.lower(): name for name in names}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=LIKENESS)
    if close:
        return f"unknown key; did you mean {by_lower[close[0]]!r}?"
    if not names:
        return "unknown key"
    if len(names) <= LIST_AT_MOST:
        return f"unknown key; known: {', '.join(names)}"
    return f"unknown key (none of the {len(names)} keys known here is close to it)"


def _unknown_key(cl: type, key: str) -> str:
    return unknown_key(key, _aliases(cl).values())


def structure(
    data: Any,
    cl: type[T],
    *,
    converter: cattrs.Converter,
    error: type[E],
    message: str,
    path: str = "$",
    unknown: Callable[[type, str], str] | None = None,
) -> T:
    """``data`` as a ``cl``, or ``error(message, problems)`` naming every bad field.

    :param path: where ``data`` sits in its document (``$.templates[2]``).
    :param unknown: see :func:`problems_of`.
    """
    import cattrs

    try:
        return converter.structure(data, cl)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise error(message, problems_of(exc, path, unknown)) from None

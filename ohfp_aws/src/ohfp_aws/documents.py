"""IBM's AWS files and ohfp's ``aws`` settings read in one pass: the spellings and rules they share.

Built on :mod:`ohfp_core.parsing`: each object of a file is an attrs class whose fields name
their key (:func:`~ohfp_core.parsing.key`) and carry their rule
(:func:`~ohfp_core.parsing.rule`); core's converter checks every rule as it reads the field,
so one pass reports every problem. This module adds what IBM's files need:

- ``null`` is the same as leaving the key out, as IBM's plugin reads it;
- a field annotated ``Annotated[T, marker]`` reads a lenient spelling: :data:`AS_GIVEN` hands
  the value to the field's rule untouched, which names the type it wants in today's words (a
  list becomes a tuple for a tuple field); :data:`TRIMMED` strips a string; :data:`QUOTED`
  also takes ``"3"`` and ``"true"``; :data:`ID_LIST` takes ``"a,b"`` or ``["a", "b"]``;
  :data:`TAGS` takes ``"k=v;k2=v2"``; :data:`PRICE` a number or a numeric string;
  :data:`USER_DATA` the path of a file whose content it reads; :data:`SECTION` marks a nested
  object of the file; a :class:`Checked` marker an object its own check reads, each problem
  named by its path inside it (``instanceRequirements.VCpuCount.Min``);
- rules between fields run in the class's ``__attrs_post_init__``; :func:`broken` reports
  several at once.

Problems read ``key: message`` and ``section.key: message``, as the files spell them.
cattrs is imported on the first document read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_args, get_origin

import attrs
from attrs import frozen

from ohfp_core import parsing
from ohfp_core.errors import ConfigError
from ohfp_core.parsing import NOT_READ, FieldError, between, key_of, make_converter, structure

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")

AS_GIVEN = "as given"
TRIMMED = "trimmed"
QUOTED = "quoted"
ID_LIST = "id list"
TAGS = "tags"
PRICE = "price"
USER_DATA = "user data"
SECTION = "section"

MAX_USER_DATA_BYTES = 16 * 1024
_TAG_KEY_MAX, _TAG_VALUE_MAX = 128, 256
_YES, _NO = ("true", "yes", "y"), ("false", "no", "n")


# -- rules in today's words ---------------------------------------------------------------------


def integer(low: int, high: int | None = None) -> Callable[[Any], str | None]:
    """A check that a value is an integer (not a boolean) in ``low..high``."""
    in_range = between(low, high)

    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            span = f"{low}..{high}" if high is not None else f"≥ {low}"
            return f"must be an integer {span}, got {value!r}"
        return in_range(value)

    return check


def text(prefix: str = "") -> Callable[[Any], str | None]:
    """A check that a value is a non-empty string, starting with ``prefix`` when given."""

    def check(value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            return f"must be a non-empty string, got {value!r}"
        if prefix and not value.startswith(prefix):
            return f"must start with {prefix!r}, got {value!r}"
        return None

    return check


def flag(value: Any) -> str | None:
    """A check that a value is true or false."""
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def broken(cl: type, problems: Sequence[FieldError]) -> None:
    """Report ``problems`` of rules between fields (from ``__attrs_post_init__``) all at once.

    :raises cattrs.ClassValidationError: when there is any.
    """
    if problems:
        from cattrs import ClassValidationError

        raise ClassValidationError(f"rules of {cl.__name__}", list(problems), cl)


# -- lenient spellings ---------------------------------------------------------------------------


def _marked(marker: str) -> Callable[[Any], bool]:
    return lambda t: get_origin(t) is Annotated and marker in t.__metadata__


def _base(t: Any) -> Any:
    """``T`` of ``Annotated[T, marker]``."""
    return get_args(t)[0]


def _as_given(value: Any, t: Any) -> Any:
    base = _base(t)
    if isinstance(value, list) and (base is tuple or get_origin(base) is tuple):
        return tuple(value)
    return value


def _trimmed(value: Any, _: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _quoted(value: Any, t: Any) -> Any:
    if isinstance(value, str):
        word, kinds = value.strip(), {_base(t), *get_args(_base(t))}
        if int in kinds and word.lstrip("-").isdigit():
            return int(word)  # IBM's samples sometimes quote numbers
        if bool in kinds and word.lower() in (*_YES, *_NO):
            return word.lower() in _YES
    return value


def _id_list(value: Any, _: Any) -> Any:
    """An array of ids or a comma-separated string as a tuple; anything else as given."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        return value
    return tuple(items) if items and all(items) else value


def parse_tags(value: Any, _: Any = None) -> dict[str, str]:
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


def _price(value: Any, _: Any) -> str:
    """A positive price in USD per hour, as the text AWS takes."""
    try:
        price = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        price = -1.0
    if price <= 0:
        raise ValueError(f"must be a positive price in USD per hour, got {value!r}")
    return str(value)


def read_user_data(value: Any, base_dir: Path | None = None) -> str:
    """The content of the ``userDataScript`` file (a relative path is taken from ``base_dir``).

    :raises ValueError: when the value is not a path, or the file is unreadable, too large
        for AWS or not UTF-8 text.
    """
    message = text()(value)
    if message:
        raise ValueError(message)
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
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


@frozen
class Checked:
    """Marks an object field (``Annotated[T, Checked(key, check)]``) whose value ``check``
    examines: ``check(value)`` lists ``(path inside the object, message)`` pairs, empty when
    the value is fine; an empty path means the value is not an object at all. ``key`` is the
    field's key as the file spells it."""

    key: str
    check: Callable[[Any], Sequence[tuple[str, str]]]


def _is_checked(t: Any) -> bool:
    return get_origin(t) is Annotated and any(isinstance(m, Checked) for m in t.__metadata__)


def _checked(value: Any, t: Any) -> dict[str, Any]:
    """``value`` as its :class:`Checked` marker's check reads it.

    :raises ValueError: when it is not an object; else a ``ClassValidationError`` whose
        problems are paths inside the object.
    """
    marker = next(m for m in t.__metadata__ if isinstance(m, Checked))
    found = marker.check(value)
    if not found:
        return dict(value)
    if found[0][0] == "":
        raise ValueError(found[0][1])
    from cattrs import ClassValidationError
    from cattrs.errors import AttributeValidationNote

    errors: list[Exception] = []
    nested: dict[str, list[Exception]] = {}
    for path, message in found:
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, []).append(FieldError(rest, message))
        else:
            errors.append(FieldError(head, message))
    for head, inner in nested.items():
        error = ClassValidationError(head, inner, dict)
        error.__notes__ = [AttributeValidationNote(f"{marker.key} @ {head}", head, dict)]
        errors.append(error)
    raise ClassValidationError(marker.key, errors, dict)


def _without_nulls(value: Mapping[str, Any]) -> dict[str, Any]:
    return {key: item for key, item in value.items() if item is not None}


@functools.cache
def _converter(base_dir: Path | None) -> cattrs.Converter:
    """The converter of the AWS documents; relative ``userDataScript`` paths start at ``base_dir``."""
    converter = make_converter(forbid_extra_keys=True)

    def section(value: Any, t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be an object, got {value!r}")
        return converter.get_structure_hook(_base(t))(_without_nulls(value), _base(t))

    converter.register_structure_hook_func(_marked(AS_GIVEN), _as_given)
    converter.register_structure_hook_func(_marked(TRIMMED), _trimmed)
    converter.register_structure_hook_func(_marked(QUOTED), _quoted)
    converter.register_structure_hook_func(_marked(ID_LIST), _id_list)
    converter.register_structure_hook_func(_marked(TAGS), parse_tags)
    converter.register_structure_hook_func(_marked(PRICE), _price)
    converter.register_structure_hook_func(
        _marked(USER_DATA), lambda value, _: read_user_data(value, base_dir)
    )
    converter.register_structure_hook_func(_marked(SECTION), section)
    converter.register_structure_hook_func(_is_checked, _checked)
    return converter


def unknown_key(cl: type, key: str) -> str:
    """The problem of a key no field of ``cl`` reads: the closest key it reads as a
    suggestion (``AWS_REGON`` → ``did you mean 'AWS_REGION'?``, case ignored)."""
    return parsing.unknown_key(key, read_keys(cl))


NOT_READ_MARK = next(iter(NOT_READ))


def read_keys(cl: type, leave_out: str | None = None) -> list[str]:
    """The keys the fields of ``cl`` read (none set by code; none whose metadata marks
    ``leave_out``)."""
    return [
        key_of(a)
        for a in attrs.fields(cl)
        if not a.metadata.get(NOT_READ_MARK) and not (leave_out and a.metadata.get(leave_out))
    ]


def read(
    data: Mapping[str, Any],
    cl: type[T],
    *,
    message: str,
    base_dir: Path | None = None,
    unknown: Callable[[type, str], str] = unknown_key,
) -> T:
    """``data`` as a ``cl``, or a :class:`ConfigError` listing every problem as ``key: message``.

    :param base_dir: where a relative :data:`USER_DATA` path starts.
    :param unknown: the message for a key no field reads.
    """
    try:
        return structure(
            _without_nulls(data),
            cl,
            converter=_converter(base_dir),
            error=ConfigError,
            message=message,
            unknown=unknown,
        )
    except ConfigError as exc:
        raise ConfigError(message, [problem.removeprefix("$.") for problem in exc.problems]) from None

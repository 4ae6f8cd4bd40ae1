"""The templates file (``<instance>prov_templates.json``) and core's rules for templates.

Each entry's core keys (``templateId``, ``maxNumber``, ``availableNumber``, ``attributes``)
are structured into a :class:`TemplateEntry`; every other key is kept, in the file's
spelling, in :attr:`Template.fields` for the provider. An entry that breaks a rule is left
out with its problems named (``$.templates[2].maxNumber: …``): one typo does not stop a grid
from bursting on the other templates. ``ohfp templates validate`` reports every problem.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from ohfp_core.config import find_file, read_json_file, shadowed_files
from ohfp_core.errors import ConfigError
from ohfp_core.models import (
    ATTRIBUTE_TYPES,
    MANDATORY_ATTRIBUTES,
    TEMPLATE_ID_RE,
    Attribute,
    Problem,
    ProviderContext,
    Template,
)
from ohfp_core.parsing import FieldError, between, key, make_converter, matching, rule, structure

if TYPE_CHECKING:
    import cattrs

MAX_UNITS = 1_000_000
"""Largest ``maxNumber`` or ``availableNumber`` a template may give."""
CORE_KEYS = ("templateId", "maxNumber", "attributes", "availableNumber")


def _max_number(value: int) -> str | None:
    if value == -1 or 0 <= value <= MAX_UNITS:
        return None
    return f"must be -1 (unlimited) or 0..{MAX_UNITS}, got {value}"


@frozen(kw_only=True)
class TemplateEntry:
    """The core keys of one templates-file entry."""

    template_id: str = field(
        metadata=key("templateId"),
        validator=rule(matching(TEMPLATE_ID_RE, "1 to 64 characters of [0-9A-Za-z_-]")),
    )
    max_number: int = field(default=-1, metadata=key("maxNumber"), validator=rule(_max_number))
    available_number: int | None = field(
        default=None, metadata=key("availableNumber"), validator=rule(between(0, MAX_UNITS))
    )
    attributes: dict[str, Attribute] = field(factory=dict)


def _attribute(value: Any, _: Any = None) -> Attribute:
    """An attribute as ``[type, value]`` or as a scalar (its type inferred)."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or not isinstance(value[0], str):
            raise ValueError(f"expected [type, value], got {json.dumps(value)[:60]}")
        kind, raw = value
        if kind not in ATTRIBUTE_TYPES:
            raise FieldError(0, f"type must be one of {', '.join(ATTRIBUTE_TYPES)}, got {kind!r}")
    elif isinstance(value, bool):
        kind, raw = "Boolean", value
    elif isinstance(value, int | float):
        kind, raw = "Numeric", value
    elif isinstance(value, str):
        kind, raw = "String", value
    else:
        raise ValueError(f"expected [type, value] or a scalar, got {json.dumps(value)[:60]}")
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, float) and raw.is_integer():
        text = str(int(raw))
    elif isinstance(raw, str | int | float):
        text = str(raw)
    else:
        raise FieldError(1, f"expected a string or a number, got {json.dumps(raw)[:60]}")
    return Attribute(type=kind, value=text)


@functools.cache
def _converter() -> cattrs.Converter:
    converter = make_converter(forbid_extra_keys=True)
    converter.register_structure_hook(Attribute, _attribute)
    return converter


def template_from_json(entry: Any, path: str) -> Template:
    """One templates-file entry → :class:`Template` (attributes as pairs or scalars).

    :raises ConfigError: naming the field, e.g. ``$.templates[1].maxNumber``.
    """
    if not isinstance(entry, Mapping):
        raise ConfigError("invalid template", [f"{path}: expected an object"])
    core = structure(
        {key: value for key, value in entry.items() if key in CORE_KEYS},
        TemplateEntry,
        converter=_converter(),
        error=ConfigError,
        message="invalid template",
        path=path,
    )
    return Template(
        template_id=core.template_id,
        max_number=core.max_number,
        attributes=core.attributes,
        available_number=core.available_number,
        fields={key: value for key, value in entry.items() if key not in CORE_KEYS},
    )


@frozen(kw_only=True)
class TemplateFile:
    """The templates a file offers and the problems of the entries left out.

    ``broken`` maps each left-out template id (or ``$.templates[i]`` when the entry has no
    usable id) to its problems.
    """

    templates: tuple[Template, ...] = ()
    broken: Mapping[str, tuple[str, ...]] = field(factory=dict)
    path: Path | None = None
    """The file read (None when the instance has none)."""
    shadowed: tuple[str, ...] = ()
    """Warnings for files of the same kind that are ignored (:func:`~ohfp_core.config.shadowed_files`)."""

    @property
    def problems(self) -> list[str]:
        return [problem for problems in self.broken.values() for problem in problems]


def load_templates(context: ProviderContext) -> TemplateFile:
    """The templates file's entries (none when there is no file).

    :raises ConfigError: when the file cannot be read, is not JSON or holds no
        ``templates`` list; a bad entry is only left out (see :class:`TemplateFile`).
    """
    path = find_file(context.confdir, context.instance, context.provider_type, "templates")
    shadowed = tuple(shadowed_files(context.confdir, context.instance, context.provider_type, "templates"))
    if path is None:
        return TemplateFile()
    raw = read_json_file(path, "templates file")
    entries = raw.get("templates") if isinstance(raw, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(f"templates file {str(path)!r}", ["$.templates: expected a list of templates"])
    templates: list[Template] = []
    broken: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"$.templates[{i}]"
        try:
            template = template_from_json(entry, where)
        except ConfigError as exc:
            broken[_label(entry, where)] = exc.problems
            continue
        if template.template_id in seen:
            broken[where] = (f"{where}.templateId: duplicate id {template.template_id!r}",)
            continue
        seen.add(template.template_id)
        templates.append(template)
    return TemplateFile(templates=tuple(templates), broken=broken, path=path, shadowed=shadowed)


def _label(entry: Any, where: str) -> str:
    template_id = entry.get("templateId") if isinstance(entry, Mapping) else None
    if isinstance(template_id, str) and TEMPLATE_ID_RE.match(template_id):
        return template_id
    return where


def core_problems(template: Template) -> list[Problem]:
    """Core's rules for an offered template: the mandatory attributes, ``ncpus`` and
    ``nram`` numeric (a provider may have filled them in from the instance type)."""
    problems = [
        Problem(f"attributes.{name}", "mandatory attribute missing")
        for name in MANDATORY_ATTRIBUTES
        if name not in template.attributes
    ]
    for name in ("ncpus", "nram"):
        attribute = template.attributes.get(name)
        if attribute is not None and not _is_number(attribute.value):
            problems.append(Problem(f"attributes.{name}", f"must be a number, got {attribute.value!r}"))
    return problems


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def labelled(template_id: str, problems: Sequence[Problem]) -> list[str]:
    """Problems of an offered template as ``$.templates[<id>].<field>: message``."""
    return [f"$.templates[{template_id}].{p.path}: {p.message}" for p in problems]

"""The public API a provider may import (``docs/reference/api.md``) is what the code offers.

The page has one table per module, after a ``<!-- api: MODULE HOW -->`` line: ``whole`` lists
every public name of the module (``__all__``, else the names its source defines or
re-exports as ``x as x``), ``some`` lists the names providers may use of a module that holds
core's own code too, ``names`` lists names whose shape the reference documents elsewhere.
Each row gives the name and, but for ``names``, its shape: a class's or function's
signature (parameter names, ``*`` for keyword-only, ``=…`` for a default), an enum's
members. This test fails when a listed name disappears or changes shape, or a module listed
whole gains or loses a public name, without the page following. ``python -m
tests.core.test_public_api`` prints the tables as the code has them.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "api.md"
HOW = ("whole", "some", "names")


def listed() -> dict[str, tuple[str, dict[str, str]]]:
    """Module → (how it is listed, {name: shape as the page shows it})."""
    tables: dict[str, tuple[str, dict[str, str]]] = {}
    for module, how, table in re.findall(
        r"<!-- api: (\S+) (\w+) -->\n\n\| name \| shape \|\n\|---\|---\|\n((?:\|.*\|\n)*)",
        PAGE.read_text(encoding="utf-8"),
    ):
        rows = re.findall(r"^\| `([^`]+)` \|\s*(.*?)\s*\|$", table, flags=re.MULTILINE)
        tables[module] = (how, {name: shape.strip("`") for name, shape in rows})
    return tables


def defined(module: ModuleType) -> list[str]:
    """The module's public names: ``__all__``, else what its source defines or re-exports."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names: list[str] = []
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names += [alias.name for alias in node.names if alias.asname == alias.name]
    return [name for name in names if not name.startswith("_")]


def _parameters(target: object) -> str:
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(…)"
    parts: list[str] = []
    star = False
    for parameter in signature.parameters.values():
        if parameter.name == "self":
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        prefix = {"VAR_POSITIONAL": "*", "VAR_KEYWORD": "**"}.get(parameter.kind.name, "")
        default = "=…" if parameter.default is not parameter.empty else ""
        parts.append(f"{prefix}{parameter.name}{default}")
        star = star or parameter.kind is parameter.VAR_POSITIONAL
    return f"({', '.join(parts)})"


def shape(value: object) -> str:
    """How the page shows a name: a signature, an enum's members, or a kind of value."""
    if isinstance(value, type) and issubclass(value, enum.Enum):
        return "enum: " + ", ".join(member.value for member in value)
    if isinstance(value, type) and issubclass(value, BaseException):
        return f"exception({', '.join(base.__name__ for base in value.__bases__)})"
    if isinstance(value, type) and getattr(value, "_is_protocol", False):
        members = sorted(
            name for name in vars(value) if not name.startswith("_") and callable(vars(value)[name])
        )
        return "protocol: " + ", ".join(members)
    if isinstance(value, type):
        return "class" + _parameters(value)
    if inspect.isfunction(value):
        return "function" + _parameters(value)
    return type(value).__name__


def tables() -> str:
    """The page's tables as the code has them."""
    out = []
    for module_name, (how, names) in listed().items():
        module = importlib.import_module(module_name)
        rows = defined(module) if how == "whole" else list(names)
        out.append(f"<!-- api: {module_name} {how} -->\n\n| name | shape |\n|---|---|")
        for name in rows:
            value = getattr(module, name, None)
            out.append(f"| `{name}` | {'' if how == 'names' else f'`{shape(value)}`'} |")
        out.append("")
    return "\n".join(out)


def test_the_page_lists_the_provider_facing_modules() -> None:
    modules = listed()
    assert {"ohfp_core", "ohfp_core.models", "ohfp_core.errors", "ohfp_core.testing"} <= set(modules)
    assert {how for how, _ in modules.values()} <= set(HOW)


@pytest.mark.parametrize("module_name", sorted(listed()))
def test_listed_names_exist_with_the_shape_shown(module_name: str) -> None:
    how, names = listed()[module_name]
    module = importlib.import_module(module_name)
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == [], f"{module_name} no longer has {missing}: deprecate first (ohfp_core.deprecation)"
    if how != "names":
        changed = {
            name: shape(getattr(module, name))
            for name in names
            if shape(getattr(module, name)) != names[name]
        }
        assert changed == {}, (
            f"{module_name}: these changed shape; the page shows {[names[n] for n in changed]}"
        )
    if how == "whole":
        assert sorted(names) == sorted(defined(module)), f"{module_name}'s public names differ from the page"


if __name__ == "__main__":
    print(tables())

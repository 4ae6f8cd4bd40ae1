"""mkdocs hook: fill ``docs/reference/cli.md`` from every command's own argparse parser.

The page holds the marker ``<!-- ohfp-cli -->``; this hook replaces it with the help of every
command and subcommand of every distribution, so the reference cannot drift from the code. The
commands are found, not listed: each distribution's console scripts (``[project.scripts]`` in
its ``pyproject.toml``) and each package's ``python -m`` entry (a ``__main__.py`` with a parser
of its own); every such module builds its parser with ``build_parser()``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MARKER = "<!-- ohfp-cli -->"
ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[tuple[str, str, str]]:
    """``(command, module, distribution)`` for every command the distributions install,
    ``ohfp`` first, then by distribution and name."""
    found: list[tuple[str, str, str]] = []
    for project_file in sorted(ROOT.glob("*/pyproject.toml")):
        project = tomllib.loads(project_file.read_text(encoding="utf-8")).get("project")
        if not project:
            continue
        for name, target in sorted(project.get("scripts", {}).items()):
            found.append((name, target.split(":", 1)[0], project["name"]))
        for main in sorted(project_file.parent.glob("src/*/__main__.py")):
            if _defines_parser(main):
                found.append(
                    (f"python -m {main.parent.name}", f"{main.parent.name}.__main__", project["name"])
                )
    return sorted(found, key=lambda c: (c[0] != "ohfp", c[2], c[0]))


def _defines_parser(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef) and node.name == "build_parser" for node in tree.body)


def walk(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """The command and each of its subcommands, depth first."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{prefix} {name}")


def parser_of(module: str) -> argparse.ArgumentParser:
    built: argparse.ArgumentParser = importlib.import_module(module).build_parser()
    return built


def cli_reference() -> str:
    """Markdown: a part per command (from which distribution), a section per subcommand with
    its ``--help`` text."""
    parts = []
    for command, module, distribution in commands():
        parts.append(f"## `{command}` ({distribution})\n")
        for name, parser in walk(parser_of(module), command):
            parser.prog = name
            help_text = parser.format_help().rstrip()
            parts.append(f"### `{name}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: expand the marker on the page that has it."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown

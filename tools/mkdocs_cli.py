"""mkdocs hook: fill ``docs/reference/cli.md`` from the ``ohfp`` command's own argparse parser.

The page holds the marker ``<!-- ohfp-cli -->``; this hook replaces it with the help of every
command and subcommand, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- ohfp-cli -->"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def cli_reference() -> str:
    """Markdown: a section per command with its ``--help`` text."""
    from ohfp_core.cli import build_parser

    sections = []
    for command, parser in _commands(build_parser(), "ohfp"):
        parser.prog = command
        help_text = parser.format_help().rstrip()
        sections.append(f"## `{command}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(sections)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: expand the marker on the page that has it."""
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown

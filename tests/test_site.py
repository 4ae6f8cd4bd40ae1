"""The reference site's inputs (``nox -s docs`` builds it; CI too): every page is in the
navigation, every model field has a docstring for the models page, and the command-line page
is generated from the parser with every command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tools import mkdocs_cli

from ohfp_core import models

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.MULTILINE))


def test_every_page_is_in_the_navigation() -> None:
    pages = {str(p.relative_to(DOCS)) for p in DOCS.glob("*.md")} | {
        str(p.relative_to(DOCS)) for p in (DOCS / "reference").glob("*.md")
    }
    assert _nav_pages() == pages


def test_every_model_field_has_a_docstring() -> None:
    """The models page shows each field's and each state's docstring (the string after it)."""
    tree = ast.parse(Path(models.__file__).read_text(encoding="utf-8"))
    missing = []
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name != "PriceType"):
        body = cls.body
        for index, statement in enumerate(body):
            if not isinstance(statement, ast.AnnAssign | ast.Assign):
                continue
            after = body[index + 1] if index + 1 < len(body) else None
            if not (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
                missing.append(f"{cls.name}: {ast.unparse(statement)}")
    assert missing == []


def test_the_cli_page_is_generated_with_every_command_of_every_distribution() -> None:
    page = mkdocs_cli.on_page_markdown((DOCS / "reference" / "cli.md").read_text(encoding="utf-8"))
    assert mkdocs_cli.MARKER not in page
    found = {command for command, _, _ in mkdocs_cli.commands()}
    assert {"ohfp", "ohfp-aws", "ohfp-dynamodb", "python -m ohfp_mock"} <= found
    for command, module, distribution in mkdocs_cli.commands():
        assert f"## `{command}` ({distribution})" in page
        for name, _ in mkdocs_cli.walk(mkdocs_cli.parser_of(module), command):
            assert f"### `{name}`" in page, name
    for name in ("ohfp hf requestMachines", "ohfp-aws events", "ohfp-dynamodb create-table"):
        assert f"### `{name}`" in page


def test_install_commands_work_before_the_packages_are_published() -> None:
    """The distributions are not on a package index: a ``pip install ohfp-…`` the docs offer
    would fail on a fresh machine unless the line says it is for once they are published."""
    offenders = []
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"pip install (\S+ )*ohfp-", line) and "published" not in line:
                offenders.append(f"{page.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_link_text_reads_as_words_not_file_names() -> None:
    """``[reliability.md](reliability.md)`` reads badly on the site: name what the link leads to."""
    offenders = []
    for page in [ROOT / "README.md", *DOCS.glob("*.md"), *(DOCS / "reference").glob("*.md")]:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for text in re.findall(r"\[([^\]]+)\]\([^)]+\)", line):
                if re.fullmatch(r"[\w./-]+\.md", text):
                    offenders.append(f"{page.relative_to(ROOT)}:{number}: [{text}]")
    assert offenders == []

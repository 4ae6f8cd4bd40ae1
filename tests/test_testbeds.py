"""The benchmarks and the test beds stand on their own: no file under ``benchmarks/`` or
``testbeds/`` reaches into ``tests/``, by an import, by a module name handed to a process
(``python -m tests…``, ``import_module``) or by a path into it. What both need lives in
``testbeds/``; the tests import it, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STANDALONE = ("benchmarks", "testbeds")


def _names(node: ast.AST) -> tuple[int, list[str]]:
    """The line of ``node`` and the module names or strings it holds: an import's modules, a
    string constant; none for anything else."""
    if isinstance(node, ast.Import):
        return node.lineno, [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return node.lineno, [node.module]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.lineno, [node.value]
    return 0, []


def reaches_into_tests(source: str) -> list[str]:
    """Every place in ``source`` that names the ``tests`` package or directory, as
    ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line, names = _names(node)
        found += [
            f"{line}: {name}" for name in names if name == "tests" or name.startswith(("tests.", "tests/"))
        ]
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import tests.aws.conftest",
        "from tests.dynamodb.test_store import TestDynamoContract",
        "def f():\n    from tests import store_support",
        "import importlib\nimportlib.import_module('tests.libvirt.lab')",
        "cmd = [sys.executable, '-m', 'tests.libvirt.lab']",
        "path = ROOT / 'tests' / 'aws' / 'amis.json'",
    ],
)
def test_the_scan_finds_each_way_of_reaching_into_tests(source: str) -> None:
    assert reaches_into_tests(source)


def test_the_scan_leaves_the_test_beds_and_words_alone() -> None:
    source = (
        '"""Shared by the tests and the benchmarks."""\n'
        "from testbeds.dynamodb import new_table\n"
        "import testbeds.hooked_moto\n"
        "from .bench_hf import ROOT\n"
        "label = 'tests of the store'\n"
    )
    assert reaches_into_tests(source) == []


def files() -> list[Path]:
    return sorted(path for top in STANDALONE for path in (ROOT / top).rglob("*.py"))


def test_there_are_benchmarks_and_test_beds_to_scan() -> None:
    assert {path.relative_to(ROOT).parts[0] for path in files()} == set(STANDALONE)


@pytest.mark.parametrize("path", files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_benchmark_or_test_bed_reaches_into_tests(path: Path) -> None:
    assert reaches_into_tests(path.read_text(encoding="utf-8")) == []

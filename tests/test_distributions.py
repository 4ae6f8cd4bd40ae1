"""Distributions fit to publish: the recipe every distribution directory follows, and the
checker ``nox -s dist`` runs over the built wheels and sdists (tools/check_dists.py).

The recipe: a directory with ``pyproject.toml`` (``license = "Apache-2.0"``,
``license-files = ["LICENSE"]``, classifiers, ``readme = "README.md"``, the sdist limited to
``src``, ``README.md`` and ``LICENSE``), a README of its own, a copy of the repository's
``LICENSE`` and ``src/<package>/py.typed``.
"""

from __future__ import annotations

import io
import re
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from tools import check_dists

ROOT = Path(__file__).resolve().parents[1]
DIRS = sorted(p.parent for p in ROOT.glob("*/pyproject.toml") if "project" in tomllib.loads(p.read_text()))


def test_the_distributions_are_found() -> None:
    assert {"ohfp_core", "ohfp_mock", "ohfp_aws"} <= {d.name for d in DIRS}


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_distribution_follows_the_recipe(directory: Path) -> None:
    project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert project["readme"] == "README.md"
    assert project["classifiers"]
    assert (directory / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes(), "copy the root LICENSE"
    assert len((directory / "README.md").read_text().splitlines()) > 10, "write a real README"
    assert list(directory.glob("src/*/py.typed")), "ship py.typed"


LICENSE = b"the licence text\n"
README = "# ohfp-x\n\nline\n\nline\n\nline\n\nline\n"


def _metadata(requires: str = "ohfp-core>=0.2,<0.3", classifier: bool = True) -> str:
    lines = [
        "Metadata-Version: 2.4",
        "Name: ohfp-x",
        "Version: 0.2.0",
        "License-Expression: Apache-2.0",
        "License-File: LICENSE",
        "Description-Content-Type: text/markdown",
        f"Requires-Dist: {requires}",
    ]
    if classifier:
        lines.append("Classifier: Typing :: Typed")
    return "\n".join(lines) + "\n\n" + README


def _wheel(tmp_path: Path, files: dict[str, bytes | str]) -> Path:
    path = tmp_path / "ohfp_x-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, content in files.items():
            wheel.writestr(name, content)
    return path


GOOD_WHEEL: dict[str, bytes | str] = {
    "ohfp_x/__init__.py": "",
    "ohfp_x/py.typed": "",
    "ohfp_x-0.2.0.dist-info/METADATA": _metadata(),
    "ohfp_x-0.2.0.dist-info/licenses/LICENSE": LICENSE,
}


def test_a_good_wheel_passes(tmp_path: Path) -> None:
    assert check_dists.check_wheel(_wheel(tmp_path, GOOD_WHEEL), LICENSE) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"ohfp_x/py.typed": None}, "ohfp_x/ has no py.typed"),
        ({"ohfp_x-0.2.0.dist-info/licenses/LICENSE": None}, "no ohfp_x-0.2.0.dist-info/licenses/LICENSE"),
        ({"ohfp_x-0.2.0.dist-info/licenses/LICENSE": b"other"}, "differs from the repository's LICENSE"),
        ({"tests/test_x.py": ""}, "holds tests/test_x.py"),
        ({"ohfp_x/__pycache__/a.cpython-311.pyc": b""}, "holds ohfp_x/__pycache__"),
        ({"setup.py": ""}, "stray top-level file setup.py"),
        ({"ohfp_x-0.2.0.dist-info/METADATA": _metadata("ohfp-core")}, "'ohfp-core' needs bounds"),
        ({"ohfp_x-0.2.0.dist-info/METADATA": _metadata(classifier=False)}, "no classifiers"),
    ],
)
def test_a_bad_wheel_is_reported(tmp_path: Path, change: dict[str, bytes | str | None], problem: str) -> None:
    files = {**GOOD_WHEEL, **change}
    path = _wheel(tmp_path, {name: content for name, content in files.items() if content is not None})
    assert any(problem in found for found in check_dists.check_wheel(path, LICENSE)), problem


def _sdist(tmp_path: Path, files: dict[str, bytes | str]) -> Path:
    path = tmp_path / "ohfp_x-0.2.0.tar.gz"
    with tarfile.open(path, "w:gz") as sdist:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"ohfp_x-0.2.0/{name}")
            info.size = len(data)
            sdist.addfile(info, io.BytesIO(data))
    return path


GOOD_SDIST: dict[str, bytes | str] = {
    "pyproject.toml": "",
    "README.md": README,
    "LICENSE": LICENSE,
    "PKG-INFO": _metadata(),
    "src/ohfp_x/__init__.py": "",
}


def test_sdists_are_checked(tmp_path: Path) -> None:
    assert check_dists.check_sdist(_sdist(tmp_path, GOOD_SDIST), LICENSE) == []
    bad = {**GOOD_SDIST, "tests/test_x.py": ""}
    bad.pop("LICENSE")
    problems = check_dists.check_sdist(_sdist(tmp_path, bad), LICENSE)
    assert any("stray tests/test_x.py" in p for p in problems)
    assert any("no LICENSE" in p for p in problems)


def _names(directory: Path) -> tuple[str, str]:
    """A distribution directory's project name and its one import package."""
    name = tomllib.loads((directory / "pyproject.toml").read_text())["project"]["name"]
    (package,) = (p.parent.name for p in directory.glob("src/*/__init__.py"))
    return name, package


def _mkdocstrings_paths() -> list[str]:
    match = re.search(r"^\s*paths: \[(.*)\]$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    assert match, "mkdocs.yml: mkdocstrings' python handler names its paths"
    return [p.strip() for p in match.group(1).split(",")]


@pytest.mark.parametrize("directory", DIRS, ids=lambda d: d.name)
def test_every_list_of_distributions_names_this_one(directory: Path) -> None:
    """README, the docs' home page, the reference, the root tool config and the noxfile each
    list every distribution: a new one missing from any of them fails here."""
    name, package = _names(directory)
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    root_comment = (ROOT / "pyproject.toml").read_text().split("[tool", 1)[0]
    nox = (ROOT / "noxfile.py").read_text()
    reference = "".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    src = f"{directory.name}/src"
    assert f"| `{name}` |" in (ROOT / "README.md").read_text(), "README.md's distribution table"
    assert f"| `{name}` |" in (ROOT / "docs" / "index.md").read_text(), "docs/index.md's table"
    assert f"{directory.name}/" in root_comment, "pyproject.toml's opening comment"
    assert src in root["tool"]["ruff"]["src"], "pyproject.toml: [tool.ruff] src"
    assert src in root["tool"]["mypy"]["mypy_path"], "pyproject.toml: [tool.mypy] mypy_path"
    assert package in root["tool"]["mypy"]["packages"], "pyproject.toml: [tool.mypy] packages"
    assert f'"{name}"' in nox, "noxfile.py: DISTRIBUTIONS"
    assert f'"./{directory.name}"' in nox, "noxfile.py: SOURCES"
    assert src in _mkdocstrings_paths(), "mkdocs.yml: mkdocstrings paths"
    assert re.search(rf"^::: {package}\b", reference, re.MULTILINE), "docs/reference: a ::: block"

"""Check built wheels and sdists before they are published: ``nox -s dist`` runs it.

    python tools/check_dists.py --license LICENSE dist/*.whl dist/*.tar.gz

``twine check --strict`` checks that the metadata is valid and the README renders; this
script checks what twine does not, for every distribution of the repository:

- the wheel holds its packages (each with ``py.typed``) and its ``.dist-info``, nothing else:
  no tests, bytecode, caches or stray top-level files;
- the wheel and the sdist carry ``LICENSE``, the same text as the repository's;
- the metadata names the licence (``License-Expression: Apache-2.0``), has classifiers, a
  Markdown long description of more than a line, and bounds every ``ohfp-*`` requirement
  (``>=0.2,<0.3``) so a release of one cannot break the others;
- the sdist holds ``pyproject.toml``, ``README.md``, ``LICENSE``, ``PKG-INFO`` and ``src/``,
  nothing else.

Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import email.parser
import re
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from email.message import Message
from pathlib import Path, PurePosixPath

LICENSE_EXPRESSION = "Apache-2.0"
SDIST_TOP = {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO", "src", ".gitignore"}
STRAY = re.compile(r"(^|/)(tests?|__pycache__)(/|$)|\.py[co]$|(^|/)test_[^/]*\.py$|(^|/)conftest\.py$")
BOUNDED = re.compile(r">=\s*[\d.]+.*<\s*[\d.]+|<\s*[\d.]+.*>=\s*[\d.]+")


def _metadata(text: str) -> Message:
    return email.parser.Parser().parsestr(text)


def check_metadata(where: str, meta: Message, unbounded_ok: Iterable[str] = ()) -> list[str]:
    """Problems of one distribution's core metadata (``METADATA`` or ``PKG-INFO``)."""
    problems = []
    name = meta.get("Name", "?")
    if meta.get("License-Expression") != LICENSE_EXPRESSION:
        problems.append(f"{where}: License-Expression is {meta.get('License-Expression')!r}, not Apache-2.0")
    if "LICENSE" not in (meta.get_all("License-File") or []):
        problems.append(f"{where}: no License-File: LICENSE")
    if not meta.get_all("Classifier"):
        problems.append(f"{where}: no classifiers")
    if meta.get("Description-Content-Type") != "text/markdown":
        problems.append(f"{where}: the long description is not Markdown (readme = 'README.md')")
    body = meta.get_payload()
    if not isinstance(body, str) or len(body.strip().splitlines()) < 5:
        problems.append(f"{where}: the long description is a line or less; write the README")
    for requirement in meta.get_all("Requires-Dist") or []:
        required = re.split(r"[\s\[<>=!~;(]", requirement, maxsplit=1)[0]
        if required.startswith("ohfp-") and name not in unbounded_ok and not BOUNDED.search(requirement):
            problems.append(f"{where}: {requirement!r} needs bounds, e.g. >=0.2,<0.3")
    return problems


def check_wheel(path: Path, license_text: bytes, unbounded_ok: Iterable[str] = ()) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        info = next((n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")), None)
        if info is None:
            return [f"{path.name}: no .dist-info"]
        packages = {n.split("/")[0] for n in names if not n.startswith(info)}
        for name in names:
            top = name.split("/")[0]
            if top != info and "/" not in name:
                problems.append(f"{path.name}: stray top-level file {name}")
            if STRAY.search(name):
                problems.append(f"{path.name}: holds {name} (tests, caches and bytecode stay out)")
        for package in sorted(packages - {n for n in names if "/" not in n}):
            if f"{package}/py.typed" not in names:
                problems.append(f"{path.name}: {package}/ has no py.typed")
        licence = f"{info}/licenses/LICENSE"
        if licence not in names:
            problems.append(f"{path.name}: no {licence}")
        elif wheel.read(licence) != license_text:
            problems.append(f"{path.name}: {licence} differs from the repository's LICENSE")
        meta = _metadata(wheel.read(f"{info}/METADATA").decode())
    return problems + check_metadata(path.name, meta, unbounded_ok)


def check_sdist(path: Path, license_text: bytes, unbounded_ok: Iterable[str] = ()) -> list[str]:
    problems = []
    with tarfile.open(path) as sdist:
        members = {PurePosixPath(m.name) for m in sdist.getmembers() if m.isfile()}
        roots = {m.parts[0] for m in members}
        if len(roots) != 1:
            return [f"{path.name}: expected one top directory, found {sorted(roots)}"]
        root = roots.pop()
        inside = {PurePosixPath(*m.parts[1:]) for m in members}
        for member in sorted(inside):
            if member.parts[0] not in SDIST_TOP:
                problems.append(f"{path.name}: stray {member}")
            elif STRAY.search(str(member)):
                problems.append(f"{path.name}: holds {member} (tests, caches and bytecode stay out)")
        for needed in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO"):
            if PurePosixPath(needed) not in inside:
                problems.append(f"{path.name}: no {needed}")
        if PurePosixPath("LICENSE") in inside:
            extracted = sdist.extractfile(f"{root}/LICENSE")
            if extracted is None or extracted.read() != license_text:
                problems.append(f"{path.name}: LICENSE differs from the repository's")
        extracted = sdist.extractfile(f"{root}/PKG-INFO")
        meta = _metadata(extracted.read().decode()) if extracted else Message()
    return problems + check_metadata(path.name, meta, unbounded_ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--license", type=Path, required=True, help="the repository's LICENSE")
    parser.add_argument(
        "--unbounded-ok",
        action="append",
        default=[],
        help="a distribution whose ohfp-* requirements may lack bounds",
    )
    parser.add_argument("files", nargs="+", type=Path, help="wheels (.whl) and sdists (.tar.gz)")
    args = parser.parse_args(argv)
    license_text = args.license.read_bytes()
    problems: list[str] = []
    for path in args.files:
        if path.suffix == ".whl":
            problems += check_wheel(path, license_text, args.unbounded_ok)
        elif path.name.endswith(".tar.gz"):
            problems += check_sdist(path, license_text, args.unbounded_ok)
        else:
            problems.append(f"{path}: neither a wheel nor an sdist")
    for problem in problems:
        print(problem)
    print(f"checked {len(args.files)} files: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

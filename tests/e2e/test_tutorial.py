"""The provider tutorial (``docs/writing-a-provider.md``) run as written, in a fresh virtualenv.

Every ``<!-- run -->`` block of the page is run, line by line, in one bash process in an
empty directory laid out as the page says: the ohfp checkout as ``ohfp/`` (ohfp-core's
sources) and the reader's package as ``ohfp-example-provider/`` (the example, which the page
shows verbatim: ``tests/core/test_docs.py``). Each command must succeed, and what a block
prints must match the ``<!-- output -->`` block after it: JSON documents key by key (ids
and launch times aside, a ``"…"`` in a list standing for the rest), the conformance kit's
progress line and counts exactly. So the page fails this test as soon as it drifts from
what the commands do. pip installs from the sources and the package index the machine is
set up with, as a reader's would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "writing-a-provider.md"
EXAMPLE = REPO / "docs" / "examples" / "ohfp-example-provider"
TIMEOUT = 900
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", ".pytest_cache")
VOLATILE = re.compile(r"^(req|ret)-[0-9a-f-]{36}$")


@attrs.frozen
class Block:
    """A ``<!-- run -->`` block: its command lines and the output the page shows for it."""

    lines: tuple[str, ...]
    output: str | None
    kind: str


def blocks(page: str) -> list[Block]:
    found = re.finditer(
        r"<!-- run -->\n```\n(.*?)```\n(?:\n<!-- output -->\n```([a-z]*)\n(.*?)```\n)?", page, flags=re.DOTALL
    )
    return [
        Block(tuple(line for line in m.group(1).splitlines() if line.strip()), m.group(3), m.group(2) or "")
        for m in found
    ]


def script(runs: list[Block]) -> str:
    """One bash script: each line, framed by markers carrying its block and exit code."""
    out = []
    for b, block in enumerate(runs):
        for n, line in enumerate(block.lines):
            out += [f"echo '@@start {b} {n}'", line, f'echo "@@end {b} {n} $?"']
    return "\n".join(out) + "\n"


def matches(shown: Any, got: Any, key: str = "") -> bool:
    """``got`` has everything ``shown`` has (ids, launch times and "…" aside)."""
    if isinstance(shown, dict):
        return isinstance(got, dict) and all(k in got and matches(v, got[k], k) for k, v in shown.items())
    if isinstance(shown, list):
        if shown and shown[-1] == "…":
            return (
                isinstance(got, list)
                and len(got) >= len(shown) - 1
                and matches(shown[:-1], got[: len(shown) - 1])
            )
        return isinstance(got, list) and len(got) == len(shown) and all(map(matches, shown, got))
    if key == "launchtime":
        return isinstance(got, int) and got > 0
    if isinstance(shown, str) and VOLATILE.match(shown):
        return isinstance(got, str) and VOLATILE.match(got) is not None and got[:3] == shown[:3]
    return bool(shown == got)


def documents(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs, at = [], 0
    while (start := text.find("{", at)) >= 0:
        doc, at = decoder.raw_decode(text, start)
        docs.append(doc)
    return docs


def test_the_page_has_the_blocks_this_test_runs() -> None:
    runs = blocks(TUTORIAL.read_text(encoding="utf-8"))
    commands = [line for block in runs for line in block.lines]
    assert any("pip install ./ohfp/ohfp_core" in line for line in commands)
    assert any(line.startswith("venv/bin/pytest") for line in commands)
    assert sum(block.output is not None for block in runs) == 5


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    runs = blocks(TUTORIAL.read_text(encoding="utf-8"))
    shutil.copytree(REPO / "ohfp_core", tmp_path / "ohfp" / "ohfp_core", ignore=IGNORED)
    shutil.copytree(EXAMPLE, tmp_path / "ohfp-example-provider", ignore=IGNORED)
    env = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "HOME", "LANG", "SSL_", "UV_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # python3: 3.11 or later, as asked
    env["OHFP_RUNTIME_DIR"] = str(tmp_path / "rt")  # the service the scripts start is the test's own
    try:
        done = subprocess.run(
            ["bash", "-c", script(runs)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        stop = [str(tmp_path / "venv" / "bin" / "ohfp"), "serve", "--stop"]
        if Path(stop[0]).exists():
            subprocess.run(stop, env=env, capture_output=True, timeout=TIMEOUT, check=False)
    printed: dict[int, list[str]] = {}  # what each line of each block printed
    for b, n, body, code in re.findall(
        r"@@start (\d+) (\d+)\n(.*?)@@end \1 \2 (\d+)\n", done.stdout, re.DOTALL
    ):
        line = runs[int(b)].lines[int(n)]
        assert code == "0", f"`{line}` exited {code}:\n{body}\nstderr:\n{done.stderr[-3000:]}"
        printed.setdefault(int(b), []).append(body)
    ran = sum(len(block.lines) for block in runs)
    assert done.stdout.count("@@end ") == ran, (
        f"the script stopped early:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    for b, block in enumerate(runs):
        if block.output is None:
            continue
        if block.kind == "json":
            shown = documents(block.output)
            found = [doc for body in printed[b] if body.lstrip().startswith("{") for doc in documents(body)]
            assert len(found) >= len(shown) and all(map(matches, shown, found[-len(shown) :])), (
                f"block {b} printed\n{''.join(printed[b])}\nwhere the page shows\n{block.output}"
            )
        else:
            progress, summary = block.output.strip().splitlines()
            lines = printed[b][-1].strip().splitlines()
            assert lines[0].rstrip() == progress.rstrip(), (
                f"the kit printed {lines[0]!r}, the page {progress!r}"
            )
            counts = re.sub(r" in [0-9.]+s$", "", summary)
            assert re.sub(r" in [0-9.]+s$", "", lines[-1]) == counts, f"the kit ended {lines[-1]!r}"

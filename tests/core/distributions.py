"""Fake installed distributions, for testing entry-point discovery without installing."""

from __future__ import annotations

from pathlib import Path


def make_distribution(root: Path, name: str, version: str, group_entries: dict[str, dict[str, str]]) -> None:
    """A minimal installed distribution: a .dist-info folder with entry points."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in group_entries.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

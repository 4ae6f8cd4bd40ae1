"""A quick profile of the fuzzing in :mod:`tests.core.fuzzing` (``nox -s fuzz`` runs ≥10,000 cases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.fuzzing import TARGETS, Harness

QUICK = 40
"""Cases per HF call or configuration file in the test suite."""


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_quick_profile(target: str, tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    TARGETS[target](harness, QUICK)
    seen = {key: sum(counts.values()) for key, counts in harness.counts.items()}
    assert seen and all(n > 0 for n in seen.values()), seen

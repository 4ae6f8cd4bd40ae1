"""The deprecation path: old names warn, naming the replacement, for one minor release only."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest

from ohfp_core.deprecation import DEPRECATED, OhfpDeprecationWarning, warn_deprecated

ROOT = Path(__file__).resolve().parents[2]
CHANGELOG = ROOT / "CHANGELOG.md"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _core_version() -> tuple[int, ...]:
    project = tomllib.loads((ROOT / "ohfp_core" / "pyproject.toml").read_text(encoding="utf-8"))
    return _version(project["project"]["version"])


def test_warning_names_the_replacement_and_the_release_that_removes_it() -> None:
    def old_api() -> None:
        warn_deprecated("CloudDriver.settle()")

    with pytest.warns(OhfpDeprecationWarning) as caught:
        old_api()
    [warning] = caught
    assert str(warning.message) == (
        "CloudDriver.settle() is deprecated since ohfp 0.3.0 and is removed in 0.4.0:"
        " use CloudDriver.advance_clock() (or nothing for a real-time cloud)"
    )
    assert warning.filename == __file__  # points at the code that used the old name
    assert issubclass(OhfpDeprecationWarning, DeprecationWarning)


def test_unregistered_names_cannot_warn() -> None:
    with warnings.catch_warnings(), pytest.raises(KeyError):
        warnings.simplefilter("error")
        warn_deprecated("CloudDriver.nothing()")


@pytest.mark.parametrize("old", sorted(DEPRECATED))
def test_each_deprecation_lasts_one_minor_release(old: str) -> None:
    deprecation = DEPRECATED[old]
    since, removed = _version(deprecation.since), _version(deprecation.removed_in)
    assert removed[:2] == (since[0], since[1] + 1), "removed in the next minor release"
    assert _core_version() < removed, f"{old}: ohfp reached {deprecation.removed_in}: remove it now"


def test_warning_can_point_at_the_old_method() -> None:
    class Driver:
        def settle(self) -> None:
            """An old-style driver method."""

    with pytest.warns(OhfpDeprecationWarning) as caught:
        warn_deprecated("CloudDriver.settle()", at=Driver().settle)
    [warning] = caught
    assert (warning.filename, warning.lineno) == (__file__, Driver.settle.__code__.co_firstlineno)


@pytest.mark.parametrize("old", sorted(DEPRECATED))
def test_each_deprecation_has_a_migration_note(old: str) -> None:
    changelog = CHANGELOG.read_text(encoding="utf-8")
    section = changelog.split(f"## {DEPRECATED[old].since}", 1)[1].split("\n## ", 1)[0]
    assert f"`{old}`" in section, f"CHANGELOG.md's {DEPRECATED[old].since} section does not name {old}"

"""Reading a plugin's section of ``ohfp.json``: unknown keys and bad values are errors that
name the key (``$.budget.templates.T1.unitCost: …``), as everywhere in ohfp."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ohfp_core.errors import ConfigError
from ohfp_core.parsing import unknown_key


def section(settings: Mapping[str, Mapping[str, Any]], name: str, known: Iterable[str]) -> Mapping[str, Any]:
    """The ``name`` section of ``settings`` (empty when absent).

    :raises ConfigError: when it is not an object or holds a key outside ``known`` or
        ``enabled``.
    """
    found = settings.get(name) or {}
    if not isinstance(found, Mapping):
        raise ConfigError(f"invalid {name!r} settings", [f"$.{name}: must be an object"])
    allowed = ("enabled", *known)
    unknown = [f"$.{name}.{key}: {unknown_key(key, allowed)}" for key in found if key not in allowed]
    if unknown:
        raise ConfigError(f"invalid {name!r} settings", unknown)
    return found


def enabled(found: Mapping[str, Any], name: str) -> bool:
    """``"enabled"`` of a section: false unless it is exactly true."""
    value = found.get("enabled", False)
    if not isinstance(value, bool):
        raise ConfigError(
            f"invalid {name!r} settings", [f"$.{name}.enabled: must be true or false, got {value!r}"]
        )
    return value


def cost(value: Any, where: str) -> float:
    """A money amount per hour: a finite number ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError("invalid 'budget' settings", [f"{where}: must be a number ≥ 0, got {value!r}"])
    return float(value)

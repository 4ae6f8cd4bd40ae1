"""The mock cloud's knobs: how it behaves, read from the instance's config and ohfp's settings.

Keys are flat, in IBM's style (``MOCK_BOOT_SECONDS``). The instance's ``mockprov_config.json``
wins over the ``mock`` section of ohfp's settings; that section may also spell keys in lower
case without the prefix (``boot_seconds``). A bad value or an unknown key is a
:class:`~ohfp_core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

from ohfp_core.errors import ConfigError

# Keys IBM's provider configs share; accepted and ignored.
_GENERIC_KEYS = frozenset({"ACCEPT_PROPAGATED_LOG_SETTING"})


@frozen
class Knobs:
    """How the simulated cloud behaves. Every random choice is drawn from ``seed``.

    - ``boot_seconds``: pending → running.
    - ``terminate_seconds``: shutting-down → terminated.
    - ``failure_rate``: fraction of machines that die while pending (terminated, with a message).
    - ``capacity``: machines the cloud runs at once (-1 unlimited); a request beyond it gets
      what is left and its cloud request closes with a shortfall message.
    - ``spot_reclaim_rate``: fraction of spot machines the cloud interrupts. Chosen at launch;
      each chosen machine gets its interruption notice at a seeded time within its first hour
      of running, and is lost ``reclaim_grace_seconds`` after the notice.
    - ``reclaim_grace_seconds``: notice before a spot machine is lost (and the default of
      the control CLI's ``reclaim``).
    - ``api_error_rate``: fraction of cloud calls (provision, status, terminate, reclaim
      check) that fail like a throttled or unavailable API.
    - ``seed``: None draws one at random when the cloud is created and keeps it.
    - ``cloud_dir``: the directory holding the simulated cloud (default: the work dir); two
      instances naming one directory share one cloud, as failover hosts share AWS.
    """

    boot_seconds: float = 3.0
    terminate_seconds: float = 2.0
    failure_rate: float = 0.0
    capacity: int = -1
    spot_reclaim_rate: float = 0.0
    reclaim_grace_seconds: int = 120
    api_error_rate: float = 0.0
    seed: int | None = None
    cloud_dir: str | None = None


def _directory(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a directory path, got {value!r}")
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{key}: must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    return float(value)


def _integer(key: str, value: Any) -> int:
    number = _number(key, value)
    if not number.is_integer():
        raise ConfigError(f"{key}: must be a whole number, got {value!r}")
    return int(number)


def _seconds(key: str, value: Any) -> float:
    number = _number(key, value)
    if number < 0:
        raise ConfigError(f"{key}: must be ≥ 0 seconds, got {value!r}")
    return number


def _rate(key: str, value: Any) -> float:
    number = _number(key, value)
    if not 0 <= number <= 1:
        raise ConfigError(f"{key}: must be between 0 and 1, got {value!r}")
    return number


def _capacity(key: str, value: Any) -> int:
    number = _integer(key, value)
    if number < -1:
        raise ConfigError(f"{key}: must be -1 (unlimited) or ≥ 0, got {value!r}")
    return number


def _grace(key: str, value: Any) -> int:
    number = _integer(key, value)
    if number < 0:
        raise ConfigError(f"{key}: must be ≥ 0 seconds, got {value!r}")
    return number


_PARSERS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "MOCK_BOOT_SECONDS": ("boot_seconds", _seconds),
    "MOCK_TERMINATE_SECONDS": ("terminate_seconds", _seconds),
    "MOCK_FAILURE_RATE": ("failure_rate", _rate),
    "MOCK_CAPACITY": ("capacity", _capacity),
    "MOCK_SPOT_RECLAIM_RATE": ("spot_reclaim_rate", _rate),
    "MOCK_RECLAIM_GRACE_SECONDS": ("reclaim_grace_seconds", _grace),
    "MOCK_API_ERROR_RATE": ("api_error_rate", _rate),
    "MOCK_SEED": ("seed", _integer),
    "MOCK_CLOUD_DIR": ("cloud_dir", _directory),
}
KNOWN_KEYS = tuple(_PARSERS)


def _settings_key(key: str) -> str:
    upper = key.upper()
    return upper if upper.startswith("MOCK_") else f"MOCK_{upper}"


def read_knobs(config: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> Knobs:
    """Knobs from ``config`` (the instance's config file) over ``settings`` (ohfp's ``mock``
    section).

    :raises ConfigError: naming the key of a bad value or an unknown key.
    """
    merged: dict[str, tuple[str, Any]] = {}
    for key, value in (settings or {}).items():
        merged[_settings_key(key)] = (f"settings mock.{key}", value)
    for key, value in config.items():
        if key in _GENERIC_KEYS:
            continue
        merged[key] = (key, value)
    values: dict[str, Any] = {}
    for key, (where, value) in merged.items():
        if key not in _PARSERS:
            raise ConfigError(f"{where}: unknown key; the mock provider knows {', '.join(KNOWN_KEYS)}")
        name, parse = _PARSERS[key]
        if value is not None:
            values[name] = parse(where, value)
    return Knobs(**values)

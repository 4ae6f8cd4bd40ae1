"""The mock cloud's knobs: how it behaves, read from the instance's config and ohfp's settings.

Keys are flat, in IBM's style (``MOCK_BOOT_SECONDS``). The instance's ``mockprov_config.json``
wins over the ``mock`` section of ohfp's settings; that section may also spell keys in lower
case without the prefix (``boot_seconds``). Bad values and unknown keys are one
:class:`~ohfp_core.errors.ConfigError` naming each key (and its file).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from ohfp_core.errors import ConfigError
from ohfp_core.parsing import unknown_key

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


def read_knobs(
    config: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    settings_file: Path | None = None,
) -> Knobs:
    """Knobs from ``config`` (the instance's config file, ``config_file``) over ``settings``
    (ohfp's ``mock`` section, of ``settings_file``).

    :raises ConfigError: listing every bad value and unknown key at once, each naming its
        key (in its file, when known: ``/conf/mockinstprov_config.json: $.MOCK_SEED: …``); an
        unknown key with the closest known one (``did you mean 'MOCK_BOOT_SECONDS'?``).
    """
    merged: dict[str, tuple[str, str, Any]] = {}
    for key, value in (settings or {}).items():
        where = f"{settings_file}: $.mock.{key}" if settings_file else f"settings mock.{key}"
        merged[_settings_key(key)] = (where, key, value)
    for key, value in config.items():
        if key in _GENERIC_KEYS:
            continue
        merged[key] = (f"{config_file}: $.{key}" if config_file else key, key, value)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, (where, given, value) in merged.items():
        if key not in _PARSERS:
            known = KNOWN_KEYS if given == key else [_settings_name(k) for k in KNOWN_KEYS]
            problems.append(f"{where}: {unknown_key(given, known)}")
            continue
        name, parse = _PARSERS[key]
        if value is None:
            continue
        try:
            values[name] = parse(where, value)
        except ConfigError as exc:
            problems.append(exc.message)
    if problems:
        raise ConfigError("invalid mock provider configuration", problems)
    return Knobs(**values)


def _settings_name(key: str) -> str:
    """``MOCK_BOOT_SECONDS`` as the ``mock`` section may spell it: ``boot_seconds``."""
    return key.removeprefix("MOCK_").lower()

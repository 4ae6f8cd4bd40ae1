"""The provider's configuration: the instance's ``<instance>prov_config.json`` keys.

- ``LIBVIRT_URI``: the libvirt connection of templates without a URI (default
  ``qemu:///system``);
- ``LIBVIRT_CONNECT_SECONDS``: how long to keep trying to connect while libvirtd cannot be
  reached (restarting), bounded by half of Host Factory's time left (default 10);
- ``LIBVIRT_ADDRESS_SECONDS``: how long a machine may go without an address before it is
  destroyed and reported failed (default 300).

The ``libvirt`` section of ``ohfp.json`` may give the same keys, also in lower case without
the prefix (``"uri"``); the instance's config file wins. A bad value or an unknown key is a
:class:`~ohfp_core.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from ohfp_core.errors import ConfigError

CORE_KEYS = frozenset({"ACCEPT_PROPAGATED_LOG_SETTING"})
"""Keys of the same file that core reads; accepted and left to it."""


@frozen(kw_only=True)
class Settings:
    """The provider's settings for one instance."""

    uri: str = "qemu:///system"
    connect_seconds: float = 10.0
    address_seconds: float = 300.0


def _uri(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: must be a libvirt URI such as qemu:///system, got {value!r}")
    return value


def _seconds(key: str, value: Any) -> float:
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise ConfigError(f"{key}: must be a number of seconds, got {value!r}")
    if number < 0:
        raise ConfigError(f"{key}: must be ≥ 0 seconds, got {value!r}")
    return float(number)


_PARSERS = {
    "LIBVIRT_URI": ("uri", _uri),
    "LIBVIRT_CONNECT_SECONDS": ("connect_seconds", _seconds),
    "LIBVIRT_ADDRESS_SECONDS": ("address_seconds", _seconds),
}
KNOWN_KEYS = tuple(_PARSERS)


def read_settings(config: Mapping[str, Any], section: Mapping[str, Any] | None = None) -> Settings:
    """Settings from ``config`` (the instance's file) over ``section`` (``ohfp.json``'s ``libvirt``).

    :raises ConfigError: naming a bad value's or an unknown key's key.
    """
    merged: dict[str, tuple[str, Any]] = {}
    for key, value in (section or {}).items():
        upper = key.upper()
        name = upper if upper.startswith("LIBVIRT_") else f"LIBVIRT_{upper}"
        merged[name] = (f"settings libvirt.{key}", value)
    merged.update((key, (key, value)) for key, value in config.items() if key not in CORE_KEYS)
    values: dict[str, Any] = {}
    for key, (where, value) in merged.items():
        if key not in _PARSERS:
            raise ConfigError(f"{where}: unknown key; the libvirt provider knows {', '.join(KNOWN_KEYS)}")
        name, parse = _PARSERS[key]
        values[name] = parse(where, value)
    return Settings(**values)

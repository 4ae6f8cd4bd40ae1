"""Where a provider instance's configuration, state and logs live, and what they say.

Host Factory describes the instance through the environment (``HF_PROVIDER_NAME``,
``HF_PROVIDER_CONFDIR``, ``HF_PROVIDER_WORKDIR``, ``HF_PROVIDER_LOGDIR`` with IBM's
defaults under ``HF_CONFDIR``/``HF_WORKDIR``/``HF_LOGDIR``). In the config directory:

- ``<instance>prov_config.json``, else ``<type>prov_config.json``: the provider's config
  (IBM's files, unchanged), handed to the provider as :attr:`ProviderContext.config`.
- ``<instance>prov_templates.json``, else ``<type>prov_templates.json``: the templates.
- ``ohfp.json``: ohfp's own settings, the one place for them (see :class:`Settings`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from attrs import field, frozen

from ohfp_core.environment import environ as current_environ
from ohfp_core.errors import ConfigError
from ohfp_core.models import ProviderContext
from ohfp_core.parsing import NOT_READ, config_converter, key, not_blank, one_of, rule, structure, unknown_key
from ohfp_core.values import Values

if TYPE_CHECKING:
    pass

SETTINGS_FILE = "ohfp.json"
DEFAULT_TIMEOUT_SEC = 240.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HF_LOG_LEVELS = {
    "LOG_DEBUG": "DEBUG",
    "LOG_TRACE": "DEBUG",
    "LOG_INFO": "INFO",
    "LOG_NOTICE": "INFO",
    "LOG_WARNING": "WARNING",
    "LOG_ERR": "ERROR",
    "LOG_CRIT": "ERROR",
}


def _upper(value: str | None) -> str | None:
    return None if value is None else value.upper()


@frozen(kw_only=True)
class Settings:
    """ohfp's own settings (``ohfp.json`` in the config directory), every key optional.

    ``provider``: provider type when ``--provider``/``OHFP_PROVIDER`` are not given.
    ``storage``: storage backend name (default ``sqlite``).
    ``logLevel``: DEBUG, INFO (default), WARNING or ERROR (any case); ``OHFP_LOG_LEVEL`` overrides.
    ``sections``: an object per installed provider type, extension plugin or storage backend,
    named as it is (``"aws": {…}``, ``"postgresql": {…}``): that plugin's own settings.
    """

    provider: str | None = field(default=None, validator=rule(not_blank))
    storage: str = field(default="sqlite", validator=rule(not_blank))
    log_level: str | None = field(
        default=None,
        metadata=key("logLevel"),
        converter=_upper,
        validator=rule(one_of(LOG_LEVELS)),
    )
    sections: Mapping[str, Mapping[str, Any]] = field(factory=dict, metadata=NOT_READ)

    def section(self, name: str) -> Mapping[str, Any]:
        """The settings object named ``name`` (empty when the file has none)."""
        return self.sections.get(name, {})


@frozen
class Paths:
    """The instance's directories, resolved from HF's environment."""

    instance: str | None
    confdir: Path | None
    workdir: Path | None
    logdir: Path | None


def _env_path(environ: Mapping[str, str], name: str) -> Path | None:
    value = environ.get(name, "").strip()
    return Path(value) if value else None


def resolve_paths(environ: Mapping[str, str] | None = None) -> Paths:
    """Directories from HF's environment, with IBM's defaults."""
    env = current_environ() if environ is None else environ
    instance = env.get("HF_PROVIDER_NAME", "").strip() or None

    def under(top: str) -> Path | None:
        base = _env_path(env, top)
        return base / "providers" / instance if base is not None and instance else None

    logdir = _env_path(env, "HF_PROVIDER_LOGDIR") or _env_path(env, "HF_LOGDIR")
    return Paths(
        instance=instance,
        confdir=_env_path(env, "HF_PROVIDER_CONFDIR") or under("HF_CONFDIR"),
        workdir=_env_path(env, "HF_PROVIDER_WORKDIR") or under("HF_WORKDIR"),
        logdir=logdir,
    )


def read_json_file(path: Path, what: str) -> Any:
    """Parse a JSON config file; errors name the file and the position."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what} {str(path)!r} is not valid JSON", [f"line {exc.lineno} column {exc.colno}: {exc.msg}"]
        ) from None


def _candidates(confdir: Path, instance: str | None, provider_type: str, suffix: str) -> list[Path]:
    names = [f"{instance}prov_{suffix}.json"] if instance else []
    names.append(f"{provider_type}prov_{suffix}.json")
    return [confdir / name for name in dict.fromkeys(names)]


def find_file(confdir: Path | None, instance: str | None, provider_type: str, suffix: str) -> Path | None:
    """``<instance>prov_<suffix>.json``, else ``<type>prov_<suffix>.json``, in ``confdir``."""
    if confdir is None:
        return None
    for candidate in _candidates(confdir, instance, provider_type, suffix):
        if candidate.is_file():
            return candidate
    return None


def shadowed_files(confdir: Path | None, instance: str | None, provider_type: str, suffix: str) -> list[str]:
    """Warnings for files :func:`find_file` passes over although they exist: with
    ``awsinstprov_templates.json`` present, ``awsprov_templates.json`` beside it is ignored."""
    if confdir is None:
        return []
    present = [c for c in _candidates(confdir, instance, provider_type, suffix) if c.is_file()]
    return [f"{other} is ignored: {present[0].name} beside it is read instead" for other in present[1:]]


def load_settings(confdir: Path | None, section_names: Sequence[str] = ()) -> Settings:
    """Read ``ohfp.json``; unknown keys are reported, not dropped.

    :param section_names: names that may carry a settings object of their own: installed
        provider types, extension plugins and storage backends.
    :raises ConfigError: naming every bad key as ``$.key: message``.
    """
    path = confdir / SETTINGS_FILE if confdir is not None else None
    if path is None or not path.is_file():
        return Settings()
    raw = read_json_file(path, "settings file")
    where = f"invalid settings file {str(path)!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"settings file {str(path)!r} must hold a JSON object", ["$: expected an object"])
    named = set(section_names) - {"provider", "storage", "logLevel"}
    own = {key: value for key, value in raw.items() if key not in named}
    known = ("provider", "storage", "logLevel", *sorted(named))
    sections = structure(
        {key: value for key, value in raw.items() if key in named},
        dict[str, dict[str, Any]],
        converter=config_converter(),
        error=ConfigError,
        message=where,
    )
    settings = structure(
        own,
        Settings,
        converter=config_converter(),
        error=ConfigError,
        message=where,
        unknown=lambda cls, key: unknown_key(key, known).replace("unknown key", "unknown setting", 1),
    )
    return attrs.evolve(settings, sections=sections)


def log_level(
    settings: Settings, provider_config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> str:
    """``OHFP_LOG_LEVEL``, else ``logLevel``, else Host Factory's ``HF_LOGLEVEL`` when the
    provider config sets ``ACCEPT_PROPAGATED_LOG_SETTING``, else INFO."""
    env = current_environ() if environ is None else environ
    explicit = env.get("OHFP_LOG_LEVEL", "").strip().upper()
    if explicit in LOG_LEVELS:
        return explicit
    if settings.log_level:
        return settings.log_level
    if provider_config.get("ACCEPT_PROPAGATED_LOG_SETTING") in (True, "true", "True", "TRUE"):
        hf_level = env.get("HF_LOGLEVEL", "").strip().upper()
        if hf_level in _HF_LOG_LEVELS:
            return _HF_LOG_LEVELS[hf_level]
    return "INFO"


TIMEOUT_RANGE = (1.0, 86400.0)


def action_timeout(environ: Mapping[str, str] | None = None) -> float:
    """``HF_PROVIDER_ACTION_TIMEOUT`` seconds (HF's bound on one call), default 240.

    :raises ConfigError: for anything but a number of seconds in 1..86400 (``inf`` included).
    """
    env = current_environ() if environ is None else environ
    text = env.get("HF_PROVIDER_ACTION_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_SEC
    low, high = TIMEOUT_RANGE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # also refuses nan and inf
        raise ConfigError(
            f"HF_PROVIDER_ACTION_TIMEOUT must be a number of seconds from {low:g} to {high:g},"
            f" got {text[:40]!r}"
        )
    return value


def instance_name(paths: Paths, provider_type: str) -> str:
    """The instance's name: ``HF_PROVIDER_NAME``, else the provider type. It names the
    instance's files (``<instance>prov_config.json``) and its log file."""
    return paths.instance or provider_type


def provider_setting(confdir: Path | None) -> str | None:
    """The ``provider`` key of ``ohfp.json`` when it can be read, else None: for naming the log
    file before the settings are parsed (any fault is reported later, by :func:`load_settings`)."""
    path = confdir / SETTINGS_FILE if confdir is not None else None
    try:
        raw = json.loads(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, ValueError):
        return None
    value = raw.get("provider") if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) and value.strip() else None


def provider_context(
    provider_type: str, paths: Paths, settings: Settings, environ: Mapping[str, str] | None = None
) -> ProviderContext:
    """Assemble the context a provider factory receives.

    :raises ConfigError: when there is no work directory or the provider config is broken.
    """
    instance = instance_name(paths, provider_type)
    if paths.workdir is None:
        raise ConfigError(
            "no work directory: set HF_PROVIDER_WORKDIR (or HF_WORKDIR with HF_PROVIDER_NAME), "
            "as Host Factory does"
        )
    if paths.confdir is not None and not paths.confdir.is_dir():
        raise ConfigError(
            f"the config directory {paths.confdir} does not exist (HF_PROVIDER_CONFDIR, or"
            " HF_CONFDIR/providers/<instance>): create it with the instance's files or fix the variable"
        )
    config_path = find_file(paths.confdir, instance, provider_type, "config")
    config: Mapping[str, Any] = {}
    if config_path is not None:
        raw = read_json_file(config_path, "provider config")
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"provider config file {str(config_path)!r} must hold a JSON object",
                ["$: expected an object"],
            )
        config = raw
    settings_path = paths.confdir / SETTINGS_FILE if paths.confdir is not None else None
    return ProviderContext(
        instance=instance,
        provider_type=provider_type,
        confdir=paths.confdir or paths.workdir,
        workdir=paths.workdir,
        logdir=paths.logdir,
        config=config,
        config_path=config_path,
        settings=settings.section(provider_type),
        settings_path=settings_path if settings_path is not None and settings_path.is_file() else None,
        timeout_sec=action_timeout(environ),
        values=Values(provider_type),
    )

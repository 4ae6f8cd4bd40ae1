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
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from ohfp_core.errors import ConfigError
from ohfp_core.models import ProviderContext, Template

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


@frozen
class Settings:
    """ohfp's own settings (``ohfp.json`` in the config directory), every key optional.

    ``provider``: provider type when ``--provider``/``OHFP_PROVIDER`` are not given.
    ``storage``: storage backend name (default ``sqlite``).
    ``logLevel``: DEBUG, INFO (default), WARNING or ERROR; ``OHFP_LOG_LEVEL`` overrides.
    ``<provider type>``: an object of that provider's own settings (e.g. ``"aws": {…}``).
    """

    provider: str | None = None
    storage: str = "sqlite"
    log_level: str | None = None
    provider_sections: Mapping[str, Mapping[str, Any]] = field(factory=dict)


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
    env = os.environ if environ is None else environ
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


def find_file(confdir: Path | None, instance: str | None, provider_type: str, suffix: str) -> Path | None:
    """``<instance>prov_<suffix>.json``, else ``<type>prov_<suffix>.json``, in ``confdir``."""
    if confdir is None:
        return None
    names = [f"{instance}prov_{suffix}.json"] if instance else []
    names.append(f"{provider_type}prov_{suffix}.json")
    for name in names:
        candidate = confdir / name
        if candidate.is_file():
            return candidate
    return None


def load_settings(confdir: Path | None, provider_names: tuple[str, ...] = ()) -> Settings:
    """Read ``ohfp.json``; unknown keys are reported, not dropped.

    :param provider_names: installed provider types; each may have a section of its own.
    """
    path = confdir / SETTINGS_FILE if confdir is not None else None
    if path is None or not path.is_file():
        return Settings()
    raw = read_json_file(path, "settings file")
    where = f"{path}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"settings file {where!r} must hold a JSON object")
    problems: list[str] = []
    provider = raw.get("provider")
    if provider is not None and not isinstance(provider, str):
        problems.append("$.provider: expected a provider type name")
    storage = raw.get("storage", "sqlite")
    if not isinstance(storage, str):
        problems.append("$.storage: expected a storage backend name")
    level = raw.get("logLevel")
    if level is not None and (not isinstance(level, str) or level.upper() not in LOG_LEVELS):
        problems.append(f"$.logLevel: must be one of {', '.join(LOG_LEVELS)}")
    sections: dict[str, Mapping[str, Any]] = {}
    for key, value in raw.items():
        if key in ("provider", "storage", "logLevel"):
            continue
        if key in provider_names:
            if isinstance(value, Mapping):
                sections[key] = value
            else:
                problems.append(f"$.{key}: provider settings must be an object")
        else:
            known = ", ".join(("provider", "storage", "logLevel", *provider_names))
            problems.append(f"$.{key}: unknown setting (known: {known})")
    if problems:
        raise ConfigError(f"invalid settings file {where!r}", problems)
    return Settings(
        provider=provider,
        storage=storage,
        log_level=level.upper() if isinstance(level, str) else None,
        provider_sections=sections,
    )


def log_level(
    settings: Settings, provider_config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> str:
    """``OHFP_LOG_LEVEL``, else ``logLevel``, else Host Factory's ``HF_LOGLEVEL`` when the
    provider config sets ``ACCEPT_PROPAGATED_LOG_SETTING``, else INFO."""
    env = os.environ if environ is None else environ
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


def action_timeout(environ: Mapping[str, str] | None = None) -> float:
    """``HF_PROVIDER_ACTION_TIMEOUT`` seconds (HF's bound on one call), default 240."""
    env = os.environ if environ is None else environ
    try:
        value = float(env.get("HF_PROVIDER_ACTION_TIMEOUT", DEFAULT_TIMEOUT_SEC))
    except ValueError:
        return DEFAULT_TIMEOUT_SEC
    return value if value > 0 else DEFAULT_TIMEOUT_SEC


def provider_context(
    provider_type: str, paths: Paths, settings: Settings, environ: Mapping[str, str] | None = None
) -> ProviderContext:
    """Assemble the context a provider factory receives.

    :raises ConfigError: when there is no work directory or the provider config is broken.
    """
    instance = paths.instance or provider_type
    if paths.workdir is None:
        raise ConfigError(
            "no work directory: set HF_PROVIDER_WORKDIR (or HF_WORKDIR with HF_PROVIDER_NAME), "
            "as Host Factory does"
        )
    config_path = find_file(paths.confdir, instance, provider_type, "config")
    config: Mapping[str, Any] = {}
    if config_path is not None:
        raw = read_json_file(config_path, "provider config")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"provider config {str(config_path)!r} must hold a JSON object")
        config = raw
    return ProviderContext(
        instance=instance,
        provider_type=provider_type,
        confdir=paths.confdir or paths.workdir,
        workdir=paths.workdir,
        logdir=paths.logdir,
        config=config,
        config_path=config_path,
        settings=settings.provider_sections.get(provider_type, {}),
        timeout_sec=action_timeout(environ),
    )


def load_templates(context: ProviderContext) -> list[Template]:
    """The templates file's entries (empty when there is none).

    :raises ConfigError: naming ``$.templates[i].field`` for bad core fields or duplicates.
    """
    from ohfp_core.converter import template_from_json

    path = find_file(context.confdir, context.instance, context.provider_type, "templates")
    if path is None:
        return []
    raw = read_json_file(path, "templates file")
    entries = raw.get("templates") if isinstance(raw, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(f"templates file {str(path)!r}", ["$.templates: expected a list of templates"])
    templates: list[Template] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        try:
            template = template_from_json(entry, f"$.templates[{i}]")
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if template.template_id in seen:
            problems.append(f"$.templates[{i}].templateId: duplicate id {template.template_id!r}")
        seen.add(template.template_id)
        templates.append(template)
    if problems:
        raise ConfigError(f"invalid templates file {str(path)!r}", problems)
    return templates

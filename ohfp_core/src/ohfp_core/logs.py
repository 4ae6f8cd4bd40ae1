"""Logging: structlog JSON lines to the instance's log file or stderr, never stdout.

The CLI calls :func:`configure_logging` once per process and binds ``operation``,
``instance`` and ``provider`` with :func:`bind_context`; every line carries them. Inside a
call, :func:`bound` adds values (the ``request_id`` and ``template_id`` a call works on) to
every line logged in the block, the provider's included, for the current thread only. Values
under secret-looking keys, and ``password=…``-style fragments inside strings, are masked
before anything is written.

structlog is imported on the first line actually written, not before: most Host Factory
calls (a status poll every 30 s) log nothing at INFO, and every call is a new process whose
start-up time is the budget. :func:`get_logger` returns a proxy that drops lines below the
configured level without importing anything.

The resident service (:mod:`ohfp_core.serve`) answers calls of many instances at once: it
sends each call's lines to that instance's log with :func:`route_call`, which holds for the
calling thread (context) only, and :func:`bind_context` there binds for that call alone.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ohfp_core.errors import ConfigError
from ohfp_core.files import open_private
from ohfp_core.masking import MASK, mask_secrets

if TYPE_CHECKING:
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50}

_SECRET_PARTS = ("secret", "password", "token", "credential", "passphrase")
_SECRET_KEYS = frozenset({"key", "access_key", "secret_key", "aws_secret_access_key", "authorization"})
# ``password=x``, ``password: x`` and the quoted-key spellings of JSON and Python reprs.
_SECRET_IN_TEXT = re.compile(r"(?i)(aws_secret_access_key|secret_access_key|password)(['\"]?\s*[=:]\s*)\S+")
_INSTANCE_RE = re.compile(r"^[0-9A-Za-z_.-]{1,128}$")

_log_file: TextIO | None = None
_call_values: ContextVar[Mapping[str, Any]] = ContextVar("ohfp_call_values", default={})  # noqa: B039 - never mutated


def is_secret_key(key: str) -> bool:
    """True for keys whose values are never logged."""
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(part in lowered for part in _SECRET_PARTS)


def _redact(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask_secrets(_SECRET_IN_TEXT.sub(rf"\1\2{MASK}", value))
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(key, str) and is_secret_key(key) else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact(item) for item in value]
    # Anything else would be rendered as its repr: mask secrets in that text.
    return _redact(repr(value))


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask secret-looking keys (at any depth) and secrets in strings."""
    for key, value in event_dict.items():
        event_dict[key] = MASK if is_secret_key(key) else _redact(value)
    return event_dict


class _LoggerFactory:
    """Builds loggers for ``structlog.get_logger(name)``: the name is the first argument."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> Any:
        import structlog

        route = _ROUTE.get()
        logger = structlog.WriteLogger(self._file if route is None else route[0])
        logger.name = str(args[0]) if args else None  # type: ignore[attr-defined]
        return logger


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


def _merge_call_values(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the values :func:`bound` holds for this thread (the line's own win)."""
    for key, value in _call_values.get().items():
        event_dict.setdefault(key, value)
    return event_dict


def _processors() -> list[Processor]:
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        _merge_call_values,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,  # after format_exc_info so tracebacks are masked too
        structlog.processors.JSONRenderer(),
    ]


class _Setup:
    """What :func:`configure_logging` asked for, applied to structlog on first use."""

    min_level: int = LEVELS["warning"]  # before configure_logging: warnings to stderr
    output: TextIO | None = None
    context: dict[str, Any] = {}  # noqa: RUF012 - process-wide by design
    applied = False


_ROUTE: ContextVar[tuple[TextIO, int] | None] = ContextVar("ohfp_log_route", default=None)
"""This call's log output and level, when :func:`route_call` set them."""


def _min_level() -> int:
    route = _ROUTE.get()
    return _Setup.min_level if route is None else route[1]


def _level(level: str) -> int:
    min_level = LEVELS.get(level.lower())
    if min_level is None:
        raise ConfigError(f"log level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {level!r}")
    return min_level


def open_log_file(logdir: Path, instance: str) -> TextIO:
    """Open ``logdir / f"ohfp-{instance}.log"`` for appending (created 0600, never through a
    symbolic link: :func:`ohfp_core.files.open_private`), making ``logdir`` 0700 if missing.

    :raises ConfigError: for an instance name unfit for a file name or a log file that
        cannot be opened.
    """
    if not _INSTANCE_RE.match(instance):
        raise ConfigError(f"instance name must be 1 to 128 characters of [0-9A-Za-z_.-], got {instance!r}")
    path = logdir / f"ohfp-{instance}.log"
    try:
        logdir.mkdir(mode=0o700, parents=True, exist_ok=True)  # Host Factory's own: kept as is
    except OSError as exc:
        raise ConfigError(f"cannot create the log directory {logdir}: {exc.strerror}") from exc
    fd = open_private(path, os.O_WRONLY | os.O_APPEND, "log file")
    return open(fd, "a", encoding="utf-8")


def route_call(output: TextIO, level: str) -> None:
    """Send this thread's (context's) lines to ``output`` at ``level`` or above, whatever the
    process-wide configuration; the call's :func:`bind_context` values stay its own.

    :raises ConfigError: for an unknown level.
    """
    _ROUTE.set((output, _level(level)))
    import structlog

    if not _Setup.applied:
        _apply()
    structlog.contextvars.clear_contextvars()


def configure_logging(
    *, logdir: Path | None, instance: str, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Send JSON lines at ``level`` or above to ``logdir / f"ohfp-{instance}.log"`` (appended,
    created 0600, never through a symbolic link: :func:`ohfp_core.files.open_private`) when
    ``logdir`` is given, else to ``stream`` (default stderr).

    Raises :class:`ConfigError` for an unknown level, an instance name unfit for a file name
    or a log file that cannot be opened. Calling it again replaces the configuration.
    """
    global _log_file
    min_level = _level(level)
    if logdir is not None:
        output: TextIO = open_log_file(logdir, instance)
    else:
        output = stream if stream is not None else sys.stderr
    if _log_file is not None and _log_file is not output:
        _log_file.close()
    _log_file = output if logdir is not None else None
    _Setup.min_level = min_level
    _Setup.output = output
    _Setup.applied = False
    if "structlog" in sys.modules:  # already in use: apply now so open loggers follow
        _apply()


def _apply() -> None:
    """Configure structlog from :class:`_Setup` (imports structlog)."""
    import structlog

    structlog.configure(
        processors=_processors(),
        wrapper_class=structlog.make_filtering_bound_logger(0),  # _LazyLogger filters by level
        context_class=dict,
        logger_factory=_LoggerFactory(_Setup.output or sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**_Setup.context)
    _Setup.applied = True


def bind_context(**values: Any) -> None:
    """Bind values (operation, instance, request_id …) to every later line of this process
    (of this call, under :func:`route_call`)."""
    if _ROUTE.get() is None:
        _Setup.context.update(values)
    if _Setup.applied:
        import structlog

        structlog.contextvars.bind_contextvars(**values)


def enabled(level: str) -> bool:
    """Whether lines at ``level`` (``"debug"`` …) are written: costly detail is gathered only then."""
    return LEVELS[level.lower()] >= _min_level()


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Add ``values`` to every line logged inside the block, by this thread (a call at work in
    a resident service never tags another's lines); nested blocks add to the outer ones."""
    token = _call_values.set({**_call_values.get(), **values})
    try:
        yield
    finally:
        _call_values.reset(token)


class _LazyLogger:
    """A logger that imports structlog only for a line at or above the configured level."""

    def __init__(self, name: str | None) -> None:
        self._name = name

    def _emit(self, level: int, method: str, event: str, kw: dict[str, Any]) -> None:
        if level < _min_level():
            return
        if not _Setup.applied:
            _apply()
        import structlog

        logger = structlog.get_logger() if self._name is None else structlog.get_logger(self._name)
        getattr(logger, method)(event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._emit(LEVELS["debug"], "debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._emit(LEVELS["info"], "info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit(LEVELS["warning"], "warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit(LEVELS["error"], "error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._emit(LEVELS["error"], "error", event, kw)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A logger; ``logger=name`` is on every line when ``name`` is given.

    Until :func:`configure_logging` runs, warnings and above go to stderr: structlog's own
    default would print to stdout, which belongs to the Host Factory reply.
    """
    return _LazyLogger(name)  # type: ignore[return-value]


def reset_logging() -> None:
    """Forget every configuration (for tests): back to warnings on stderr, no context."""
    global _log_file
    if _log_file is not None:
        _log_file.close()
        _log_file = None
    _Setup.min_level = LEVELS["warning"]
    _Setup.output = None
    _Setup.context = {}
    _Setup.applied = False
    if "structlog" in sys.modules:
        import structlog

        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()

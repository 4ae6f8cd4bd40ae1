"""One command's outcome as its one JSON reply and exit code.

Every ``ohfp`` command, and every call the resident service (:mod:`ohfp_core.serve`) answers,
turns its outcome into a reply here, so both paths write the same bytes: the action's reply
document, or for an error ``{"message": "<what> failed: …", "errors": […]}`` with exit 2
(invalid input), 3 (configuration, plugins, an unusable state store or work directory) or
1 (internal error; the log has the traceback).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from ohfp_core.errors import InputError, OhfpError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_UNHEALTHY = 4
_ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO, errno.ENOENT}
)


def environment_failure(exc: BaseException) -> bool:
    """True for a failure of the machine, not of ohfp: a file under the work directory cannot
    be read or written (disk full, read-only, permissions). The state store reports its own
    as :class:`~ohfp_core.errors.StorageError`."""
    return isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS


def write_reply(reply: Any, out: TextIO | None = None) -> None:
    """Write ``reply`` (stdout by default): a JSON document, or text for a person
    (``ohfp requests``), masked."""
    stream = sys.stdout if out is None else out
    if isinstance(reply, str):
        from ohfp_core.masking import mask_secrets

        stream.write(mask_secrets(reply))
    else:
        from ohfp_core.converter import dumps

        stream.write(dumps(reply) + "\n")
    stream.flush()


class Outcome(NamedTuple):
    """A command's reply and the exit code it ends with once the reply is written (an action
    that returns the reply alone ends with :data:`EXIT_OK`)."""

    reply: Any
    code: int = EXIT_OK


Writer = Callable[[Any, int], None]
"""``write(reply, code)``: writes a command's reply, told the exit code the command ends with."""


def answer(
    what: str, action: Callable[[], Any], out: TextIO | None = None, write: Writer | None = None
) -> int:
    """Run ``action`` and write its reply, or the failure reply of the error it raised, to
    ``out`` (stdout by default) or through ``write``; the exit code. A reply that cannot be
    written is logged and answered with :data:`EXIT_INTERNAL`."""
    put: Writer = write or (lambda reply, _: write_reply(reply, out))
    try:
        result = action()
    except InputError as exc:
        log_failure(what, exc)
        put(
            {"message": f"{what} failed: {exc}", "errors": list(exc.problems) or [exc.message]}, exc.exit_code
        )
        return exc.exit_code
    except OhfpError as exc:
        log_failure(what, exc)
        put({"message": f"{what} failed: {exc}", "errors": [exc.message]}, exc.exit_code or EXIT_INTERNAL)
        return exc.exit_code or EXIT_INTERNAL
    except Exception as exc:
        if environment_failure(exc):
            log_failure(what, exc)
            put(
                {
                    "message": f"{what} failed: the state or work directory cannot be used ({exc});"
                    " fix the environment (disk space, permissions, mounts): the next call"
                    " reconciles what this one left",
                    "errors": [f"{type(exc).__name__}: {exc}"],
                },
                EXIT_ENVIRONMENT,
            )
            return EXIT_ENVIRONMENT
        log_failure(what, exc, internal=True)
        put(
            {
                "message": f"{what} failed: internal error ({type(exc).__name__}: {exc}); see the ohfp log",
                "errors": [f"{type(exc).__name__}: {exc}"],
            },
            EXIT_INTERNAL,
        )
        return EXIT_INTERNAL
    outcome = result if isinstance(result, Outcome) else Outcome(result)
    try:
        put(outcome.reply, outcome.code)
    except OSError as exc:  # Host Factory stopped reading: nothing more to do
        log_failure(what, exc)
        return EXIT_INTERNAL
    return outcome.code


def settle(
    what: str,
    delivered: bool,
    after: Callable[[], None] | None = None,
    failed: Callable[[], None] | None = None,
) -> None:
    """Once the reply is out (``delivered``) run ``after``, else ``failed``; a failure of
    either is logged, never replaces the reply already given."""
    step = after if delivered else failed
    if step is None:
        return
    try:
        step()
    except Exception as exc:
        log_failure(what, exc, internal=not (delivered and isinstance(exc, OhfpError)))


def run(
    what: str,
    action: Callable[[], Any],
    after: Callable[[], None] | None = None,
    failed: Callable[[], None] | None = None,
    write: Writer | None = None,
) -> int:
    """Run ``action``, print its reply, turn every error into a JSON reply and exit code.

    ``action`` returns the reply, or an :class:`Outcome` naming its exit code. ``after``
    runs once the reply is written: a failure there is logged, the reply stands. ``failed``
    runs instead when the call failed or its reply could not be written. ``write`` writes
    the reply (default: on stdout).
    """
    code = answer(what, action, write=write)
    settle(what, code == EXIT_OK, after, failed)
    return code


def log_failure(what: str, exc: BaseException, internal: bool = False) -> None:
    """Log a failed command: a warning, or with its traceback when ``internal``."""
    try:
        from ohfp_core.logs import get_logger

        logger = get_logger("ohfp.cli")
        if internal:
            logger.exception("call failed", call=what)
        else:
            logger.warning("call failed", call=what, error=str(exc))
    except Exception:  # logging must never hide the reply
        sys.stderr.write(f"ohfp: {what} failed: {exc}\n")

"""Typed errors. Core turns each into an HF JSON reply and an exit code.

Providers raise :class:`CloudError` (or a subclass) for anything the cloud refused; core
reports it as an IBM-style ``"... failed."`` reply. They never let SDK exceptions escape.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ohfp_core.masking import mask_secrets


class OhfpError(Exception):
    """Base of every error ohfp reports to Host Factory. Credentials in URLs are masked in
    its message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        message = mask_secrets(message)
        super().__init__(message)
        self.message = message


class InputError(OhfpError):
    """Host Factory's input file is unreadable or invalid. ``problems`` name the fields."""

    exit_code = 2

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(mask_secrets(problem) for problem in problems)

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return f"{self.message}: " + "; ".join(self.problems)


class ConfigError(InputError):
    """Configuration (files, environment, templates, plugins) is invalid or missing."""

    exit_code = 3


class StorageFailure(enum.Enum):
    """What went wrong with a state store (:attr:`StorageError.kind`)."""

    UNAVAILABLE = "unavailable"
    """It cannot be reached, opened or written: server gone, disk full, read-only, no table."""
    TIMED_OUT = "timed out"
    """The call's time ran out before the store answered (:class:`ohfp_core.deadline.Deadline`)."""
    LOCK_TIMEOUT = "lock timeout"
    """Another call held the store's write lock longer than this call could wait."""
    LOCK_LOST = "lock lost"
    """This call held the write lock past its lease and lost it: nothing of the write was stored."""
    CORRUPT = "corrupt"
    """What the store holds is damaged or unfinished (not a database, a journal part missing, a
    copy that differs from its source)."""
    NEWER_SCHEMA = "newer schema"
    """A newer ohfp wrote it: upgrade, or point this instance elsewhere."""
    OTHER_INSTANCE = "other instance"
    """It holds another provider instance's state."""

    @property
    def transient(self) -> bool:
        """True when the next call may well succeed without anyone changing anything."""
        return self in (
            StorageFailure.UNAVAILABLE,
            StorageFailure.TIMED_OUT,
            StorageFailure.LOCK_TIMEOUT,
            StorageFailure.LOCK_LOST,
        )


class StorageError(ConfigError):
    """The state store cannot be read or written (disk full, read-only file, server gone).

    Every storage backend raises this, never its driver's exceptions, with a ``kind`` saying
    what went wrong. Reported with exit code 3; what the call did before is reconciled by a
    later call once the store works again.
    """

    def __init__(
        self, message: str, problems: Sequence[str] = (), kind: StorageFailure = StorageFailure.UNAVAILABLE
    ) -> None:
        super().__init__(message, problems)
        self.kind = kind


class CloudError(OhfpError):
    """The cloud refused or failed an operation. ``code`` is the cloud's own error code."""

    exit_code = 0  # reported in the reply, like IBM's plugin; the call itself was understood

    def __init__(self, message: str, code: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class CapacityError(CloudError):
    """Not enough capacity for the instance types or zones asked for."""


class QuotaError(CloudError):
    """An account limit (vCPU, instance, fleet quota) stops the operation."""


class AuthError(CloudError):
    """Credentials are missing or lack a permission."""


class ThrottledError(CloudError):
    """The cloud kept throttling past the retry budget."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message, code, retryable=True)

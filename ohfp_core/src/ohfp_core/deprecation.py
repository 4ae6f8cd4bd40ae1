"""The deprecation path: a name that goes away warns for one minor release first.

Before a change breaks provider code, the old spelling keeps working for one minor release
and warns with :class:`OhfpDeprecationWarning` (a :class:`DeprecationWarning`, so pytest shows
it and ``-W error::DeprecationWarning`` turns it into a failure), naming what to use instead
and the release that removes it. ``CHANGELOG.md`` lists each deprecation under the release
that made it, with its migration note. :data:`DEPRECATED` holds every name being phased out;
a test fails once the version reaches a name's ``removed_in``, so none outlives its release.

Cheap to import: attrs and the standard library.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from attrs import frozen

__all__ = ["DEPRECATED", "Deprecation", "OhfpDeprecationWarning", "warn_deprecated"]


class OhfpDeprecationWarning(DeprecationWarning):
    """A name a provider uses goes away in a later release; the message says what replaces it."""


@frozen(kw_only=True)
class Deprecation:
    """One name being phased out: ``old`` works until ``removed_in``; use ``new`` instead."""

    old: str
    """The old spelling, as a provider writes it (``CloudDriver.settle()``)."""
    new: str
    """What to write instead."""
    since: str
    """The release that deprecated it."""
    removed_in: str
    """The release that removes it (the next minor release after ``since``)."""

    @property
    def message(self) -> str:
        return (
            f"{self.old} is deprecated since ohfp {self.since} and is removed in {self.removed_in}:"
            f" use {self.new}"
        )


DEPRECATED: dict[str, Deprecation] = {
    d.old: d
    for d in (
        Deprecation(
            old="CloudDriver.settle()",
            new="CloudDriver.advance_clock() (or nothing for a real-time cloud)",
            since="0.3.0",
            removed_in="0.4.0",
        ),
        Deprecation(
            old="CloudDriver.reclaim(machine_id)",
            new="CloudDriver.take_away(machine_id)",
            since="0.3.0",
            removed_in="0.4.0",
        ),
    )
}
"""Every deprecated name, by its old spelling."""


def warn_deprecated(old: str, stacklevel: int = 2, *, at: Callable[..., Any] | None = None) -> None:
    """Warn that ``old`` (a key of :data:`DEPRECATED`) is used.

    :param stacklevel: as for :func:`warnings.warn`; the default points at the caller's caller.
    :param at: the provider's function that carries the old name (a method a framework calls
        by name): the warning then points at its definition instead of the stack.
    :raises KeyError: for a name that is not registered in :data:`DEPRECATED`.
    """
    message = DEPRECATED[old].message
    code = getattr(inspect.unwrap(at), "__code__", None) if at is not None else None
    if code is None:
        warnings.warn(message, OhfpDeprecationWarning, stacklevel=stacklevel + 1)
        return
    warnings.warn_explicit(message, OhfpDeprecationWarning, code.co_filename, code.co_firstlineno)

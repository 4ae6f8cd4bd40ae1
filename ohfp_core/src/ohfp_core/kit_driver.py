"""What the conformance kit asks of a provider package's test cloud: the cloud driver.

A driver plays the cloud's part next to the provider: the test cloud's events that no hook
causes (time passing, a machine taken away or terminated from outside, an API failing, the
process dying mid-call) and an outside view of what the cloud holds. Only ``template()`` is
required; each other method is a capability a kit test uses when the driver has it and
skips, saying which, when it has not. The kit finds capabilities by name with
:func:`capability`, so a driver is any object; :class:`CloudDriver` documents them.

Time: a driver with a simulated clock offers ``advance_clock()``; for any other cloud the kit
waits in real time, polling for what it needs, up to ``ProviderContract.settle_timeout``
(:func:`settle`). Names from 0.2 (``settle()``, ``reclaim()``) still work until 0.4 and warn
(:mod:`ohfp_core.deprecation`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ohfp_core.deprecation import warn_deprecated
from ohfp_core.models import Template

__all__ = ["CloudDriver", "capability", "resources", "settle"]


class CloudDriver(Protocol):
    """The test cloud's part in the conformance kit. Only :meth:`template` is required.

    Optional capabilities, each used by the kit tests that need it (they are skipped, saying
    which capability is missing, without it):

    - ``advance_clock()``: move the test cloud's simulated clock far enough that pending
      machines run and machines on their way out are gone. A cloud in real time (or one
      where everything happens at once) leaves it out: the kit then polls, up to
      ``ProviderContract.settle_timeout`` seconds. Replaces ``settle()``.
    - ``take_away(machine_id)``: the cloud starts taking the machine away from outside Host
      Factory (a spot interruption, a host going into maintenance, a lease running out), so
      that ``ohfp_reclaimed_machines`` reports it with the notice left (0 when it is gone at
      once). Replaces ``reclaim()``.
    - ``terminate_outside(machine_id)``: terminate the machine outside Host Factory, as from
      the cloud's console.
    - ``inject_api_error()``: make the provider's next cloud call fail (throttled,
      unavailable); raising NotImplementedError counts as missing.
    - ``weighted_template()``: a template whose machines each count for more than one unit,
      or None when the provider has none.
    - ``machines_start_pending()``: True when the machines the cloud makes stay pending for a
      while (until the clock moves, or for seconds in real time): the kit then checks that
      ``ohfp_provision`` returns before they run.
    - ``resources()``: what the test cloud holds that costs while it lives, as a mapping of
      id to state (``{"i-0abc": "running", "fleet-1": "active"}``): machines not on their way
      out, and whatever else a provider makes (fleets, groups, launch templates, disks).
      Leave out what is deleted, terminated or terminating. The kit compares it before and
      after calls that must not change the cloud, and after cancelling an interrupted
      provision.
    - ``interrupt_after_create(interrupt)``: call ``interrupt()`` once, inside the provider's
      next provisioning, right after the cloud made its machines and before the provider
      gets the cloud's answer (wrap the cloud's create call, or the SDK's). ``interrupt``
      raises :class:`~ohfp_core.testing.ProvisionInterrupted`, standing for the process
      being killed there; let it through.
    """

    def template(self) -> Template:
        """A valid template the provider can provision from right away, whose machines count
        for one unit each."""
        ...


_RENAMED = {
    "advance_clock": ("settle", "CloudDriver.settle()"),
    "take_away": ("reclaim", "CloudDriver.reclaim(machine_id)"),
}
"""Capabilities renamed in 0.3: new name → (old name, its deprecation)."""


def capability(driver: object, name: str) -> Callable[..., Any] | None:
    """The driver's method ``name``, or None when it has none. A method under its 0.2 name
    (``settle``, ``reclaim``) is found too, with a deprecation warning pointing at it."""
    found: Callable[..., Any] | None = getattr(driver, name, None)
    if found is None and name in _RENAMED:
        old, deprecation = _RENAMED[name]
        found = getattr(driver, old, None)
        if found is not None:
            warn_deprecated(deprecation, at=found)
    return found


def settle(
    driver: object, until: Callable[[], bool], timeout: float, interval: float, *, move_clock: bool = True
) -> bool:
    """Let the test cloud get to where ``until()`` holds; return whether it did.

    A driver with a clock has it advanced once (not when ``move_clock`` is False: what is
    awaited happens at once in simulated time) and ``until`` is asked once; otherwise
    ``until`` is polled every ``interval`` seconds for at most ``timeout`` seconds. The
    caller checks what it needs afterwards and names what broke.
    """
    advance = capability(driver, "advance_clock")
    if advance is not None:
        if move_clock:
            advance()
        return until()
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def resources(driver: object) -> dict[str, str] | None:
    """What the test cloud holds (``driver.resources()``), or None when the driver cannot say."""
    listing = capability(driver, "resources")
    if listing is None:
        return None
    held: Mapping[str, str] = listing()
    return {str(key): str(value) for key, value in held.items()}

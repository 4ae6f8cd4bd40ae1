"""A domain's libvirt state as a machine state: a pure function of (state, reason, address).

libvirt's numbers (``virDomainState`` and its reasons) are part of its stable ABI; they are
spelled here so this module needs no libvirt (a test checks them against libvirt-python).
"""

from __future__ import annotations

from ohfp_core.models import MachineState

NOSTATE, RUNNING, BLOCKED, PAUSED, SHUTDOWN, SHUTOFF, CRASHED, PMSUSPENDED = range(8)
SHUTOFF_NEVER_STARTED = 0
"""``VIR_DOMAIN_SHUTOFF_UNKNOWN``: the reason of a domain defined and not started since."""
PAUSED_STARTING_UP = 11
"""``VIR_DOMAIN_PAUSED_STARTING_UP``: QEMU is up, the guest's CPUs not yet."""
SHUTOFF_REASONS = {
    1: "shut down from inside the guest or by the host",
    2: "destroyed (powered off) outside Host Factory",
    3: "crashed",
    4: "migrated away",
    5: "saved to a file",
    6: "failed to start",
    7: "restored from a snapshot",
    8: "stopped when libvirtd started",
}


def machine_state(state: int, reason: int, address: str | None) -> tuple[MachineState, str]:
    """The machine state and its message for a domain in libvirt ``state`` with ``reason``.

    Invariants:

    - RUNNING only when the domain runs **and** has an address: a guest that runs before
      its DHCP lease (or agent) gives one is PENDING, never ``succeed`` without an address;
    - a domain defined and never started (shut off, reason unknown), or starting up, is
      PENDING: a provisioning call is between define and start;
    - a domain that stopped, crashed, was suspended or paused outside Host Factory is lost
      (STOPPED, or STOPPING while it shuts down), with the reason as the message;
    - the message is empty exactly when the machine is pending or running.
    """
    if state in (RUNNING, BLOCKED):
        return (MachineState.RUNNING if address else MachineState.PENDING), ""
    if state == NOSTATE or (state == SHUTOFF and reason == SHUTOFF_NEVER_STARTED):
        return MachineState.PENDING, ""
    if state == PAUSED:
        if reason == PAUSED_STARTING_UP:
            return MachineState.PENDING, ""
        return MachineState.STOPPED, "paused outside Host Factory"
    if state == SHUTDOWN:
        return MachineState.STOPPING, "shutting down outside Host Factory"
    if state == CRASHED:
        return MachineState.STOPPED, "crashed"
    if state == PMSUSPENDED:
        return MachineState.STOPPED, "suspended by the guest"
    return MachineState.STOPPED, SHUTOFF_REASONS.get(reason, f"shut off (reason {reason})")

"""The rules that turn machine states into Host Factory results and request statuses.

Pure functions, the same for every provider. See ``docs/status-rules.md``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ohfp_core.models import Machine, MachineResult, MachineState, RequestStatus

UNKNOWN_MESSAGE = "the cloud no longer knows this machine"


def acquire_result(machine: Machine) -> MachineResult:
    """pending → executing; running → succeed; anything else (stopped, on its way out or
    gone before Host Factory got it) → fail."""
    if machine.state is MachineState.PENDING:
        return MachineResult.EXECUTING
    if machine.state is MachineState.RUNNING:
        return MachineResult.SUCCEED
    return MachineResult.FAIL


def acquire_failure_message(machine: Machine) -> str:
    """The mandatory message of a failed acquire machine."""
    return machine.message or f"machine is {machine.state.value} before it became usable"


def acquire_status(
    requested: int, results: Iterable[tuple[Machine, MachineResult]], open_: bool
) -> RequestStatus:
    """Status of an acquire request.

    ``running`` while any machine is executing; ``complete`` once the machines that
    succeeded cover the requested units and none failed; ``running`` while the cloud may
    still deliver (``open_``); otherwise ``complete_with_error``. Never ``complete`` with
    fewer units than asked, never ``complete_with_error`` while a machine is executing.
    """
    units = 0
    failed = False
    for machine, result in results:
        if result is MachineResult.EXECUTING:
            return RequestStatus.RUNNING
        if result is MachineResult.SUCCEED:
            units += machine.weight
        else:
            failed = True
    if units >= requested and not failed:
        return RequestStatus.COMPLETE
    if open_:
        return RequestStatus.RUNNING
    return RequestStatus.COMPLETE_WITH_ERROR


def return_result(machine: Machine | None, error: str | None) -> MachineResult:
    """A returned machine: terminated or unknown to the cloud → succeed; a termination
    error → fail; anything else (still running, shutting down, stopping) → executing."""
    if error:
        return MachineResult.FAIL
    if machine is None or machine.state is MachineState.TERMINATED:
        return MachineResult.SUCCEED
    return MachineResult.EXECUTING


def return_status(results: Iterable[MachineResult]) -> RequestStatus:
    """``running`` until no machine is executing; then ``complete`` if all succeeded,
    else ``complete_with_error``."""
    seen = list(results)
    if any(r is MachineResult.EXECUTING for r in seen):
        return RequestStatus.RUNNING
    if all(r is MachineResult.SUCCEED for r in seen):
        return RequestStatus.COMPLETE
    return RequestStatus.COMPLETE_WITH_ERROR

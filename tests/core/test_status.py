"""The HF status rules, case by case."""

from __future__ import annotations

import pytest

from ohfp_core.models import Machine, MachineResult, MachineState, RequestStatus
from ohfp_core.status import acquire_result, acquire_status, return_result, return_status

E, S, F = MachineResult.EXECUTING, MachineResult.SUCCEED, MachineResult.FAIL


def m(state: MachineState = MachineState.RUNNING, weight: int = 1) -> Machine:
    return Machine(machine_id="i-1", name="h", state=state, weight=weight)


@pytest.mark.parametrize(
    ("state", "result"),
    [
        (MachineState.PENDING, E),
        (MachineState.RUNNING, S),
        (MachineState.STOPPED, F),
        (MachineState.STOPPING, F),
        (MachineState.SHUTTING_DOWN, F),
        (MachineState.TERMINATED, F),
    ],
)
def test_acquire_result(state: MachineState, result: MachineResult) -> None:
    assert acquire_result(m(state)) is result


def test_running_while_any_machine_executes_even_if_others_failed() -> None:
    assert acquire_status(2, [(m(), S), (m(), E), (m(), F)], open_=False) is RequestStatus.RUNNING


def test_complete_only_with_every_unit_delivered() -> None:
    assert acquire_status(2, [(m(), S), (m(), S)], open_=False) is RequestStatus.COMPLETE
    assert acquire_status(3, [(m(), S), (m(), S)], open_=False) is RequestStatus.COMPLETE_WITH_ERROR


def test_shortfall_is_running_while_the_cloud_may_still_deliver() -> None:
    assert acquire_status(3, [(m(), S)], open_=True) is RequestStatus.RUNNING
    assert acquire_status(3, [], open_=True) is RequestStatus.RUNNING


def test_weights_count_units() -> None:
    assert acquire_status(4, [(m(weight=2), S), (m(weight=2), S)], open_=False) is RequestStatus.COMPLETE
    assert acquire_status(4, [(m(weight=2), S)], open_=False) is RequestStatus.COMPLETE_WITH_ERROR


def test_a_failure_never_completes_cleanly() -> None:
    assert acquire_status(1, [(m(), S), (m(), F)], open_=False) is RequestStatus.COMPLETE_WITH_ERROR
    assert acquire_status(1, [(m(), S), (m(), F)], open_=True) is RequestStatus.RUNNING


def test_return_results() -> None:
    assert return_result(None, None) is S
    assert return_result(m(MachineState.TERMINATED), None) is S
    assert return_result(m(MachineState.SHUTTING_DOWN), None) is E
    assert return_result(m(MachineState.RUNNING), None) is E
    assert return_result(m(MachineState.RUNNING), "refused") is F


def test_return_status() -> None:
    assert return_status([S, E]) is RequestStatus.RUNNING
    assert return_status([S, S]) is RequestStatus.COMPLETE
    assert return_status([S, F]) is RequestStatus.COMPLETE_WITH_ERROR
    assert return_status([]) is RequestStatus.COMPLETE

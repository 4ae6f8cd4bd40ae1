"""The mock provider's ``ohfp_cancel_request``: a request whose handle was lost is found by its
id, its machines terminated and its cloud request closed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ohfp_core.errors import ThrottledError
from ohfp_core.models import CloudRequest, MachineState, RequestKind, RequestStatus
from ohfp_core.operations import Operations
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.storage import RequestRecord
from ohfp_mock.provider import MockProvider
from ohfp_mock.templates import DEMO_TEMPLATES

MakeMock = Callable[..., MockProvider]
SMALL = DEMO_TEMPLATES[0]


def lost(request_id: str) -> CloudRequest:
    """An acquire request as core hands it to the hook: no handle, no machines."""
    return CloudRequest(request_id=request_id, kind=RequestKind.ACQUIRE)


def states(provider: MockProvider, request_id: str) -> list[MachineState]:
    snapshot = provider.ohfp_machine_status([lost(request_id)])[request_id]
    return [m.state for m in snapshot.machines]


def test_cancel_terminates_the_requests_machines_and_closes_it(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=30, MOCK_TERMINATE_SECONDS=5)
    provider.ohfp_provision("req-gone", SMALL, 2)
    provider.ohfp_provision("req-kept", SMALL, 2)
    assert provider.ohfp_machine_status([lost("req-gone")])["req-gone"].open  # still booting

    assert provider.ohfp_cancel_request(lost("req-gone")) is True
    snapshot = provider.ohfp_machine_status([lost("req-gone")])["req-gone"]
    assert [m.state for m in snapshot.machines] == [MachineState.SHUTTING_DOWN] * 2
    assert {m.message for m in snapshot.machines} == {"terminated: its request was cancelled"}
    assert not snapshot.open
    assert snapshot.message == "cancelled"
    assert states(provider, "req-kept") == [MachineState.PENDING] * 2  # another request: untouched

    provider.cloud.advance(5)
    assert provider.ohfp_cancel_request(lost("req-gone")) is True  # idempotent
    assert states(provider, "req-gone") == [MachineState.TERMINATED] * 2


def test_cancel_of_a_request_the_cloud_never_saw(make_mock: MakeMock) -> None:
    provider = make_mock()
    assert provider.ohfp_cancel_request(lost("req-never")) is True
    assert provider.cloud.machines() == []


def test_cancel_fails_like_the_cloud_api(make_mock: MakeMock) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0)
    provider.ohfp_provision("req-t", SMALL, 1)
    provider.cloud.inject_errors(1)
    with pytest.raises(ThrottledError):
        provider.ohfp_cancel_request(lost("req-t"))
    assert states(provider, "req-t") == [MachineState.RUNNING]  # nothing happened


def test_core_cleans_up_an_abandoned_request_with_the_mock(make_mock: MakeMock, tmp_path: Path) -> None:
    provider = make_mock(MOCK_BOOT_SECONDS=0, MOCK_TERMINATE_SECONDS=0)
    provider.ohfp_provision("req-dead", SMALL, 2)
    store = SQLiteStorage(tmp_path / "state")
    store.put_request(
        RequestRecord(
            request_id="req-dead", kind=RequestKind.ACQUIRE, template_id=SMALL.template_id, created_at=1
        )
    )
    ops = Operations(Hooks(make_manager(provider, provider_name="mock"), "mock"), store, provider.context)
    ops.get_request_status({"requests": [{"requestId": "req-other"}]})
    assert store.get_requests(["req-dead"])["req-dead"].status is RequestStatus.COMPLETE_WITH_ERROR
    assert states(provider, "req-dead") == [MachineState.TERMINATED] * 2

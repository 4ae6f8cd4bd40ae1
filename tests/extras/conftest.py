"""Fixtures for the extension plugins of ohfp-extras: Host Factory calls (core's Operations)
over the mock provider with fresh plugin objects registered and configured as the CLI does."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.operations import Operations
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sqlite import SQLiteStorage
from ohfp_extras.audit import AuditTrail
from ohfp_extras.budget import BudgetGuard
from ohfp_extras.dry_run import DryRun
from ohfp_mock.provider import make_provider
from tests.mock.conftest import make_mock, mock_context

__all__ = ["make_mock"]  # the mock's fixture, for the kit's mock contract run here too

MakeOps = Callable[..., Operations]


def extras() -> list[tuple[str, object]]:
    """Fresh objects of the three plugins, named as their entry points."""
    return [("audit", AuditTrail()), ("budget", BudgetGuard()), ("dry-run", DryRun())]


@pytest.fixture
def make_ops(tmp_path: Path) -> Iterator[MakeOps]:
    """``make_ops(settings)``: Operations for instance ``mockinst`` (boot 0 s, terminate 0 s)
    with the three plugins configured from ``settings`` (ohfp.json's sections). Every call
    shares one work dir, like successive Host Factory calls."""
    closing: list[Callable[[], None]] = []

    def make(settings: Mapping[str, Mapping[str, Any]] | None = None) -> Operations:
        context = mock_context(
            tmp_path, {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 3}
        )
        context.confdir.mkdir(exist_ok=True)
        provider = make_provider(context)
        hooks = Hooks(make_manager(provider, provider_name="mock", extensions=extras()), "mock")
        hooks.configure(context, settings or {})
        store = SQLiteStorage(context.workdir)
        closing.extend([store.close, provider.close])
        return Operations(hooks, store, context)

    yield make
    for close in closing:
        close()


def request(ops: Operations, count: int = 2, template_id: str = "mock-small") -> dict[str, Any]:
    reply: dict[str, Any] = ops.request_machines(
        {"template": {"templateId": template_id, "machineCount": count}}
    )
    return reply


def status(ops: Operations, request_id: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = ops.get_request_status({"requests": [{"requestId": request_id}]})[
        "requests"
    ]
    [entry] = entries
    return entry

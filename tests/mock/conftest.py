"""Fixtures for the mock provider's tests: a provider on a fresh work dir, built from knobs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.models import ProviderContext
from ohfp_mock.provider import MockProvider, make_provider

# Before any test module imports the kit, so its asserts explain their failures.
pytest.register_assert_rewrite("ohfp_core.testing")

MakeProvider = Callable[..., MockProvider]


def mock_context(root: Path, config: dict[str, Any] | None = None, **settings: Any) -> ProviderContext:
    """A provider context for the instance ``mockinst`` with its dirs under ``root``."""
    return ProviderContext(
        instance="mockinst",
        provider_type="mock",
        confdir=root / "conf",
        workdir=root / "work",
        logdir=root / "log",
        config=config or {},
        settings=settings,
    )


@pytest.fixture
def make_mock(tmp_path: Path) -> Iterator[MakeProvider]:
    """``make_mock(MOCK_BOOT_SECONDS=10, ...)`` builds a mock provider on ``tmp_path/work``
    (the same work dir each call, so two providers share one cloud, like two HF calls)."""
    made: list[MockProvider] = []

    def make(**config: Any) -> MockProvider:
        provider = make_provider(mock_context(tmp_path, config))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()

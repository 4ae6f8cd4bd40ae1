"""The provider conformance kit run against the mock provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
import pytest

from ohfp_core.models import Provisioned, Template
from ohfp_core.testing import ProviderContract
from ohfp_mock.cloud import MockCloud
from ohfp_mock.provider import MockProvider
from ohfp_mock.templates import DEMO_TEMPLATES

KNOBS = {"MOCK_BOOT_SECONDS": 30, "MOCK_TERMINATE_SECONDS": 10, "MOCK_SEED": 7}


class MockDriver:
    """Drives the mock cloud through its own connection, as the control CLI does."""

    def __init__(self, provider: MockProvider) -> None:
        self.provider = provider
        self.cloud = MockCloud(provider.context.workdir)

    def template(self) -> Template:
        return DEMO_TEMPLATES[1]

    def weighted_template(self) -> Template:
        """mock.large machines count for two units each."""
        return attrs.evolve(
            DEMO_TEMPLATES[0], template_id="mock-weighted", fields={"vmTypes": {"mock.large": 2}}
        )

    def advance_clock(self) -> None:
        knobs = self.provider.knobs
        self.cloud.advance(knobs.boot_seconds + knobs.terminate_seconds + 1)

    def machines_start_pending(self) -> bool:
        return self.provider.knobs.boot_seconds > 0

    def take_away(self, machine_id: str) -> None:
        self.cloud.reclaim(machine_id)

    def terminate_outside(self, machine_id: str) -> None:
        self.cloud.console_terminate(machine_id)

    def inject_api_error(self) -> None:
        self.cloud.inject_errors(1)

    def resources(self) -> dict[str, str]:
        return self.cloud.resources()

    def interrupt_after_create(self, interrupt: Callable[[], None]) -> None:
        """Interrupt right after the provider's cloud committed its next launch."""
        cloud = self.provider.cloud
        launch = cloud.provision

        def provision(request_id: str, template: Template, count: int) -> Provisioned:
            del cloud.provision  # once: the class's method again
            launch(request_id, template, count)
            interrupt()
            raise AssertionError("interrupt() returned")

        cloud.provision = provision  # type: ignore[method-assign]


class TestMockContract(ProviderContract):
    @pytest.fixture
    def provider(self, make_mock: Callable[..., MockProvider]) -> MockProvider:
        return make_mock(**KNOBS)

    @pytest.fixture
    def next_provider(self, make_mock: Callable[..., MockProvider]) -> MockProvider:
        return make_mock(**KNOBS)

    @pytest.fixture
    def cloud_driver(self, provider: MockProvider) -> Iterator[MockDriver]:
        driver = MockDriver(provider)
        yield driver
        driver.cloud.close()


class TestMockContractFourMachines(TestMockContract):
    """The same contract with more machines per request and instant boot."""

    machine_count = 4

    @pytest.fixture
    def provider(self, make_mock: Callable[..., MockProvider]) -> MockProvider:
        return make_mock(MOCK_BOOT_SECONDS=0, MOCK_TERMINATE_SECONDS=0)

    @pytest.fixture
    def next_provider(self, make_mock: Callable[..., MockProvider]) -> MockProvider:
        return make_mock(MOCK_BOOT_SECONDS=0, MOCK_TERMINATE_SECONDS=0)

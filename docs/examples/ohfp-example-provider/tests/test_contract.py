"""The provider contract, checked by ohfp's conformance kit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ohfp_example import cloud
from ohfp_example.provider import DEFAULT_TEMPLATE, ExampleProvider, make_provider

from ohfp_core.models import ProviderContext, Template
from ohfp_core.testing import ProviderContract


class ExampleDriver:
    """Plays the toy cloud's part. It has no advance_clock(): the toy cloud starts and stops
    machines at once."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def template(self) -> Template:
        return DEFAULT_TEMPLATE

    def take_away(self, machine_id: str) -> None:
        cloud.interrupt(self.workdir, machine_id)

    def terminate_outside(self, machine_id: str) -> None:
        cloud.terminate_outside(self.workdir, machine_id)

    def resources(self) -> dict[str, str]:
        """The machines that still run, by id."""
        machines = cloud.machines(self.workdir)
        return {i: m["state"] for i, m in machines.items() if m["state"] != "terminated"}

    def interrupt_after_create(self, interrupt: Callable[[], None]) -> None:
        """Interrupt the provisioning right after the cloud has written its new machines."""
        cloud.AFTER_WRITE.append(interrupt)


def example_provider(workdir: Path) -> ExampleProvider:
    return make_provider(
        ProviderContext(instance="exampleinst", provider_type="example", confdir=workdir, workdir=workdir)
    )


class TestExampleContract(ProviderContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> ExampleProvider:
        return example_provider(tmp_path)

    @pytest.fixture
    def next_provider(self, tmp_path: Path) -> ExampleProvider:
        return example_provider(tmp_path)  # a new object, as the next Host Factory call makes

    @pytest.fixture
    def cloud_driver(self, tmp_path: Path) -> ExampleDriver:
        return ExampleDriver(tmp_path)

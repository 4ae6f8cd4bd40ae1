"""The provider contract, checked by ohfp's conformance kit."""

from __future__ import annotations

from pathlib import Path

import pytest
from ohfp_example import cloud
from ohfp_example.provider import DEFAULT_TEMPLATE, ExampleProvider, make_provider

from ohfp_core.models import ProviderContext, Template
from ohfp_core.testing import ProviderContract


class ExampleDriver:
    """What the kit needs to play the cloud's part."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def template(self) -> Template:
        return DEFAULT_TEMPLATE

    def settle(self) -> None:
        """Nothing to wait for: the toy cloud starts and stops machines at once."""

    def reclaim(self, machine_id: str) -> None:
        cloud.interrupt(self.workdir, machine_id)

    def terminate_outside(self, machine_id: str) -> None:
        cloud.terminate_outside(self.workdir, machine_id)


class TestExampleContract(ProviderContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> ExampleProvider:
        return make_provider(
            ProviderContext(
                instance="exampleinst", provider_type="example", confdir=tmp_path, workdir=tmp_path
            )
        )

    @pytest.fixture
    def cloud_driver(self, tmp_path: Path) -> ExampleDriver:
        return ExampleDriver(tmp_path)

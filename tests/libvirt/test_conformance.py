"""The provider conformance kit run against the libvirt provider on ``test:///default``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ohfp_core.testing import ProviderContract
from ohfp_libvirt.provider import LibvirtProvider

from .conftest import TestDriver


class TestLibvirtContract(ProviderContract):
    @pytest.fixture
    def provider(self, make_provider: Callable[..., LibvirtProvider]) -> LibvirtProvider:
        return make_provider()

    @pytest.fixture
    def next_provider(self, make_provider: Callable[..., LibvirtProvider]) -> LibvirtProvider:
        """The next call's provider: a new object on the same instance and hypervisor."""
        return make_provider()

    @pytest.fixture
    def cloud_driver(self, driver: TestDriver) -> TestDriver:
        return driver

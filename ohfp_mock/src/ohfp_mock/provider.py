"""The mock provider: ohfp's hooks answered by the simulated cloud in :mod:`ohfp_mock.cloud`.

Importing this module is cheap (models only): the cloud and SQLite are loaded on the first
hook that needs them, so ``getAvailableTemplates`` never opens the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ohfp_core import hookimpl
from ohfp_core.errors import ConfigError
from ohfp_core.models import (
    CloudRequest,
    HealthCheck,
    MachineRef,
    Problem,
    ProviderContext,
    Provisioned,
    Reclaim,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_mock import templates as mock_templates
from ohfp_mock.knobs import Knobs, read_knobs

if TYPE_CHECKING:
    from ohfp_mock.cloud import MockCloud


class MockProvider:
    """Hook implementations for one mock provider instance (one work dir, one set of knobs)."""

    def __init__(self, context: ProviderContext, knobs: Knobs) -> None:
        self.context = context
        self.knobs = knobs
        self._cloud: MockCloud | None = None

    @property
    def cloud(self) -> MockCloud:
        """The simulated cloud, opened on first use."""
        if self._cloud is None:
            from ohfp_mock.cloud import MockCloud

            where = Path(self.knobs.cloud_dir) if self.knobs.cloud_dir else self.context.workdir
            self._cloud = MockCloud(where, self.knobs)
        return self._cloud

    def close(self) -> None:
        if self._cloud is not None:
            self._cloud.close()
            self._cloud = None

    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        if not templates:
            return mock_templates.DEMO_TEMPLATES
        return [mock_templates.complete(template) for template in templates]

    @hookimpl
    def ohfp_validate_template(self, template: Template) -> Sequence[Problem]:
        return mock_templates.problems(template)

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        return self.cloud.provision(request_id, template, count)

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        return self.cloud.status(requests)

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        return self.cloud.terminate(
            [item.machine_id for item in machines if item.machine_id],
            [item.name for item in machines if not item.machine_id],
        )

    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        self.cloud.cancel(request.request_id)
        return True

    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        return self.cloud.reclaimed(machines)

    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        import sqlite3

        try:
            return [self.cloud.health()]
        except (OSError, sqlite3.Error, ConfigError) as exc:  # the database could not even be opened
            return [
                HealthCheck(name="mock cloud database", ok=False, detail=f"{self.context.workdir}: {exc}")
            ]


def make_provider(ctx: ProviderContext) -> MockProvider:
    """The ``mock`` provider factory (entry point ``ohfp.providers: mock``).

    :raises ConfigError: naming the key of a bad or unknown knob in the instance's config or
        in the ``mock`` section of ohfp's settings.
    """
    knobs = read_knobs(ctx.config, ctx.settings, config_file=ctx.config_path, settings_file=ctx.settings_path)
    return MockProvider(ctx, knobs)

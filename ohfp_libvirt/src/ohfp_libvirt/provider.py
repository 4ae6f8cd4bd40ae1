"""The libvirt provider: ohfp's hooks answered by :class:`ohfp_libvirt.cloud.LibvirtCloud`.

Importing this module is cheap (no libvirt): ``ohfp plugins`` lists the provider without
loading libvirt-python, and a connection is opened by the first hook that needs one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ohfp_core import hookimpl
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
from ohfp_libvirt.cloud import LibvirtCloud
from ohfp_libvirt.settings import read_settings


class LibvirtProvider:
    """Hook implementations for one libvirt provider instance."""

    def __init__(self, cloud: LibvirtCloud) -> None:
        self.cloud = cloud

    def close(self) -> None:
        self.cloud.close()

    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        return self.cloud.available(templates)

    @hookimpl
    def ohfp_call_started(self, timeout_sec: float) -> None:
        self.cloud.call_started()

    @hookimpl
    def ohfp_validate_template(self, template: Template) -> Sequence[Problem]:
        return self.cloud.validate(template)

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        return self.cloud.provision(request_id, template, count)

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        return self.cloud.status(requests)

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        return self.cloud.terminate(machines)

    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        return self.cloud.cancel(request)

    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        return self.cloud.reclaimed(machines)

    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        return self.cloud.health()


def make_provider(ctx: ProviderContext) -> LibvirtProvider:
    """The ``libvirt`` provider factory (entry point ``ohfp.providers: libvirt``).

    :raises ConfigError: naming a bad or unknown key of the instance's config or of the
        ``libvirt`` section of ohfp's settings.
    """
    return LibvirtProvider(LibvirtCloud(ctx, read_settings(ctx.config, ctx.settings)))

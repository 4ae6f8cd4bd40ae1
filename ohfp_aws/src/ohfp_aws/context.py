"""One provider instance's view of AWS: what handlers and the provider's modules share.

:class:`AwsContext` holds the parsed configuration, the AWS services (typed wrappers over
clients bounded by Host Factory's time for the call, :mod:`ohfp_aws.access.services`), the
instance's name, clock and memory between calls (core's :class:`~ohfp_core.values.Values`),
and what every API uses: ohfp's tags, SSM image paths resolved once per process, and
batched termination.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ohfp_aws.access.instances import terminate
from ohfp_aws.access.services import Services
from ohfp_aws.access.session import AwsClients, Budget
from ohfp_aws.settings import AwsConfig, load_config
from ohfp_aws.vocabulary import TAG_INSTANCE, TAG_REQUEST, TAG_TEMPLATE, AwsTemplate
from ohfp_core.models import ProviderContext
from ohfp_core.values import Values

# Resolved SSM image parameters, per process: (region, endpoint, path) → AMI id.
_IMAGES: dict[tuple[str | None, str | None, str], str] = {}


class AwsContext:
    """Config, AWS services and shared helpers of one provider instance.

    ``clock`` (seconds since the epoch) and ``sleep`` are attributes so tests can replace
    them; every module reads time through them. ``values`` is the provider's memory between
    calls (kept in the state store once core binds it; in memory until then).
    """

    def __init__(
        self,
        instance_name: str,
        confdir: Path,
        config: AwsConfig,
        clients: AwsClients | None = None,
        values: Values | None = None,
    ) -> None:
        self.instance_name = instance_name
        self.confdir = confdir
        self.config = config
        self.clients = clients or AwsClients(config)
        self.services = Services(self.clients)
        self.values = values if values is not None else Values("aws")
        self.clock: Callable[[], float] = time.time
        self.sleep: Callable[[float], None] = time.sleep

    @classmethod
    def of(cls, ctx: ProviderContext, clients: AwsClients | None = None) -> AwsContext:
        """The context for core's ``ctx``; its AWS calls keep within ``ctx.timeout_sec`` from now.

        :raises ConfigError: for an invalid config.
        """
        config = load_config(
            ctx.config, ctx.settings, config_file=ctx.config_path, settings_file=ctx.settings_path
        )
        clients = clients or AwsClients(config, Budget(ctx.timeout_sec))
        return cls(ctx.instance, ctx.confdir, config, clients, ctx.values)

    def resolve_image(self, image_id: str) -> str:
        """``image_id`` itself, or the AMI id an SSM parameter path (``/…``) holds."""
        path = image_id.removeprefix("resolve:ssm:")
        if not path.startswith("/"):
            return image_id
        key = (self.config.region, self.config.endpoint_url, path)
        if key not in _IMAGES:
            _IMAGES[key] = self.services.ssm.parameter(path)
        return _IMAGES[key]

    def tags_for(self, request_id: str, template: AwsTemplate) -> dict[str, str]:
        """The template's ``instanceTags`` plus ohfp's own tags (which win on a clash)."""
        return {
            **template.instance_tags,
            TAG_REQUEST: request_id,
            TAG_TEMPLATE: template.template_id,
            TAG_INSTANCE: self.instance_name,
        }

    def made_for(self, tags: Iterable[Mapping[str, object]] | None, request_id: str) -> bool:
        """True when AWS ``tags`` (``[{"Key": …, "Value": …}]``) mark a resource ohfp made
        for ``request_id`` in this provider instance."""
        found = {str(t.get("Key")): t.get("Value") for t in tags or ()}
        return found.get(TAG_REQUEST) == request_id and found.get(TAG_INSTANCE) == self.instance_name

    def terminate_instances(self, instance_ids: Sequence[str]) -> dict[str, str]:
        """Terminate instances in batches; an error message per id that failed."""
        return terminate(self.services.ec2, instance_ids)

"""Helpers for the provider and RunInstances tests: hooks, call counting and fault injection."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ohfp_aws.provider import AwsProvider
from ohfp_core.models import CloudRequest, Provisioned, RequestKind, Template
from ohfp_core.plugins import Hooks, make_manager


def hooks_for(provider: AwsProvider) -> Hooks:
    """The provider behind core's typed hook wrapper, as core calls it."""
    return Hooks(make_manager(provider, provider_name="aws"), "aws")


def acquire_request(
    request_id: str, template: Template, count: int, provisioned: Provisioned, created_at: int = 0
) -> CloudRequest:
    """The CloudRequest core would hand back after storing ``provisioned`` (handle via JSON)."""
    return CloudRequest(
        request_id=request_id,
        kind=RequestKind.ACQUIRE,
        template_id=template.template_id,
        machine_count=count,
        handle=json.loads(json.dumps(provisioned.handle)),
        machine_ids=tuple(m.machine_id for m in provisioned.machines),
        created_at=created_at,
    )


def count_calls(provider: AwsProvider) -> Counter[str]:
    """Counts ``service:Operation`` of every logical API call of clients the provider makes
    from now on (register before the provider makes its first client)."""
    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.signing_name}:{model.name}"] += 1

    provider.clients.session.register("before-call.*.*", record)
    return calls


@contextmanager
def failing(
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    method: str,
    code: str,
    times: int | None = None,
    message: str = "injected",
) -> Iterator[list[int]]:
    """Make moto's ``owner.method`` raise ``code`` ``times`` times (None: always), then work.

    Yields a one-item list counting the calls that reached the method.
    """
    from moto.ec2.exceptions import EC2ClientError

    original: Callable[..., Any] = getattr(owner, method)
    seen = [0]

    def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen[0] += 1
        if times is None or seen[0] <= times:
            raise EC2ClientError(code, message)
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(owner, method, flaky)
        yield seen


@contextmanager
def log_lines(level: str = "INFO") -> Iterator[list[dict[str, Any]]]:
    """The lines ohfp logs at ``level`` or above inside the block, each a parsed JSON
    object (filled in when the block ends); logging is reset afterwards."""
    import io

    from ohfp_core.logs import configure_logging, reset_logging

    out = io.StringIO()
    lines: list[dict[str, Any]] = []
    configure_logging(logdir=None, instance="awsinst", level=level, stream=out)
    try:
        yield lines
    finally:
        reset_logging()
        lines.extend(json.loads(line) for line in out.getvalue().splitlines())

"""The store's botocore client, every request bounded by the deadline of the call using it.

Region from the settings, ``AWS_REGION``, then botocore's own chain; the endpoint from the
settings or ``AWS_ENDPOINT_URL(_DYNAMODB)``. A request connects within
:data:`CONNECT_TIMEOUT_SEC` and waits for DynamoDB no longer than :data:`READ_TIMEOUT_SEC` or
what is left of the call's deadline, whichever is less (botocore's per-request read
timeout); it is not sent once the deadline has passed, and a failed one is retried
(botocore's ``standard`` mode) only while the longest back-off still leaves
:data:`MIN_ATTEMPT_SEC` for the retry. Past that the request raises
:class:`~ohfp_core.errors.StorageError` of kind ``TIMED_OUT``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.config import Config

from ohfp_core.deadline import Deadline
from ohfp_core.errors import StorageError
from ohfp_dynamodb.settings import DynamoSettings

CONNECT_TIMEOUT_SEC = 5.0
READ_TIMEOUT_SEC = 10.0
MIN_ATTEMPT_SEC = 0.5
MAX_ATTEMPTS = 4
MAX_BACKOFF_SEC = 20.0
"""botocore's ``standard`` retry mode waits up to ``2 ** (attempt - 1)`` s, never more than this."""


def make_client(
    settings: DynamoSettings,
    deadline: Callable[[], Deadline] = Deadline.never,
    out_of_time: Callable[[], StorageError] | None = None,
) -> Any:
    """A botocore DynamoDB client whose requests keep within ``deadline()`` (the deadline of
    the call at the time), failing with ``out_of_time()`` past it."""
    session = botocore.session.get_session()
    region = settings.region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
    if not region:
        raise StorageError(
            "the DynamoDB state store needs a region: set 'region' in the dynamodb section or AWS_REGION"
        )
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SEC,
        read_timeout=READ_TIMEOUT_SEC,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    )
    client = session.create_client(
        "dynamodb", region_name=region, endpoint_url=settings.endpoint_url, config=config
    )
    if out_of_time is not None:
        _bound(client, deadline, out_of_time)
    return client


def _bound(client: Any, deadline: Callable[[], Deadline], out_of_time: Callable[[], StorageError]) -> None:
    """Keep every request of ``client`` within ``deadline()`` (see the module docstring)."""
    from botocore.retries.standard import RetryEventAdapter, StandardRetryConditions

    adapter = RetryEventAdapter()
    retryable = StandardRetryConditions(max_attempts=MAX_ATTEMPTS).is_retryable

    def before_send(request: Any, **_: Any) -> None:
        left = deadline().remaining()
        if left <= 0:
            raise out_of_time()
        request.context["read_timeout"] = min(READ_TIMEOUT_SEC, left)

    def needs_retry(attempts: int, **kwargs: Any) -> None:
        if isinstance(kwargs.get("caught_exception"), StorageError):  # before_send's: never retried
            raise kwargs["caught_exception"]
        backoff = min(2.0 ** (attempts - 1), MAX_BACKOFF_SEC)
        if deadline().remaining() >= backoff + MIN_ATTEMPT_SEC:
            return  # botocore decides
        if retryable(adapter.create_retry_context(attempts=attempts, **kwargs)):
            raise out_of_time()

    client.meta.events.register("before-send.dynamodb", before_send)
    client.meta.events.register_first("needs-retry.dynamodb", needs_retry)

"""AWS clients for one provider instance, made on first use and bounded by Host Factory's time.

The rest of ohfp-aws calls AWS through the typed wrappers over these clients
(:mod:`ohfp_aws.access.services`), never through a client itself.

botocore is imported only when a client is first needed, so HF calls that never reach AWS
(and importing :mod:`ohfp_aws.provider`) do not pay for it. Clients come straight from a
botocore session: they are the clients boto3 would make, without importing boto3's
resource and S3 transfer layers. The process keeps one botocore session (per credentials
file; a process serves one provider instance, so in practice one), which parses each AWS
service model once.

Every call a client makes fits in a :class:`Budget`: the time Host Factory gives the HF call
(``ProviderContext.timeout_sec``, from ``HF_PROVIDER_ACTION_TIMEOUT``) counted from the
provider's creation, and again from each call's start (``ohfp_call_started``: a warm
provider serves many calls), less :data:`RESERVE_SEC` kept for core to record the outcome.
A client connects within ``AWS_CONNECTION_TIMEOUT_MS`` and reads within
:data:`READ_TIMEOUT_SEC`, but never longer than the budget left when it is made; each
attempt then waits for AWS no longer than the budget left when it is sent (where botocore
honours a per-request read timeout); botocore retries only while its longest back-off
still leaves :data:`MIN_ATTEMPT_SEC` for another attempt. Past that, the call raises
:func:`ohfp_aws.access.boundary.out_of_time`.

Every credential a client signs with is masked in ohfp's output (:func:`mask_credentials`).
An HTML error page from a proxy is a short error, not a parse failure (:func:`html_errors`).

Capacity and quota errors are never retried by botocore (:func:`no_retry_of_refusals`): AWS
sends ``InsufficientInstanceCapacity`` with HTTP 500, which botocore's standard mode would
try again on the same offering, where the caller's answer is the next offering (and a quota
does not lift in seconds). One call per offering.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from ohfp_aws.access.boundary import (
    CAPACITY_CODES,
    QUOTA_CODES,
    looks_like_html,
    not_aws,
    out_of_time,
    translate,
)
from ohfp_core.errors import OhfpError

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_service_quotas import ServiceQuotasClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

    from ohfp_aws.settings import AwsConfig

READ_TIMEOUT_SEC = 60
USER_AGENT = "ohfp"
RESERVE_SEC = 5.0
"""Kept back from Host Factory's time for core to store the outcome and reply (at most
half of the time)."""
MIN_ATTEMPT_SEC = 1.0
MAX_BACKOFF_SEC = 20.0
"""botocore's ``standard`` retry mode waits up to ``2 ** (attempt - 1)`` s (throttling),
never more than this."""

# One botocore session per process and credentials file (see the module docstring).
_SESSIONS: dict[str | None, Any] = {}


def botocore_session(credential_file: str | None) -> Any:
    """The process's botocore session reading credentials from ``credential_file`` (the
    default chain when None), made on first use. The file is set on the session only: the
    process environment is left alone."""
    if credential_file not in _SESSIONS:
        import botocore.session

        session = botocore.session.get_session()
        if credential_file:
            session.set_config_variable("credentials_file", credential_file)
        _SESSIONS[credential_file] = session
    return _SESSIONS[credential_file]


class Budget:
    """The seconds AWS calls may take in this HF call: ``timeout_sec`` less the reserve,
    counted from creation on ``clock`` (monotonic)."""

    def __init__(self, timeout_sec: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.restart(timeout_sec)

    def restart(self, timeout_sec: float) -> None:
        """Count a new call's ``timeout_sec`` from now (a warm provider serves many calls)."""
        self.seconds = max(0.0, timeout_sec - min(RESERVE_SEC, timeout_sec / 2))
        self.ends = self.clock() + self.seconds

    def left(self) -> float:
        """Seconds left, ≥ 0."""
        return max(0.0, self.ends - self.clock())

    def watch(self, client: Any, total_attempts: int) -> None:
        """Keep every call of ``client`` (which tries each call up to ``total_attempts``
        times) inside the budget."""
        from botocore.retries.standard import RetryEventAdapter, StandardRetryConditions

        adapter = RetryEventAdapter()
        conditions = StandardRetryConditions(max_attempts=total_attempts)

        def before_send(request: Any, event_name: str, **_: Any) -> None:
            left = self.left()
            if left <= 0:
                raise out_of_time(event_name.rpartition(".")[2], self.seconds)
            request.context["read_timeout"] = min(READ_TIMEOUT_SEC, left)

        def before_retry(attempts: int, operation: Any, **kwargs: Any) -> None:
            error = kwargs.get("caught_exception")
            if isinstance(error, OhfpError):  # raised by before_send: never retried
                raise error
            context = adapter.create_retry_context(attempts=attempts, operation=operation, **kwargs)
            backoff = min(2.0 ** (attempts - 1), MAX_BACKOFF_SEC)
            if conditions.is_retryable(context) and self.left() < backoff + MIN_ATTEMPT_SEC:
                raise out_of_time(operation.name, self.seconds)

        client.meta.events.register("before-send", before_send)
        client.meta.events.register_first("needs-retry", before_retry)


def mask_credentials(session: Any) -> None:
    """Mask every credential the clients of ``session`` sign with, wherever ohfp writes text
    (:func:`ohfp_core.masking.remember_secret`): the access key id, secret key and session
    token botocore's chain resolved (environment, shared file, profile, assume-role, instance
    role …), and each refreshed set as botocore hands it to the signer. An endpoint or proxy
    that echoes one back in an error is masked too. Resolves the credentials (as the first
    client would); none found: nothing to mask."""
    from ohfp_core.masking import remember_secret

    credentials = session.get_credentials()
    if credentials is None or getattr(credentials, "_ohfp_masked", False):
        return
    frozen_credentials = credentials.get_frozen_credentials

    def get_frozen_credentials() -> Any:
        frozen = frozen_credentials()  # what botocore signs each request with
        remember_secret(frozen.access_key, frozen.secret_key, frozen.token)
        return frozen

    credentials.get_frozen_credentials = get_frozen_credentials
    credentials._ohfp_masked = True


def html_errors(client: Any) -> None:
    """Answer an error page from something between ohfp and AWS (a proxy's or load
    balancer's HTML page, a 502 or 503) with :func:`ohfp_aws.access.boundary.not_aws` before
    botocore tries to parse it as AWS's XML or JSON: a short error naming the status and the
    page's first line of text, retryable when the status is (5xx, 429), instead of a parse
    error quoting the page."""

    def before_parse(operation_model: Any = None, response_dict: Any = None, **_: Any) -> None:
        if not response_dict or int(response_dict.get("status_code") or 0) < 400:
            return
        body = response_dict.get("body")
        if not isinstance(body, bytes):
            return
        content_type = str(response_dict.get("headers", {}).get("content-type", ""))
        if "html" in content_type.lower() or looks_like_html(body):
            raise not_aws(operation_model.name, int(response_dict["status_code"]), body)

    client.meta.events.register("before-parse", before_parse)


NOT_RETRIED = CAPACITY_CODES | QUOTA_CODES
"""AWS error codes a call is never retried on by botocore."""


def no_retry_of_refusals(client: Any) -> None:
    """End every call of ``client`` that AWS answers with a capacity or quota error at once,
    whatever its HTTP status: a ``needs-retry`` check (run before botocore's own) raises the
    error, translated, where botocore would wait and try again."""

    def refused(response: Any = None, operation: Any = None, **_: Any) -> None:
        if response is None:  # a connection error: botocore's rules apply
            return
        parsed = response[1]
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        if code in NOT_RETRIED:
            from botocore.exceptions import ClientError

            error = ClientError(parsed, operation.name)
            raise translate(error) from error

    client.meta.events.register_first("needs-retry", refused)


class AwsClients:
    """Lazily created, cached clients for the configured region, endpoint and credentials.

    Retries use botocore's ``standard`` mode with ``AWS_REQUEST_RETRY_ATTEMPTS`` retries
    (so ``total_max_attempts`` is one more), never of a capacity or quota error.
    ``AWS_CREDENTIAL_FILE`` is set on the botocore session only (the process environment
    is left alone); without it the default credential chain applies. With a ``budget``,
    every call keeps within it.
    """

    def __init__(self, config: AwsConfig, budget: Budget | None = None) -> None:
        self.config = config
        self.budget = budget
        self.created: list[Any] = []  # every client made, in order (tests hook their events)

    def call_started(self, timeout_sec: float) -> None:
        """A new Host Factory call: the budget (if any) counts its ``timeout_sec`` from now."""
        if self.budget is not None:
            self.budget.restart(timeout_sec)

    @cached_property
    def session(self) -> Any:
        """The botocore session all clients share (one credential resolution per process)."""
        return botocore_session(self.config.credential_file)

    @property
    def total_attempts(self) -> int:
        return self.config.request_retry_attempts + 1

    def client_config(self) -> Any:
        """The botocore ``Config`` of a client made now."""
        from botocore.config import Config

        connect, read = self.config.connection_timeout_ms / 1000, float(READ_TIMEOUT_SEC)
        if self.budget is not None:
            left = max(self.budget.left(), MIN_ATTEMPT_SEC)
            connect, read = min(connect, left), min(read, left)
        return Config(
            region_name=self.config.region,
            retries={"mode": "standard", "total_max_attempts": self.total_attempts},
            connect_timeout=connect,
            read_timeout=read,
            proxies=self.config.proxies,
            user_agent_extra=USER_AGENT,
        )

    def client(self, service: str) -> Any:
        """A new client for ``service`` (prefer the cached properties)."""
        mask_credentials(self.session)  # before the client takes the session's credentials
        client = self.session.create_client(
            service,
            region_name=self.config.region,
            config=self.client_config(),
            endpoint_url=self.config.endpoint_url,
        )
        if self.budget is not None:
            self.budget.watch(client, self.total_attempts)
        no_retry_of_refusals(client)  # first: a refusal is no reason to wait for the budget
        html_errors(client)
        self.created.append(client)
        return client

    @cached_property
    def ec2(self) -> EC2Client:
        return cast("EC2Client", self.client("ec2"))

    @cached_property
    def autoscaling(self) -> AutoScalingClient:
        return cast("AutoScalingClient", self.client("autoscaling"))

    @cached_property
    def ssm(self) -> SSMClient:
        return cast("SSMClient", self.client("ssm"))

    @cached_property
    def sts(self) -> STSClient:
        return cast("STSClient", self.client("sts"))

    @cached_property
    def sqs(self) -> SQSClient:
        return cast("SQSClient", self.client("sqs"))

    @cached_property
    def events(self) -> EventBridgeClient:
        return cast("EventBridgeClient", self.client("events"))

    @cached_property
    def service_quotas(self) -> ServiceQuotasClient:
        return cast("ServiceQuotasClient", self.client("service-quotas"))

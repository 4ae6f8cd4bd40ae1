"""AWS errors as ohfp errors: the one boundary every AWS call crosses.

Every call to AWS runs inside :func:`aws_call`, which turns botocore's exceptions into
:class:`ohfp_core.errors.CloudError` subclasses with a message of the form
``"<Operation>: <AWS message> (<code>)"``. The service wrappers (:mod:`ohfp_aws.access.ec2`
…) make every call through :func:`call` (one operation) or :func:`pages` (every page of a
botocore paginator): inside :func:`aws_call`, and each with one DEBUG log line naming the
operation, its duration, attempts, HTTP status, AWS request id and error code. botocore is
imported only once an error exists, so importing this module costs nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from ohfp_core.errors import (
    AuthError,
    CapacityError,
    CloudError,
    OhfpError,
    QuotaError,
    ThrottledError,
)
from ohfp_core.logs import get_logger

log = get_logger("ohfp.aws")

P = ParamSpec("P")
R = TypeVar("R")

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientFreeAddressesInSubnet",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
        "InsufficientCapacityOnOutpost",
        "capacity-not-available",
        "capacity-oversubscribed",
        "price-too-low",
    }
)
QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "MaxSpotFleetRequestCountExceeded",
        "MaxFleetCountExceeded",
        "FleetLimitExceeded",
        "LimitExceeded",
        "ResourceLimitExceeded",
        "VolumeLimitExceeded",
        "MaxIOPSLimitExceeded",
        "LaunchTemplateLimitExceeded",
        "ServiceQuotaExceededException",
    }
)
AUTH_CODES = frozenset(
    {
        "UnauthorizedOperation",
        "AuthFailure",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "UnrecognizedClientException",
        "OptInRequired",
        "Blocked",
        "PendingVerification",
        # botocore's own credential errors, by class name
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "NoAuthTokenError",
        "TokenRetrievalError",
        "UnauthorizedSSOTokenError",
        "SSOTokenLoadError",
        "ProfileNotFound",
    }
)
THROTTLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "EC2ThrottledException",
        "BandwidthLimitExceeded",
        "PriorRequestNotComplete",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
    }
)
OUT_OF_TIME = "ActionTimeout"
"""The code of the error raised when Host Factory's time for the call is spent."""
# Worth trying again later: the service or the network failed, not the request.
TRANSIENT_CODES = frozenset(
    {
        OUT_OF_TIME,
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "ServerInternal",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProxyConnectionError",
    }
)


_ACCESS_KEY_RE = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b")
_MAX_MESSAGE = 1000


def error_code(exc: BaseException) -> str:
    """AWS's error code of a botocore ``ClientError`` or of a translated :class:`CloudError`,
    else the exception's class name."""
    if isinstance(exc, CloudError) and exc.code:
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def aws_message(exc: BaseException) -> str:
    """AWS's own message of a ClientError (or of the one behind a translated error)."""
    if isinstance(exc, CloudError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return _aws_message(exc)


def _aws_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    message = ""
    if isinstance(response, dict):
        message = str(response.get("Error", {}).get("Message") or "")
    if not message:
        message = str(exc) or type(exc).__name__
    message = _ACCESS_KEY_RE.sub("<access key>", " ".join(message.split()))
    return message[:_MAX_MESSAGE]


def translate(exc: BaseException, operation: str | None = None) -> CloudError:
    """The ohfp error for a botocore exception (ClientError, credential or connection error).

    The message names the AWS operation the ClientError reports, else ``operation``
    (credential and connection errors carry none). It never carries
    credentials: AWS does not echo secrets, and access key ids are masked.
    """
    if isinstance(exc, CloudError):
        return exc
    code = error_code(exc)
    op = getattr(exc, "operation_name", None) or operation or "AWS"
    message = f"{op}: {_aws_message(exc)} ({code})"
    if code in THROTTLE_CODES:
        return ThrottledError(message, code)
    if code in CAPACITY_CODES:
        return CapacityError(message, code, retryable=True)
    if code in QUOTA_CODES:
        return QuotaError(message, code)
    if code in AUTH_CODES:
        return AuthError(message, code)
    return CloudError(message, code, retryable=code in TRANSIENT_CODES)


def _is_botocore_error(exc: BaseException) -> bool:
    # Only a module that already raised a botocore error pays for importing it.
    import sys

    module = sys.modules.get("botocore.exceptions")
    if module is None:
        return False
    return isinstance(exc, module.BotoCoreError | module.ClientError)


@contextmanager
def aws_call(operation: str) -> Iterator[None]:
    """Run AWS calls, re-raising any botocore error as :func:`translate` of it.

    ohfp's own errors and any other exception (a bug) pass through unchanged.
    """
    try:
        yield
    except OhfpError:
        raise
    except Exception as exc:
        if _is_botocore_error(exc):
            raise translate(exc, operation) from exc
        raise


def call(operation: str, method: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``method(*args, **kwargs)``: one call of the AWS ``operation`` (as AWS names it, e.g.
    ``RunInstances``), its errors translated, logged at DEBUG (:func:`logged`)."""
    started = time.monotonic()
    try:
        with aws_call(operation):
            reply = method(*args, **kwargs)
    except CloudError as exc:
        logged(operation, started, exc)
        raise
    logged(operation, started, reply)
    return reply


def pages(
    operation: str, paginate: Callable[P, Iterable[R]], /, *args: P.args, **kwargs: P.kwargs
) -> Iterator[R]:
    """Every page of a botocore paginator's ``paginate(*args, **kwargs)``, each page one call
    of ``operation``, its errors translated and logged at DEBUG (:func:`logged`).

    ``PaginationConfig`` passes through (``{"PageSize": 100}`` sets the call's page size).
    """
    with aws_call(operation):
        found = iter(paginate(*args, **kwargs))  # no call yet: botocore asks for the first page on next()
    while True:
        started = time.monotonic()
        try:
            with aws_call(operation):
                page = next(found, None)
        except CloudError as exc:
            logged(operation, started, exc)
            raise
        if page is None:
            return
        logged(operation, started, page)
        yield page


def logged(operation: str, started: float, outcome: Any) -> None:
    """One DEBUG line for a call of ``operation`` begun at ``started`` (``time.monotonic``) that
    returned the reply ``outcome`` or raised it (a :class:`CloudError`): duration, attempts,
    HTTP status and request id from botocore's ``ResponseMetadata``, and the error code."""
    failed = isinstance(outcome, CloudError)
    reply = getattr(outcome.__cause__, "response", None) if failed else outcome
    meta = reply.get("ResponseMetadata", {}) if isinstance(reply, Mapping) else {}
    log.debug(
        "aws call",
        aws_operation=operation,  # not ``operation``: that is the Host Factory call's, bound by core
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        attempts=int(meta.get("RetryAttempts", 0)) + 1 if meta else None,
        http_status=meta.get("HTTPStatusCode"),
        aws_request_id=meta.get("RequestId") or meta.get("HTTPHeaders", {}).get("x-amzn-requestid"),
        error_code=error_code(outcome) if failed else None,
    )


_TAG = re.compile(rb"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_FIRST_LINE_MAX = 200


def looks_like_html(body: bytes) -> bool:
    """Whether a response body is an HTML page (``<!DOCTYPE html`` or ``<html`` first)."""
    start = body.lstrip()[:15].lower()
    return start.startswith((b"<!doctype html", b"<html"))


def not_aws(operation: str, status: int, page: bytes) -> CloudError:
    """The error for an HTML page answered instead of AWS's reply (a proxy's or load
    balancer's error page): ``<Operation>: HTTP 502 from the endpoint (not an AWS answer):
    <the page's first line of text>`` (code ``HTTP502``). Retryable for 5xx and 429: such a
    page says something on the way is down or busy, not that the request is wrong."""
    text = _TAG.sub(b"\n", page).decode("utf-8", "replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "no text")
    first = _ACCESS_KEY_RE.sub("<access key>", " ".join(first.split()))[:_FIRST_LINE_MAX]
    return CloudError(
        f"{operation}: HTTP {status} from the endpoint (not an AWS answer): {first}",
        f"HTTP{status}",
        retryable=status >= 500 or status == 429,
    )


def out_of_time(operation: str, budget_sec: float) -> CloudError:
    """The error for an AWS call that Host Factory's time for the call no longer allows.

    Retryable: the next call (Host Factory polls again) gets a new budget.
    """
    return CloudError(
        f"{operation}: no answer from AWS within the {budget_sec:g} s this Host Factory call "
        f"may spend on AWS (HF_PROVIDER_ACTION_TIMEOUT less a reserve) ({OUT_OF_TIME})",
        OUT_OF_TIME,
        retryable=True,
    )

"""AWS errors as ohfp errors: the one boundary every AWS call crosses.

Every call to AWS runs inside :func:`aws_call`, which turns botocore's exceptions into
:class:`ohfp_core.errors.CloudError` subclasses with a message of the form
``"<Operation>: <AWS message> (<code>)"``; :func:`paginate` reads every page of a call
through botocore's paginator inside it. botocore is imported only once an error exists,
so importing this module costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ohfp_core.errors import (
    AuthError,
    CapacityError,
    CloudError,
    OhfpError,
    QuotaError,
    ThrottledError,
)

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


def paginate(client: Any, method: str, **params: Any) -> Iterator[Mapping[str, Any]]:
    """Every page of ``client.<method>(**params)`` through botocore's paginator, errors
    translated (the operation is named as AWS names it, e.g. ``DescribeInstances``).

    ``PaginationConfig`` passes through (``{"PageSize": 100}`` sets the call's page size).
    """
    with aws_call(client.meta.method_to_api_mapping.get(method, method)):
        yield from client.get_paginator(method).paginate(**params)


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

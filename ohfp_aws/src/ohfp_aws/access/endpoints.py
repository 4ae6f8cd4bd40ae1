"""Where ohfp's AWS calls go and with whose credentials, read from botocore without a call.

Offline: the regions come from the endpoint data bundled with botocore, the credentials'
source from botocore's credential chain (its provider's method name, never a value).
"""

from __future__ import annotations

from typing import Any

from ohfp_core.errors import ConfigError


def known_region(session: Any, region: str | None) -> str:
    """The partition that lists ``region`` in botocore's bundled endpoint data.

    :raises ConfigError: naming the region when no partition lists it (a typo such as
        ``us-east-9``, or a region newer than the installed botocore).
    """
    if not region:
        raise ConfigError("no region set (AWS_REGION)")
    for partition in session.get_available_partitions():
        if region in session.get_available_regions("ec2", partition_name=partition):
            return str(partition)
    import botocore

    raise ConfigError(
        f"region {region!r} is not in botocore {botocore.__version__}'s endpoint data"
        " (a typo in AWS_REGION, or a region newer than this botocore)"
    )


def credentials_source(session: Any) -> str:
    """The name of the botocore credential provider that found credentials (``env``,
    ``shared-credentials-file``, ``assume-role``, ``iam-role`` …); credentials are resolved
    (a file read or an instance-metadata call), their values never returned.

    :raises ConfigError: when botocore's chain finds none.
    """
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError(
            "no credentials found: set AWS_CREDENTIAL_FILE, a profile, the environment or an instance role"
        )
    return str(getattr(credentials, "method", None) or "unknown")

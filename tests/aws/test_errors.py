"""botocore errors become ohfp's typed CloudErrors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from ohfp_aws.access.boundary import aws_call, error_code, translate
from ohfp_core.errors import AuthError, CapacityError, CloudError, QuotaError, ThrottledError


def client_error(code: str, message: str = "it failed", operation: str = "RunInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("InsufficientInstanceCapacity", CapacityError),
        ("InsufficientCapacity", CapacityError),
        ("UnfulfillableCapacity", CapacityError),
        ("InsufficientHostCapacity", CapacityError),
        ("SpotMaxPriceTooLow", CapacityError),
        ("InstanceLimitExceeded", QuotaError),
        ("VcpuLimitExceeded", QuotaError),
        ("MaxSpotInstanceCountExceeded", QuotaError),
        ("MaxSpotFleetRequestCountExceeded", QuotaError),
        ("LimitExceeded", QuotaError),
        ("FleetLimitExceeded", QuotaError),
        ("UnauthorizedOperation", AuthError),
        ("AuthFailure", AuthError),
        ("AccessDenied", AuthError),
        ("InvalidClientTokenId", AuthError),
        ("ExpiredToken", AuthError),
        ("RequestLimitExceeded", ThrottledError),
        ("Throttling", ThrottledError),
        ("ThrottlingException", ThrottledError),
    ],
)
def test_codes_map_to_types(code: str, kind: type[CloudError]) -> None:
    error = translate(client_error(code, "AWS says no"))
    assert type(error) is kind
    assert error.code == code
    assert error.message == f"RunInstances: AWS says no ({code})"


def test_other_codes_are_plain_cloud_errors() -> None:
    error = translate(client_error("InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist"))
    assert type(error) is CloudError
    assert error.code == "InvalidAMIID.NotFound"
    assert not error.retryable
    assert translate(client_error("InternalError")).retryable
    assert translate(client_error("RequestLimitExceeded")).retryable


def test_credential_and_connection_errors() -> None:
    error = translate(NoCredentialsError(), "DescribeInstances")
    assert isinstance(error, AuthError)
    assert error.message == "DescribeInstances: Unable to locate credentials (NoCredentialsError)"
    connection = translate(
        EndpointConnectionError(endpoint_url="https://ec2.x.amazonaws.com"), "RunInstances"
    )
    assert type(connection) is CloudError and connection.retryable


def test_access_key_ids_are_masked() -> None:
    error = translate(client_error("AuthFailure", "key AKIAIOSFODNN7EXAMPLE is not valid"))
    assert "AKIA" not in error.message and "<access key>" in error.message


def test_error_code() -> None:
    assert error_code(client_error("VcpuLimitExceeded")) == "VcpuLimitExceeded"
    assert error_code(translate(client_error("VcpuLimitExceeded"))) == "VcpuLimitExceeded"
    assert error_code(ValueError("x")) == "ValueError"


def test_aws_call_translates_botocore_errors_only() -> None:
    with pytest.raises(CapacityError) as info, aws_call("Provision"):
        raise client_error("InsufficientInstanceCapacity")
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(AuthError, match=r"^Provision: "), aws_call("Provision"):
        raise NoCredentialsError()
    with pytest.raises(KeyError), aws_call("Provision"):
        raise KeyError("a bug stays a bug")
    original = QuotaError("mine", "X")
    with pytest.raises(QuotaError) as quota, aws_call("Provision"):
        raise original
    assert quota.value is original

"""EC2 instances as ohfp machines: batched describe and terminate, and lookups by tag or name.

Both calls take any number of ids and send at most :data:`MAX_IDS` per request. Ids AWS
does not know (already terminated and purged, or not yet visible just after launch) are left out of the
result rather than failing the batch. Lookups by filter send at most
:data:`FILTER_VALUES_MAX` values per filter.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ohfp_aws.access.boundary import aws_message, error_code
from ohfp_aws.vocabulary import TAG_INSTANCE, TAG_REQUEST, TAG_WEIGHT
from ohfp_core.errors import CloudError
from ohfp_core.models import Machine, MachineState, PriceType

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef

    from ohfp_aws.access.ec2 import Ec2

MAX_IDS = 1000
FILTER_VALUES_MAX = 200
_NOT_FOUND = "InvalidInstanceID.NotFound"
_MALFORMED = "InvalidInstanceID.Malformed"
_ID_RE = re.compile(r"\bi-[0-9a-f]{8,17}\b")


def chunks(items: Sequence[str], size: int = MAX_IDS) -> Iterator[list[str]]:
    """``items`` in lists of at most ``size``, order kept, duplicates dropped."""
    unique = list(dict.fromkeys(items))
    for start in range(0, len(unique), size):
        yield unique[start : start + size]


def _epoch(value: Any) -> int:
    if isinstance(value, datetime):
        return max(0, int(value.timestamp()))
    if isinstance(value, int | float):
        return max(0, int(value))
    return 0


def to_machine(instance: Mapping[str, Any]) -> Machine:
    """An ohfp :class:`Machine` from one DescribeInstances/RunInstances instance.

    The name is the private DNS name (the instance id while AWS has none yet); ``weight``
    comes from the ``ohfp:weight`` tag (1 without it); the message is AWS's state reason.
    """
    tags = {t["Key"]: t.get("Value", "") for t in instance.get("Tags", []) or []}
    try:
        weight = max(1, int(tags.get(TAG_WEIGHT, "1")))
    except ValueError:
        weight = 1
    state_name = instance.get("State", {}).get("Name", "pending")
    try:
        state = MachineState(state_name)
    except ValueError:
        state = MachineState.PENDING
    reason = instance.get("StateReason", {}) or {}
    message = (
        str(reason.get("Message") or reason.get("Code") or "") if state is not MachineState.RUNNING else ""
    )
    spot = instance.get("InstanceLifecycle") == "spot"
    return Machine(
        machine_id=instance["InstanceId"],
        name=instance.get("PrivateDnsName") or instance["InstanceId"],
        state=state,
        private_ip=instance.get("PrivateIpAddress") or None,
        public_ip=instance.get("PublicIpAddress") or None,
        launch_time=_epoch(instance.get("LaunchTime")),
        instance_type=instance.get("InstanceType"),
        price_type=PriceType.SPOT if spot else PriceType.ONDEMAND,
        weight=weight,
        message=message,
        cloud_host_id=(instance.get("Placement") or {}).get("HostId"),
        tags=tags,
    )


def _ids_in(message: str) -> set[str]:
    return set(_ID_RE.findall(message))


def describe_instances(
    ec2: Ec2,
    instance_ids: Sequence[str] = (),
    *,
    filters: Sequence[FilterTypeDef] = (),
    chunk_size: int = MAX_IDS,
) -> list[InstanceTypeDef]:
    """Raw instances for ``instance_ids`` (chunked) or for ``filters`` alone.

    An id AWS rejects as unknown or malformed is dropped and the chunk described again, so
    one vanished instance never hides the others.
    """
    found: list[InstanceTypeDef] = []
    if not instance_ids:
        if filters:
            found.extend(ec2.instances(Filters=list(filters)))
        return found
    for chunk in chunks(instance_ids, chunk_size):
        remaining = list(chunk)
        while remaining:
            try:
                if filters:
                    found.extend(ec2.instances(InstanceIds=remaining, Filters=list(filters)))
                else:
                    found.extend(ec2.instances(InstanceIds=remaining))
                break
            except CloudError as exc:
                if error_code(exc) not in (_NOT_FOUND, _MALFORMED):
                    raise
                missing = _ids_in(aws_message(exc)) & set(remaining)
                if not missing:
                    # AWS did not say which: fall back to a filter, which ignores unknown ids.
                    found.extend(
                        ec2.instances(Filters=[*filters, {"Name": "instance-id", "Values": remaining}])
                    )
                    break
                remaining = [i for i in remaining if i not in missing]
    return found


def tagged_for_requests(ec2: Ec2, request_ids: Sequence[str], instance_name: str) -> dict[str, list[str]]:
    """The ids of instances not terminated that carry each request id's ``ohfp:request-id``
    tag and this provider instance's ``ohfp:instance`` tag: one describe per 200 requests."""
    found: dict[str, list[str]] = {request_id: [] for request_id in request_ids}
    for chunk in chunks(list(found), FILTER_VALUES_MAX):
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{TAG_REQUEST}", "Values": chunk},
            {"Name": f"tag:{TAG_INSTANCE}", "Values": [instance_name]},
        ]
        for instance in describe_instances(ec2, filters=filters):
            tags = {t.get("Key"): t.get("Value") for t in instance.get("Tags", [])}
            request_id = tags.get(TAG_REQUEST)
            if request_id in found and instance.get("State", {}).get("Name") != "terminated":
                found[request_id].append(instance["InstanceId"])
    return found


def by_name(ec2: Ec2, names: Sequence[str]) -> dict[str, InstanceTypeDef]:
    """Instances by private DNS name (the host name Host Factory knows), 200 names a call.
    A name may have been reused by a newer instance: one that is not terminated wins."""
    found: dict[str, InstanceTypeDef] = {}
    for chunk in chunks(list(dict.fromkeys(names)), FILTER_VALUES_MAX):
        for described in describe_instances(ec2, filters=[{"Name": "private-dns-name", "Values": chunk}]):
            name = described.get("PrivateDnsName")
            if name and (name not in found or found[name].get("State", {}).get("Name") == "terminated"):
                found[name] = described
    return found


def describe_machines(
    ec2: Ec2,
    instance_ids: Sequence[str],
    *,
    chunk_size: int = MAX_IDS,
    retries: int = 0,
    interval_sec: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Machine]:
    """Machines by id for ``instance_ids``, in calls of at most ``chunk_size`` ids.

    Ids not found are missing from the result. With ``retries`` (IBM's
    ``AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS``), ids still missing are described again after
    ``interval_sec``: DescribeInstances may not see an instance for a moment after launch.
    """
    machines: dict[str, Machine] = {}
    wanted = list(dict.fromkeys(instance_ids))
    for attempt in range(retries + 1):
        todo = [i for i in wanted if i not in machines]
        if not todo:
            break
        if attempt:
            sleep(interval_sec)
        for instance in describe_instances(ec2, todo, chunk_size=chunk_size):
            machines[instance["InstanceId"]] = to_machine(instance)
    return machines


def terminate(ec2: Ec2, instance_ids: Sequence[str], *, chunk_size: int = MAX_IDS) -> dict[str, str]:
    """Terminate instances in batches; an error message per id that could not be terminated.

    Ids AWS no longer knows count as terminated. Any other error fails only its batch (each
    id of it gets the message).
    """
    errors: dict[str, str] = {}
    for chunk in chunks(instance_ids, chunk_size):
        remaining = list(chunk)
        while remaining:
            try:
                ec2.terminate_instances(remaining)
                break
            except CloudError as exc:
                if error_code(exc) in (_NOT_FOUND, _MALFORMED):
                    unknown = _ids_in(aws_message(exc)) & set(remaining)
                    if unknown:
                        remaining = [i for i in remaining if i not in unknown]
                        continue
                    if len(remaining) == 1:
                        break
                    # Which id is unknown was not said: try them one by one.
                    for instance_id in remaining:
                        errors.update(terminate(ec2, [instance_id], chunk_size=1))
                    break
                errors.update(dict.fromkeys(remaining, str(exc)))
                break
    return errors

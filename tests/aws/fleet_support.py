"""Helpers for the fleet, group and launch template handler tests (moto in-process).

``aws_context`` builds the :class:`AwsContext` of a real :class:`AwsProvider` (what handlers get).
``Calls`` records the parameters of every API call a client makes (``before-call``), and
``answer`` makes a client answer one operation itself — for what moto does not implement
(ModifyFleet) or never does (capacity errors in a CreateFleet reply). Tests that use it say so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ohfp_aws.context import AwsContext
from ohfp_aws.provider import AwsProvider
from ohfp_aws.vocabulary import AwsTemplate
from ohfp_core.models import CloudRequest, Provisioned, RequestKind, ReturnItem

from .conftest import REGION, Network


def aws_context(tmp_path: Path, settings: Mapping[str, Any] | None = None) -> AwsContext:
    from ohfp_core.models import ProviderContext

    ctx = ProviderContext(
        instance="awsinst",
        provider_type="aws",
        confdir=tmp_path,
        workdir=tmp_path,
        config={"AWS_REGION": REGION},
        settings=settings or {},
    )
    return AwsProvider(ctx).aws


def template(network: Network, **fields: Any) -> AwsTemplate:
    """An AwsTemplate on the test network: one type, both subnets, the test AMI."""
    values: dict[str, Any] = {
        "template_id": "T",
        "max_number": 100,
        "image_id": network.ami_id,
        "subnet_ids": network.subnet_ids,
        "vm_types": {"t3.micro": 1},
        "security_group_ids": (network.security_group_id,),
    }
    values.update(fields)
    return AwsTemplate(**values)


def acquire(request_id: str, provisioned: Provisioned, machine_ids: tuple[str, ...] = ()) -> CloudRequest:
    return CloudRequest(
        request_id=request_id,
        kind=RequestKind.ACQUIRE,
        template_id="T",
        machine_count=int(provisioned.handle.get("target", 0)),
        handle=provisioned.handle,
        machine_ids=machine_ids,
    )


def returns(request: CloudRequest, machine_ids: list[str]) -> list[ReturnItem]:
    return [ReturnItem(machine_id=i, name=i, request=request) for i in machine_ids]


class Calls:
    """Every call a boto3 client makes: ``calls.params("CreateFleet")`` lists their params.

    Recorded at ``before-parameter-build``, so the params are the API's own (as passed to
    the client method), recorded even for calls ``answer`` short-circuits.
    """

    def __init__(self, client: Any) -> None:
        self.made: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build", self._record)

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        self.made.append((model.name, copy.deepcopy(dict(params))))

    def names(self) -> list[str]:
        return [name for name, _ in self.made]

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [p for name, p in self.made if name == operation]


def answer(client: Any, operation: str, reply: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Make ``client`` answer ``operation`` with ``reply(params)`` without sending it.

    botocore lets a ``before-call`` handler return ``(http_response, parsed)``; the call then
    never reaches moto, but parameter validation, ``Calls`` and ``after-call`` hooks still run.
    """
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    service = client.meta.service_model.service_id.hyphenize()
    seen: list[dict[str, Any]] = []

    def keep(params: Mapping[str, Any], **_: Any) -> None:
        seen.append(copy.deepcopy(dict(params)))

    def handler(**_: Any) -> tuple[Any, dict[str, Any]]:
        return AWSResponse("https://ohfp.test", 200, HTTPHeaders(), None), reply(seen[-1])

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", keep)
    client.meta.events.register_first(f"before-call.{service}.{operation}", handler)


def alive_ids(ec2: Any, ids: list[str]) -> set[str]:
    """Ids among ``ids`` whose instances are neither terminated nor shutting down."""
    if not ids:
        return set()
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {
        i["InstanceId"]
        for r in reservations
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    }


def moto_ec2_backend() -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]

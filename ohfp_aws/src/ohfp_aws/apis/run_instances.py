"""RunInstances: plain on-demand or spot instances of one type, no fleet around them.

The request is finished once :meth:`RunInstancesHandler.provision` returns: what launched is
in the handle (:class:`~ohfp_aws.apis.handles.InstancesHandle`) and nothing will add more later,
so :meth:`~RunInstancesHandler.inspect` calls no API and a shortfall becomes an error
message (HF sees ``complete_with_error``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, cast

from ohfp_aws.access.instances import describe_instances, to_machine
from ohfp_aws.apis import handles
from ohfp_aws.apis.common import loaded
from ohfp_aws.apis.handles import InstancesHandle
from ohfp_aws.context import AwsContext
from ohfp_aws.launch import resources
from ohfp_aws.launch.spec import needs_root_device, root_device_name, run_instances_params
from ohfp_aws.vocabulary import (
    RUN_INSTANCES,
    TAG_INSTANCE,
    TAG_REQUEST,
    TAG_WEIGHT,
    AwsTemplate,
    FleetState,
    Shortfall,
    client_token,
)
from ohfp_core.errors import CapacityError, CloudError, QuotaError
from ohfp_core.models import Provisioned

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        InstanceTypeDef,
        RunInstancesRequestTypeDef,
        SpotMarketOptionsTypeDef,
    )

    from ohfp_core.models import CloudRequest, ReturnItem


class RunInstancesHandler:
    """Launches instances with RunInstances, in calls of at most ``runinstances_max_per_call``.

    Each call asks MinCount=1, MaxCount=n, so AWS launches what it can; a call that comes
    back short is repeated for the remainder on the next subnet (a new client token per
    try). Calls rotate over the template's subnets (those short of capacity lately last:
    :mod:`ohfp_aws.supply.offerings`), and a capacity error moves the call to the next subnet. A
    capacity or quota error before anything launched is raised; once some instances run, it
    is kept in the handle (with each subnet's refusal as a shortfall) and provisioning stops
    there.
    """

    api: ClassVar[str] = RUN_INSTANCES
    actions: ClassVar[tuple[str, ...]] = (
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "ec2:DescribeSubnets",
    )

    def __init__(self, ctx: AwsContext) -> None:
        self.ctx = ctx

    def unsupported(self, template: AwsTemplate) -> str | None:
        if template.instance_requirements is not None:
            return (
                "RunInstances cannot choose instance types by requirements (vCpusMin, memoryMiBMin,"
                " instanceRequirements): use EC2Fleet, ASG or SpotFleet"
            )
        if template.price_type == "heterogeneous":
            return "RunInstances cannot mix spot and on-demand (priceType heterogeneous)"
        if len(template.vm_types) > 1:
            return f"RunInstances launches one instance type; the template lists {len(template.vm_types)}"
        if not template.vm_types and not template.launch_template_id:
            return "no instance type (vmType) and no launchTemplateId"
        return None

    def _base_params(self, request_id: str, template: AwsTemplate, weight: int) -> RunInstancesRequestTypeDef:
        tags = dict(self.ctx.tags_for(request_id, template))
        if weight > 1:
            tags[TAG_WEIGHT] = str(weight)
        params: RunInstancesRequestTypeDef
        if template.image_id:
            image_id = self.ctx.resolve_image(template.image_id)
            root = "/dev/xvda"
            if needs_root_device(template):
                root = root_device_name(self.ctx.services.ec2, image_id)
            params = run_instances_params(template, image_id, tags, root)
        else:
            params = run_instances_params(template, "", tags)
            del params["ImageId"]  # the launch template supplies it
        if template.launch_template_id:
            params["LaunchTemplate"] = {
                "LaunchTemplateId": template.launch_template_id,
                "Version": "$Default",
            }
        if template.vm_types:
            params["InstanceType"] = cast("InstanceTypeType", next(iter(template.vm_types)))  # checked
        if template.price_type == "spot":
            spot: SpotMarketOptionsTypeDef = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if template.max_spot_price:
                spot["MaxPrice"] = template.max_spot_price
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        return params

    def provision(self, request_id: str, template: AwsTemplate, count: int) -> Provisioned:
        """Launch ``count`` units; a second call for the same request returns the first's instances.

        Idempotency has two layers: instances tagged with this request id are looked up
        first (one DescribeInstances), and every RunInstances carries a client token derived
        from the request id, for a retry that comes before the tags are visible.
        """
        weight = next(iter(template.vm_types.values()), 1)
        total = math.ceil(count / weight)
        existing = self._existing(request_id)
        if existing:
            return self._provisioned(existing, total, [])
        from ohfp_aws.supply.offerings import remember, unavailable
        from ohfp_aws.supply.shortfalls import merged

        params = self._base_params(request_id, template, weight)
        per_call = self.ctx.config.handlers.run_instances.max_per_call
        short = unavailable(self.ctx, template, request_id)
        instance_type = params.get("InstanceType")
        ordered = sorted(template.subnet_ids, key=lambda subnet: short(instance_type, subnet))
        subnets: Sequence[str | None] = ordered or (None,)
        lifecycle = "spot" if template.price_type == "spot" else "on-demand"
        launched: list[InstanceTypeDef] = []
        errors: list[str] = []
        missed: list[Shortfall] = []
        sizes = [min(per_call, total - start) for start in range(0, total, per_call)]
        for call, size in enumerate(sizes):
            got, error = self._launch(request_id, params, call, size, subnets, missed.append, lifecycle)
            launched.extend(got)
            if error is not None:
                if not launched:
                    remember(self.ctx, missed, request_id)
                    raise error
                errors.append(f"launched {len(launched)} of {total} instances: {error}")
                break
        remember(self.ctx, missed, request_id)
        return self._provisioned(launched, total, errors, merged(missed))

    def _existing(self, request_id: str) -> list[InstanceTypeDef]:
        """Instances an earlier call for ``request_id`` launched (not yet terminated)."""
        filters: list[FilterTypeDef] = [
            {"Name": f"tag:{TAG_REQUEST}", "Values": [request_id]},
            {"Name": f"tag:{TAG_INSTANCE}", "Values": [self.ctx.instance_name]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        return describe_instances(self.ctx.services.ec2, filters=filters)

    def _provisioned(
        self,
        instances: Sequence[InstanceTypeDef],
        total: int,
        errors: list[str],
        shortfalls: tuple[Shortfall, ...] = (),
    ) -> Provisioned:
        ids = [instance["InstanceId"] for instance in instances]
        if not errors and len(ids) < total:
            errors = [f"launched {len(ids)} of {total} instances"]
        handle = InstancesHandle(instance_ids=tuple(ids), errors=tuple(errors), shortfalls=shortfalls)
        machines = tuple(to_machine(instance) for instance in instances)
        return Provisioned(handle=handles.dump(handle), machines=machines, message="; ".join(errors))

    def _launch(
        self,
        request_id: str,
        params: RunInstancesRequestTypeDef,
        call: int,
        size: int,
        subnets: Sequence[str | None],
        missed: Callable[[Shortfall], None] = lambda shortfall: None,
        lifecycle: str | None = None,
    ) -> tuple[list[InstanceTypeDef], CloudError | None]:
        """One planned call of ``size`` instances, topped up on the next subnets.

        Returns the instances launched and, when fewer than ``size``, why; each subnet that
        refused is told to ``missed``. A quota error ends the call (another subnet shares
        the quota).
        """
        launched: list[InstanceTypeDef] = []
        error: CloudError | None = None
        no_capacity: set[str | None] = set()
        for attempt in range(len(subnets) + 1):
            remaining = size - len(launched)
            if remaining <= 0:
                return launched, None
            subnet = subnets[(call + attempt) % len(subnets)]
            if subnet in no_capacity:
                if len(no_capacity) == len(set(subnets)):
                    break
                continue
            token = client_token(request_id, f"run-{call}" if attempt == 0 else f"run-{call}.{attempt}")
            call_params = params.copy()
            call_params["MinCount"], call_params["MaxCount"] = 1, remaining
            call_params["ClientToken"] = token
            if subnet:
                call_params["SubnetId"] = subnet
            try:
                response = self.ctx.services.ec2.run_instances(**call_params)
            except (CapacityError, QuotaError) as exc:
                from ohfp_aws.supply.shortfalls import from_error

                error = exc
                missed(from_error(exc, call_params.get("InstanceType"), subnet, lifecycle))
                if isinstance(exc, QuotaError):
                    break
                no_capacity.add(subnet)
                continue
            got = response.get("Instances", [])
            resources.launched(
                [i.get("InstanceId", "") for i in got],
                subnet_id=subnet,
                instance_type=call_params.get("InstanceType"),
            )
            launched.extend(got)
        if len(launched) < size and error is None:
            error = CapacityError(f"RunInstances: AWS launched {len(launched)} of {size} instances asked")
        return launched, error

    def inspect(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        """The handle's instances; never open (RunInstances delivers all it will at once)."""
        found, states = loaded(requests, InstancesHandle)
        for request, handle in found:
            states[request.request_id] = FleetState(
                instance_ids=handle.instance_ids, errors=handle.errors, shortfalls=handle.shortfalls
            )
        return states

    def release(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        """Terminate the instances; there is nothing else to shrink or delete."""
        return self.ctx.terminate_instances([item.machine_id for item in items])

    def cancel(self, request_id: str) -> None:
        """Nothing to do: RunInstances makes only instances, and the provider terminates the
        instances tagged with the request id whatever the API."""

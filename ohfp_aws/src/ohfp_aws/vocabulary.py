"""The AWS provider's vocabulary: API names, allocation strategies, tags, templates, fleet state.

Every other module of ``ohfp_aws`` builds on these names. This module imports nothing of
``ohfp_aws`` and nothing heavier than attrs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

# -- the AWS APIs ---------------------------------------------------------------------------

EC2_FLEET = "EC2Fleet"
ASG = "ASG"
SPOT_FLEET = "SpotFleet"
RUN_INSTANCES = "RunInstances"
APIS = (EC2_FLEET, ASG, SPOT_FLEET, RUN_INSTANCES)
"""Every AWS API ohfp provisions with, in the default order of preference."""

FLEET_TYPES = ("instant", "request", "maintain")
"""EC2 Fleet's types; Spot Fleet has ``request`` and ``maintain``."""


@frozen
class Spelling:
    """One of IBM's allocation strategy names as each AWS API spells it."""

    ec2_fleet: str
    spot_fleet: str
    asg: str


SPOT_STRATEGIES: Mapping[str, Spelling] = {
    "capacityOptimized": Spelling("capacity-optimized", "capacityOptimized", "capacity-optimized"),
    "capacityOptimizedPrioritized": Spelling(
        "capacity-optimized-prioritized", "capacityOptimizedPrioritized", "capacity-optimized-prioritized"
    ),
    # Groups have no "diversified": lowest-price over several pools spreads the same way.
    "diversified": Spelling("diversified", "diversified", "lowest-price"),
    "lowestPrice": Spelling("lowest-price", "lowestPrice", "lowest-price"),
    "priceCapacityOptimized": Spelling(
        "price-capacity-optimized", "priceCapacityOptimized", "price-capacity-optimized"
    ),
}
"""IBM's spot ``allocationStrategy`` names (the keys are what templates and settings accept)."""

ON_DEMAND_STRATEGIES: Mapping[str, Spelling] = {
    "lowestPrice": Spelling("lowest-price", "lowestPrice", "lowest-price"),
    "prioritized": Spelling("prioritized", "prioritized", "prioritized"),
}
"""IBM's ``allocationStrategyOnDemand`` names."""

PROVIDER_ACTIONS = (
    "ec2:DescribeInstances",
    "ec2:TerminateInstances",
    "ec2:CreateTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeSpotInstanceRequests",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeLaunchTemplates",
    "ssm:GetParameter",
    "sts:GetCallerIdentity",
)
"""IAM actions the provider calls whatever the API: status, reclaims, images, health, and
``ohfp templates validate --online`` (subnets, security groups, launch templates)."""

QUEUE_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
"""IAM actions of draining the interruption queue (``aws.events.queueUrl``) and of its health check."""

QUOTA_ACTIONS = ("servicequotas:GetServiceQuota", "servicequotas:GetAWSDefaultServiceQuota")
"""IAM actions of quota-aware capacity (``aws.quotas.enabled``), besides DescribeInstances
and DescribeInstanceTypes."""

# -- tags -----------------------------------------------------------------------------------

TAG_REQUEST = "ohfp:request-id"
TAG_TEMPLATE = "ohfp:template-id"
TAG_INSTANCE = "ohfp:instance"  # the HF provider instance name (e.g. awsinst)
TAG_WEIGHT = "ohfp:weight"  # units a RunInstances instance of a weighted type counts for


def client_token(request_id: str, purpose: str = "") -> str:
    """An idempotency token for a create call, derived from the HF request id.

    AWS limits client tokens to 64 ASCII characters; the same request id and purpose
    always give the same token, so a retried create returns the first call's result.
    """
    import hashlib  # only a create call needs it

    digest = hashlib.sha256(f"{request_id}/{purpose}".encode()).hexdigest()
    return f"ohfp-{digest[:58]}"


# -- what handlers work with ------------------------------------------------------------------


@frozen(kw_only=True)
class AwsTemplate:
    """A template's AWS fields, parsed and validated (see :mod:`ohfp_aws.launch.template_fields`).

    ``vm_types`` maps instance type → weight (a single ``vmType`` becomes ``{type: 1}``).
    ``instance_requirements`` is AWS's InstanceRequirements when the template chooses types
    by shape (then ``vm_types`` is empty: its types are the ``AllowedInstanceTypes``).
    ``user_data`` is the *content* of ``userDataScript``. ``image_id`` may still be an SSM
    parameter path; handlers resolve it with :meth:`ohfp_aws.context.AwsContext.resolve_image`.
    """

    template_id: str
    max_number: int
    image_id: str | None = None
    launch_template_id: str | None = None
    price_type: str = "ondemand"  # ondemand | spot | heterogeneous
    provider_api: str | None = None  # explicit API, else the preferred order decides
    fleet_type: str | None = None  # instant | request | maintain (EC2Fleet / SpotFleet)
    subnet_ids: tuple[str, ...] = ()
    vm_types: Mapping[str, int] = field(factory=dict)
    vm_types_on_demand: Mapping[str, int] = field(factory=dict)
    vm_types_priority: Mapping[str, int] = field(factory=dict)
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    instance_profile: str | None = None  # name or ARN
    root_device_volume_size: int | None = None
    volume_type: str | None = None
    iops: int | None = None
    instance_tags: Mapping[str, str] = field(factory=dict)
    user_data: str | None = None
    fleet_role: str | None = None
    max_spot_price: str | None = None
    spot_fleet_request_expiry_min: int = 30
    allocation_strategy: str | None = None
    allocation_strategy_on_demand: str | None = None
    percent_on_demand: int | None = None
    pools_count: int | None = None
    instance_requirements: Mapping[str, Any] | None = None


REASONS = ("insufficient-capacity", "quota", "price", "unsupported", "other")
"""Why an offering did not deliver, as :class:`Shortfall` says it."""


@frozen(kw_only=True)
class Shortfall:
    """Why one offering (instance type × subnet or zone, spot or on-demand) did not deliver
    capacity: ``reason`` is one of :data:`REASONS`; ``code`` and ``message`` are AWS's;
    ``source`` the call that said so; ``count`` how many times it was said."""

    reason: str
    instance_type: str | None = None
    subnet_id: str | None = None
    zone: str | None = None
    lifecycle: str | None = None  # spot | on-demand
    code: str = ""
    message: str = ""
    source: str = ""
    count: int = 1

    @property
    def offering(self) -> str:
        """``t3.micro in subnet-0a1`` (``any type``, ``any subnet`` when AWS did not say)."""
        where = self.subnet_id or self.zone or "any subnet"
        spot = f" ({self.lifecycle})" if self.lifecycle else ""
        return f"{self.instance_type or 'any type'} in {where}{spot}"


@frozen(kw_only=True)
class FleetState:
    """What a fleet, group or handle says about one acquire request, before its instances
    are described.

    ``instance_ids`` are the instances it reports (the provider describes them all in one
    batch). ``open`` is True while it may still deliver capacity. ``errors`` are the
    cloud's messages about capacity it could not deliver, and ``shortfalls`` the same per
    offering. ``weights`` are the units each instance type counts for (empty when every
    machine counts for one). ``handle`` is a new handle for core to store (a diagnosis
    learned), or None.
    """

    instance_ids: tuple[str, ...] = ()
    open: bool = False
    errors: tuple[str, ...] = ()
    weights: Mapping[str, int] = field(factory=dict)
    shortfalls: tuple[Shortfall, ...] = ()
    handle: Mapping[str, Any] | None = None

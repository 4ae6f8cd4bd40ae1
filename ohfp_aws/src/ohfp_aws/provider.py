"""The AWS provider: ohfp's hooks answered with EC2 Fleet, Auto Scaling, Spot Fleet or RunInstances.

:func:`make_provider` is the ``ohfp.providers`` entry point ``aws``. Importing this module
imports no boto3 or botocore: clients are made on first use (:mod:`ohfp_aws.session`) and handler
modules when a template needs them (:mod:`ohfp_aws.handlers`).

The provider picks one handler per template (``providerApi``, else the first enabled API in
``aws.handlers.order`` that can serve it), stores ``{"api": …}`` in the request handle, and
answers status for many requests with one handler ``inspect`` per API and one batched
DescribeInstances for every instance involved.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import attrs

from ohfp_aws.config import AwsConfig, load_config
from ohfp_aws.errors import aws_call
from ohfp_aws.handlers import HANDLERS, handler_class
from ohfp_aws.handlers.base import (
    TAG_INSTANCE,
    TAG_REQUEST,
    TAG_TEMPLATE,
    AwsTemplate,
    FleetState,
    Handler,
)
from ohfp_aws.session import AwsClients
from ohfp_aws.templates import parse_template, validate_template
from ohfp_core import hookimpl
from ohfp_core.errors import CloudError, ConfigError, OhfpError
from ohfp_core.logs import get_logger
from ohfp_core.models import (
    Attribute,
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    MachineState,
    Problem,
    ProviderContext,
    Provisioned,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    ReturnItem,
    Template,
)

log = get_logger("ohfp.aws")

SPOT_NOTICE_SEC = 120
SPOT_INTERRUPTION_CODES = frozenset({"marked-for-termination", "marked-for-stop", "marked-for-hibernation"})
SPOT_TERMINATION_REASON = "Server.SpotInstanceTermination"
FILTER_VALUES_MAX = 200
ARCHITECTURES = {"x86_64": "X86_64", "arm64": "ARM64", "i386": "X86", "x86_64_mac": "X86_64"}

# Resolved SSM image parameters, per process: (region, endpoint, path) → AMI id.
_IMAGE_CACHE: dict[tuple[str | None, str | None, str], str] = {}


def make_provider(ctx: ProviderContext) -> AwsProvider:
    """The ``ohfp.providers`` entry point. :raises ConfigError: for an invalid config."""
    return AwsProvider(ctx)


def _describe_filter(name: str, values: Sequence[str]) -> list[dict[str, Any]]:
    return [{"Name": name, "Values": list(values)}]


def _weighted(machine: Machine, weights: Mapping[str, Any]) -> Machine:
    """A fleet's machine counts the template's weight for its instance type."""
    weight = weights.get(machine.instance_type or "")
    if isinstance(weight, int) and weight > 1 and machine.weight == 1:
        return attrs.evolve(machine, weight=weight)
    return machine


class AwsProvider:
    """One HF provider instance on AWS; implements :class:`AwsContext` and the ohfp hooks."""

    OWN_ACTIONS: ClassVar[tuple[str, ...]] = (
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "ec2:CreateTags",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeSpotInstanceRequests",
        "ec2:DescribeAvailabilityZones",
        "ssm:GetParameter",
        "sts:GetCallerIdentity",
    )

    def __init__(self, ctx: ProviderContext, clients: AwsClients | None = None) -> None:
        self.context = ctx
        self.config: AwsConfig = load_config(ctx.config, ctx.settings)
        self.clients = clients or AwsClients(self.config)
        self.instance_name = ctx.instance
        self._handlers: dict[str, Handler] = {}
        self.clock: Callable[[], float] = time.time  # seconds since the epoch; tests replace it
        self.sleep: Callable[[float], None] = time.sleep

    # AwsContext ---------------------------------------------------------------------------
    def resolve_image(self, image_id: str) -> str:
        """``image_id`` itself, or the AMI id an SSM parameter path (``/…``) holds."""
        path = image_id.removeprefix("resolve:ssm:")
        if not path.startswith("/"):
            return image_id
        key = (self.config.region, self.config.endpoint_url, path)
        if key not in _IMAGE_CACHE:
            with aws_call("GetParameter"):
                value = self.clients.ssm.get_parameter(Name=path)["Parameter"]["Value"]
            _IMAGE_CACHE[key] = str(value)
        return _IMAGE_CACHE[key]

    def tags_for(self, request_id: str, template: AwsTemplate) -> dict[str, str]:
        """The template's ``instanceTags`` plus ohfp's own tags (which win on a clash)."""
        return {
            **template.instance_tags,
            TAG_REQUEST: request_id,
            TAG_TEMPLATE: template.template_id,
            TAG_INSTANCE: self.instance_name,
        }

    def terminate_instances(self, instance_ids: Sequence[str]) -> dict[str, str]:
        from ohfp_aws.instances import terminate

        return terminate(self.clients.ec2, instance_ids)

    # handlers -----------------------------------------------------------------------------
    def handler(self, api: str) -> Handler:
        """The handler for ``api``, built once. :raises KeyError: for an unknown API."""
        if api not in self._handlers:
            self._handlers[api] = handler_class(api)(self)
        return self._handlers[api]

    def choose_handler(self, template: AwsTemplate) -> Handler:
        """``providerApi`` when set, else the first enabled API in order that can serve it.

        :raises ConfigError: naming why no handler fits.
        """
        settings = self.config.handlers
        if template.provider_api:
            api = template.provider_api
            if api not in settings.enabled:
                raise ConfigError(
                    f"template {template.template_id}: providerApi {api} is disabled "
                    f"(aws.handlers.{api}.enabled in ohfp.json)"
                )
            handler = self.handler(api)
            reason = handler.unsupported(template)
            if reason:
                raise ConfigError(
                    f"template {template.template_id}: providerApi {api} cannot serve it: {reason}"
                )
            return handler
        reasons: list[str] = []
        for api in settings.order:
            if api not in settings.enabled:
                continue
            try:
                handler = self.handler(api)
            except ImportError as exc:
                reasons.append(f"{api}: not available ({exc})")
                continue
            reason = handler.unsupported(template)
            if reason is None:
                return handler
            reasons.append(f"{api}: {reason}")
        raise ConfigError(
            f"template {template.template_id}: no enabled AWS API can serve it",
            reasons or ["every API is disabled in aws.handlers"],
        )

    # provider hooks -----------------------------------------------------------------------
    @hookimpl
    def ohfp_available_templates(self, templates: Sequence[Template]) -> Sequence[Template]:
        """Fill missing ``ncpus``/``nram``/``type`` from the instance type (one batched call)."""
        wanted: dict[int, str] = {}
        for index, template in enumerate(templates):
            if all(name in template.attributes for name in ("type", "ncpus", "nram")):
                continue
            vm_type = template.fields.get("vmType")
            vm_types = template.fields.get("vmTypes")
            if not isinstance(vm_type, str) and isinstance(vm_types, Mapping) and vm_types:
                vm_type = next(iter(vm_types))
            if isinstance(vm_type, str):
                wanted[index] = vm_type
        if not wanted:
            return templates
        try:
            info = self._instance_types(sorted(set(wanted.values())))
        except OhfpError as exc:
            log.warning("cannot describe instance types; templates keep their attributes", error=str(exc))
            return templates
        result = list(templates)
        for index, vm_type in wanted.items():
            details = info.get(vm_type)
            if details is None:
                log.warning(
                    "unknown instance type", vm_type=vm_type, template_id=templates[index].template_id
                )
                continue
            attributes = {**details, **templates[index].attributes}
            result[index] = attrs.evolve(templates[index], attributes=attributes)
        return result

    def _instance_types(self, names: Sequence[str]) -> dict[str, dict[str, Attribute]]:
        found: dict[str, dict[str, Attribute]] = {}
        with aws_call("DescribeInstanceTypes"):
            pages = self.clients.ec2.get_paginator("describe_instance_types").paginate(
                InstanceTypes=list(names)
            )
            for page in pages:
                for item in page.get("InstanceTypes", []):
                    attributes = {
                        "ncpus": Attribute("Numeric", str(item["VCpuInfo"]["DefaultVCpus"])),
                        "nram": Attribute("Numeric", str(item["MemoryInfo"]["SizeInMiB"])),
                    }
                    arches = item.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
                    if arches:
                        arch = ARCHITECTURES.get(arches[0], str(arches[0]).upper())
                        attributes["type"] = Attribute("String", arch)
                    found[item["InstanceType"]] = attributes
        return found

    @hookimpl
    def ohfp_validate_template(self, template: Template) -> Sequence[Problem]:
        """The template's fields, then whether an enabled AWS API can serve it (offline)."""
        problems = list(validate_template(template, self.context.confdir))
        if problems:
            return problems
        try:
            self.choose_handler(parse_template(template, self.context.confdir))
        except ConfigError as exc:
            field = "providerApi" if template.fields.get("providerApi") else "(handler)"
            problems.append(Problem(field, str(exc)))
        return problems

    @hookimpl
    def ohfp_provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        aws_template = parse_template(template, self.context.confdir)
        handler = self.choose_handler(aws_template)
        log.info("provisioning", count=count, template_id=template.template_id, api=handler.api)
        with aws_call(handler.api):
            return handler.provision(request_id, aws_template, count)

    @hookimpl
    def ohfp_machine_status(self, requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot]:
        states: dict[str, FleetState] = {}
        messages: dict[str, str] = {}
        by_api: dict[str, list[CloudRequest]] = defaultdict(list)
        for request in requests:
            if request.kind is RequestKind.ACQUIRE and not request.handle:
                continue  # a provisioning call that died: found by tag below
            if request.kind is RequestKind.ACQUIRE:
                by_api[str(request.handle.get("api", ""))].append(request)
        states.update(
            self._find_by_request_tag([r for r in requests if r.kind is RequestKind.ACQUIRE and not r.handle])
        )
        for api, group in by_api.items():
            if api not in HANDLERS:
                for request in group:
                    states[request.request_id] = FleetState(instance_ids=request.machine_ids)
                    messages[request.request_id] = f"the request's handle names no known AWS API ({api!r})"
                continue
            try:
                with aws_call(api):
                    states.update(self.handler(api).inspect(group))
            except CloudError as exc:
                # Keep reporting the machines already known; the next poll asks again.
                log.warning("inspect failed", api=api, requests=len(group), error=str(exc))
                for request in group:
                    states[request.request_id] = FleetState(instance_ids=request.machine_ids, open=True)
                    messages[request.request_id] = str(exc)

        wanted: dict[str, list[str]] = {}
        for request in requests:
            if request.kind is RequestKind.ACQUIRE:
                state = states.get(request.request_id, FleetState())
                wanted[request.request_id] = list(dict.fromkeys([*state.instance_ids, *request.machine_ids]))
            else:
                wanted[request.request_id] = list(request.machine_ids)
        machines = self._describe_for_status(requests, wanted)
        machines = self._end_stuck_pending(requests, wanted, machines)

        snapshots: dict[str, RequestSnapshot] = {}
        for request in requests:
            found = tuple(machines[i] for i in wanted[request.request_id] if i in machines)
            if request.kind is RequestKind.RETURN:
                snapshots[request.request_id] = RequestSnapshot(machines=found)
                continue
            state = states.get(request.request_id, FleetState())
            message = "; ".join(filter(None, [messages.get(request.request_id, ""), *state.errors]))
            weights = (state.handle or request.handle).get("weights") or {}
            snapshots[request.request_id] = RequestSnapshot(
                machines=tuple(_weighted(m, weights) for m in found),
                open=state.open,
                message=message,
                handle=state.handle,
            )
        return snapshots

    def _find_by_request_tag(self, requests: Sequence[CloudRequest]) -> dict[str, FleetState]:
        """Instances of requests with no handle (their provisioning call died), by the
        ``ohfp:request-id`` tag every instance carries: one describe per 200 requests."""
        from ohfp_aws.instances import chunks, describe_instances

        found: dict[str, list[str]] = {r.request_id: [] for r in requests}
        for chunk in chunks(list(found), FILTER_VALUES_MAX):
            filters = [
                *_describe_filter(f"tag:{TAG_REQUEST}", chunk),
                *_describe_filter(f"tag:{TAG_INSTANCE}", [self.instance_name]),
            ]
            for instance in describe_instances(self.clients.ec2, filters=filters):
                tags = {t.get("Key"): t.get("Value") for t in instance.get("Tags", [])}
                request_id = tags.get(TAG_REQUEST)
                if request_id in found and instance.get("State", {}).get("Name") != "terminated":
                    found[request_id].append(instance["InstanceId"])
        return {rid: FleetState(instance_ids=tuple(ids)) for rid, ids in found.items()}

    def _describe_for_status(
        self, requests: Sequence[CloudRequest], wanted: Mapping[str, Sequence[str]]
    ) -> dict[str, Machine]:
        """One batched describe; ids of young acquire requests AWS does not show yet are
        described again (``AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS``) and then reported pending."""
        from ohfp_aws.instances import describe_machines

        all_ids = list(dict.fromkeys(i for ids in wanted.values() for i in ids))
        if not all_ids:
            return {}
        ec2 = self.clients.ec2
        machines = describe_machines(ec2, all_ids)
        now = self.clock()
        young = {
            i
            for request in requests
            if request.kind is RequestKind.ACQUIRE
            and now - request.created_at < self.config.instance_pending_timeout_sec
            for i in wanted[request.request_id]
        }
        missing = [i for i in all_ids if i not in machines and i in young]
        if missing and self.config.describe_request_retry_attempts:
            self.sleep(self.config.describe_request_interval_ms / 1000)
            machines.update(
                describe_machines(
                    ec2,
                    missing,
                    retries=self.config.describe_request_retry_attempts - 1,
                    interval_sec=self.config.describe_request_interval_ms / 1000,
                    sleep=self.sleep,
                )
            )
        for instance_id in missing:
            if instance_id not in machines:
                machines[instance_id] = Machine(
                    machine_id=instance_id,
                    name=instance_id,
                    state=MachineState.PENDING,
                    message="launched; not yet visible to DescribeInstances",
                )
        return machines

    def _end_stuck_pending(
        self,
        requests: Sequence[CloudRequest],
        wanted: Mapping[str, Sequence[str]],
        machines: dict[str, Machine],
    ) -> dict[str, Machine]:
        """Terminate acquire machines pending past ``AWS_INSTANCE_PENDING_TIMEOUT_SEC``."""
        limit = self.config.instance_pending_timeout_sec
        now = self.clock()
        acquire_ids = {
            i
            for request in requests
            if request.kind is RequestKind.ACQUIRE
            for i in wanted[request.request_id]
        }
        stuck = [
            m.machine_id
            for m in machines.values()
            if m.machine_id in acquire_ids
            and m.state is MachineState.PENDING
            and m.launch_time
            and now - m.launch_time > limit
        ]
        if not stuck:
            return machines
        log.warning(
            "terminating instances stuck pending", count=len(stuck), limit_sec=limit, instance_ids=stuck
        )
        errors = self.terminate_instances(stuck)
        for instance_id in stuck:
            if instance_id in errors:
                continue
            machines[instance_id] = attrs.evolve(
                machines[instance_id],
                state=MachineState.TERMINATED,
                message=f"pending for more than {limit} s (AWS_INSTANCE_PENDING_TIMEOUT_SEC); terminated",
            )
        return machines

    @hookimpl
    def ohfp_terminate_machines(self, machines: Sequence[ReturnItem]) -> Mapping[str, str]:
        by_api: dict[str, list[ReturnItem]] = defaultdict(list)
        direct: list[str] = []
        names: list[str] = []
        for item in machines:
            api = item.request.handle.get("api") if item.request is not None else None
            if not item.machine_id:
                names.append(item.name)
            elif isinstance(api, str) and api in HANDLERS:
                by_api[api].append(item)
            else:
                direct.append(item.machine_id)
        errors: dict[str, str] = {}
        for api, items in by_api.items():
            try:
                with aws_call(api):
                    errors.update(self.handler(api).release(items))
            except CloudError as exc:
                errors.update({item.machine_id: str(exc) for item in items})
        if direct:
            try:
                errors.update(self.terminate_instances(direct))
            except CloudError as exc:
                errors.update(dict.fromkeys(direct, str(exc)))
        if names:
            try:
                errors.update(self._terminate_by_name(names))
            except CloudError as exc:
                errors.update(dict.fromkeys(names, str(exc)))
        return errors

    @hookimpl
    def ohfp_cancel_request(self, request: CloudRequest) -> bool:
        """Remove what ohfp made for an acquire request whose provisioning call died, found
        by the request id alone: each enabled API's fleets or group (:meth:`Handler.cancel`),
        then the instances still tagged with the id, then the launch template
        ``ohfp-<request id>``. APIs that are disabled are not asked (the IAM policy may not
        allow their calls).

        :raises CloudError: when AWS refused; core asks again later.
        """
        from ohfp_aws.launch_templates import delete_by_request_id

        request_id = request.request_id
        enabled = self.config.handlers.enabled
        templates = False
        for api in HANDLERS:
            if api not in enabled:
                continue
            try:
                handler = self.handler(api)
            except ImportError:
                continue
            with aws_call(api):
                handler.cancel(request_id)
            templates = templates or "ec2:DeleteLaunchTemplate" in handler.actions
        left = self._find_by_request_tag([request])[request_id].instance_ids
        errors = self.terminate_instances(left)
        if errors:
            raise CloudError(
                f"TerminateInstances: {len(errors)} of {len(left)} instances: {next(iter(errors.values()))}"
            )
        if templates:
            delete_by_request_id(self, request_id)
        log.info("cancelled request", request_id=request_id, instances=len(left))
        return True

    def _instances_by_name(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Instances by private DNS name (the host name HF knows), 200 names a call. A name
        may have been reused by a newer instance: one that is not terminated wins."""
        from ohfp_aws.instances import chunks, describe_instances

        by_name: dict[str, dict[str, Any]] = {}
        for chunk in chunks(list(dict.fromkeys(names)), FILTER_VALUES_MAX):
            filters = _describe_filter("private-dns-name", chunk)
            for described in describe_instances(self.clients.ec2, filters=filters):
                name = described.get("PrivateDnsName")
                if name and (name not in by_name or by_name[name]["State"]["Name"] == "terminated"):
                    by_name[name] = described
        return by_name

    def _terminate_by_name(self, names: Sequence[str]) -> dict[str, str]:
        """Terminate hosts HF named without an id; an error per name. A name EC2 does not
        know, or whose instance is already terminated, is gone: not an error."""
        found = {
            name: instance["InstanceId"]
            for name, instance in self._instances_by_name(names).items()
            if instance["State"]["Name"] != "terminated"
        }
        failures = self.terminate_instances(list(found.values()))
        return {name: failures[instance_id] for name, instance_id in found.items() if instance_id in failures}

    @hookimpl
    def ohfp_reclaimed_machines(self, machines: Sequence[MachineRef]) -> Sequence[Reclaim]:
        from ohfp_aws.instances import describe_instances

        ec2 = self.clients.ec2
        ids = [ref.machine_id for ref in machines if ref.machine_id]
        instances = describe_instances(ec2, ids)
        by_name = self._instances_by_name([ref.name for ref in machines if not ref.machine_id])
        instances += list(by_name.values())
        by_id = {i["InstanceId"]: i for i in instances}
        notices = self._spot_notices(
            [
                i
                for i in instances
                if i.get("InstanceLifecycle") == "spot" and i["State"]["Name"] in ("pending", "running")
            ]
        )
        reclaims: list[Reclaim] = []
        for ref in machines:
            instance = by_id.get(ref.machine_id) if ref.machine_id else by_name.get(ref.name)
            if instance is None:
                reclaims.append(
                    Reclaim(name=ref.name, grace_period=0, machine_id=ref.machine_id, reason="unknown to EC2")
                )
                continue
            instance_id = instance["InstanceId"]
            state = instance["State"]["Name"]
            reason = instance.get("StateReason") or {}
            if reason.get("Code") == SPOT_TERMINATION_REASON:
                reclaims.append(
                    Reclaim(
                        name=ref.name,
                        grace_period=0,
                        machine_id=instance_id,
                        reason=f"spot interruption: {state}",
                    )
                )
            elif state in ("stopping", "stopped", "shutting-down", "terminated"):
                detail = reason.get("Message") or reason.get("Code") or ""
                reclaims.append(
                    Reclaim(
                        name=ref.name,
                        grace_period=0,
                        machine_id=instance_id,
                        reason=f"{state}: {detail}".rstrip(": "),
                    )
                )
            elif instance_id in notices:
                reclaims.append(
                    Reclaim(
                        name=ref.name,
                        grace_period=notices[instance_id],
                        machine_id=instance_id,
                        reason="spot interruption notice",
                    )
                )
        return reclaims

    def _spot_notices(self, instances: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Seconds of notice left per spot instance AWS has marked for interruption."""
        request_ids = {
            i["SpotInstanceRequestId"]: i["InstanceId"] for i in instances if i.get("SpotInstanceRequestId")
        }
        if not request_ids:
            return {}
        notices: dict[str, int] = {}
        now = self.clock()
        with aws_call("DescribeSpotInstanceRequests"):
            pages = self.clients.ec2.get_paginator("describe_spot_instance_requests").paginate(
                Filters=_describe_filter("spot-instance-request-id", list(request_ids))
            )
            for page in pages:
                for spot in page.get("SpotInstanceRequests", []):
                    status = spot.get("Status", {})
                    instance_id = request_ids.get(spot.get("SpotInstanceRequestId", ""))
                    if instance_id is None or status.get("Code") not in SPOT_INTERRUPTION_CODES:
                        continue
                    updated = status.get("UpdateTime")
                    elapsed = now - updated.timestamp() if isinstance(updated, datetime) else 0
                    notices[instance_id] = int(min(SPOT_NOTICE_SEC, max(0, SPOT_NOTICE_SEC - elapsed)))
        return notices

    @hookimpl
    def ohfp_health_check(self) -> Sequence[HealthCheck]:
        checks = [
            HealthCheck(
                name="aws.config",
                ok=True,
                detail=f"region {self.config.region}; APIs in order: "
                + ", ".join(a for a in self.config.handlers.order if a in self.config.handlers.enabled),
            )
        ]

        def probe(name: str, operation: str, call: Any) -> None:
            try:
                with aws_call(operation):
                    detail = call()
                checks.append(HealthCheck(name=name, ok=True, detail=detail))
            except Exception as exc:  # a health check reports, it never raises
                checks.append(HealthCheck(name=name, ok=False, detail=str(exc)))

        probe(
            "aws.credentials",
            "GetCallerIdentity",
            lambda: f"account {self.clients.sts.get_caller_identity()['Account']}",
        )
        probe(
            "aws.ec2",
            "DescribeAvailabilityZones",
            lambda: (
                f"{len(self.clients.ec2.describe_availability_zones()['AvailabilityZones'])} zones "
                f"in {self.config.region}"
            ),
        )
        if "ASG" in self.config.handlers.enabled:
            probe(
                "aws.autoscaling",
                "DescribeAutoScalingGroups",
                lambda: (self.clients.autoscaling.describe_auto_scaling_groups(MaxRecords=1), "reachable")[1],
            )
        for api in self.config.handlers.order:
            if api in self.config.handlers.enabled:
                try:
                    handler_class(api)
                except (ImportError, AttributeError) as exc:
                    checks.append(
                        HealthCheck(name=f"aws.handler.{api}", ok=False, detail=f"cannot load: {exc}")
                    )
        return checks

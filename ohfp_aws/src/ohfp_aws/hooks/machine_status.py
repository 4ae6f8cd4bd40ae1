"""Status of many requests in one pass (``ohfp_machine_status``).

Each API's handler says what its fleets, groups or handles hold for its acquire requests
(one describe per API); requests with no handle (their provisioning call died) are found by
their ``ohfp:request-id`` tag. Then one batched DescribeInstances covers every instance of
every request, acquire and return alike. Instances AWS does not show yet are described again
(``AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS``) and then reported pending; instances pending past
``AWS_INSTANCE_PENDING_TIMEOUT_SEC`` are terminated and reported terminated. What a poll
learns of why requests fall short goes into their handles and, for offerings short of
capacity, the provider's values (:mod:`ohfp_aws.supply.offerings`); it does not read the
interruption queue (getReturnRequests does, :mod:`ohfp_aws.interruptions.reclaims`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import attrs

from ohfp_aws.access import instances
from ohfp_aws.access.boundary import aws_call
from ohfp_aws.apis import HANDLERS, HandlerSet, handles
from ohfp_aws.context import AwsContext
from ohfp_aws.vocabulary import FleetState
from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger
from ohfp_core.models import CloudRequest, Machine, MachineState, RequestKind, RequestSnapshot

log = get_logger("ohfp.aws")


def machine_status(
    ctx: AwsContext, handlers: HandlerSet, requests: Sequence[CloudRequest]
) -> dict[str, RequestSnapshot]:
    """A snapshot per request: its machines (weighted by their instance type), whether the
    cloud may still deliver, and the cloud's messages — with, for a request falling short,
    the first offerings that did and why (the full account is ``ohfp requests show``). A
    handler that learned why keeps it in a new handle for core to store.

    :raises CloudError: when the instances cannot be described (a fleet that cannot be
        described only adds its error to the message: its known machines are still reported).
    """
    acquire = [r for r in requests if r.kind is RequestKind.ACQUIRE]
    states, messages = _fleet_states(ctx, handlers, acquire)
    wanted = {
        r.request_id: list(
            dict.fromkeys([*states.get(r.request_id, FleetState()).instance_ids, *r.machine_ids])
        )
        for r in acquire
    }
    wanted.update({r.request_id: list(r.machine_ids) for r in requests if r.kind is RequestKind.RETURN})
    machines = _describe(ctx, acquire, wanted)
    _end_stuck_pending(ctx, acquire, wanted, machines)
    snapshots: dict[str, RequestSnapshot] = {}
    for request in requests:
        found = [machines[i] for i in wanted[request.request_id] if i in machines]
        if request.kind is RequestKind.RETURN:
            snapshots[request.request_id] = RequestSnapshot(machines=tuple(found))
            continue
        state = states.get(request.request_id, FleetState())
        why = ""
        if state.errors and state.shortfalls:
            from ohfp_aws.supply.shortfalls import summary

            why = summary(state.shortfalls, request.request_id)
        message = "; ".join(filter(None, [messages.get(request.request_id, ""), *state.errors, why]))
        snapshots[request.request_id] = RequestSnapshot(
            machines=tuple(_weighted(m, state.weights) for m in found),
            open=state.open,
            message=message,
            handle=state.handle,
        )
    return snapshots


def _fleet_states(
    ctx: AwsContext, handlers: HandlerSet, requests: Sequence[CloudRequest]
) -> tuple[dict[str, FleetState], dict[str, str]]:
    """What each API says of its requests, and a message per request it could not answer for."""
    messages: dict[str, str] = {}
    lost = [r.request_id for r in requests if not r.handle]
    tagged = instances.tagged_for_requests(ctx.services.ec2, lost, ctx.instance_name) if lost else {}
    states = {request_id: FleetState(instance_ids=tuple(ids)) for request_id, ids in tagged.items()}
    by_api: dict[str, list[CloudRequest]] = defaultdict(list)
    for request in requests:
        if request.handle:
            by_api[handles.api_of(request.handle)].append(request)
    for api, group in by_api.items():
        if api not in HANDLERS:
            for request in group:
                states[request.request_id] = FleetState(instance_ids=request.machine_ids)
                messages[request.request_id] = f"the request's handle names no known AWS API ({api!r})"
            continue
        try:
            with aws_call(api):
                states.update(handlers.get(api).inspect(group))
        except CloudError as exc:
            # Keep reporting the machines already known; the next poll asks again.
            log.warning("inspect failed", api=api, requests=len(group), error=str(exc))
            for request in group:
                states[request.request_id] = FleetState(instance_ids=request.machine_ids, open=True)
                messages[request.request_id] = str(exc)
    return states, messages


def _describe(
    ctx: AwsContext, acquire: Sequence[CloudRequest], wanted: Mapping[str, Sequence[str]]
) -> dict[str, Machine]:
    """One batched describe; ids of young acquire requests AWS does not show yet are
    described again (``AWS_DESCRIBE_REQUEST_RETRY_ATTEMPTS``) and then reported pending."""
    all_ids = list(dict.fromkeys(i for ids in wanted.values() for i in ids))
    if not all_ids:
        return {}
    config = ctx.config
    machines = instances.describe_machines(ctx.services.ec2, all_ids)
    now = ctx.clock()
    young = {
        i
        for request in acquire
        if now - request.created_at < config.instance_pending_timeout_sec
        for i in wanted[request.request_id]
    }
    missing = [i for i in all_ids if i not in machines and i in young]
    if missing and config.describe_request_retry_attempts:
        interval = config.describe_request_interval_ms / 1000
        ctx.sleep(interval)
        machines.update(
            instances.describe_machines(
                ctx.services.ec2,
                missing,
                retries=config.describe_request_retry_attempts - 1,
                interval_sec=interval,
                sleep=ctx.sleep,
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
    ctx: AwsContext,
    acquire: Sequence[CloudRequest],
    wanted: Mapping[str, Sequence[str]],
    machines: dict[str, Machine],
) -> None:
    """Terminate acquire machines pending past ``AWS_INSTANCE_PENDING_TIMEOUT_SEC`` and
    report them terminated (in ``machines``)."""
    limit = ctx.config.instance_pending_timeout_sec
    now = ctx.clock()
    acquire_ids = {i for request in acquire for i in wanted[request.request_id]}
    stuck = [
        m.machine_id
        for m in machines.values()
        if m.machine_id in acquire_ids
        and m.state is MachineState.PENDING
        and m.launch_time
        and now - m.launch_time > limit
    ]
    if not stuck:
        return
    log.warning("terminating instances stuck pending", count=len(stuck), limit_sec=limit, instance_ids=stuck)
    errors = ctx.terminate_instances(stuck)
    for instance_id in stuck:
        if instance_id not in errors:
            machines[instance_id] = attrs.evolve(
                machines[instance_id],
                state=MachineState.TERMINATED,
                message=f"pending for more than {limit} s (AWS_INSTANCE_PENDING_TIMEOUT_SEC); terminated",
            )


def _weighted(machine: Machine, weights: Mapping[str, int]) -> Machine:
    """A fleet's machine counts the template's weight for its instance type."""
    weight = weights.get(machine.instance_type or "")
    if isinstance(weight, int) and weight > 1 and machine.weight == 1:
        return attrs.evolve(machine, weight=weight)
    return machine

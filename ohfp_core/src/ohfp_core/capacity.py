"""maxNumber and availableNumber: how many units each template holds and can still give.

A template holds every machine that may still run for it, from the moment it is requested
until the cloud confirms it gone:

- the machines Host Factory holds (:func:`ohfp_core.storage_rules.is_held`);
- the capacity still due from its running acquire requests (a request counts at least the
  units it asked for until it ends);
- the machines of unfinished returns that the cloud has not shown terminated yet, a return
  whose call died included (:mod:`ohfp_core.reconcile` finishes it): a machine handed back
  is free only once it is gone, so a template is never filled while its old machines may
  still run.

Read inside the store transaction that records a new request, so two calls racing for the
last units cannot both get them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from ohfp_core.models import MachineResult, MachineState, RequestKind, Template
from ohfp_core.storage import MachineRecord, Storage
from ohfp_core.storage_rules import is_held


def in_use(store: Storage, template_ids: Iterable[str]) -> dict[str, int]:
    """Units each template holds (see the module docstring)."""
    wanted = set(template_ids)
    used = dict.fromkeys(wanted, 0)
    if not wanted:
        return used
    open_acquires = [r for r in store.open_requests(RequestKind.ACQUIRE) if r.template_id in wanted]
    open_ids = {r.request_id for r in open_acquires}
    returns = store.open_requests(RequestKind.RETURN)
    returning = {r.request_id for r in returns}

    def leaving(machine: MachineRecord) -> bool:
        """Handed back by an unfinished return, and not yet shown gone by the cloud."""
        return (
            machine.return_request_id in returning
            and machine.result is not MachineResult.FAIL
            and machine.machine.state is not MachineState.TERMINATED
        )

    def counts(machine: MachineRecord) -> bool:
        return is_held(machine) or leaving(machine)

    for template_id in wanted:
        used[template_id] += sum(
            m.machine.weight for m in store.held_machines(template_id) if m.request_id not in open_ids
        )
    if returns:
        for m in store.find_machines([machine_id for r in returns for machine_id in r.machine_ids]):
            if m.template_id in wanted and m.request_id not in open_ids and leaving(m):
                used[str(m.template_id)] += m.machine.weight
    machines = store.machines_of([r.request_id for r in open_acquires])
    for request in open_acquires:
        units = sum(m.machine.weight for m in machines.get(request.request_id, []) if counts(m))
        used[str(request.template_id)] += max(request.machine_count, units)
    return used


def limited(template: Template) -> bool:
    """True when the template has a bound: a ``maxNumber``, or an ``availableNumber`` the
    file or the provider set (a quota can bound an unlimited template)."""
    return not template.unlimited or template.available_number is not None


def free(template: Template, used: int) -> int:
    """Units a limited template can still provide: maxNumber less what is in use, capped by
    an ``availableNumber`` the file or the provider set (what can be had now, counted by
    whoever set it: not lowered by ``used`` again). Never negative."""
    bounds = [] if template.unlimited else [template.max_number - used]
    if template.available_number is not None:
        bounds.append(template.available_number)
    return max(0, min(bounds))


def with_availability(store: Storage, templates: Sequence[Template]) -> list[Template]:
    """``templates`` with ``availableNumber`` set on every limited one (see :func:`limited`;
    unlimited ones as they are)."""
    used = in_use(store, (t.template_id for t in templates if limited(t)))
    return [
        attrs.evolve(t, available_number=free(t, used[t.template_id])) if limited(t) else t for t in templates
    ]

"""maxNumber and availableNumber: how many units each template holds and can still give.

A template holds the machines Host Factory holds from it plus the capacity still due from
its running acquire requests (a request counts at least the units it asked for until it
ends). Read inside the store transaction that records a new request, so two calls racing
for the last units cannot both get them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from ohfp_core.models import MachineResult, RequestKind, Template
from ohfp_core.storage import Storage


def in_use(store: Storage, template_ids: Iterable[str]) -> dict[str, int]:
    """Units each template holds: machines Host Factory holds plus capacity still due."""
    wanted = set(template_ids)
    used = dict.fromkeys(wanted, 0)
    if not wanted:
        return used
    open_acquires = [r for r in store.open_requests(RequestKind.ACQUIRE) if r.template_id in wanted]
    open_ids = {r.request_id for r in open_acquires}
    for template_id in wanted:
        used[template_id] += sum(
            m.machine.weight for m in store.held_machines(template_id) if m.request_id not in open_ids
        )
    machines = store.machines_of([r.request_id for r in open_acquires])
    for request in open_acquires:
        units = sum(
            m.machine.weight
            for m in machines.get(request.request_id, [])
            if m.result is not MachineResult.FAIL and m.return_request_id is None
        )
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

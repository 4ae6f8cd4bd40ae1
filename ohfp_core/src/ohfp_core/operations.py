"""The five Host Factory calls, owned by core so every provider behaves the same.

Each method takes HF's parsed input document and returns the reply document. Invalid input
raises :class:`InputError` before anything is recorded or sent to the cloud. A cloud refusal
becomes an IBM-style ``"… failed."`` reply. State is written before the cloud is called, so a
crash at any point leaves records the next call reconciles.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ohfp_core import converter, status
from ohfp_core.config import load_templates
from ohfp_core.errors import CloudError, ConfigError, InputError
from ohfp_core.logs import get_logger
from ohfp_core.models import (
    MANDATORY_ATTRIBUTES,
    CloudRequest,
    Machine,
    MachineRef,
    MachineResult,
    MachineState,
    Problem,
    ProviderContext,
    Reclaim,
    RequestKind,
    RequestSnapshot,
    RequestStatus,
    ReturnItem,
    Template,
)
from ohfp_core.plugins import Hooks
from ohfp_core.storage import MachineRecord, RequestRecord, Storage

log = get_logger("ohfp.operations")


def new_request_id(kind: RequestKind) -> str:
    return f"{'req' if kind is RequestKind.ACQUIRE else 'ret'}-{uuid.uuid4()}"


def now() -> int:
    return int(time.time())


def _cloud_request(record: RequestRecord, machine_ids: Sequence[str] | None = None) -> CloudRequest:
    return CloudRequest(
        request_id=record.request_id,
        kind=record.kind,
        template_id=record.template_id,
        machine_count=record.machine_count,
        handle=dict(record.handle or {}),
        machine_ids=tuple(record.machine_ids if machine_ids is None else machine_ids),
        created_at=record.created_at,
    )


def template_problems(template: Template, hooks: Hooks) -> list[Problem]:
    """Core's rules plus every plugin's ``ohfp_validate_template``."""
    problems = [
        Problem(f"attributes.{name}", "mandatory attribute missing")
        for name in MANDATORY_ATTRIBUTES
        if name not in template.attributes
    ]
    for name in ("ncpus", "nram"):
        attribute = template.attributes.get(name)
        if attribute is not None and not _is_number(attribute.value):
            problems.append(Problem(f"attributes.{name}", f"must be a number, got {attribute.value!r}"))
    problems.extend(hooks.validate_template(template))
    return problems


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Operations:
    """The HF calls for one provider instance."""

    def __init__(self, hooks: Hooks, store: Storage, context: ProviderContext) -> None:
        self.hooks = hooks
        self.store = store
        self.context = context

    # ---------------------------------------------------------------- templates
    def templates(self) -> list[Template]:
        """Templates offered: the file's, as the provider adjusts them (not yet validated)."""
        return self.hooks.available_templates(load_templates(self.context))

    def validate_templates(self) -> dict[str, list[str]]:
        """Problems per template id (``$.templates[id].field: message``); empty when all good."""
        report: dict[str, list[str]] = {}
        for template in self.templates():
            problems = template_problems(template, self.hooks)
            report[template.template_id] = [
                f"$.templates[{template.template_id}].{p.path}: {p.message}" for p in problems
            ]
        return report

    def _valid_templates(self) -> list[Template]:
        templates = self.templates()
        problems = [
            f"$.templates[{t.template_id}].{p.path}: {p.message}"
            for t in templates
            for p in template_problems(t, self.hooks)
        ]
        if problems:
            raise ConfigError("invalid templates (run 'ohfp templates validate')", problems)
        return templates

    def _in_use(self, template_ids: Iterable[str]) -> dict[str, int]:
        """Units each template holds: machines HF holds plus capacity still due."""
        wanted = set(template_ids)
        used = dict.fromkeys(wanted, 0)
        open_acquires = [r for r in self.store.open_requests(RequestKind.ACQUIRE) if r.template_id in wanted]
        open_ids = {r.request_id for r in open_acquires}
        for template_id in wanted:
            used[template_id] += sum(
                m.machine.weight
                for m in self.store.held_machines(template_id)
                if m.request_id not in open_ids
            )
        machines = self.store.machines_of([r.request_id for r in open_acquires])
        for request in open_acquires:
            units = sum(
                m.machine.weight
                for m in machines.get(request.request_id, [])
                if m.result is not MachineResult.FAIL and m.return_request_id is None
            )
            used[str(request.template_id)] += max(request.machine_count, units)
        return used

    def _with_availability(self, templates: Sequence[Template]) -> list[Template]:
        limited = [t for t in templates if not t.unlimited]
        used = self._in_use(t.template_id for t in limited)
        result = []
        for template in templates:
            if template.unlimited:
                result.append(template)
                continue
            result.append(
                attrs.evolve(template, available_number=_free(template, used[template.template_id]))
            )
        return result

    def get_available_templates(self, data: Any) -> dict[str, Any]:
        templates = self._with_availability(self._valid_templates())
        return {
            "message": "Get available templates success.",
            "templates": [converter.template_json(t) for t in templates],
        }

    # ---------------------------------------------------------------- acquire
    def request_machines(self, data: Any) -> dict[str, Any]:
        template_id, count = converter.parse_request_machines(data)
        templates = {t.template_id: t for t in self.templates()}
        template = templates.get(template_id)
        if template is None:
            known = ", ".join(sorted(templates)) or "none"
            raise InputError(
                "invalid requestMachines input",
                [f"$.template.templateId: unknown template {template_id!r} (known: {known})"],
            )
        problems = template_problems(template, self.hooks)
        if problems:
            raise ConfigError(
                f"template {template_id!r} is invalid",
                [f"$.templates[{template_id}].{p.path}: {p.message}" for p in problems],
            )
        request_id = new_request_id(RequestKind.ACQUIRE)
        stamp = now()
        record = RequestRecord(
            request_id=request_id,
            kind=RequestKind.ACQUIRE,
            template_id=template_id,
            machine_count=count,
            created_at=stamp,
            updated_at=stamp,
        )
        with self.store.transaction():
            if not template.unlimited:
                used = self._in_use([template_id])[template_id]
                free = _free(template, used)
                if count > free:
                    raise InputError(
                        "invalid requestMachines input",
                        [
                            f"$.template.machineCount: {count} exceeds the {free} machines available from "
                            f"template {template_id!r} (maxNumber {template.max_number}, {used} in use)"
                        ],
                    )
            self.store.put_request(record)
        log.info("request recorded", request_id=request_id, template_id=template_id, count=count)
        try:
            provisioned = self.hooks.provision(request_id, template, count)
        except CloudError as exc:
            self._finish(record, RequestStatus.COMPLETE_WITH_ERROR, exc.message, handle={})
            log.warning("provision refused", request_id=request_id, error=exc.message, code=exc.code)
            return {"message": f"Request VM from {self.context.provider_type} failed: {exc.message}"}
        except ConfigError as exc:
            # Raised before the cloud is touched (hookspec): the request holds nothing.
            self._finish(record, RequestStatus.COMPLETE_WITH_ERROR, str(exc), handle={})
            raise
        record.handle = dict(provisioned.handle)
        record.updated_at = now()
        with self.store.transaction():
            self.store.put_request(record)
            ready = self._merge_machines(
                record, [(m, status.acquire_result(m)) for m in provisioned.machines]
            )
        self.hooks.request_submitted(_cloud_request(record))
        self.hooks.machines_ready(_cloud_request(record), [m.machine for m in ready])
        log.info("request submitted", request_id=request_id, machines=len(provisioned.machines))
        message = provisioned.message or f"Request VM success from {self.context.provider_type}."
        return {"requestId": request_id, "message": message}

    def _finish(
        self,
        record: RequestRecord,
        state: RequestStatus,
        message: str,
        handle: Mapping[str, Any] | None = None,
    ) -> None:
        record.status = state
        record.message = message
        if handle is not None:
            record.handle = dict(handle)
        record.updated_at = now()
        self.store.put_request(record)

    def _merge_machines(
        self, record: RequestRecord, seen: Sequence[tuple[Machine, MachineResult]]
    ) -> list[MachineRecord]:
        """Store what the cloud said about an acquire request's machines, keeping what
        other calls decided (return and reclaim marks). Call inside a transaction.
        Returns the records whose result became ``succeed`` just now."""
        if not seen:
            return []
        existing = {m.machine_id: m for m in self.store.find_machines([m.machine_id for m, _ in seen])}
        stamp = now()
        newly_ready: list[MachineRecord] = []
        updated: list[MachineRecord] = []
        for machine, result in seen:
            old = existing.get(machine.machine_id)
            new = MachineRecord(
                machine=machine,
                request_id=record.request_id,
                template_id=record.template_id,
                result=result,
                return_request_id=old.return_request_id if old else None,
                reclaimed_at=old.reclaimed_at if old else None,
                updated_at=stamp,
            )
            if result is MachineResult.SUCCEED and (old is None or old.result is not MachineResult.SUCCEED):
                newly_ready.append(new)
            updated.append(new)
        self.store.put_machines(updated)
        return newly_ready

    # ---------------------------------------------------------------- return
    def request_return_machines(self, data: Any) -> dict[str, Any]:
        asked = converter.parse_machines(data, "requestReturnMachines", required=True)
        request_id = new_request_id(RequestKind.RETURN)
        stamp = now()
        records, unknown_ids, names_only = self._match_returned(asked, request_id)
        machine_ids = list(dict.fromkeys([r.machine_id for r in (*records, *unknown_ids)]))
        active = self._active(request_id, machine_ids, [*records, *unknown_ids])
        items = [
            *self._return_items(records),
            *(ReturnItem(machine_id=r.machine_id, name=r.name) for r in unknown_ids),
            *(ReturnItem(machine_id="", name=name) for name in names_only),
        ]
        record = RequestRecord(
            request_id=request_id,
            kind=RequestKind.RETURN,
            machine_ids=tuple(machine_ids),
            errors={_host_key(name): "" for name in names_only},
            created_at=stamp,
            updated_at=stamp,
        )
        with self.store.transaction():
            self.store.put_request(record)
            self.store.put_machines(
                [
                    attrs.evolve(r, return_request_id=request_id, updated_at=stamp)
                    for r in (*records, *unknown_ids)
                ]
            )
        log.info(
            "return recorded", request_id=request_id, machines=len(machine_ids), names_only=len(names_only)
        )
        try:
            failures = self.hooks.terminate_machines(items)
        except CloudError as exc:
            with self.store.transaction():
                self.store.put_machines(records)  # undo the return marks: nothing was terminated
                self._finish(record, RequestStatus.COMPLETE_WITH_ERROR, exc.message)
            log.warning("terminate refused", request_id=request_id, error=exc.message, code=exc.code)
            return {"message": f"Delete VM failed: {exc.message}"}
        if failures:
            named = set(names_only)
            record.errors = {
                **record.errors,
                **{_host_key(key) if key in named else key: error for key, error in failures.items()},
            }
            record.updated_at = now()
            self.store.put_request(record)
        self.hooks.request_submitted(_cloud_request(record))
        if not active:
            return {"message": "No Active VM.", "requestId": request_id}
        return {"requestId": request_id, "message": "Delete VM success."}

    def _match_returned(
        self, asked: Sequence[converter.MachineInput], request_id: str
    ) -> tuple[list[MachineRecord], list[MachineRecord], list[str]]:
        """Split HF's hosts into machines core knows, machines known only by the id HF gave
        (recorded under the return request) and hosts HF named without an id that core
        does not know (the provider looks those up by name)."""
        known = self.store.find_machines(
            [m.machineId for m in asked if m.machineId], [m.name for m in asked if not m.machineId]
        )
        by_id = {r.machine_id: r for r in known}
        by_name = {r.name: r for r in known}
        records: dict[str, MachineRecord] = {}
        unknown_ids: dict[str, MachineRecord] = {}
        names_only: list[str] = []
        for entry in asked:
            found = by_id.get(entry.machineId) if entry.machineId else by_name.get(entry.name)
            if found is not None:
                records[found.machine_id] = found
            elif entry.machineId:
                machine = Machine(machine_id=entry.machineId, name=entry.name, state=MachineState.RUNNING)
                unknown_ids[entry.machineId] = MachineRecord(machine=machine, request_id=request_id)
            elif entry.name not in names_only:
                names_only.append(entry.name)
        return list(records.values()), list(unknown_ids.values()), names_only

    def _return_items(self, records: Sequence[MachineRecord]) -> list[ReturnItem]:
        """ReturnItems for known machines, each with its acquire request and the machines of
        that request HF still holds (earlier returns and failed machines left out)."""
        acquire = self.store.get_requests(list({r.request_id for r in records}))
        held = self.store.machines_of(list(acquire))
        requests = {
            request_id: _cloud_request(
                record,
                [
                    m.machine_id
                    for m in held.get(request_id, [])
                    if m.result is not MachineResult.FAIL and m.return_request_id is None
                ],
            )
            for request_id, record in acquire.items()
        }
        return [
            ReturnItem(machine_id=r.machine_id, name=r.name, request=requests.get(r.request_id))
            for r in records
        ]

    def _active(
        self, request_id: str, machine_ids: Sequence[str], records: Sequence[MachineRecord]
    ) -> set[str]:
        """The machines the cloud still runs (not terminated or on the way out), for IBM's
        "No Active VM." reply; from the stored states when the cloud cannot be asked."""
        if not machine_ids:
            return set()
        ask = CloudRequest(request_id=request_id, kind=RequestKind.RETURN, machine_ids=tuple(machine_ids))
        try:
            snapshot = self.hooks.machine_status([ask]).get(request_id, RequestSnapshot())
        except CloudError:
            return {r.machine_id for r in records if r.machine.state is not MachineState.TERMINATED}
        gone = (MachineState.TERMINATED, MachineState.SHUTTING_DOWN)
        return {m.machine_id for m in snapshot.machines if m.state not in gone}

    # ---------------------------------------------------------------- status
    def get_request_status(self, data: Any) -> dict[str, Any]:
        ids = converter.parse_request_ids(data)
        valid = [i for i, ok in ids if ok]
        records = self.store.get_requests(valid)
        self._reconcile_abandoned()
        running = [r for r in records.values() if not r.status.is_final]
        replies = self._refresh(running)
        entries = []
        for index, (request_id, well_formed) in enumerate(ids):
            if not well_formed:
                problem = f"$.requests[{index}].requestId: missing, empty or not a string"
                entries.append(_unknown_entry(request_id, problem))
                continue
            record = records.get(request_id)
            if record is None:
                entries.append(_unknown_entry(request_id, f"unknown request id {request_id!r}"))
            elif request_id in replies:
                entries.append(replies[request_id])
            else:
                entries.append(self._stored_entry(record))
        return {"requests": entries}

    def _refresh(self, records: Sequence[RequestRecord]) -> dict[str, dict[str, Any]]:
        """Ask the cloud about running requests (one batch), apply the status rules, store."""
        if not records:
            return {}
        acquires = [r for r in records if r.kind is RequestKind.ACQUIRE]
        returns = [r for r in records if r.kind is RequestKind.RETURN]
        known = self.store.machines_of([r.request_id for r in acquires])
        provisioned = [r for r in acquires if r.handle is not None]
        asks = [_cloud_request(r, [m.machine_id for m in known.get(r.request_id, [])]) for r in provisioned]
        asks += [_cloud_request(r) for r in returns]
        try:
            snapshots = self.hooks.machine_status(asks)
        except CloudError as exc:
            log.warning("status unavailable", error=exc.message, code=exc.code)
            return {
                r.request_id: {**self._stored_entry(r), "message": f"cloud status unavailable: {exc.message}"}
                for r in records
            }
        replies: dict[str, dict[str, Any]] = {}
        for record in acquires:
            if record.handle is None:
                replies[record.request_id] = _entry(
                    record.request_id, RequestStatus.RUNNING, "provisioning", []
                )
                continue
            snapshot = snapshots.get(record.request_id, RequestSnapshot())
            replies[record.request_id] = self._refresh_acquire(
                record, snapshot, known.get(record.request_id, [])
            )
        if returns:
            returned = self.store.find_machines([m for r in returns for m in r.machine_ids])
            by_id = {m.machine_id: m for m in returned}
            for record in returns:
                snapshot = snapshots.get(record.request_id, RequestSnapshot())
                replies[record.request_id] = self._refresh_return(record, snapshot, by_id)
        return replies

    def _refresh_acquire(
        self, record: RequestRecord, snapshot: RequestSnapshot, known: Sequence[MachineRecord]
    ) -> dict[str, Any]:
        seen = {m.machine_id: m for m in snapshot.machines}
        for old in known:  # machines the cloud forgot failed (unless HF returned them since)
            if old.machine_id not in seen and old.return_request_id is None:
                seen[old.machine_id] = attrs.evolve(
                    old.machine,
                    state=MachineState.TERMINATED,
                    message=old.machine.message or status.GONE_MESSAGE,
                )
        results = [(m, status.acquire_result(m)) for m in seen.values()]
        state = status.acquire_status(record.machine_count, results, snapshot.open)
        message = snapshot.message
        if state is RequestStatus.COMPLETE_WITH_ERROR and not message:
            units = sum(m.weight for m, r in results if r is MachineResult.SUCCEED)
            message = f"{units} of {record.machine_count} machines delivered"
        with self.store.transaction():
            newly_ready = self._merge_machines(record, results)
            if snapshot.handle is not None:
                record.handle = dict(snapshot.handle)
            self._finish(record, state, message)
        if newly_ready:
            self.hooks.machines_ready(_cloud_request(record), [m.machine for m in newly_ready])
        machines = [
            converter.machine_json(m, r, status.acquire_failure_message(m) if r is MachineResult.FAIL else "")
            for m, r in results
        ]
        return _entry(record.request_id, state, message, machines)

    def _refresh_return(
        self, record: RequestRecord, snapshot: RequestSnapshot, stored: Mapping[str, MachineRecord]
    ) -> dict[str, Any]:
        seen = {m.machine_id: m for m in snapshot.machines}
        machines: list[dict[str, Any]] = []
        results: list[MachineResult] = []
        updates: list[MachineRecord] = []
        gone: list[Machine] = []
        for machine_id in record.machine_ids:
            old = stored.get(machine_id)
            current = seen.get(machine_id)
            error = record.errors.get(machine_id)
            result = status.return_result(current, error)
            shown = current or (
                attrs.evolve(old.machine, state=MachineState.TERMINATED)
                if old
                else Machine(machine_id=machine_id, name=machine_id, state=MachineState.TERMINATED)
            )
            if old is not None:
                # A machine whose termination failed is still Host Factory's: held again.
                still_held = result is MachineResult.FAIL and old.return_request_id == record.request_id
                owner = None if still_held else old.return_request_id
                updates.append(attrs.evolve(old, machine=shown, return_request_id=owner, updated_at=now()))
            if result is MachineResult.SUCCEED:
                gone.append(shown)
            results.append(result)
            machines.append(converter.machine_json(shown, result, error or ""))
        for host_json, result in _named_hosts(record):
            results.append(result)
            machines.append(host_json)
        state = status.return_status(results)
        failed = sum(r is MachineResult.FAIL for r in results)
        message = (
            f"{failed} of {len(results)} machines could not be returned" if failed and state.is_final else ""
        )
        with self.store.transaction():
            self.store.put_machines(updates)
            self._finish(record, state, message)
        if state.is_final:
            self.hooks.machines_returned(_cloud_request(record), gone)
        return _entry(record.request_id, state, message, machines)

    def _stored_entry(self, record: RequestRecord) -> dict[str, Any]:
        """A finished request, answered from the store without calling the cloud."""
        if record.kind is RequestKind.ACQUIRE:
            stored = self.store.machines_of([record.request_id]).get(record.request_id, [])
            machines = [
                converter.machine_json(
                    m.machine,
                    m.result,
                    status.acquire_failure_message(m.machine) if m.result is MachineResult.FAIL else "",
                )
                for m in stored
            ]
        else:
            stored = self.store.find_machines(list(record.machine_ids))
            machines = []
            for m in stored:
                error = record.errors.get(m.machine_id)
                result = status.return_result(m.machine, error)
                machines.append(converter.machine_json(m.machine, result, error or ""))
            machines.extend(host_json for host_json, _ in _named_hosts(record))
        return _entry(record.request_id, record.status, record.message, machines)

    def _reconcile_abandoned(self) -> None:
        """Clean up acquire requests whose provisioning call died before HF got an id.

        Such a record has no handle and is older than HF's action timeout, so the process
        that made it is gone and HF never learned the id. The provider removes whatever the
        cloud made for it (``ohfp_cancel_request``; without that hook, core terminates the
        machines status finds by request id), and the record ends ``complete_with_error``.
        """
        cutoff = now() - int(self.context.timeout_sec)
        stale = [
            r
            for r in self.store.open_requests(RequestKind.ACQUIRE)
            if r.handle is None and r.created_at < cutoff
        ]
        for record in stale:
            request = _cloud_request(record)
            try:
                if not self.hooks.cancel_request(request):
                    self._terminate_found(request)
            except CloudError as exc:
                log.warning("reconcile postponed", request_id=record.request_id, error=exc.message)
                continue
            self._finish(
                record,
                RequestStatus.COMPLETE_WITH_ERROR,
                "abandoned: the call that made it did not finish",
                {},
            )
            log.warning("abandoned request cleaned up", request_id=record.request_id)

    def _terminate_found(self, request: CloudRequest) -> None:
        """Terminate the machines the provider finds for ``request`` (by its id)."""
        snapshot = self.hooks.machine_status([request]).get(request.request_id, RequestSnapshot())
        found = tuple(m.machine_id for m in snapshot.machines)
        owner = attrs.evolve(request, handle=dict(snapshot.handle or {}), machine_ids=found)
        self.hooks.terminate_machines(
            [ReturnItem(machine_id=m.machine_id, name=m.name, request=owner) for m in snapshot.machines]
        )

    # ---------------------------------------------------------------- reclaims
    def get_return_requests(self, data: Any) -> dict[str, Any]:
        asked = converter.parse_machines(data, "getReturnRequests", required=False)
        if asked:
            known = self.store.find_machines(
                [m.machineId for m in asked if m.machineId], [m.name for m in asked if not m.machineId]
            )
            by_id = {r.machine_id: r for r in known}
            by_name = {r.name: r for r in known}
            pairs = [
                (m.name, m.machineId, by_id.get(m.machineId) if m.machineId else by_name.get(m.name))
                for m in asked
            ]
        else:
            pairs = [
                (r.name, r.machine_id, r)
                for r in self.store.held_machines()
                if r.result is MachineResult.SUCCEED
            ]
        candidates = [
            (name, mid, rec) for name, mid, rec in pairs if rec is None or rec.return_request_id is None
        ]
        acquire = self.store.get_requests(
            list({rec.request_id for _, _, rec in candidates if rec is not None})
        )
        refs = [
            MachineRef(
                name=name,
                machine_id=machine_id or (rec.machine_id if rec else None),
                request=_cloud_request(acquire[rec.request_id])
                if rec and rec.request_id in acquire
                else None,
            )
            for name, machine_id, rec in candidates
        ]
        try:
            reclaims = self.hooks.reclaimed_machines(refs)
        except CloudError as exc:
            log.warning("reclaim check failed", error=exc.message, code=exc.code)
            return {"message": f"Get return requests failed: {exc.message}", "requests": []}
        allowed = {ref.name for ref in refs}
        reclaims = [r for r in reclaims if r.name in allowed]
        self._mark_reclaimed(reclaims, {name: rec for name, _, rec in candidates if rec is not None})
        count = len(reclaims)
        noun = "host is" if count == 1 else "hosts are"
        return {
            "message": f"{count} {noun} being reclaimed by the cloud.",
            "requests": [converter.reclaim_json(r) for r in reclaims],
        }

    def _mark_reclaimed(self, reclaims: Sequence[Reclaim], records: Mapping[str, MachineRecord]) -> None:
        stamp = now()
        fresh = [r for r in reclaims if r.name in records and records[r.name].reclaimed_at is None]
        if fresh:
            with self.store.transaction():
                current = {
                    m.machine_id: m
                    for m in self.store.find_machines([records[r.name].machine_id for r in fresh])
                }
                self.store.put_machines(
                    [attrs.evolve(m, reclaimed_at=stamp, updated_at=stamp) for m in current.values()]
                )
        first_time = fresh + [r for r in reclaims if r.name not in records]
        self.hooks.machines_reclaimed(first_time)

    # ---------------------------------------------------------------- health
    def health(self) -> dict[str, Any]:
        checks = self.hooks.health_check()
        ok = all(c.ok for c in checks)
        return {
            "message": "healthy" if ok else "unhealthy",
            "provider": self.context.provider_type,
            "instance": self.context.instance,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        }


def _free(template: Template, used: int) -> int:
    """Units a limited template can still provide: maxNumber less what is in use, capped by
    an ``availableNumber`` the file or the provider set."""
    free = max(0, template.max_number - used)
    return free if template.available_number is None else min(free, template.available_number)


def _host_key(name: str) -> str:
    """How a return record keys a host HF named without an id (``errors`` map)."""
    return f"host:{name}"


def _named_hosts(record: RequestRecord) -> list[tuple[dict[str, Any], MachineResult]]:
    """Entries for the hosts HF returned by name only: ``succeed`` unless the provider
    reported an error for it (the cloud terminated it or no longer knows it)."""
    entries = []
    for key, error in record.errors.items():
        if key.startswith("host:"):
            host = Machine(machine_id="", name=key.removeprefix("host:"), state=MachineState.TERMINATED)
            result = MachineResult.FAIL if error else MachineResult.SUCCEED
            entries.append((converter.machine_json(host, result, error), result))
    return entries


def _entry(
    request_id: str, state: RequestStatus, message: str, machines: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"requestId": request_id, "status": state.value, "message": message, "machines": machines}


def _unknown_entry(request_id: str, message: str) -> dict[str, Any]:
    return _entry(request_id, RequestStatus.COMPLETE_WITH_ERROR, message, [])

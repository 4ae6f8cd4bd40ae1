"""The five Host Factory calls, owned by core so every provider behaves the same.

Each method takes HF's parsed input document and returns the reply document. Invalid input
raises :class:`InputError` before anything is recorded or sent to the cloud. A cloud refusal
becomes an IBM-style ``"… failed."`` reply.

Crash safety: a call records a request (holding its lease in the store,
:mod:`ohfp_core.reconcile`) before it touches the cloud, and the request counts as
*delivered* only after the CLI wrote the reply naming it (:meth:`Operations.reply_written`).
Every call first ends the requests of calls that died: whatever instant a process is killed
at, the next call, on any host, finds what it left and removes or finishes it. Every store
round trip is bounded by the call's :class:`~ohfp_core.deadline.Deadline`.

What the hooks write to the provider's values is stored in the transaction that records the
call's outcome (:func:`ohfp_core.values.recorded`), or, when the call records none, in one
of its own as the call ends (:meth:`Operations._settle`); a call that fails first keeps none
of it.
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import attrs

from ohfp_core import capacity, converter, refresh, status
from ohfp_core.deadline import Deadline, call_deadline
from ohfp_core.errors import CloudError, ConfigError, InputError
from ohfp_core.logs import bind_context, bound, get_logger
from ohfp_core.models import (
    CloudRequest,
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
from ohfp_core.reconcile import Reconciler
from ohfp_core.returns import host_key, match_hosts, return_items, with_failures
from ohfp_core.storage import (
    Lease,
    MachineRecord,
    RequestRecord,
    Storage,
    cloud_request,
    machine_record_to_doc,
    request_to_doc,
)
from ohfp_core.templates import core_problems, labelled, load_templates
from ohfp_core.values import recorded

log = get_logger("ohfp.operations")

P = ParamSpec("P")
R = TypeVar("R")


def settled(call: Callable[Concatenate[Operations, P], R]) -> Callable[Concatenate[Operations, P], R]:
    """An operation whose hooks' writes to the provider's values are stored before it returns
    (:meth:`Operations._settle`) and forgotten when it raises."""

    @functools.wraps(call)
    def operation(self: Operations, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = call(self, *args, **kwargs)
        except BaseException:
            self.context.values.discard()
            raise
        self._settle()
        return result

    return operation


def new_request_id(kind: RequestKind) -> str:
    return f"{'req' if kind is RequestKind.ACQUIRE else 'ret'}-{uuid.uuid4()}"


def now() -> int:
    return int(time.time())


class Operations:
    """The HF calls for one provider instance, one call at a time (a process serving many
    keeps one per thread).

    ``deadline`` bounds the store's round trips (default: from ``context.timeout_sec``,
    counted from now) until :meth:`answer` or :meth:`use_deadline` gives the next call its
    own. A call ends with :meth:`reply_written` or :meth:`call_failed`, which end the leases
    of the requests it made.
    """

    def __init__(
        self,
        hooks: Hooks,
        store: Storage,
        context: ProviderContext,
        clock: Callable[[], int] = now,
        deadline: Deadline | None = None,
    ) -> None:
        self.hooks = hooks
        self.store = store
        self.context = context
        self.clock = clock
        self.deadline = Deadline.never()
        self.use_deadline(deadline or call_deadline(context.timeout_sec))
        self.reconciler = Reconciler(hooks, store, context.timeout_sec, clock)
        self._made: list[tuple[str, Lease]] = []
        self.templates_file: Path | None = None
        """The templates file the last :meth:`offered` read."""
        context.values.bind(store, context.values.namespace or context.provider_type)

    def use_deadline(self, deadline: Deadline) -> None:
        """Bound the store's round trips by ``deadline`` from now on (a call's own)."""
        self.deadline = deadline
        self.store.use_deadline(deadline)

    def answer(self, call: str, data: Any, deadline: Deadline | None = None) -> dict[str, Any]:
        """Answer the Host Factory call ``call`` (one of :data:`ohfp_core.serve.wire.CALLS`)
        for its parsed input ``data`` within ``deadline`` (default: the call's, from now):
        the plugins hear the call start, then it runs."""
        self.use_deadline(deadline or call_deadline(self.context.timeout_sec))
        bind_context(operation=call, instance=self.context.instance, provider=self.context.provider_type)
        method = {
            "getAvailableTemplates": self.get_available_templates,
            "requestMachines": self.request_machines,
            "requestReturnMachines": self.request_return_machines,
            "getRequestStatus": self.get_request_status,
            "getReturnRequests": self.get_return_requests,
        }[call]
        self.hooks.call_started(self.context.timeout_sec)
        return method(data)

    @settled
    def wait_for_events(self, seconds: float) -> None:
        """Between calls (the resident service): the plugins wait up to ``seconds`` for the
        cloud's events; what they stored is committed as the wait ends, then its after-commit
        effects run."""
        self.hooks.wait_for_events(seconds)

    # ---------------------------------------------------------------- the provider's values
    def _recorded(self) -> contextlib.AbstractContextManager[None]:
        """A transaction recording the call's outcome with what the hooks wrote to the
        provider's values; their after-commit effects run once it is committed."""
        return recorded(self.store, self.context.values)

    def _settle(self) -> None:
        """Store what the hooks wrote that no outcome took (caches filled while templates are
        offered, notices kept while reclaims are read), then run its after-commit effects."""
        if self.context.values.pending:
            with self._recorded():
                pass

    # ---------------------------------------------------------------- the reply
    def call_failed(self) -> None:
        """The call ends without a reply naming its requests (an error was reported, or the
        reply could not be written): let go of their leases so the next call reconciles those
        still running as a dead call's (a finished one has nothing left to reconcile). When
        the store cannot say which is which (it failed), every lease is dropped."""
        made, self._made = self._made, []
        try:
            records = self.store.get_requests([request_id for request_id, _ in made])
        except Exception:
            for _, lease in made:
                lease.drop()
            raise
        for request_id, lease in made:
            record = records.get(request_id)
            if record is None or record.status.is_final:
                lease.release()
            else:
                lease.drop()

    def reply_written(self) -> None:
        """The reply is on stdout: the requests this call made are delivered to Host Factory;
        their leases end. If the store fails here, every lease is dropped all the same (a
        request left undelivered is then reconciled by the next call)."""
        made, self._made = self._made, []
        try:
            for request_id, _ in made:
                with self.store.transaction():
                    record = self.store.get_requests([request_id]).get(request_id)
                    if record is not None and not record.delivered:
                        self.store.put_request(attrs.evolve(record, delivered=True))
        finally:
            for _, lease in made:
                lease.release()

    @contextlib.contextmanager
    def _recording(self, request_id: str) -> Any:
        """Hold ``request_id``'s lease from before it is recorded; end it if the call fails
        before the record exists (then there is nothing to reconcile)."""
        lease = self.store.hold_lease(request_id)
        self._made.append((request_id, lease))
        try:
            yield
        except BaseException:
            try:
                recorded = bool(self.store.get_requests([request_id]))
            except Exception:  # the store failed: left to call_failed, which drops it
                recorded = True
            if not recorded:
                self._made.remove((request_id, lease))
                lease.release()
            raise

    # ---------------------------------------------------------------- templates
    def template_problems(self, template: Template) -> list[Problem]:
        """Core's rules plus every plugin's ``ohfp_validate_template``."""
        return [*core_problems(template), *self.hooks.validate_template(template)]

    def offered(self) -> tuple[list[Template], dict[str, list[str]]]:
        """The templates offered (the file's, as the provider adjusts them, every rule met)
        and, per template left out, its problems."""
        loaded = load_templates(self.context)
        self.templates_file = loaded.path
        broken = {key: list(problems) for key, problems in loaded.broken.items()}
        valid: list[Template] = []
        for template in self.hooks.available_templates(loaded.templates):
            problems = self.template_problems(template)
            if problems:
                broken[template.template_id] = labelled(template.template_id, problems)
            else:
                valid.append(template)
        return valid, broken

    @settled
    def validate_templates(self) -> dict[str, list[str]]:
        """Problems per template (``$.templates[…].field: message``); every list empty when
        all are good."""
        valid, broken = self.offered()
        return {**{t.template_id: [] for t in valid}, **broken}

    @settled
    def validate_templates_online(self) -> dict[str, list[str]] | None:
        """Problems per template as :meth:`validate_templates` reports them, then, for the
        templates without any, what the provider finds missing in the cloud
        (``ohfp_validate_templates_online``); None when no plugin has online checks.

        :raises CloudError: when the cloud cannot be asked.
        """
        valid, broken = self.offered()
        online = self.hooks.validate_templates_online(valid)
        if online is None:
            return None
        report: dict[str, list[str]] = {t.template_id: [] for t in valid}
        for template_id, problems in online.items():
            report.setdefault(template_id, []).extend(labelled(template_id, problems))
        return {**report, **broken}

    def files_read(self) -> tuple[dict[str, str | None], list[str]]:
        """The instance's files (``config``, ``templates``, ``settings``: each path, or None
        when there is none) and warnings for files that are ignored because another shadows
        them (``awsprov_templates.json`` beside ``awsinstprov_templates.json``)."""
        from ohfp_core.config import SETTINGS_FILE, shadowed_files

        c = self.context
        settings = c.confdir / SETTINGS_FILE
        loaded = load_templates(c)
        files = {
            "config": str(c.config_path) if c.config_path else None,
            "templates": str(loaded.path) if loaded.path else None,
            "settings": str(settings) if settings.is_file() else None,
        }
        warnings = [*shadowed_files(c.confdir, c.instance, c.provider_type, "config"), *loaded.shadowed]
        return files, warnings

    def _in_file(self) -> str:
        return f" in {self.templates_file}" if self.templates_file else ""

    @settled
    def get_available_templates(self, data: Any) -> dict[str, Any]:
        self.reconciler.run()
        valid, broken = self.offered()
        reply: dict[str, Any] = {"message": "Get available templates success."}
        if broken:
            log.warning("templates left out", templates=sorted(broken), problems=_flat(broken))
            reply["message"] += (
                f" {len(broken)} template(s) left out as invalid: {', '.join(sorted(broken))}"
                f"{self._in_file()} (run 'ohfp templates validate')."
            )
            reply["errors"] = _flat(broken)
        reply["templates"] = [
            converter.template_json(t) for t in capacity.with_availability(self.store, valid)
        ]
        return reply

    def _template(self, template_id: str) -> Template:
        valid, broken = self.offered()
        for template in valid:
            if template.template_id == template_id:
                return template
        if template_id in broken:
            raise ConfigError(f"template {template_id!r} is invalid{self._in_file()}", broken[template_id])
        known = ", ".join(sorted(t.template_id for t in valid)) or "none"
        raise InputError(
            "invalid requestMachines input",
            [f"$.template.templateId: unknown template {template_id!r} (known: {known})"],
        )

    # ---------------------------------------------------------------- acquire
    @settled
    def request_machines(self, data: Any) -> dict[str, Any]:
        template_id, count = converter.parse_request_machines(data)
        self.reconciler.run()
        template = self._template(template_id)
        request_id = new_request_id(RequestKind.ACQUIRE)
        stamp = self.clock()
        record = RequestRecord(
            request_id=request_id,
            kind=RequestKind.ACQUIRE,
            template_id=template_id,
            machine_count=count,
            created_at=stamp,
            updated_at=stamp,
            owner=self.store.lease_owner,
        )
        with self._recording(request_id), self.store.transaction():
            if capacity.limited(template):
                used = capacity.in_use(self.store, [template_id])[template_id]
                left = capacity.free(template, used)
                if count > left:
                    why = f"maxNumber {template.max_number}, {used} in use"
                    if template.available_reason:
                        why += f"; {template.available_reason}"
                    raise InputError(
                        "invalid requestMachines input",
                        [
                            f"$.template.machineCount: {count} exceeds the {left} machines available from "
                            f"template {template_id!r} ({why})"
                        ],
                    )
            self.store.put_request(record)
        log.info("request recorded", request_id=request_id, template_id=template_id, count=count)
        try:
            with bound(request_id=request_id, template_id=template_id):
                provisioned = self.hooks.provision(request_id, template, count)
        except CloudError as exc:
            with self._recorded():
                self._end(record, exc.message)
            log.warning("provision refused", request_id=request_id, error=exc.message, code=exc.code)
            return {"message": f"Request VM from {self.context.provider_type} failed: {exc.message}"}
        except ConfigError as exc:
            # Raised before the cloud is touched (hookspec): the request holds nothing.
            with self._recorded():
                self._end(record, str(exc))
            raise
        record = attrs.evolve(record, handle=dict(provisioned.handle), updated_at=self.clock())
        with self._recorded():
            self.store.put_request(record)
            ready = refresh.merge_machines(
                self.store,
                record,
                [(m, status.acquire_result(m)) for m in provisioned.machines],
                record.updated_at,
            )
        log.info(
            "request submitted",
            request_id=request_id,
            template_id=template_id,
            machines=len(provisioned.machines),
            machine_ids=[m.machine_id for m in provisioned.machines],
            names=[m.name for m in provisioned.machines],
        )
        refresh.log_ready(ready)
        self.hooks.request_submitted(cloud_request(record))
        self.hooks.machines_ready(cloud_request(record), [m.machine for m in ready])
        message = provisioned.message or f"Request VM success from {self.context.provider_type}."
        return {"requestId": request_id, "message": message}

    def _end(self, record: RequestRecord, message: str) -> None:
        """End a request the provider refused: it holds nothing."""
        self.store.put_request(
            attrs.evolve(
                record,
                status=RequestStatus.COMPLETE_WITH_ERROR,
                message=message,
                handle={},
                updated_at=self.clock(),
            )
        )

    # ---------------------------------------------------------------- return
    @settled
    def request_return_machines(self, data: Any) -> dict[str, Any]:
        asked = converter.parse_machines(data, "requestReturnMachines", required=True)
        self.reconciler.run()
        request_id = new_request_id(RequestKind.RETURN)
        stamp = self.clock()
        matched = match_hosts(self.store, asked, request_id)
        machine_ids = list(dict.fromkeys(r.machine_id for r in matched.records))
        active = self._active(request_id, matched.records)
        items = [
            *return_items(self.store, matched.known, request_id),
            *(ReturnItem(machine_id=r.machine_id, name=r.name) for r in matched.unknown_ids),
            *(ReturnItem(machine_id="", name=name) for name in matched.names_only),
        ]
        record = RequestRecord(
            request_id=request_id,
            kind=RequestKind.RETURN,
            machine_ids=tuple(machine_ids),
            errors={host_key(name): "" for name in matched.names_only},
            created_at=stamp,
            updated_at=stamp,
            owner=self.store.lease_owner,
        )
        with self._recording(request_id), self.store.transaction():
            self.store.put_request(record)
            self.store.put_machines(
                [attrs.evolve(r, return_request_id=request_id, updated_at=stamp) for r in matched.records]
            )
        log.info(
            "return recorded",
            request_id=request_id,
            machines=len(machine_ids),
            machine_ids=machine_ids,
            names=[r.name for r in matched.records] + list(matched.names_only),
        )
        try:
            with bound(request_id=request_id):
                failures = self.hooks.terminate_machines(items)
        except CloudError as exc:
            with self._recorded():
                self.store.put_machines(list(matched.known))  # undo the return marks: nothing was terminated
                self._end(record, exc.message)
            log.warning("terminate refused", request_id=request_id, error=exc.message, code=exc.code)
            return {"message": f"Delete VM failed: {exc.message}"}
        if failures:
            record = attrs.evolve(
                record,
                errors=with_failures(record.errors, failures, matched.names_only),
                updated_at=self.clock(),
            )
            self.store.put_request(record)
        self.hooks.request_submitted(cloud_request(record))
        if not active:
            return {"message": "No Active VM.", "requestId": request_id}
        return {"requestId": request_id, "message": "Delete VM success."}

    def _active(self, request_id: str, records: Sequence[MachineRecord]) -> set[str]:
        """The machines the cloud still runs (not terminated or on the way out), for IBM's
        "No Active VM." reply; from the stored states when the cloud cannot be asked."""
        if not records:
            return set()
        ids = tuple(dict.fromkeys(r.machine_id for r in records))
        ask = CloudRequest(request_id=request_id, kind=RequestKind.RETURN, machine_ids=ids)
        try:
            snapshot = self.hooks.machine_status([ask]).get(request_id, RequestSnapshot())
        except CloudError:
            return {r.machine_id for r in records if r.machine.state is not MachineState.TERMINATED}
        return {m.machine_id for m in snapshot.machines if not m.state.is_ending}

    # ---------------------------------------------------------------- status
    @settled
    def get_request_status(self, data: Any) -> dict[str, Any]:
        ids = converter.parse_request_ids(data)
        self._asked(self.store.get_requests([i for i, ok in ids if ok]))
        self.reconciler.run()
        records = self.store.get_requests([i for i, ok in ids if ok])
        running = [r for r in records.values() if not r.status.is_final]
        replies = refresh.refresh(self.hooks, self.store, running, self.clock, self.context.values)
        entries = []
        for index, (request_id, well_formed) in enumerate(ids):
            record = records.get(request_id) if well_formed else None
            if not well_formed:
                problem = f"$.requests[{index}].requestId: missing, empty, too long or not a string"
                entries.append(converter.unknown_entry(request_id, problem))
            elif record is None:
                entries.append(converter.unknown_entry(request_id, f"unknown request id {request_id!r}"))
            elif request_id in replies:
                entries.append(replies[request_id])
            else:
                entries.append(refresh.stored_entry(self.store, record))
        return {"requests": entries}

    def _asked(self, records: dict[str, RequestRecord]) -> None:
        """Host Factory asks about these requests, so it has their ids: none of them is a
        dead call's, whatever happened to the call that made it."""
        unseen = [r for r in records.values() if not r.delivered and not r.status.is_final]
        if unseen:
            with self.store.transaction():
                for record in unseen:
                    self.store.put_request(attrs.evolve(record, delivered=True))

    @settled
    def show_request(self, request_id: str) -> dict[str, Any]:
        """Everything known of one request, for an administrator: the stored record, its
        machines and the provider's explanation (``ohfp_request_details``).

        :raises InputError: for an id the store does not know.
        """
        record = self.store.get_requests([request_id]).get(request_id)
        if record is None:
            raise InputError(
                "unknown request", [f"$.requestId: no request {request_id!r} in the state store"]
            )
        if record.kind is RequestKind.ACQUIRE:
            machines = self.store.machines_of([request_id])[request_id]
        else:
            machines = self.store.find_machines(list(record.machine_ids))
        return {
            "message": f"request {request_id}: {record.status.value}",
            "request": request_to_doc(record),
            "machines": [machine_record_to_doc(m) for m in machines],
            "details": self.hooks.request_details(cloud_request(record)),
        }

    def list_requests(
        self, state: str = "all", kind: str | None = None, limit: int = 50
    ) -> list[RequestRecord]:
        """Requests for an administrator, newest first: ``state`` a request status or
        ``all``, ``kind`` ``acquire``/``return`` or None, at most ``limit`` (0: no limit).
        Running requests are read through the store's index; other states read every
        request (administration only)."""
        wanted_kind = RequestKind(kind) if kind else None
        if state == RequestStatus.RUNNING.value:
            found = self.store.open_requests(wanted_kind)
        else:
            found = [
                r
                for r in self.store.iter_requests()
                if (state == "all" or r.status.value == state) and wanted_kind in (None, r.kind)
            ]
        found.sort(key=lambda r: (r.created_at, r.request_id), reverse=True)
        return found[:limit] if limit > 0 else found

    # ---------------------------------------------------------------- reclaims
    @settled
    def get_return_requests(self, data: Any) -> dict[str, Any]:
        asked = converter.parse_machines(data, "getReturnRequests", required=False)
        self.reconciler.run()
        if asked:
            known = self.store.find_machines(
                [m.machine_id for m in asked if m.machine_id], [m.name for m in asked if not m.machine_id]
            )
            by_id = {r.machine_id: r for r in known}
            by_name = {r.name: r for r in known}
            pairs = [
                (m.name, m.machine_id, by_id.get(m.machine_id) if m.machine_id else by_name.get(m.name))
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
                request=cloud_request(acquire[rec.request_id]) if rec and rec.request_id in acquire else None,
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

    def _mark_reclaimed(self, reclaims: Sequence[Reclaim], records: dict[str, MachineRecord]) -> None:
        stamp = self.clock()
        fresh = [r for r in reclaims if r.name in records and records[r.name].reclaimed_at is None]
        if fresh:
            with self._recorded():
                current = self.store.find_machines([records[r.name].machine_id for r in fresh])
                self.store.put_machines(
                    [attrs.evolve(m, reclaimed_at=stamp, updated_at=stamp) for m in current]
                )
        first_time = fresh + [r for r in reclaims if r.name not in records]
        for reclaim in first_time:
            known = records.get(reclaim.name)
            log.info(
                "host reclaimed",
                request_id=known.request_id if known else None,
                name=reclaim.name,
                machine_id=reclaim.machine_id,
                grace_period=reclaim.grace_period,
                reason=reclaim.reason,
            )
        self.hooks.machines_reclaimed(first_time)


def _flat(broken: dict[str, list[str]]) -> list[str]:
    return [problem for key in sorted(broken) for problem in broken[key]]

"""The libvirt provider's work: machines are domains, found again by their metadata.

A machine is a persistent domain whose ``<metadata>`` names this provider instance, the
request and the template (:mod:`ohfp_libvirt.domain_xml`); its machineId is the domain's
UUID and its host name the domain's name. What ohfp made is always found by listing the
host's domains and reading that metadata, never from a file of ours, so a crash at any
instant leaves nothing the next call cannot find:

- provisioning defines each domain (metadata included) **before** it creates the domain's
  volumes (its overlay, its NoCloud seed) and starts it, and a domain's UUID and name follow
  from the request id, so a second call for the same request defines nothing new; when the
  host refuses part of a request (a volume it cannot make or write, a start that fails),
  everything made for it is removed before the refusal is reported (all or nothing);
- removing a machine destroys it, deletes its volumes and only then undefines it, so a
  definition (and its metadata) outlives every volume it names;
- a returned domain is gone at once (libvirt keeps no record of it, unlike EC2's terminated
  instances): status leaves it out, and core reports it terminated;
- the URI of every connection ohfp provisioned on is remembered in the state store
  (``ProviderContext.values``) before anything is made there, so a request whose handle was
  never stored, or a host named by Host Factory alone, is looked for on each of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress

import attrs

from ohfp_core.errors import CloudError
from ohfp_core.logs import get_logger
from ohfp_core.models import (
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
from ohfp_libvirt import spec as specs
from ohfp_libvirt.domain_xml import (
    Tag,
    domain_xml,
    identity,
    overlay_of,
    overlay_xml,
    seed_of,
    seed_volume_xml,
    volumes_of,
)
from ohfp_libvirt.errors import NO_DOMAIN, is_code
from ohfp_libvirt.hypervisor import Guest, Hypervisor
from ohfp_libvirt.settings import Settings
from ohfp_libvirt.states import BLOCKED, RUNNING, machine_state

log = get_logger("ohfp_libvirt")

MIB = 1024 * 1024
URIS_KEY = "uris"
URIS_TTL_SEC = 10 * 365 * 86400
"""The remembered URIs are kept for as long as a machine may live."""


class LibvirtCloud:
    """The domains of one provider instance on the hypervisors it uses."""

    def __init__(
        self, context: ProviderContext, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.context = context
        self.settings = settings
        self.clock = clock
        self._hypervisors: dict[str, Hypervisor] = {}

    # connections ----------------------------------------------------------------------
    def hypervisor(self, uri: str) -> Hypervisor:
        """The connection to ``uri``, opened on first use (waiting a bounded while for libvirtd)."""
        if uri not in self._hypervisors:
            wait = min(self.settings.connect_seconds, self.context.timeout_sec / 2)
            self._hypervisors[uri] = Hypervisor.open(uri, wait)
        return self._hypervisors[uri]

    def close(self) -> None:
        for hypervisor in self._hypervisors.values():
            hypervisor.close()
        self._hypervisors.clear()

    def call_started(self) -> None:
        """A new call: connections libvirtd dropped since the last (a warm provider serves many
        calls; libvirtd may have restarted) are let go, to be opened again on first use."""
        for uri, hypervisor in list(self._hypervisors.items()):
            if not hypervisor.alive():
                hypervisor.close()
                del self._hypervisors[uri]

    def known_uris(self) -> list[str]:
        """The config's URI and every URI this instance provisioned on."""
        remembered = self.context.values.get(URIS_KEY) or []
        return list(dict.fromkeys([self.settings.uri, *(u for u in remembered if isinstance(u, str))]))

    def _remember(self, uri: str) -> None:
        known = self.context.values.get(URIS_KEY) or []
        if uri != self.settings.uri and uri not in known:
            # Before the domains are made: a call killed after that must find them on ``uri``.
            self.context.values.write_ahead({URIS_KEY: [*known, uri]}, URIS_TTL_SEC)

    def _uris_of(self, request: CloudRequest | None) -> list[str]:
        uri = request.handle.get("uri") if request is not None else None
        return [uri] if isinstance(uri, str) and uri else self.known_uris()

    def _ours(self, hypervisor: Hypervisor) -> Iterator[tuple[Guest, Tag]]:
        """This instance's domains on ``hypervisor``, each with its tag."""
        for guest in hypervisor.domains():
            try:
                tag = guest.info.tag
            except CloudError as exc:
                if is_code(exc, NO_DOMAIN):
                    continue  # undefined between the listing and the look
                raise
            if tag is not None and tag.instance == self.context.instance:
                yield guest, tag

    def _find(
        self, uris: Iterable[str], machine_id: str | None, name: str
    ) -> tuple[Hypervisor, Guest] | None:
        for uri in uris:
            hypervisor = self.hypervisor(uri)
            guest = hypervisor.find(uuid=machine_id) if machine_id else hypervisor.find(name=name)
            if guest is not None:
                return hypervisor, guest
        return None

    # machines ---------------------------------------------------------------------------
    def _remove(self, hypervisor: Hypervisor, guest: Guest) -> None:
        """Destroy, delete its volumes, then undefine: the definition outlives its volumes."""
        guest.destroy()
        tag = guest.info.tag
        for volume in tag.volumes if tag is not None else ():
            hypervisor.delete_volume(volume.pool, volume.name)
        guest.undefine()
        log.info("domain removed", uri=hypervisor.uri, domain=guest.info.name, machine_id=guest.info.uuid)

    def _machine(self, hypervisor: Hypervisor, guest: Guest, tag: Tag) -> Machine:
        """The machine a domain is now; one pending past the address deadline is removed."""
        state, reason = guest.state()
        address = guest.address(tag.address_source) if state in (RUNNING, BLOCKED) else None
        current, message = machine_state(state, reason, address)
        waited = self.clock() - tag.created
        if current is MachineState.PENDING and waited > self.settings.address_seconds:
            self._remove(hypervisor, guest)
            current = MachineState.TERMINATED
            message = (
                f"no address after {int(waited)} s (limit {self.settings.address_seconds:g} s): destroyed"
            )
            log.warning(
                "machine without an address destroyed", domain=guest.info.name, request_id=tag.request_id
            )
        return Machine(
            machine_id=guest.info.uuid,
            name=guest.info.name,
            state=current,
            private_ip=address,
            launch_time=max(0, tag.created),
            message=message,
        )

    def _make_volumes(
        self,
        hypervisor: Hypervisor,
        spec: specs.Spec,
        machine_uuid: str,
        name: str,
        base: tuple[str, int] | None,
    ) -> None:
        """Create a defined machine's overlay (backed by ``base``: path and size) and its seed."""
        overlay = overlay_of(spec, name)
        if overlay is not None and base is not None:
            hypervisor.create_volume(overlay.pool, overlay_xml(base[0], overlay.name, base[1]))
        seed = seed_of(spec, name)
        if seed is not None and spec.user_data is not None:
            from ohfp_libvirt.seed import seed_iso

            image = seed_iso(spec.user_data, machine_uuid, name)
            hypervisor.create_volume(seed.pool, seed_volume_xml(seed.name, len(image)))
            hypervisor.upload(seed.pool, seed.name, image)

    def validate(self, template: Template) -> list[Problem]:
        """Every problem of a template's libvirt keys (reads its user data file, calls no host)."""
        return specs.problems(template, self.context.confdir)

    # hooks --------------------------------------------------------------------------------
    def available(self, templates: Sequence[Template]) -> list[Template]:
        """Templates with attributes filled in, each capped by its host's free memory."""
        free: dict[str, int | None] = {}
        offered = []
        for template in templates:
            spec, problems = specs.read(template, self.context.confdir)
            if problems:
                offered.append(template)  # core's validation reports them
                continue
            template = specs.complete(template, spec)
            uri = spec.uri or self.settings.uri
            if uri not in free:
                try:
                    free[uri] = self.hypervisor(uri).free_memory()
                except CloudError as exc:
                    log.warning("free memory unknown", uri=uri, error=exc.message)
                    free[uri] = None
            host_free = free[uri]
            if host_free is not None:
                fits = host_free // (spec.memory_mib * MIB)
                if template.available_number is None or fits < template.available_number:
                    template = attrs.evolve(
                        template,
                        available_number=fits,
                        available_reason=f"{uri} has {host_free // MIB} MiB free, room for {fits}"
                        f" machines of {spec.memory_mib} MiB",
                    )
            offered.append(template)
        return offered

    def provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        """Define and start ``count`` domains for the request; all of them or none."""
        spec = specs.parse(template, self.context.confdir)
        uri = spec.uri or self.settings.uri
        self._remember(uri)
        hypervisor = self.hypervisor(uri)
        base = None
        if spec.base_volume is not None:
            pool, name = spec.base_volume.pool, spec.base_volume.name
            base = (hypervisor.volume_path(pool, name), hypervisor.volume_capacity(pool, name))
        made = {
            guest.info.uuid: guest for guest, tag in self._ours(hypervisor) if tag.request_id == request_id
        }
        created = int(self.clock())
        try:
            for index in range(count):
                machine_uuid, name = identity(self.context.instance, request_id, index, spec.host_prefix)
                guest = made.get(machine_uuid)
                if guest is None:
                    tag = Tag(
                        instance=self.context.instance,
                        request_id=request_id,
                        template_id=template.template_id,
                        created=created,
                        volumes=volumes_of(spec, name),
                        address_source=spec.address_source,
                    )
                    guest = hypervisor.define(domain_xml(spec, tag, machine_uuid, name), machine_uuid)
                    self._make_volumes(hypervisor, spec, machine_uuid, name, base)
                    guest.start()
                    log.info(
                        "domain started", uri=uri, domain=name, machine_id=machine_uuid, request_id=request_id
                    )
        except CloudError as exc:
            log.warning(
                "host refused the request: removing what it made", request_id=request_id, error=exc.message
            )
            with suppress(CloudError):
                self._cancel_on(hypervisor, request_id)
            raise
        return Provisioned(handle={"uri": uri})

    def status(self, requests: Sequence[CloudRequest]) -> dict[str, RequestSnapshot]:
        """A snapshot per request: an acquire request's domains by their tag, a return
        request's by UUID (those gone left out); one listing per hypervisor."""
        listings: dict[str, list[tuple[Guest, Tag]]] = {}
        snapshots = {}
        for request in requests:
            machines = []
            for uri in self._uris_of(request if request.kind is RequestKind.ACQUIRE else None):
                if uri not in listings:
                    listings[uri] = list(self._ours(self.hypervisor(uri)))
                for guest, tag in listings[uri]:
                    if (
                        tag.request_id == request.request_id
                        if request.kind is RequestKind.ACQUIRE
                        else guest.info.uuid in request.machine_ids
                    ):
                        machines.append(self._machine(self._hypervisors[uri], guest, tag))
            snapshots[request.request_id] = RequestSnapshot(machines=tuple(machines))
        return snapshots

    def terminate(self, items: Sequence[ReturnItem]) -> dict[str, str]:
        """Remove each machine (found by UUID, else by name); one gone is returned already.

        :raises CloudError: when no machine could be removed.
        """
        failures: dict[str, str] = {}
        last: CloudError | None = None
        for item in items:
            key = item.machine_id or item.name
            try:
                found = self._find(self._uris_of(item.request), item.machine_id, item.name)
                if found is None:
                    continue  # gone already: returned
                hypervisor, guest = found
                tag = guest.info.tag
                if tag is None or tag.instance != self.context.instance:
                    failures[key] = f"{guest.info.name} was not made by ohfp instance {self.context.instance}"
                    continue
                self._remove(hypervisor, guest)
            except CloudError as exc:
                failures[key], last = exc.message, exc
        if last is not None and len(failures) == len(items):
            raise last
        return failures

    def _cancel_on(self, hypervisor: Hypervisor, request_id: str) -> None:
        for guest, tag in list(self._ours(hypervisor)):
            if tag.request_id == request_id:
                self._remove(hypervisor, guest)

    def cancel(self, request: CloudRequest) -> bool:
        """Remove every domain (and volume) made for the request, on every known hypervisor."""
        for uri in self._uris_of(request):
            self._cancel_on(self.hypervisor(uri), request.request_id)
        return True

    def reclaimed(self, refs: Sequence[MachineRef]) -> list[Reclaim]:
        """Hosts whose domain stopped, crashed or vanished without Host Factory asking (grace 0)."""
        reclaims = []
        for ref in refs:
            found = self._find(self._uris_of(ref.request), ref.machine_id, ref.name)
            if found is None:
                reclaims.append(
                    Reclaim(
                        name=ref.name, grace_period=0, machine_id=ref.machine_id, reason="unknown to libvirt"
                    )
                )
                continue
            _, guest = found
            current, message = machine_state(*guest.state(), address=None)
            if current.is_lost:
                reclaims.append(
                    Reclaim(name=ref.name, grace_period=0, machine_id=guest.info.uuid, reason=message)
                )
        return reclaims

    def health(self) -> list[HealthCheck]:
        """One check per known hypervisor: reachable, its version and free memory."""
        checks = []
        for uri in self.known_uris():
            try:
                hypervisor = self.hypervisor(uri)
                detail = f"{hypervisor.version()}, {hypervisor.free_memory() // MIB} MiB free"
                checks.append(HealthCheck(name=f"libvirt {uri}", ok=True, detail=detail))
            except CloudError as exc:
                checks.append(HealthCheck(name=f"libvirt {uri}", ok=False, detail=exc.message))
        return checks

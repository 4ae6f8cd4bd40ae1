"""A narrow, typed adapter over libvirt-python: the only module that imports ``libvirt``.

libvirt-python ships no type information; everything the provider needs from it is a method
here with plain Python types, each call inside :func:`~ohfp_libvirt.errors.libvirt_call`.
Answers that mean "already so" are not errors here: starting a running domain, destroying
a stopped one, undefining or deleting what is gone, defining or creating what exists.
libvirt's own printing of errors to stderr is silenced: errors are raised and logged instead.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ohfp_core.errors import CloudError
from ohfp_libvirt.domain_xml import DomainInfo, read_domain
from ohfp_libvirt.errors import (
    DOM_EXIST,
    NO_DOMAIN,
    NO_STORAGE_VOL,
    NO_SUPPORT,
    OPERATION_FAILED,
    OPERATION_INVALID,
    STORAGE_VOL_EXIST,
    is_code,
    libvirt_call,
)

ADDRESS_SOURCES = {"lease": 0, "agent": 1, "arp": 2}
"""``VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_*`` by template spelling."""
_RETRY_PAUSE = 0.2


def _libvirt() -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda _context, _error: None, None)
    return libvirt


class Guest:
    """One domain."""

    def __init__(self, domain: Any) -> None:
        self._domain = domain
        self._info: DomainInfo | None = None

    @property
    def info(self) -> DomainInfo:
        """Its identity and ohfp tag, from its XML (read once)."""
        if self._info is None:
            with libvirt_call("virDomainGetXMLDesc"):
                self._info = read_domain(str(self._domain.XMLDesc(0)))
        return self._info

    def state(self) -> tuple[int, int]:
        """``(VIR_DOMAIN_<state>, reason)``."""
        with libvirt_call(f"virDomainGetState {self.info.name}"):
            state, reason = self._domain.state()
        return int(state), int(reason)

    def start(self) -> None:
        """Start it; one already running is fine."""
        try:
            with libvirt_call(f"virDomainCreate {self.info.name}"):
                self._domain.create()
        except CloudError as exc:
            if not is_code(exc, OPERATION_INVALID):
                raise

    def destroy(self) -> None:
        """Power it off at once; one not running, or gone, is fine."""
        try:
            with libvirt_call(f"virDomainDestroy {self.info.name}"):
                self._domain.destroy()
        except CloudError as exc:
            if not is_code(exc, OPERATION_INVALID, NO_DOMAIN):
                raise

    def shutdown(self) -> None:
        """Ask the guest to power off (ACPI)."""
        with libvirt_call(f"virDomainShutdown {self.info.name}"):
            self._domain.shutdown()

    def undefine(self) -> None:
        """Remove its definition; one gone is fine."""
        try:
            with libvirt_call(f"virDomainUndefine {self.info.name}"):
                self._domain.undefine()
        except CloudError as exc:
            if not is_code(exc, NO_DOMAIN):
                raise

    def address(self, source: str) -> str | None:
        """Its first IPv4 address from ``source`` (lease, agent or arp), or None yet."""
        try:
            with libvirt_call(f"virDomainInterfaceAddresses {self.info.name}"):
                interfaces = self._domain.interfaceAddresses(ADDRESS_SOURCES[source], 0) or {}
        except CloudError as exc:
            if exc.retryable:
                raise
            return None  # no agent yet, not running: no address yet
        for interface in interfaces.values():
            for address in interface.get("addrs") or ():
                if address.get("type") == 0 and address.get("addr"):
                    return str(address["addr"])
        return None


class Hypervisor:
    """One libvirt connection."""

    def __init__(self, uri: str, connection: Any) -> None:
        self.uri = uri
        self._connection = connection

    @classmethod
    def open(cls, uri: str, wait_seconds: float, clock: Callable[[], float] = time.monotonic) -> Hypervisor:
        """Connect to ``uri``, trying again for ``wait_seconds`` while libvirtd cannot be reached.

        :raises CloudError: libvirt's refusal, or the last connection error (retryable).
        """
        libvirt = _libvirt()
        deadline = clock() + wait_seconds
        while True:
            try:
                with libvirt_call(f"virConnectOpen {uri}"):
                    return cls(uri, libvirt.open(uri))
            except CloudError as exc:
                if not exc.retryable or clock() + _RETRY_PAUSE > deadline:
                    raise
            time.sleep(_RETRY_PAUSE)

    def close(self) -> None:
        try:
            with libvirt_call("virConnectClose"):
                self._connection.close()
        except CloudError:
            pass  # a connection already lost is closed

    def alive(self) -> bool:
        """Whether the connection still reaches libvirtd (a restarted libvirtd drops it)."""
        try:
            with libvirt_call("virConnectIsAlive"):
                return bool(self._connection.isAlive())
        except CloudError:
            return False

    def domains(self) -> list[Guest]:
        """Every domain, running or not."""
        with libvirt_call("virConnectListAllDomains"):
            return [Guest(domain) for domain in self._connection.listAllDomains(0)]

    def find(self, *, uuid: str | None = None, name: str | None = None) -> Guest | None:
        """The domain with this UUID (else this name), or None."""
        try:
            if uuid:
                with libvirt_call("virDomainLookupByUUIDString"):
                    return Guest(self._connection.lookupByUUIDString(uuid))
            if name:
                with libvirt_call("virDomainLookupByName"):
                    return Guest(self._connection.lookupByName(name))
        except CloudError as exc:
            if not is_code(exc, NO_DOMAIN) and exc.code != "VIR_ERR_INVALID_ARG":
                raise
        return None

    def define(self, xml: str, machine_uuid: str) -> Guest:
        """Define a domain (persistent), or return the one with its UUID already defined."""
        try:
            with libvirt_call("virDomainDefineXML"):
                return Guest(self._connection.defineXML(xml))
        except CloudError as exc:
            existing = self.find(uuid=machine_uuid)
            if existing is None or not is_code(exc, DOM_EXIST, OPERATION_FAILED):
                raise
            return existing

    def free_memory(self) -> int:
        """Bytes of memory the host can give guests now (free, buffers and page cache)."""
        libvirt = _libvirt()
        try:
            with libvirt_call("virNodeGetMemoryStats"):
                stats = self._connection.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
            return 1024 * sum(int(stats.get(key, 0)) for key in ("free", "buffers", "cached"))
        except CloudError as exc:
            if not is_code(exc, *NO_SUPPORT):
                raise
        with libvirt_call("virNodeGetFreeMemory"):
            return int(self._connection.getFreeMemory())

    def _pool(self, pool: str) -> Any:
        with libvirt_call(f"virStoragePoolLookupByName {pool}"):
            return self._connection.storagePoolLookupByName(pool)

    def volume_path(self, pool: str, name: str) -> str:
        """The path of a volume (the base of overlays)."""
        with libvirt_call(f"virStorageVolLookupByName {pool}/{name}"):
            return str(self._pool(pool).storageVolLookupByName(name).path())

    def volume_capacity(self, pool: str, name: str) -> int:
        with libvirt_call(f"virStorageVolGetInfo {pool}/{name}"):
            return int(self._pool(pool).storageVolLookupByName(name).info()[1])

    def create_volume(self, pool: str, xml: str) -> None:
        """Create a volume in ``pool``; one of the same name already there is fine."""
        try:
            with libvirt_call(f"virStorageVolCreateXML {pool}"):
                self._pool(pool).createXML(xml, 0)
        except CloudError as exc:
            if not is_code(exc, STORAGE_VOL_EXIST) and "already exists" not in exc.message:
                raise

    def upload(self, pool: str, name: str, data: bytes) -> None:
        """Write ``data`` over the volume's content through libvirt's stream API (the bytes
        travel over the connection, so a ``qemu+ssh://`` host gets them too)."""
        with libvirt_call(f"virStorageVolUpload {pool}/{name}"):
            volume = self._pool(pool).storageVolLookupByName(name)
            stream = self._connection.newStream(0)
            try:
                volume.upload(stream, 0, len(data), 0)
                stream.sendAll(lambda _stream, size, source: source.read(size), io.BytesIO(data))
                stream.finish()
            except BaseException:
                with suppress(Exception):
                    stream.abort()
                raise

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete a volume; one gone is fine."""
        try:
            with libvirt_call(f"virStorageVolDelete {pool}/{name}"):
                self._pool(pool).storageVolLookupByName(name).delete(0)
        except CloudError as exc:
            if not is_code(exc, NO_STORAGE_VOL):
                raise

    def version(self) -> str:
        """The hypervisor's driver and version (``QEMU 7.2.0``)."""
        with libvirt_call("virConnectGetVersion"):
            kind, number = str(self._connection.getType()), int(self._connection.getVersion())
        return f"{kind} {number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

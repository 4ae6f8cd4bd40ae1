"""Fixtures for the libvirt provider on libvirt's in-library test driver (``test:///default``).

The test driver keeps its domains, networks and pools in the process while any connection
to it is open: :class:`TestDriver` holds one open for a test and removes, when the test
ends, every domain and volume the test made (the driver's own domain ``test`` stays).

The test driver has no volume streams (``virStorageVolUpload`` is "not supported" there):
:class:`TestDriver` stands in for them at libvirt-python's stream calls and keeps the bytes
each upload wrote (:attr:`TestDriver.uploads`). ``nox -s guests`` uploads through a real
libvirtd's streams and reads the seed back in a real guest.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.models import ProviderContext, Template

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")

import pycdlib  # noqa: E402  (a dependency of ohfp-libvirt)

from ohfp_core.values import Values  # noqa: E402
from ohfp_libvirt.cloud import LibvirtCloud  # noqa: E402
from ohfp_libvirt.hypervisor import Hypervisor  # noqa: E402
from ohfp_libvirt.provider import LibvirtProvider  # noqa: E402
from ohfp_libvirt.settings import read_settings  # noqa: E402
from testbeds.libvirt.guest import BootFiles, boot_files  # noqa: E402
from testbeds.libvirt.lab_host import Lab, missing  # noqa: E402

TEST_URI = "test:///default"
POOL = "default-pool"
BASE = "base.qcow2"
USER_DATA = "#cloud-config\nhostname: kit\n"


def kit_template(template_id: str = "lv-small", **fields: Any) -> Template:
    """A template that boots a qcow2 overlay of the test pool's base volume."""
    return Template(
        template_id=template_id,
        max_number=20,
        fields={"vcpus": 1, "memoryMiB": 64, "baseVolume": {"pool": POOL, "volume": BASE}, **fields},
    )


def read_seed(image: bytes) -> dict[str, bytes]:
    """The files of a seed image by their Joliet and their Rock Ridge names (which must agree)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        files = {}
        for name in ("user-data", "meta-data"):
            joliet, rock_ridge = io.BytesIO(), io.BytesIO()
            iso.get_file_from_iso_fp(joliet, joliet_path=f"/{name}")
            iso.get_file_from_iso_fp(rock_ridge, rr_path=f"/{name}")
            assert joliet.getvalue() == rock_ridge.getvalue()
            files[name] = joliet.getvalue()
        return files
    finally:
        iso.close()


class FakeStreams:
    """libvirt-python's volume upload and stream calls, for the test driver that has none:
    each finished upload's bytes are kept in :attr:`uploads` by volume name."""

    def __init__(self) -> None:
        self.uploads: dict[str, bytes] = {}
        pending: dict[int, tuple[str, int, bytearray]] = {}

        def upload(volume: Any, stream: Any, offset: int, length: int, flags: int = 0) -> int:
            assert (offset, flags) == (0, 0), "a seed is written whole"
            pending[id(stream)] = (volume.name(), length, bytearray())
            return 0

        def send(stream: Any, data: bytes) -> int:
            pending[id(stream)][2].extend(data)
            return len(data)

        def finish(stream: Any) -> None:
            name, length, data = pending.pop(id(stream))
            assert len(data) == length, f"{name}: {len(data)} bytes sent of {length} announced"
            self.uploads[name] = bytes(data)

        def abort(stream: Any) -> None:
            pending.pop(id(stream), None)

        fakes = {
            (libvirt.virStorageVol, "upload"): upload,
            (libvirt.virStream, "send"): send,
            (libvirt.virStream, "finish"): finish,
            (libvirt.virStream, "abort"): abort,
        }
        self._originals = {key: getattr(*key) for key in fakes}
        for (owner, name), fake in fakes.items():
            setattr(owner, name, fake)

    def close(self) -> None:
        for (owner, name), original in self._originals.items():
            setattr(owner, name, original)


class TestDriver:
    """Plays the hypervisor's administrator on ``test:///default``."""

    __test__ = False

    def __init__(self, tmp_path: Path) -> None:
        self.connection = libvirt.open(TEST_URI)
        self.pool = self.connection.storagePoolLookupByName(POOL)
        self.before = {domain.UUIDString() for domain in self.connection.listAllDomains(0)}
        self.volumes_before = set(self.pool.listVolumes())
        if BASE not in self.volumes_before:
            self.pool.createXML(
                f"<volume><name>{BASE}</name><capacity unit='M'>64</capacity>"
                "<target><format type='qcow2'/></target></volume>",
                0,
            )
        self.broken_uri = f"test://{tmp_path}/no-such-host.xml"
        self._break_next = False
        self.streams = FakeStreams()
        self._restore: list[Callable[[], None]] = [self.streams.close]

    @property
    def uploads(self) -> dict[str, bytes]:
        """What each upload wrote, by volume name."""
        return self.streams.uploads

    def template(self) -> Template:
        """The kit's machines boot an overlay and carry user data (a seed volume each)."""
        if self._break_next:
            self._break_next = False
            return kit_template(uri=self.broken_uri, userData=USER_DATA)
        return kit_template(userData=USER_DATA)

    def domain(self, machine_id: str) -> Any:
        return self.connection.lookupByUUIDString(machine_id)

    def take_away(self, machine_id: str) -> None:
        """The host's administrator shuts the guest down (libvirt gives no notice)."""
        self.domain(machine_id).shutdown()

    def resources(self) -> dict[str, str]:
        """The domains the test made (defined, whatever their state) and their volumes."""
        held = {domain.UUIDString(): f"state {domain.state()[0]}" for domain in self.made()}
        held.update({f"volume {name}": "allocated" for name in self.volumes()})
        return held

    def interrupt_after_create(self, interrupt: Callable[[], None]) -> None:
        """``interrupt()`` once, right after the provider's next define reached libvirt."""
        original = Hypervisor.define

        def define(hypervisor: Hypervisor, xml: str, machine_uuid: str) -> Any:
            made = original(hypervisor, xml, machine_uuid)
            Hypervisor.define = original  # type: ignore[method-assign]
            interrupt()
            return made

        Hypervisor.define = define  # type: ignore[method-assign,assignment]
        self._restore.append(lambda: setattr(Hypervisor, "define", original))

    def terminate_outside(self, machine_id: str) -> None:
        """``virsh destroy``: powered off outside Host Factory."""
        self.domain(machine_id).destroy()

    def inject_api_error(self) -> None:
        """The next template names a host that cannot be reached."""
        self._break_next = True

    def volumes(self) -> set[str]:
        return set(self.pool.listVolumes()) - self.volumes_before - {BASE}

    def made(self) -> list[Any]:
        """The domains the test made, running or not."""
        return [d for d in self.connection.listAllDomains(0) if d.UUIDString() not in self.before]

    def close(self) -> None:
        for restore in self._restore:
            restore()
        for domain in self.made():
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        for name in self.volumes():
            self.pool.storageVolLookupByName(name).delete(0)
        self.connection.close()


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[TestDriver]:
    made = TestDriver(tmp_path)
    yield made
    made.close()


@pytest.fixture
def make_cloud(tmp_path: Path) -> Iterator[Callable[..., LibvirtCloud]]:
    """``make_cloud(clock=…, **config)``: a cloud for instance ``lvinst`` on the test driver;
    every cloud of a test shares one state store's values, as the calls of an instance do."""
    made: list[LibvirtCloud] = []
    values = Values("libvirt")

    def make(clock: Callable[[], float] | None = None, **config: Any) -> LibvirtCloud:
        context = ProviderContext(
            instance="lvinst",
            provider_type="libvirt",
            confdir=tmp_path,
            workdir=tmp_path,
            config={"LIBVIRT_URI": TEST_URI, **config},
            values=values,
        )
        settings = read_settings(context.config)
        cloud = LibvirtCloud(context, settings) if clock is None else LibvirtCloud(context, settings, clock)
        made.append(cloud)
        return cloud

    yield make
    for cloud in made:
        cloud.close()


@pytest.fixture
def make_provider(make_cloud: Callable[..., LibvirtCloud]) -> Callable[..., LibvirtProvider]:
    def make(**config: Any) -> LibvirtProvider:
        return LibvirtProvider(make_cloud(**config))

    return make


# -- real guests under QEMU (nox -s guests) ----------------------------------------------------------

REQUIRE_ENV = "OHFP_REQUIRE_LIBVIRT"
"""Set (CI sets it) to make a missing QEMU, libvirtd or root fail the real-guest tests, not skip them."""


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A private libvirtd with isolated networks (see :mod:`testbeds.libvirt.lab_host`)."""
    why = missing()
    if why is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but {why}")
        pytest.skip(why)
    started = Lab.start(tmp_path_factory.mktemp("libvirt-lab"))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def boot() -> BootFiles:
    """Debian's cloud kernel and the busybox initramfs (fetched and built once, cached)."""
    return boot_files()

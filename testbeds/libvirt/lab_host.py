"""The test's side of the private libvirt host (:mod:`testbeds.libvirt.lab`): start it, use it, remove it.

:meth:`Lab.start` makes a network namespace, starts the lab process in it, waits for
libvirtd's socket and defines two isolated networks: ``ohfp-lab`` (DHCP, dnsmasq told not to
ping an address before offering it, which would serialise several guests' leases) and
``ohfp-nodhcp`` (no DHCP: a guest there never gets an address), and a directory storage
pool ``ohfp-lab`` in ``DIR/pool`` for base volumes, overlays and seeds. :meth:`Lab.clear`
removes every domain and every volume but the bases (``base-*``); :meth:`Lab.stop` clears,
stops the lab (libvirtd, QEMU, dnsmasq), and deletes the namespace; it runs also after a
failed test. :func:`missing` says why a lab cannot run on this machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 90
NETWORKS = {
    "ohfp-lab": (
        "<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>"
        "<name>ohfp-lab</name><bridge name='ohfplab0'/>"
        "<ip address='192.168.150.1' netmask='255.255.255.0'>"
        "<dhcp><range start='192.168.150.10' end='192.168.150.250'/></dhcp></ip>"
        "<dnsmasq:options><dnsmasq:option value='no-ping'/></dnsmasq:options>"
        "</network>"
    ),
    "ohfp-nodhcp": (
        "<network><name>ohfp-nodhcp</name><bridge name='ohfpnodhcp0'/>"
        "<ip address='192.168.151.1' netmask='255.255.255.0'/></network>"
    ),
}
POOL = "ohfp-lab"
BASE_PREFIX = "base-"
"""Volumes the tests build once per session and :meth:`Lab.clear` keeps."""
_count = itertools.count()


def missing() -> str | None:
    """Why a lab with real guests cannot run here (root, the Debian packages, the tools), or None."""
    if os.geteuid() != 0:
        return "real guests need root (network namespaces, mounts, libvirtd)"
    tools = ("/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img", "/bin/busybox")
    for tool in (*tools, "/usr/sbin/dnsmasq"):
        if not Path(tool).exists():
            return f"{tool} is missing (.ci/run installs the Debian packages)"
    for command in ("ip", "unshare", "apt-get", "dpkg-deb"):
        if shutil.which(command) is None:
            return f"{command} is missing"
    return None


def _libvirt() -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda _context, _error: None, None)
    return libvirt


@attrs.define
class Lab:
    """A libvirtd in a network and mount namespace of its own, reached by ``uri``."""

    root: Path
    netns: str
    process: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.root / 'sock' / 'libvirt-sock'}"

    @classmethod
    def start(cls, root: Path) -> Lab:
        netns = f"ohfp-lv-{os.getpid()}-{next(_count)}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        log = open(root / "lab.out", "ab")  # noqa: SIM115  (the lab's, for its life)
        enter = ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private"]
        process = subprocess.Popen(
            [*enter, sys.executable, "-m", "testbeds.libvirt.lab", str(root)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        lab = cls(root, netns, process)
        try:
            lab.wait_ready()
            with lab.connection() as connection:
                for xml in NETWORKS.values():
                    network = connection.networkDefineXML(xml)
                    network.create()
                pool = connection.storagePoolDefineXML(
                    f"<pool type='dir'><name>{POOL}</name>"
                    f"<target><path>{root / 'pool'}</path></target></pool>"
                )
                pool.build(0)
                pool.create(0)
        except BaseException:
            lab.stop()
            raise
        return lab

    def wait_ready(self, old_pid: int | None = None) -> None:
        """Until libvirtd (another than ``old_pid``) answers on the socket."""
        deadline = time.monotonic() + START_SECONDS
        libvirt = _libvirt()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the lab exited: {self.tail()}")
            if old_pid is None or self.libvirtd_pid() not in (None, old_pid):
                try:
                    libvirt.open(self.uri).close()
                    return
                except libvirt.libvirtError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd did not answer in {START_SECONDS} s: {self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        texts = []
        for name in ("lab.out", "libvirtd.out", "libvirtd.log"):
            path = self.root / name
            if path.exists():
                texts.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(texts)

    @contextlib.contextmanager
    def connection(self) -> Any:
        connection = _libvirt().open(self.uri)
        try:
            yield connection
        finally:
            connection.close()

    def libvirtd_pid(self) -> int | None:
        try:
            return int((self.root / "libvirtd.pid").read_text())
        except (OSError, ValueError):
            return None

    def restart_libvirtd(self) -> None:
        """Stop libvirtd (the lab starts it again) and wait for the new one to answer."""
        pid = self.libvirtd_pid()
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        self.wait_ready(old_pid=pid)

    @property
    def pool_dir(self) -> Path:
        """The directory of the ``ohfp-lab`` storage pool."""
        return self.root / "pool"

    def volumes(self) -> set[str]:
        """The volumes in the ``ohfp-lab`` pool but the bases."""
        with self.connection() as connection:
            pool = connection.storagePoolLookupByName(POOL)
            pool.refresh(0)
            return {name for name in pool.listVolumes() if not name.startswith(BASE_PREFIX)}

    def clear(self) -> None:
        """Remove every domain and every volume but the bases."""
        with self.connection() as connection:
            for domain in connection.listAllDomains(0):
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
        leftover = self.volumes()
        with self.connection() as connection:
            pool = connection.storagePoolLookupByName(POOL)
            for name in leftover:
                pool.storageVolLookupByName(name).delete(0)

    def stop(self) -> None:
        """Remove every domain, stop the lab and delete its namespace."""
        try:
            if self.process.poll() is None:
                self.clear()
        except Exception as exc:  # the lab may be broken: stopping it still removes everything
            print(f"lab: removing domains failed: {exc}", file=sys.stderr)
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            subprocess.run(["ip", "netns", "delete", self.netns], check=False)

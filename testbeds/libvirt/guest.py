"""The real guests' boot files: Debian's cloud kernel and a ~1 MB busybox initramfs.

No disk image: the kernel is extracted from Debian's ``linux-image-*-cloud-amd64`` package
(fetched with ``apt-get download``, never installed) and the initramfs is built here from
``busybox-static`` and the kernel's modules (virtio network, disk and SCSI, the SCSI CD-ROM
and ISO 9660). The guest loads the modules, asks for a DHCP lease until it gets one
(libvirt reads the lease to give the machine its address) and then idles.

With ``ohfp.seed`` on its kernel command line the guest does, before DHCP, what cloud-init's
NoCloud data source and its script handler do: it mounts its NoCloud seed (the CD-ROM
``/dev/sr0``, ISO 9660) on ``/seed`` and runs ``/seed/user-data`` when it is a ``#!``
script. When ``/etc/hostname`` exists then (the user data may write it), the guest sends it
as its DHCP host name, which libvirt's leases show: that is how a test reads what a guest saw.

Built files are cached under ``$XDG_CACHE_HOME/ohfp-tests`` (else ``~/.cache/ohfp-tests``)
by kernel version and by a digest of what goes into the initramfs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from attrs import frozen

META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "sr_mod", "isofs")
"""The modules the guest needs (network, disk, the seed's CD-ROM on virtio-scsi and its file
system); their dependencies come from each module's ``depends=``."""

INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin /tmp /var/run
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in {modules}; do insmod /lib/modules/$module.ko; done
ip link set lo up
until ip link set eth0 up; do sleep 0.2; done
echo "ohfp guest: init up" > /dev/ttyS0
if grep -qw ohfp.seed /proc/cmdline; then
  waited=0
  until [ -b /dev/sr0 ] || [ $waited -ge 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  mkdir -p /seed /etc
  if mount -t iso9660 -o ro /dev/sr0 /seed; then
    echo "ohfp guest: seed mounted" > /dev/ttyS0
    case "$(head -n 1 /seed/user-data)" in '#!'*) sh /seed/user-data > /dev/ttyS0 2>&1;; esac
  fi
fi
name=""
[ -s /etc/hostname ] && name="-x hostname:$(cat /etc/hostname)"
until udhcpc -i eth0 -q -f -n -t 3 -T 1 -s /udhcpc.sh $name; do sleep 1; done
echo "ohfp guest: address taken" > /dev/ttyS0
while true; do sleep 3600; done
"""
UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip link set "$interface" up
ip addr add "$ip/${mask:-24}" dev "$interface"
"""


@frozen
class BootFiles:
    """A kernel and an initramfs on the local disk."""

    kernel: Path
    initrd: Path


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ohfp-tests" / "libvirt-guest"


def _package() -> str:
    """The versioned cloud kernel package the meta package points at."""
    done = subprocess.run(["apt-cache", "depends", META_PACKAGE], capture_output=True, text=True, check=True)
    found = re.findall(r"Depends:\s*(linux-image-[\w.+-]+-cloud-amd64)", done.stdout)
    if not found:
        raise RuntimeError(f"apt-cache depends {META_PACKAGE} names no kernel: {done.stdout}")
    return str(found[0])


def _extract(package: str, into: Path) -> Path:
    """Download ``package`` (not installing it) and unpack it under ``into``."""
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            ["apt-get", "download", "-q", package], cwd=download, capture_output=True, text=True, check=True
        )
        [deb] = Path(download).glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


def _depends(module: Path) -> list[str]:
    """The modules ``module`` needs, from its ``.modinfo`` ``depends=`` line."""
    found = re.search(rb"\x00depends=([^\x00]*)\x00", b"\x00" + module.read_bytes())
    return [name for name in (found.group(1).decode().split(",") if found else []) if name]


def load_order(modules: Mapping[str, Path], wanted: tuple[str, ...]) -> list[str]:
    """``wanted`` and what they depend on, each after its dependencies (the package ships no
    ``modules.dep``)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for needed in _depends(modules[name]):
            visit(needed)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def _cpio(entries: Iterator[tuple[str, int, bytes]]) -> bytes:
    """A ``newc`` cpio archive of ``(path, mode, data)`` entries."""
    out = io.BytesIO()
    for number, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\x00"
        header = "070701" + "".join(
            f"{value:08X}" for value in (number, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        )
        out.write(header.encode() + encoded)
        out.write(b"\x00" * (-(110 + len(encoded)) % 4))
        out.write(data)
        out.write(b"\x00" * (-len(data) % 4))
    return out.getvalue()


def init_script(order: list[str]) -> str:
    """The guest's /init, loading the modules in ``order``."""
    return INIT.replace("{modules}", " ".join(order))


def build_initramfs(modules: Mapping[str, Path], order: list[str]) -> bytes:
    """The gzipped initramfs: busybox, /init, the DHCP script and the modules in ``order``."""
    directory, executable, regular = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG | 0o644

    def entries() -> Iterator[tuple[str, int, bytes]]:
        for name in ("bin", "lib", "lib/modules"):
            yield name, directory, b""
        yield "bin/busybox", executable, BUSYBOX.read_bytes()
        yield "init", executable, init_script(order).encode()
        yield "udhcpc.sh", executable, UDHCPC_SCRIPT.encode()
        for name in order:
            yield f"lib/modules/{name}.ko", regular, modules[name].read_bytes()

    return gzip.compress(_cpio(entries()), mtime=0)


def boot_files() -> BootFiles:
    """The cached kernel and initramfs, fetched and built on first use."""
    package = _package()
    recipe = hashlib.sha256(f"{INIT}{UDHCPC_SCRIPT}{MODULES}".encode()).hexdigest()[:12]
    where = cache_dir() / f"{package}-{recipe}"
    files = BootFiles(kernel=where / "vmlinuz", initrd=where / "initrd.img")
    if files.kernel.exists() and files.initrd.exists():
        return files
    where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=where) as scratch:
        root = _extract(package, Path(scratch))
        [vmlinuz] = (root / "boot").glob("vmlinuz-*")
        modules = {path.stem: path for path in (root / "lib" / "modules").rglob("*.ko")}
        initrd = build_initramfs(modules, load_order(modules, MODULES))
        files.initrd.write_bytes(initrd)
        vmlinuz.replace(files.kernel)
    return files

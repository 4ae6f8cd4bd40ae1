"""A private libvirt host for the real-guest tests: libvirtd and QEMU in a namespace of their own.

``python -m testbeds.libvirt.lab DIR`` is started by :class:`Lab` as
``ip netns exec NS unshare --mount --propagation private python -m testbeds.libvirt.lab DIR``:

- **network**: the process is in the network namespace NS, which the test made; libvirtd,
  its dnsmasq and every guest live there, on an isolated libvirt network (no forwarding), so
  no packet leaves the namespace. The Host Factory scripts run outside and reach libvirtd
  through its Unix socket in ``DIR/sock`` (a file, not the network).
- **mounts**: in a private mount namespace, ``DIR``'s own directories are bound over
  ``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt`` and
  ``/var/cache/libvirt``: the host's libvirt configuration and state are neither read nor
  changed, and everything goes when the namespace does. An empty file is bound **read-only**
  over ``/dev/kvm`` and ``qemu.conf`` says ``namespaces = [ ]``: with a ``/dev/kvm`` that
  cannot be used, libvirt would otherwise probe QEMU again on every define (tens of seconds).
- **processes**: this process is a child subreaper: QEMU and dnsmasq, which libvirtd
  daemonises, become its children and are reaped at once (the machine's init reaps orphans
  only every few seconds, which every destroy would wait for). It restarts libvirtd when
  libvirtd exits (a test kills it to restart it) and writes libvirtd's pid to
  ``DIR/libvirtd.pid`` each time. On SIGTERM it stops libvirtd, kills what is left and exits.

Only the test support runs this; it needs root, ``ip`` and ``unshare``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BOUND = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt")
PR_SET_CHILD_SUBREAPER = 36


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _configure(root: Path) -> None:
    """Write libvirtd.conf and qemu.conf into ``root/etc``, the directory bound over /etc/libvirt."""
    etc = root / "etc"
    (etc / "qemu").mkdir(parents=True, exist_ok=True)
    (root / "sock").mkdir(exist_ok=True)
    (etc / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{root / "sock"}"\n'
        'unix_sock_rw_perms = "0700"\n'
        'auth_unix_rw = "none"\n'
        'auth_unix_ro = "none"\n'
        f'log_outputs = "3:file:{root / "libvirtd.log"}"\n'
    )
    (etc / "qemu.conf").write_text(
        'user = "root"\ngroup = "root"\nnamespaces = [ ]\nsecurity_driver = "none"\nstdio_handler = "file"\n'
    )


def _isolate(root: Path) -> None:
    """Bind ``root``'s directories over libvirt's, and a read-only empty file over /dev/kvm."""
    for target in BOUND:
        source = root / Path(target).name
        if target == "/etc/libvirt":
            source = root / "etc"
        source.mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(source), target)
    if Path("/dev/kvm").exists():
        blank = root / "no-kvm"
        blank.touch()
        _mount("--bind", str(blank), "/dev/kvm")
        _mount("-o", "remount,bind,ro", "/dev/kvm")


class Supervisor:
    """Runs libvirtd, restarts it when it exits, reaps every orphan."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stopping = False
        self.libvirtd: subprocess.Popen[bytes] | None = None

    def start_libvirtd(self) -> None:
        log = open(self.root / "libvirtd.out", "ab")  # noqa: SIM115  (the daemon's, for its life)
        self.libvirtd = subprocess.Popen(
            ["/usr/sbin/libvirtd", "--config", str(self.root / "etc" / "libvirtd.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        pid_file = self.root / "libvirtd.pid"
        pid_file.with_suffix(".tmp").write_text(str(self.libvirtd.pid))
        pid_file.with_suffix(".tmp").replace(pid_file)

    def stop(self, *_: object) -> None:
        self.stopping = True
        if self.libvirtd is not None and self.libvirtd.poll() is None:
            self.libvirtd.terminate()

    def children(self) -> list[int]:
        """Processes whose parent is this one (QEMU, dnsmasq once orphaned)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.append(int(stat.parent.name))
        return found

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        self.start_libvirtd()
        while True:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                pid = -1
            except InterruptedError:
                continue
            if self.stopping:
                break
            if self.libvirtd is not None and pid == self.libvirtd.pid:
                self.libvirtd.returncode = 0
                time.sleep(0.1)
                self.start_libvirtd()
            elif pid == -1:
                time.sleep(0.1)
        deadline = time.monotonic() + 10
        while self.libvirtd is not None and self.libvirtd.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.children():
            os.kill(pid, signal.SIGKILL)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break


def main(root: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    _configure(root)
    _isolate(root)
    Supervisor(root).run()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

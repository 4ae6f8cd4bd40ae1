"""Benchmark the libvirt provider through the Host Factory scripts. Prints figures, asserts nothing.

Run by ``nox -s bench`` after bench_hf.py (``-- --runs 15``), ohfp installed as users install it.

1. ``test:///default`` (libvirt's in-library test driver, which reports 3 MiB free: machines of
   1 MiB): wall time of each call over
   ``--runs`` fresh processes. The driver's state lives only as long as the process, so each
   call starts from the driver's default host: the figures are start-up, libvirt-python's
   import and the provider's own work, not a hypervisor's.
2. ``qemu:///system`` on a private libvirtd with real guests (as root, with Debian's qemu and
   libvirt packages; skipped otherwise, saying why): for 1 and 4 machines, requestMachines,
   the first getRequestStatus, the time until the request is complete (every guest running
   with a DHCP address, polling every half second), requestReturnMachines and the time until
   the return is complete; then 1 and 4 machines whose template has user data (each machine's
   NoCloud seed built, uploaded into the lab's pool, mounted by the guest, deleted on return).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_hf import ROOT, Instance, print_table

sys.path.insert(0, str(ROOT))  # the test beds: the lab and the guests' boot files

CALLS = ("getAvailableTemplates", "requestMachines", "getRequestStatus", "requestReturnMachines")


def _template(**fields: Any) -> dict[str, Any]:
    return {"templateId": "bench", "maxNumber": 8, "vcpus": 1, "memoryMiB": 160, **fields}


def bench_test_driver(base: Path, runs: int) -> None:
    instance = Instance(base / "test-driver", "lvinst", "libvirt")
    instance.write("config", {"LIBVIRT_URI": "test:///default"})
    instance.write("templates", {"templates": [_template(memoryMiB=1, kernel="/boot/vmlinuz")]})
    ask = {"template": {"templateId": "bench", "machineCount": 1}}
    held = {"machines": [{"name": "ohfp-000000000000", "machineId": "00000000-0000-0000-0000-000000000000"}]}
    samples: dict[str, list[float]] = {call: [] for call in (*CALLS, "getReturnRequests")}
    instance.call("getAvailableTemplates")  # warm-up
    for _ in range(runs):
        samples["getAvailableTemplates"].append(instance.call("getAvailableTemplates")[0])
        elapsed, reply = instance.call("requestMachines", ask)
        samples["requestMachines"].append(elapsed)
        status = {"requests": [{"requestId": reply["requestId"]}]}
        samples["getRequestStatus"].append(instance.call("getRequestStatus", status)[0])
        samples["requestReturnMachines"].append(instance.call("requestReturnMachines", held)[0])
        samples["getReturnRequests"].append(instance.call("getReturnRequests", held)[0])
    print_table(
        f"libvirt provider on test:///default: wall time per HF call, {runs} fresh processes each",
        [(call, values, "") for call, values in samples.items()],
    )


def _until_done(instance: Instance, request_id: str, limit: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        _, reply = instance.call("getRequestStatus", {"requests": [{"requestId": request_id}]})
        if reply["requests"][0]["status"] != "running":
            return time.perf_counter() - start
        time.sleep(0.5)
    raise SystemExit(f"{request_id} still running after {limit} s")


def _guest_round(instance: Instance, count: int, template_id: str) -> dict[str, float]:
    """One request of ``count`` real guests to complete and back: seconds per step."""
    times = {}
    ask = {"template": {"templateId": template_id, "machineCount": count}}
    times["requestMachines"], reply = instance.call("requestMachines", ask)
    status = {"requests": [{"requestId": reply["requestId"]}]}
    times["first getRequestStatus"] = instance.call("getRequestStatus", status)[0]
    times["until complete"] = _until_done(instance, reply["requestId"])
    machines = instance.call("getRequestStatus", status)[1]["requests"][0]["machines"]
    held = {"machines": [{"name": m["name"], "machineId": m["machineId"]} for m in machines]}
    times["requestReturnMachines"], returned = instance.call("requestReturnMachines", held)
    times["until the return is complete"] = _until_done(instance, returned["requestId"])
    return times


def bench_guests(base: Path, rounds: int) -> None:
    from testbeds.libvirt.guest import boot_files
    from testbeds.libvirt.lab_host import POOL, Lab, missing

    why = missing()
    if why is not None:
        print(f"\nlibvirt provider on qemu:///system: skipped ({why})")
        return
    boot = boot_files()
    (base / "lab").mkdir()
    lab = Lab.start(base / "lab")
    try:
        instance = Instance(base / "guests", "lvinst", "libvirt")
        instance.write("config", {"LIBVIRT_URI": lab.uri})
        guest = {"kernel": str(boot.kernel), "initrd": str(boot.initrd), "domainType": "qemu"}
        plain = _template(network="ohfp-lab", cmdline="console=ttyS0 quiet", **guest)
        seeded = _template(
            templateId="bench-seeded",
            network="ohfp-lab",
            cmdline="console=ttyS0 quiet ohfp.seed",
            pool=POOL,
            userData="#cloud-config\nhostname: bench\n",
            **guest,
        )
        instance.write("templates", {"templates": [plain, seeded]})
        rows = []
        for template_id, count in (("bench", 1), ("bench", 4), ("bench-seeded", 1), ("bench-seeded", 4)):
            times: dict[str, list[float]] = {}
            for _ in range(rounds):
                for name, seconds in _guest_round(instance, count, template_id).items():
                    times.setdefault(name, []).append(seconds)
            label = f"{count} machine{'s' * (count > 1)}{' with user data' * (template_id != 'bench')}"
            rows += [(f"{label}: {name}", values, "") for name, values in times.items()]
        print_table(
            f"libvirt provider on qemu:///system (QEMU without KVM, private libvirtd), {rounds} rounds",
            rows,
            width=60,
        )
    finally:
        lab.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds on test:///default (default 15)")
    parser.add_argument(
        "--guest-rounds", type=int, default=2, help="rounds with real guests (default 2; 0 skips)"
    )
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="ohfp-bench-libvirt-") as scratch:
        bench_test_driver(Path(scratch), args.runs)
        if args.guest_rounds:
            bench_guests(Path(scratch), args.guest_rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the five Host Factory calls as Host Factory makes them. Prints figures, asserts nothing.

Run by ``nox -s bench`` (``-- --runs 15 --aws-runs 5``), in a virtualenv where ohfp is installed
as users install it (wheels, bytecode compiled). Every call is ``<call>.sh -f <input.json>`` in a
fresh process with a bare environment (``PATH=/usr/bin:/bin`` and the ``HF_*`` variables).

1. The mock provider: median and p90 wall time per call over ``--runs`` rounds.
2. Import costs: ``-X importtime`` of one call, the biggest cumulative imports.
3. The resident service side by side with the calls in their own process: in-process, the
   fallback when no service can be had, a warm service through the curl scripts and through
   the thin client; the service's resident memory per instance. Beside the wall medians, the
   CPU time per call: the script and all it ran (``RUSAGE_CHILDREN``) and the service meanwhile
   (``/proc/<pid>/stat``, 10 ms ticks: a mean over many calls), which a busy machine does not
   inflate. ``--service-only`` prints these rows (and the AWS service rows) alone.
4. The AWS provider against a moto server in this process: latency per call (moto's own time
   included, so read it as an upper bound) and the AWS API calls each HF call makes, counted on
   the server side (:mod:`moto_counter`); RunInstances in its own process and through the
   service, with moto's own time per call (target: service ≤ moto + 30 ms).
5. What the AWS features ahead of the cloud add per call: draining the interruption queue on
   getRequestStatus and getReturnRequests (no queue, an empty queue, a queue of 11 events),
   and the quota check on getAvailableTemplates (off, uncached, cached). moto has no EC2
   quotas: the server in this process answers GetServiceQuota itself (its backend patched).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# moto reads its AMI catalogue at import: a two-image file keeps the server's start-up small.
os.environ.setdefault("MOTO_AMIS_PATH", str(ROOT / "testbeds" / "amis.json"))

CALLS = (
    "getAvailableTemplates",
    "requestMachines",
    "getRequestStatus",
    "requestReturnMachines",
    "getReturnRequests",
)
BARE_PATH = "/usr/bin:/bin"
TARGET_MS = 150.0
REGION = "us-east-1"
AMI_ID = "ami-0123456789abcdef0"
ATTRIBUTES = {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "1024"]}


MODES = {
    "process": "in its own process (OHFP_SERVICE=off)",
    "fallback": "no service to be had (script, then its own process)",
    "service": "warm service, curl script",
    "client": "warm service, thin python client",
}


class Instance:
    """A provider instance laid out as Host Factory lays it out, with its generated scripts.

    ``mode`` (:data:`MODES`) says how its calls are answered; ``runtime`` is the service's
    runtime directory (a directory the service refuses, for ``fallback``).
    """

    def __init__(
        self, root: Path, name: str, provider: str, mode: str = "process", runtime: Path | None = None
    ) -> None:
        self.root, self.name, self.provider, self.mode = root, name, provider, mode
        self.runtime = runtime or root.parent / "rt"
        self.scripts = root / "scripts"
        for sub in ("conf", "work", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if mode == "client":
            write = "import sys; from pathlib import Path; from ohfp_core.scripts import write_scripts;"
            write += " write_scripts(Path(sys.argv[1]), sys.argv[2], service='client')"
            command = [sys.executable, "-I", "-c", write, str(self.scripts), provider]
        else:
            command = [sys.executable, "-I", "-m", "ohfp_core", "hf", "scripts", "--provider", provider]
            command += [str(self.scripts), *(["--no-service"] if mode == "process" else [])]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - this installation's commands
        self.service_pid: int | None = None
        """The warm service's pid, once known: its CPU time is counted per call."""
        self.cpu: dict[str, dict[str, list[float]]] = {"client": {}, "service": {}}
        """CPU seconds per call: of the script and all it ran, and of the service meanwhile."""

    def env(self) -> dict[str, str]:
        return {
            "PATH": BARE_PATH,
            "HF_PROVIDER_NAME": self.name,
            "HF_PROVIDER_CONFDIR": str(self.root / "conf"),
            "HF_PROVIDER_WORKDIR": str(self.root / "work"),
            "HF_PROVIDER_LOGDIR": str(self.root / "log"),
            "OHFP_RUNTIME_DIR": str(self.runtime),
            **({"OHFP_SERVICE": "off"} if self.mode == "process" else {}),
        }

    def service(self, *args: str) -> Any:
        """``ohfp serve ARGS`` for this instance's runtime directory: its JSON, or None."""
        done = subprocess.run(  # noqa: S603 - this installation's own command
            [sys.executable, "-I", "-m", "ohfp_core", "serve", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(done.stdout) if done.returncode == 0 else None

    def wait_service(self) -> dict[str, Any]:
        for _ in range(300):
            found = self.service("--status")
            if found is not None:
                self.service_pid = int(found["pid"])
                return dict(found)
            time.sleep(0.1)
        raise SystemExit("no ohfp service came up")

    def write(self, suffix: str, document: Any) -> None:
        (self.root / "conf" / f"{self.name}prov_{suffix}.json").write_text(json.dumps(document))

    def input_file(self, payload: Any) -> Path:
        path = self.root / "hf_in.json"
        path.write_text(json.dumps(payload))
        return path

    def call(self, call: str, payload: Any = None) -> tuple[float, Any]:
        """Run ``<call>.sh -f <file>``; (wall seconds, reply). Fails loudly on a bad reply."""
        command = [str(self.scripts / f"{call}.sh"), "-f", str(self.input_file(payload or {}))]
        served_before = process_cpu(self.service_pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, check=False)  # noqa: S603 - runs this installation's own commands
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        self.cpu["client"].setdefault(call, []).append(client)
        self.cpu["service"].setdefault(call, []).append(process_cpu(self.service_pid) - served_before)
        if done.returncode != 0:
            raise SystemExit(f"{call} failed (exit {done.returncode}): {done.stdout}{done.stderr}")
        return elapsed, json.loads(done.stdout)


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 for None or a gone one."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_cpu(instances: dict[str, Instance]) -> None:
    """Mean CPU milliseconds per call by mode: the script and what it ran (client), and the
    service meanwhile: figures that hold on a busy machine, where wall time does not."""
    print("  CPU per call (mean ms, client + service = total; the client is the script and all it runs;")
    print("  the service's is read in 10 ms ticks):")
    print("  " + f"{'call':<24}" + "".join(f"{mode:>22}" for mode in instances))
    for call in CALLS:
        cells = []
        for instance in instances.values():
            client = instance.cpu["client"].get(call) or [float("nan")]
            served = instance.cpu["service"].get(call) or [0.0]
            c, v = statistics.mean(client) * 1000, statistics.mean(served) * 1000
            cells.append(f"{c:6.1f} + {v:5.1f} = {c + v:5.1f}")
        print(f"  {call:<24}" + "".join(f"{cell:>22}" for cell in cells))


def quantiles(values: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    ms = [v * 1000 for v in values]
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[8] if len(ms) > 1 else ms[0]
    return statistics.median(ms), p90


def machines_of(reply: Any) -> list[dict[str, str]]:
    return [{"name": m["name"], "machineId": m["machineId"]} for m in reply["requests"][0]["machines"]]


def round_trip(instance: Instance, template: str, count: int) -> dict[str, tuple[float, Any]]:
    """One request's life: templates, request, status until done, return, reclaim check."""
    out: dict[str, tuple[float, Any]] = {"getAvailableTemplates": instance.call("getAvailableTemplates")}
    out["requestMachines"] = instance.call(
        "requestMachines", {"template": {"templateId": template, "machineCount": count}}
    )
    request_id = out["requestMachines"][1]["requestId"]
    for _ in range(50):
        out["getRequestStatus"] = instance.call("getRequestStatus", {"requests": [{"requestId": request_id}]})
        if out["getRequestStatus"][1]["requests"][0]["status"] != "running":
            break
    machines = machines_of(out["getRequestStatus"][1])
    out["requestReturnMachines"] = instance.call("requestReturnMachines", {"machines": machines})
    out["getReturnRequests"] = instance.call("getReturnRequests", {})
    return out


def print_table(title: str, rows: list[tuple[str, list[float], str]], width: int = 24) -> None:
    print(f"\n{title}")
    print(f"  {'call':<{width}}{'median ms':>10}{'p90 ms':>9}  {'n':>3}  notes")
    for name, values, note in rows:
        median, p90 = quantiles(values)
        print(f"  {name:<{width}}{median:>10.1f}{p90:>9.1f}  {len(values):>3}  {note}")


def startup_floor(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True, env={"PATH": BARE_PATH})
        times.append(time.perf_counter() - start)
    return times


def bench_mock(base: Path, runs: int) -> Instance:
    instance = mock_instance(base / "mock", "mockinst", "process")
    round_trip(instance, "bench", 2)  # warm-up: page cache, database files
    samples: dict[str, list[float]] = {call: [] for call in CALLS}
    for _ in range(runs):
        for call, (elapsed, _reply) in round_trip(instance, "bench", 2).items():
            samples[call].append(elapsed)
    rows = []
    for call in CALLS:
        median, _ = quantiles(samples[call])
        rows.append(
            (call, samples[call], "ok" if median <= TARGET_MS else f"over the {TARGET_MS:.0f} ms target")
        )
    rows.append(("(python -I -c pass)", startup_floor(runs), "interpreter start-up floor"))
    print_table(
        f"Mock provider, each call in its own process: wall time per HF call, {runs} fresh processes each"
        f" (target ≤ {TARGET_MS:.0f} ms)",
        rows,
    )
    return instance


def import_costs(instance: Instance, call: str, payload: Any, top: int = 12) -> None:
    command = [sys.executable, "-I", "-X", "importtime", "-m", "ohfp_core", "hf", call, "-f"]
    command += [str(instance.input_file(payload)), "--provider", instance.provider]
    done = subprocess.run(command, env=instance.env(), capture_output=True, text=True, check=True)  # noqa: S603 - runs this installation's own commands
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(cumulative), int(own), name))
    total = sum(row[1] for row in rows)
    print(f"\nImport costs: {instance.provider} {call} ({len(rows)} modules, {total / 1000:.1f} ms in all)")
    print(f"  {'cumulative ms':>13}{'self ms':>9}  module")
    for cumulative_us, self_us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative_us / 1000:>13.1f}{self_us / 1000:>9.1f}  {name}")
    heavy = sorted({name for _, _, name in rows} & {"boto3", "botocore", "sqlite3", "moto"})
    print(f"  heavy modules imported: {', '.join(heavy) or 'none'}")


@contextmanager
def aws_instance(base: Path) -> Iterator[tuple[Instance, Any]]:
    import boto3
    from moto_counter import CountingMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on stderr
    with CountingMotoServer() as server:
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        ec2: Any = boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=server.endpoint,
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"],
        )
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")["Subnet"][
                "SubnetId"
            ]
            for cidr, zone in (("10.0.0.0/20", "a"), ("10.0.16.0/20", "b"))
        ]
        group = ec2.create_security_group(GroupName="bench", Description="bench", VpcId=vpc)["GroupId"]
        instance = Instance(base / "aws", "awsinst", "aws", "process")
        credentials = base / "aws" / "conf" / "credentials"
        credentials.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()))
        instance.write(
            "config",
            {
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": server.endpoint,
                "AWS_CREDENTIAL_FILE": str(credentials),
                "AWS_REQUEST_RETRY_ATTEMPTS": 0,
            },
        )
        common: dict[str, Any] = {
            "maxNumber": -1,
            "attributes": ATTRIBUTES,
            "imageId": AMI_ID,
            "securityGroupIds": [group],
        }
        templates: list[dict[str, Any]] = [
            {
                "templateId": "RunInstances",
                "providerApi": "RunInstances",
                "vmType": "t3.micro",
                "subnetId": subnets,
            },
            {
                "templateId": "EC2Fleet-instant",
                "providerApi": "EC2Fleet",
                "fleetType": "instant",
                "vmTypes": {"t3.micro": 1, "t3a.micro": 1},
                "subnetId": subnets,
            },
            {"templateId": "ASG", "providerApi": "ASG", "vmType": "t3.micro", "subnetId": subnets},
            {
                "templateId": "SpotFleet",
                "providerApi": "SpotFleet",
                "priceType": "spot",
                "vmTypes": {"t3.micro": 1},
                "subnetId": subnets,
                "fleetRole": "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role",
            },
        ]
        instance.write("templates", {"templates": [{**common, **t} for t in templates]})
        yield instance, server.counter


AWS_TEMPLATES = ("RunInstances", "EC2Fleet-instant", "ASG", "SpotFleet")


def bench_aws(base: Path, runs: int, count: int) -> None:
    with aws_instance(base) as (instance, counter):
        # Two machines stay held throughout, so getReturnRequests has hosts to check.
        held = {"template": {"templateId": "RunInstances", "machineCount": 2}}
        held_id = instance.call("requestMachines", held)[1]["requestId"]
        instance.call("getRequestStatus", {"requests": [{"requestId": held_id}]})
        for template in AWS_TEMPLATES:
            round_trip(instance, template, count)  # warm-up of this API
            samples: dict[str, list[float]] = {call: [] for call in CALLS}
            api_calls: dict[str, list[Counter[str]]] = {call: [] for call in CALLS}
            for _ in range(runs):
                trip = _counted_round_trip(instance, template, count, counter)
                for call, (elapsed, calls) in trip.items():
                    samples[call].append(elapsed)
                    api_calls[call].append(calls)
            rows = []
            for call in CALLS:
                totals = [sum(c.values()) for c in api_calls[call]]
                breakdown = ", ".join(f"{name}×{n}" for name, n in sorted(api_calls[call][-1].items()))
                rows.append(
                    (call, samples[call], f"{statistics.median(totals):g} API calls: {breakdown or '-'}")
                )
            print_table(
                f"AWS provider under a moto server, template {template!r} ({count} machines, {runs} rounds;"
                " latency includes moto's own time)",
                rows,
            )
        bench_aws_service(base, instance, counter, runs, count)
        batched_status(instance, counter, per_api=3)
        request = {"template": {"templateId": "RunInstances", "machineCount": 1}}
        import_costs(instance, "requestMachines", request)
        ahead_figures(instance, counter, runs)


def _settings(instance: Instance, aws: dict[str, Any]) -> None:
    (instance.root / "conf" / "ohfp.json").write_text(json.dumps({"aws": aws}))


def _counted(
    instance: Instance, counter: Any, call: str, payload: Any = None
) -> tuple[float, Any, Counter[str]]:
    before = counter.snapshot()
    elapsed, reply = instance.call(call, payload)
    return elapsed, reply, counter.snapshot() - before


def _row(
    name: str, samples: list[tuple[float, Counter[str]]], note: str = ""
) -> tuple[str, list[float], str]:
    calls = samples[-1][1]
    breakdown = ", ".join(f"{api}×{n}" for api, n in sorted(calls.items()))
    return name, [t for t, _ in samples], f"{sum(calls.values())} API calls: {breakdown or '-'}{note}"


def ahead_figures(instance: Instance, counter: Any, runs: int) -> None:
    """The extra cost per call of draining the queue and of the quota check."""
    import boto3
    from moto.servicequotas.models import ServiceQuotasBackend

    config = instance.root / "conf" / f"{instance.name}prov_config.json"
    made = subprocess.run(  # noqa: S603 - this installation's own command
        [
            sys.executable,
            "-I",
            "-m",
            "ohfp_aws",
            "events",
            "setup",
            "--name",
            "bench",
            "--config",
            str(config),
        ],
        env={**instance.env(), "PATH": BARE_PATH},
        capture_output=True,
        text=True,
        check=True,
    )
    queue = json.loads(made.stdout)["queueUrl"]
    endpoint = json.loads(config.read_text())["AWS_ENDPOINT_URL"]
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    events: Any = boto3.client(
        "events",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key=keys["aws_secret_access_key"],
    )

    def eleven_events() -> None:  # ten about instances not ohfp's, one warning for an unknown id
        entries = [
            {
                "Source": "aws.ec2",
                "DetailType": "EC2 Instance State-change Notification",
                "Detail": json.dumps({"instance-id": f"i-{n:017x}", "state": "terminated"}),
            }
            for n in range(10)
        ]
        events.put_events(Entries=entries)
        warning = {"instance-id": "i-0fffffffffffffff0", "instance-action": "terminate"}
        events.put_events(
            Entries=[
                {
                    "Source": "aws.ec2",
                    "DetailType": "EC2 Spot Instance Interruption Warning",
                    "Detail": json.dumps(warning),
                }
            ]
        )

    rows: list[tuple[str, list[float], str]] = []
    ask = {"template": {"templateId": "RunInstances", "machineCount": 1}}
    for label, aws, fill in (
        ("no queue", {}, None),
        ("empty queue", {"events": {"queueUrl": queue}}, None),
        ("11 events queued", {"events": {"queueUrl": queue}}, eleven_events),
    ):
        _settings(instance, aws)
        status: list[tuple[float, Counter[str]]] = []
        reclaim: list[tuple[float, Counter[str]]] = []
        held: list[dict[str, str]] = []
        for _ in range(runs):
            request_id = instance.call("requestMachines", ask)[1]["requestId"]
            if fill:
                fill()
            elapsed, reply, calls = _counted(
                instance, counter, "getRequestStatus", {"requests": [{"requestId": request_id}]}
            )
            status.append((elapsed, calls))
            held += machines_of(reply)
            if fill:
                fill()
            elapsed, _, calls = _counted(instance, counter, "getReturnRequests", {"machines": held})
            reclaim.append((elapsed, calls))
        instance.call("requestReturnMachines", {"machines": held})
        rows.append(_row(f"getRequestStatus, {label}", status))
        rows.append(_row(f"getReturnRequests, {label}", reclaim))
    print_table(
        f"Interruption queue: extra cost per call ({runs} calls each; first poll of a running request)",
        rows,
        38,
    )

    def quota(self: Any, service_code: str, quota_code: str) -> dict[str, Any]:
        return {"ServiceCode": service_code, "QuotaCode": quota_code, "QuotaName": quota_code, "Value": 256.0}

    original = ServiceQuotasBackend.get_service_quota
    ServiceQuotasBackend.get_service_quota = quota  # type: ignore[method-assign]
    try:
        rows = []
        for label, aws in (
            ("quotas off", {}),
            ("quotas on, uncached (cacheSeconds 0)", {"quotas": {"enabled": True, "cacheSeconds": 0}}),
            ("quotas on, cached", {"quotas": {"enabled": True, "cacheSeconds": 300}}),
        ):
            _settings(instance, aws)
            instance.call("getAvailableTemplates")  # warm: the cached case reads what this kept
            samples = []
            for _ in range(runs):
                elapsed, _, calls = _counted(instance, counter, "getAvailableTemplates")
                samples.append((elapsed, calls))
            rows.append(_row(f"getAvailableTemplates, {label}", samples))
        print_table(
            f"Quota check: extra cost per getAvailableTemplates ({runs} calls each, 4 templates)",
            rows,
            58,
        )
    finally:
        ServiceQuotasBackend.get_service_quota = original  # type: ignore[method-assign]
        _settings(instance, {})


def batched_status(instance: Instance, counter: Any, per_api: int) -> None:
    """One getRequestStatus for ``per_api`` running requests of every API: the AWS calls it
    costs (one DescribeInstances for all, one describe per fleet or group API)."""
    ids = [
        instance.call("requestMachines", {"template": {"templateId": template, "machineCount": 2}})[1][
            "requestId"
        ]
        for template in AWS_TEMPLATES
        for _ in range(per_api)
    ]
    before = counter.snapshot()
    elapsed, reply = instance.call("getRequestStatus", {"requests": [{"requestId": i} for i in ids]})
    calls = counter.snapshot() - before
    machines = sum(len(r["machines"]) for r in reply["requests"])
    breakdown = ", ".join(f"{name}×{n}" for name, n in sorted(calls.items()))
    print(
        f"\nBatched getRequestStatus: {len(ids)} requests ({per_api} per API), {machines} machines,"
        f" {elapsed * 1000:.0f} ms, {sum(calls.values())} AWS API calls: {breakdown}"
    )


def _counted_round_trip(
    instance: Instance, template: str, count: int, counter: Any, moto: dict[str, list[float]] | None = None
) -> dict[str, tuple[float, Counter[str]]]:
    """:func:`round_trip` with the AWS calls each HF call made (server-side counts), and
    moto's own time answering each call added to ``moto`` (by call) when given."""
    out: dict[str, tuple[float, Counter[str]]] = {}

    def call(name: str, payload: Any = None) -> Any:
        before, spent = counter.snapshot(), counter.seconds
        elapsed, reply = instance.call(name, payload)
        out[name] = (elapsed, counter.snapshot() - before)
        if moto is not None:
            moto.setdefault(name, []).append(counter.seconds - spent)
        return reply

    call("getAvailableTemplates")
    request_id = call("requestMachines", {"template": {"templateId": template, "machineCount": count}})[
        "requestId"
    ]
    status = call("getRequestStatus", {"requests": [{"requestId": request_id}]})
    for _ in range(20):
        if status["requests"][0]["status"] != "running":
            break
        status = call("getRequestStatus", {"requests": [{"requestId": request_id}]})
    call("requestReturnMachines", {"machines": machines_of(status)})
    call("getReturnRequests", {})
    return out


SERVICE_TARGET_MS = 25.0
FALLBACK_TARGET_MS = 30.0


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid`` (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mock_instance(root: Path, name: str, mode: str, runtime: Path | None = None) -> Instance:
    """A mock instance answering as ``mode`` says, with one template and ten machines held
    throughout (so getReturnRequests has hosts to check)."""
    instance = Instance(root, name, "mock", mode, runtime)
    instance.write("config", {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 1})
    instance.write(
        "templates",
        {
            "templates": [
                {"templateId": "bench", "maxNumber": -1, "attributes": ATTRIBUTES, "vmType": "mock.small"}
            ]
        },
    )
    instance.call("requestMachines", {"template": {"templateId": "bench", "machineCount": 10}})
    return instance


def side_by_side(
    title: str, instances: dict[str, Instance], trip: Any, runs: int, notes: Any
) -> dict[str, dict[str, float]]:
    """Run ``trip(instance)`` (call → (seconds, extra)) ``runs`` times per mode, rounds
    interleaved so every mode meets the same load; print medians per call and mode."""
    samples: dict[str, dict[str, list[float]]] = {mode: {} for mode in instances}
    for _ in range(runs):
        for mode, instance in instances.items():
            for call, seconds in trip(instance).items():
                samples[mode].setdefault(call, []).append(seconds)
    medians = {
        mode: {call: statistics.median(v) * 1000 for call, v in calls.items()}
        for mode, calls in samples.items()
    }
    print(f"\n{title}")
    print("  " + f"{'call':<24}" + "".join(f"{mode:>11}" for mode in instances) + "  notes (median ms)")
    for call in CALLS:
        row = "".join(f"{medians[mode].get(call, float('nan')):>11.1f}" for mode in instances)
        print(f"  {call:<24}{row}  {notes(call, medians)}")
    print("  " + "; ".join(f"{mode}: {MODES[mode]}" for mode in instances))
    return medians


def bench_service(base: Path, runs: int) -> None:
    """The mock provider's calls through the scripts: in their own process, with no service
    to be had (the fallback), and answered by a warm service (curl, thin client); the
    service's resident memory per instance."""
    refused = base / "refused-rt"
    refused.mkdir(mode=0o755)
    refused.chmod(0o755)  # group/other bits: the service refuses it, so none ever starts
    instances = {
        "process": mock_instance(base / "svc-process", "mockinst", "process"),
        "fallback": mock_instance(base / "svc-fallback", "mockinst", "fallback", refused),
        "service": mock_instance(base / "svc-curl", "mockinst", "service"),
        "client": mock_instance(base / "svc-client", "clientinst", "client"),
    }
    status = instances["service"].wait_service()
    pid = status["pid"]
    instances["client"].service_pid = pid
    round_trip(instances["service"], "bench", 2)
    round_trip(instances["client"], "bench", 2)
    for instance in instances.values():
        instance.cpu = {"client": {}, "service": {}}

    def trip(instance: Instance) -> dict[str, float]:
        return {call: seconds for call, (seconds, _) in round_trip(instance, "bench", 2).items()}

    def notes(call: str, medians: dict[str, dict[str, float]]) -> str:
        served = medians["service"][call]
        added = medians["fallback"][call] - medians["process"][call]
        verdict = "ok" if served <= SERVICE_TARGET_MS else f"over the {SERVICE_TARGET_MS:.0f} ms target"
        fallback = "ok" if added <= FALLBACK_TARGET_MS else f"over the +{FALLBACK_TARGET_MS:.0f} ms target"
        return f"service {verdict}; fallback adds {added:+.1f} ms ({fallback})"

    side_by_side(
        f"Mock provider through the scripts, service off and on ({runs} rounds; targets: service"
        f" ≤ {SERVICE_TARGET_MS:.0f} ms, fallback ≤ in-process + {FALLBACK_TARGET_MS:.0f} ms)",
        instances,
        trip,
        runs,
        notes,
    )
    print_cpu(instances)
    one = rss_kib(pid)
    extra = [mock_instance(base / f"svc-more-{n}", f"more{n}", "service") for n in range(4)]
    for instance in extra:
        round_trip(instance, "bench", 1)
    five = rss_kib(pid)
    print(
        f"\nService resident memory: {one / 1024:.1f} MiB serving 2 mock instances,"
        f" {five / 1024:.1f} MiB serving 6: {(five - one) / 4 / 1024:.1f} MiB per further mock instance"
    )
    instances["service"].service("--stop")


def bench_aws_service(base: Path, process: Instance, counter: Any, runs: int, count: int) -> None:
    """The AWS provider (RunInstances under moto): each call in its own process and answered
    by a warm service, less moto's own time answering it."""
    service = Instance(base / "aws-service", "awssvc", "aws", "service", base / "aws-rt")
    for name in ("conf/awsinstprov_config.json", "conf/awsinstprov_templates.json", "conf/credentials"):
        target = service.root / name.replace("awsinst", "awssvc")
        target.write_bytes((process.root / name).read_bytes())
    (service.root / "conf" / "ohfp.json").unlink(missing_ok=True)
    service.call("getAvailableTemplates")
    pid = service.wait_service()["pid"]
    before = rss_kib(pid)
    round_trip(service, "RunInstances", count)  # warm: the instance, its clients
    after = rss_kib(pid)
    for instance in (process, service):
        instance.cpu = {"client": {}, "service": {}}
    moto: dict[str, dict[str, list[float]]] = {"process": {}, "service": {}}

    def trip_of(mode: str) -> Any:
        def trip(instance: Instance) -> dict[str, float]:
            out = {}
            for call, (seconds, _) in _counted_round_trip(
                instance, "RunInstances", count, counter, moto[mode]
            ).items():
                out[call] = seconds
            return out

        return trip

    medians: dict[str, dict[str, float]] = {}
    for mode, instance in (("process", process), ("service", service)):
        medians.update(side_by_side_one(mode, instance, trip_of(mode), runs))
    print(f"\nAWS provider (RunInstances, {count} machines) under a moto server, {runs} rounds: median ms")
    print(
        f"  {'call':<24}{'process':>10}{'service':>10}{'moto':>8}{'service - moto':>16}  target: ≤ moto + 30"
    )
    for call in CALLS:
        own = statistics.median(moto["service"].get(call, [0.0])) * 1000
        served = medians["service"][call]
        verdict = "ok" if served - own <= 30.0 else "over"
        print(
            f"  {call:<24}{medians['process'][call]:>10.1f}{served:>10.1f}{own:>8.1f}"
            f"{served - own:>16.1f}  {verdict}"
        )
    print_cpu({"process": process, "service": service})
    print("  (moto answers in this process: its CPU is in neither column)")
    print(f"  the service's resident memory grew by {(after - before) / 1024:.1f} MiB for the AWS instance")
    service.service("--stop")


def side_by_side_one(mode: str, instance: Instance, trip: Any, runs: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        for call, seconds in trip(instance).items():
            samples.setdefault(call, []).append(seconds)
    return {mode: {call: statistics.median(values) * 1000 for call, values in samples.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds for the mock provider (default 15)")
    parser.add_argument("--aws-runs", type=int, default=5, help="rounds per AWS API (default 5; 0 skips AWS)")
    parser.add_argument("--aws-machines", type=int, default=2, help="machines per AWS request (default 2)")
    parser.add_argument(
        "--service-only",
        action="store_true",
        help="only the service beside the calls in their own process (mock; AWS unless --aws-runs 0)",
    )
    args = parser.parse_args()
    import ohfp_core

    package = Path(ohfp_core.__file__).parent
    compiled = any((package / "__pycache__").glob("cli.*.pyc"))
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    print(f"ohfp_core from {package} ({'bytecode compiled' if compiled else 'NO compiled bytecode'})")
    with tempfile.TemporaryDirectory(prefix="ohfp-bench-") as tmp:
        base = Path(tmp)
        if args.service_only:
            bench_service(base, args.runs)
            if args.aws_runs > 0:
                with aws_instance(base) as (instance, counter):
                    round_trip(instance, "RunInstances", args.aws_machines)  # warm-up of this API
                    bench_aws_service(base, instance, counter, args.aws_runs, args.aws_machines)
            return 0
        mock = bench_mock(base, args.runs)
        import_costs(mock, "getAvailableTemplates", {})
        bench_service(base, args.runs)
        if args.aws_runs > 0:
            bench_aws(base, args.aws_runs, args.aws_machines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the state stores. Prints figures, asserts nothing.

Run by ``nox -s bench`` (``-- --runs 15``) after bench_hf.py, ohfp installed as users install
it. Per backend — SQLite, PostgreSQL (the libpq environment's server, else 127.0.0.1:5432,
else a throwaway cluster: :func:`testbeds.postgresql.find_server`), DynamoDB (moto, served
from this process: read its figures as an upper bound) — it prints:

1. the median wall time of requestMachines and getRequestStatus through the generated
   scripts (mock provider), and what the backend adds to SQLite's (target: a networked
   backend adds at most 40 ms against a local server);
2. the time of one request's lookups (get_requests, machines_of, find_machines by id and by
   name, undelivered_requests, held_machines of its template) with 1,000 / 10,000 / 100,000
   machines in state, loaded by the storage kit's fastest paths (:mod:`testbeds`);
3. what importing each backend's client library costs (``-X importtime``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_hf import ATTRIBUTES, BARE_PATH, ROOT, Instance, print_table

sys.path.insert(0, str(ROOT))  # the test beds: servers and bulk loaders

BACKENDS = ("sqlite", "postgresql", "dynamodb")
SIZES = (1_000, 10_000, 100_000)
TARGET_ADDED_MS = 40.0
TARGET_SERVICE_ADDED_MS = 10.0


@contextmanager
def servers() -> Iterator[dict[str, Any]]:
    """A PostgreSQL server (or none) and a moto server for DynamoDB."""
    from testbeds.dynamodb import FAKE_ENV, SerialMotoServer, fast_moto
    from testbeds.postgresql import find_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on stderr
    os.environ.update(FAKE_ENV)
    found = find_server()
    postgres = None if isinstance(found, str) else found
    if isinstance(found, str):
        print(f"\nPostgreSQL skipped: {found}")
    moto = SerialMotoServer()
    try:
        with fast_moto():
            yield {"postgres": postgres, "moto": moto, "aws_env": FAKE_ENV}
    finally:
        moto.stop()
        if postgres is not None:
            postgres.stop()


def store_settings(backend: str, found: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]] | None:
    from testbeds.dynamodb import REGION, new_table

    if backend == "sqlite":
        return {}, {}
    if backend == "postgresql":
        postgres = found["postgres"]
        if postgres is None:
            return None
        return {"postgresql": {"dsn": postgres.dsn, "schema": postgres.new_schema("bench")}}, {}
    section = {
        "table": new_table("bench"),
        "region": REGION,
        "endpointUrl": found["moto"].endpoint,
        "createTable": True,
    }
    return {"dynamodb": section}, dict(found["aws_env"])


class StoreInstance(Instance):
    """A mock instance whose calls carry extra environment (AWS's fake credentials)."""

    extra: dict[str, str] = {}  # noqa: RUF012 - set per instance before use

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


def bench_calls(base: Path, runs: int, found: dict[str, Any]) -> None:
    """requestMachines and getRequestStatus per backend, each call in its own process and
    answered by a warm service (each backend's service in a runtime directory of its own)."""
    medians: dict[str, dict[str, float]] = {}
    rows = []
    for backend in BACKENDS:
        made = store_settings(backend, found)
        if made is None:
            continue
        settings, env = made
        for mode in ("process", "service"):
            root = base / f"calls-{backend}-{mode}"
            instance = StoreInstance(root, "mockinst", "mock", mode, root / "rt")
            instance.extra = env
            (instance.root / "conf" / "ohfp.json").write_text(json.dumps({"storage": backend, **settings}))
            instance.write("config", {"MOCK_BOOT_SECONDS": 0, "MOCK_TERMINATE_SECONDS": 0, "MOCK_SEED": 1})
            instance.write(
                "templates",
                {"templates": [{"templateId": "bench", "maxNumber": -1, "attributes": ATTRIBUTES}]},
            )
            if mode == "service":
                instance.call("getAvailableTemplates")  # in its own process; starts the service
                instance.wait_service()
            samples: dict[str, list[float]] = {"requestMachines": [], "getRequestStatus": []}
            for run in range(runs + 1):  # the first round warms up (creates the schema or table)
                took, reply = instance.call(
                    "requestMachines", {"template": {"templateId": "bench", "machineCount": 1}}
                )
                status, _ = instance.call(
                    "getRequestStatus", {"requests": [{"requestId": reply["requestId"]}]}
                )
                if run:
                    samples["requestMachines"].append(took)
                    samples["getRequestStatus"].append(status)
            if mode == "service":
                instance.service("--stop")
            label = f"{backend}/{mode}"
            medians[label] = {call: statistics.median(values) * 1000 for call, values in samples.items()}
            for call, values in samples.items():
                added = medians[label][call] - medians[f"sqlite/{mode}"][call]
                verdict = "" if backend == "sqlite" else f"adds {added:+.1f} ms to SQLite"
                target = TARGET_ADDED_MS if mode == "process" else TARGET_SERVICE_ADDED_MS
                if backend == "postgresql":
                    verdict += " (ok)" if added <= target else f" (over the {target:.0f} ms target)"
                if backend == "dynamodb":
                    verdict += " (moto in this process)"
                rows.append((f"{backend} {call}, {mode}", values, verdict))
    print_table(
        f"HF calls through the scripts per backend, in their own process and by the service, {runs} each",
        rows,
        40,
    )


def bench_lookups(found: dict[str, Any], repeats: int) -> None:
    from ohfp_core.models import MachineResult, RequestKind, RequestStatus
    from ohfp_core.storage import RequestRecord
    from ohfp_core.storage_contract import mrec

    print(f"\nOne request's lookups with N machines in state (median of {repeats}, ms)")
    print(f"  {'backend':<12}" + "".join(f"{n:>12,}" for n in SIZES))
    for backend in BACKENDS:
        figures = []
        for size in SIZES:
            opened = open_for(backend, found)
            if opened is None:
                break
            store, load = opened
            requests = [
                RequestRecord(request_id=f"req-{n:06d}", kind=RequestKind.ACQUIRE, template_id="bulk",
                              status=RequestStatus.COMPLETE, machine_count=100, created_at=n, delivered=True)
                for n in range(size // 100)
            ]  # fmt: skip
            machines = [
                mrec(f"i-{n:07d}", f"req-{n // 100:06d}", template_id="bulk", result=MachineResult.SUCCEED)
                for n in range(size)
            ]
            load(store, requests, machines)
            store.put_request(RequestRecord(request_id="req-t", kind=RequestKind.ACQUIRE, template_id="t"))
            mine = [mrec(f"i-t{n}", "req-t", template_id="t") for n in range(3)]
            store.put_machines(mine)
            ids, names = [m.machine_id for m in mine], [m.name for m in mine]

            def lookup(s: Any = store, i: list[str] = ids, n: list[str] = names) -> None:
                s.get_requests(["req-t"])
                s.machines_of(["req-t"])
                s.find_machines(i)
                s.find_machines(names=n)
                s.undelivered_requests()
                s.held_machines("t")

            figures.append(median_ms(lookup, repeats))
            store.close()
        if figures:
            print(f"  {backend:<12}" + "".join(f"{f:>12.2f}" for f in figures))


def open_for(backend: str, found: dict[str, Any]) -> tuple[Any, Callable[..., None]] | None:
    """A fresh store of ``backend`` and the fastest bulk loader for it (the storage kit's)."""
    if backend == "sqlite":
        from ohfp_core.sqlite import SQLiteStorage
        from ohfp_core.testing import StorageContract

        return SQLiteStorage(Path(tempfile.mkdtemp(prefix="ohfp-bench-sqlite-"))), StorageContract().bulk_load
    if backend == "postgresql":
        if found["postgres"] is None:
            return None
        from testbeds.postgresql import PgOpener, copy_load

        return PgOpener(found["postgres"].dsn, found["postgres"].new_schema("lookup"))(), copy_load
    from testbeds.dynamodb import DynamoOpener, load_into_moto, new_table

    return DynamoOpener(found["moto"].endpoint, new_table("lookup"))(), load_into_moto


def median_ms(action: Callable[[], None], repeats: int) -> float:
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def import_costs(runs: int) -> None:
    print(f"\nImport cost of each backend's client (median of {runs} fresh interpreters, ms)")
    for label, module in (
        ("sqlite3", "sqlite3"),
        ("psycopg", "psycopg"),
        ("botocore.session", "botocore.session"),
        ("ohfp_postgresql.store", "ohfp_postgresql.store"),
        ("ohfp_dynamodb.store", "ohfp_dynamodb.store"),
    ):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            command = [sys.executable, "-I", "-c", f"import {module}"]
            subprocess.run(command, check=True, env={"PATH": BARE_PATH})  # noqa: S603 - this interpreter
            times.append(time.perf_counter() - start)
        base = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-c", "pass"], check=True, env={"PATH": BARE_PATH})
            base.append(time.perf_counter() - start)
        print(f"  {label:<24}{(statistics.median(times) - statistics.median(base)) * 1000:>8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per call and backend")
    parser.add_argument("--repeats", type=int, default=20, help="lookups timed per size")
    args, _ = parser.parse_known_args()  # nox hands both benchmarks the same arguments
    with tempfile.TemporaryDirectory(prefix="ohfp-bench-storage-") as tmp, servers() as found:
        bench_calls(Path(tmp), args.runs, found)
        bench_lookups(found, args.repeats)
        import_costs(max(5, args.runs // 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

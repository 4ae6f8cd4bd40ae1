"""The three stores answer alike: one random workload, every answer compared across backends.

The storage kit proves each backend against the protocol's rules case by case; this test
runs the same seeded stream of writes (upserts that move machines between requests,
templates and names, returns, failures, rollbacks, values that expire) on SQLite,
PostgreSQL and DynamoDB, reads everything back after every write with every lookup of
:class:`~ohfp_core.storage.Storage`, and fails at the first answer where two backends
differ: a drift the kit's cases happen not to cover is caught here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ohfp_core.models import Machine, MachineResult, MachineState, RequestKind, RequestStatus
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.storage import MachineRecord, RequestRecord, Storage, StoredValue
from testbeds.dynamodb import DynamoOpener, SerialMotoServer, new_table
from testbeds.postgresql import PgOpener, PostgresServer

SEED = 20261207
STEPS = 100
FULL_READ = 20
# Ids that sort differently by bytes than by any locale ("Z" < "a" < "é"), names that repeat.
REQUESTS = ["req-a", "req-Z", "req-é", "req-b1", "ret-x", "ret-Y"]
MACHINES = [f"i-{c}" for c in "aZé019"]
NAMES = ["ip-1", "ip-2", "ip-É", "host"]
TEMPLATES = [None, "t1", "t10", "T"]
KEYS = ["aws:q/1", "aws:q/2", "aws:qx", "mock:a", "aws:"]


class Workload:
    """A seeded stream of writes and the lookups that read their result back."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 -- a reproducible workload, not a secret

    def request(self) -> RequestRecord:
        rng = self.rng
        request_id = rng.choice(REQUESTS)
        return RequestRecord(
            request_id=request_id,
            kind=RequestKind.RETURN if request_id.startswith("ret") else RequestKind.ACQUIRE,
            status=rng.choice([RequestStatus.RUNNING, RequestStatus.RUNNING, RequestStatus.COMPLETE]),
            template_id=rng.choice(TEMPLATES),
            machine_count=rng.randrange(5),
            handle=rng.choice([None, {}, {"fleet": rng.choice(MACHINES)}]),
            machine_ids=tuple(rng.sample(MACHINES, rng.randrange(3))),
            created_at=rng.randrange(4),  # ties: ordered by id then
            updated_at=rng.randrange(100),
            delivered=rng.random() < 0.5,
            owner=rng.choice(["", "h:/w"]),
        )

    def machine(self) -> MachineRecord:
        rng = self.rng
        return MachineRecord(
            machine=Machine(
                machine_id=rng.choice(MACHINES),
                name=rng.choice(NAMES),
                state=rng.choice(list(MachineState)),
                weight=rng.randrange(1, 3),
            ),
            request_id=rng.choice(REQUESTS),
            template_id=rng.choice(TEMPLATES),
            result=rng.choice(list(MachineResult)),
            return_request_id=rng.choice([None, None, "ret-x"]),
            updated_at=rng.randrange(100),
        )

    def value(self) -> StoredValue:
        return StoredValue(
            key=self.rng.choice(KEYS), value={"n": self.rng.randrange(9)}, expires_at=self.rng.randrange(1, 6)
        )

    def write(self, single: bool = False) -> Callable[[Storage], None]:
        """One write (unless ``single``, maybe a transaction of several, rolled back one time
        in four)."""
        rng = self.rng
        kind = rng.randrange(4 if single else 6)
        if kind == 0:
            record = self.request()
            return lambda store: store.put_request(record)
        if kind == 1:
            machines = [self.machine() for _ in range(rng.randrange(1, 4))]
            return lambda store: store.put_machines(machines)
        if kind == 2:
            values = [self.value() for _ in range(rng.randrange(1, 3))]
            return lambda store: store.put_values(values)
        if kind == 3:
            keys = rng.sample(KEYS, 2)
            return lambda store: store.delete_values(keys)
        steps = [self.write(single=True) for _ in range(rng.randrange(1, 4))]
        rollback = rng.random() < 0.25

        def transaction(store: Storage) -> None:
            try:
                with store.transaction():
                    for step in steps:
                        step(store)
                    if rollback:
                        raise LookupError("rolled back")
            except LookupError:
                pass

        return transaction

    def lookups(self, store: Storage) -> dict[str, Callable[[], Any]]:
        """Every lookup, with arguments drawn from the pools (unknown ids and repeats too)."""
        rng = self.rng
        ids = [*rng.sample([*REQUESTS, "req-none"], 3), REQUESTS[0]]
        machine_ids = rng.sample([*MACHINES, "i-none"], 3)
        names = rng.sample(NAMES, 2)
        now = rng.randrange(6)
        template = rng.choice(TEMPLATES[1:])
        return {
            "get_requests": lambda: list(store.get_requests(ids).items()),
            "open": store.open_requests,
            "open_acquire": lambda: store.open_requests(RequestKind.ACQUIRE),
            "open_return": lambda: store.open_requests(RequestKind.RETURN),
            "undelivered": store.undelivered_requests,
            "machines_of": lambda: store.machines_of(ids),
            "find": lambda: store.find_machines(machine_ids, names),
            "find_names": lambda: store.find_machines(names=names),
            "held": store.held_machines,
            "held_of": lambda: store.held_machines(template),
            "values": lambda: store.get_values(KEYS, now),
            "prefix": lambda: store.values_with_prefix("aws:q", now),
        }

    def run(self, store: Storage) -> Iterator[tuple[int, dict[str, Any]]]:
        """After each write a few lookups drawn at random, every lookup every
        :data:`FULL_READ` steps, and at the end everything the store holds."""
        for step in range(STEPS):
            self.write()(store)
            lookups = self.lookups(store)
            if step % FULL_READ:
                lookups = {name: lookups[name] for name in self.rng.sample(sorted(lookups), 3)}
            yield step, {name: lookup() for name, lookup in lookups.items()}
        yield (
            STEPS,
            {
                "requests": sorted(store.iter_requests(), key=lambda r: r.request_id),
                "machines": list(store.iter_machines()),
                "all_values": list(store.iter_values()),
                "counts": store.check()["counts"],
            },
        )


@pytest.fixture
def openers(
    tmp_path: Path, postgres_server: PostgresServer, dynamo_server: SerialMotoServer
) -> dict[str, Callable[[], Storage]]:
    return {
        "sqlite": lambda: SQLiteStorage(tmp_path / "sqlite"),
        "postgresql": PgOpener(postgres_server.dsn, postgres_server.new_schema("agree")),
        "dynamodb": DynamoOpener(dynamo_server.endpoint, new_table("agree")),
    }


def test_every_backend_answers_a_random_workload_alike(openers: dict[str, Callable[[], Storage]]) -> None:
    stores = {name: opener() for name, opener in openers.items()}
    try:
        runs = {name: Workload(SEED).run(store) for name, store in stores.items()}
        for answers in zip(*runs.values(), strict=True):
            (step, expected), *others = answers
            for name, (_, answer) in zip(list(runs)[1:], others, strict=True):
                for lookup, value in expected.items():
                    assert answer[lookup] == value, f"step {step}: {name} differs from sqlite in {lookup}"
    finally:
        for store in stores.values():
            store.close()

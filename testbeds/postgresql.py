"""A PostgreSQL server for the tests and the benchmarks, a fresh schema per use, and a proxy
that can freeze.

:func:`find_server` finds the server the libpq environment names (``PGHOST``, ``PGSERVICE`` …)
or, without one, ``host=127.0.0.1 port=5432 dbname=test`` (CI's). If none answers and
``initdb`` and ``pg_ctl`` are on PATH (or under /usr/lib/postgresql/*/bin), it starts a
throwaway cluster on a Unix socket in a temporary directory; otherwise it says why not (the
tests' fixture skips with that reason, or fails under ``OHFP_REQUIRE_POSTGRESQL=1``).
:meth:`PostgresServer.stop` drops every schema handed out and stops a throwaway cluster.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import select
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

DEFAULT_DSN = "host=127.0.0.1 port=5432 dbname=test connect_timeout=3"
_LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE", "PGUSER")
_counter = itertools.count()

if TYPE_CHECKING:
    from ohfp_core.storage import MachineRecord, RequestRecord, Storage
    from ohfp_postgresql.store import PostgresStorage


def _answers(dsn: str) -> str | None:
    """None when the server answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@attrs.define
class Cluster:
    """A throwaway cluster in ``root`` serving on a Unix socket there."""

    root: Path
    pg_ctl: str
    run_as: list[str]

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, "stop", "-D", str(self.root / "data"), "-m", "immediate"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _throwaway() -> tuple[str, Cluster] | str:
    """Start a cluster (as the ``postgres`` user when run as root); its DSN, or why not."""
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if not initdb or not pg_ctl:
        return "initdb/pg_ctl not found"
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
        runuser = shutil.which("runuser")
        if not runuser:
            return "running as root without runuser"
        run_as = [runuser, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="ohfp-pg-"))
    root.chmod(0o777)
    data = root / "data"
    cluster = Cluster(root, pg_ctl, run_as)
    steps = [
        [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        [*run_as, pg_ctl, "start", "-w", "-D", str(data), "-l", str(root / "log"),
         "-o", f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off"],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            cluster.stop()
            return f"{Path(step[len(run_as)]).name} failed: {done.stderr.strip()[:200]}"
    return f"host={root} dbname=postgres user=postgres", cluster


@attrs.define
class PostgresServer:
    """A server that answers; :meth:`new_schema` names a schema no one used before."""

    dsn: str
    schemas: list[str] = attrs.field(factory=list)
    cluster: Cluster | None = None
    """The throwaway cluster serving ``dsn``, if :func:`find_server` started one."""

    def new_schema(self, label: str = "t") -> str:
        name = f"ohfp_test_{os.getpid()}_{label}_{next(_counter)}"
        self.schemas.append(name)
        return name

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for name in self.schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def stop(self) -> None:
        """Drop every schema handed out, and stop the throwaway cluster if there is one."""
        try:
            self.drop_all()
        finally:
            if self.cluster is not None:
                self.cluster.stop()


def _dsn_to_try() -> str:
    return "" if any(os.environ.get(name) for name in _LIBPQ_ENV) else DEFAULT_DSN


def find_server() -> PostgresServer | str:
    """A live server (see the module doc), or why there is none."""
    dsn = _dsn_to_try()
    why = _answers(dsn)
    if why is None:
        return PostgresServer(dsn)
    started = _throwaway()
    if isinstance(started, str):
        where = dsn or "the libpq environment"
        return f"no PostgreSQL server: {where}: {why}; no throwaway cluster: {started}"
    dsn, cluster = started
    return PostgresServer(dsn, cluster=cluster)


@attrs.frozen
class PgOpener:
    """Opens the store in one schema (picklable, for the storage kit's child processes)."""

    dsn: str
    schema: str
    instance: str = "kit"

    def __call__(self) -> PostgresStorage:
        from ohfp_postgresql.settings import PostgresSettings
        from ohfp_postgresql.store import PostgresStorage

        return PostgresStorage(PostgresSettings(dsn=self.dsn, schema=self.schema), self.instance)


def copy_load(store: Storage, requests: Sequence[RequestRecord], machines: Sequence[MachineRecord]) -> None:
    """Store many records fast into a PostgreSQL store: COPY, then ANALYZE so the planner
    knows the table sizes."""
    from ohfp_core.sql_rows import MACHINE_COLUMNS, REQUEST_COLUMNS, machine_row, request_row
    from ohfp_postgresql.store import PostgresStorage

    assert isinstance(store, PostgresStorage)
    schema = store.schema
    with store.transaction(), store._conn.cursor() as cursor:
        with cursor.copy(f"COPY {schema}.requests ({REQUEST_COLUMNS}) FROM STDIN") as copy:
            for record in requests:
                copy.write_row(request_row(record))
        with cursor.copy(f"COPY {schema}.machines ({MACHINE_COLUMNS}) FROM STDIN") as copy:
            for machine in machines:
                copy.write_row(machine_row(machine))
    store._conn.execute(f"ANALYZE {schema}.requests")
    store._conn.execute(f"ANALYZE {schema}.machines")


class FreezableProxy:
    """A TCP proxy on 127.0.0.1 to the server ``dsn`` names that can stop forwarding and start
    again: a server that stops answering, as its clients see it (frozen, or cut off by the
    network), without stopping a server other tests use. Connections stay open while frozen;
    what was sent waits, and goes on once thawed."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        params = psycopg.conninfo.conninfo_to_dict(dsn)
        host, port = str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
        self._target: tuple[int, Any] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, port))
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        params.pop("hostaddr", None)
        self.dsn = psycopg.conninfo.make_conninfo(
            "", **{**params, "host": "127.0.0.1", "port": str(self.port)}
        )
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self._open.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FreezableProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.socket(self._target[0], socket.SOCK_STREAM)
                server.connect(self._target[1])
            except OSError:
                continue
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._closed:
            self._open.wait()
            try:
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready:
                    continue
                data = source.recv(65536)
                self._open.wait()  # frozen mid-way: hold it
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except (OSError, ValueError):  # closed under it (ValueError: select on a closed socket)
                return

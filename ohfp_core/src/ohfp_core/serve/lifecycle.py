"""Starting, watching and stopping the service.

``ohfp serve`` runs it in the foreground (for systemd or EGO); a script that finds no
service runs its call in its own process and starts one detached
(:func:`~ohfp_core.serve.runtime.start_detached`): under its start lock, so ten calls at
once start one, and only when no service holds its serve lock (:mod:`~ohfp_core.serve.runtime`).
The service:

- takes its serve lock (liveness) and binds its socket owner-only, atomically replacing a
  stale one;
- exits after ``idleExitSeconds`` without calls (default 3600);
- on SIGTERM or SIGINT, ``ohfp serve --stop``, a socket replaced by another service, or
  installed code that is no longer its own (the build id): stops taking calls (removing
  its socket, letting go of its serve lock), finishes those in flight, and exits;
- restarts (exits) too when a call it answered as overrun is still running one timeout
  later: only the end of the process frees what a hung call holds;
- keeps, per instance it has served, one ``ohfp_wait_for_events`` going on a worker of its
  own (:meth:`Service.listen`): a provider with an event source long-polls it between calls.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from ohfp_core.errors import ConfigError
from ohfp_core.logs import get_logger
from ohfp_core.serve.runtime import (
    LOG_INSTANCE,
    SERVE_LOCK,
    START_FD_ENV,
    Build,
    FileLock,
    current_build,
    private_runtime_dir,
    runtime_dir,
    serving,
    socket_path,
    start_detached,
)
from ohfp_core.serve.wire import STATUS_ELSEWHERE, STATUS_RESTART, foreign_keys

log = get_logger("ohfp.serve")

DEFAULT_IDLE_SEC = 3600.0
TICK_SEC = 0.25
LISTEN_SEC = 20.0
"""How long one ``ohfp_wait_for_events`` may wait (an SQS long poll's most)."""
LISTEN_RETRY_SEC = 60.0
"""After a listener failed (an instance that cannot be built), the pause before the next."""


@frozen(kw_only=True)
class ServeSettings:
    """The service's own settings: ``ohfp serve`` options, else the ``serve`` section of
    ``ohfp.json`` in the config directory of the call that started it."""

    idle_exit_sec: float = DEFAULT_IDLE_SEC
    listen: str | None = None
    """``host:port`` of the read-only TCP listener (off when None)."""


class Service:
    """One running service: its listeners, workers, statistics and stop conditions."""

    def __init__(self, directory: Path, settings: ServeSettings, build: Build | None = None) -> None:
        from ohfp_core.serve.calls import Calls, Stats
        from ohfp_core.serve.workers import Pool

        self.directory = directory
        self.socket = socket_path(directory)
        self.settings = settings
        self.build = build or current_build()
        self.fingerprint = self.build.fingerprint()
        self.env = dict(os.environ)
        self.pool = Pool()
        self.stats = Stats()
        self.calls = Calls(self.pool, self.stats)
        self.stopping: str | None = None
        self._stop_event = threading.Event()
        self._warned: set[tuple[str, ...]] = set()
        self.metrics: Any = None
        self._known_builds: set[str] = set()
        self.successor = False
        """Start a service of the installed code once this one has let go of its lock."""
        self._listening: set[Any] = set()
        self._not_before: dict[Any, float] = {}

    # ------------------------------------------------------------------ admission
    def admit(self, script_build: str, env: Mapping[str, str]) -> int | None:
        """None when the call may run here, else the status that sends it back to its
        script unrun: 503 (stopping, or the installed code changed), 421 (an environment
        this service cannot serve, or no log directory)."""
        if self.stopping is not None:
            return STATUS_RESTART
        if self.build.fingerprint() != self.fingerprint:
            self._known_builds.clear()
            if self._code_changed():
                return STATUS_RESTART
        if script_build != self.build.id and script_build not in self._known_builds:
            if self._code_changed():
                return STATUS_RESTART
            self._known_builds.add(script_build)  # scripts of another build, this installation
        foreign = foreign_keys(env, self.env)
        if foreign:
            self._warn_once(
                "call environment differs from the service's: answered in its own process", foreign
            )
            return STATUS_ELSEWHERE
        from ohfp_core.serve.calls import logdir_of

        if logdir_of(env) is None:
            self._warn_once(
                "call without a log directory: answered in its own process", ["HF_PROVIDER_LOGDIR"]
            )
            return STATUS_ELSEWHERE
        return None

    def _code_changed(self) -> bool:
        """True (and the service stops) when the installation's build id is no longer ours."""
        now = current_build()
        if now.id == self.build.id:
            self.fingerprint = self.build.fingerprint()
            return False
        self.successor = True
        self.stop(f"installed code changed (build {self.build.id} -> {now.id})")
        return True

    def _warn_once(self, event: str, keys: list[str]) -> None:
        marker = (event, *keys)
        if marker not in self._warned:
            self._warned.add(marker)
            log.warning(event, variables=keys)

    # ------------------------------------------------------------------ running
    def stop(self, reason: str) -> None:
        """Stop taking calls; :meth:`run` drains and returns."""
        if self.stopping is None:
            self.stopping = reason
            log.info("service stopping", reason=reason)
        self._stop_event.set()

    def run(self) -> int:
        """Serve until a stop condition; the exit code (0)."""
        from ohfp_core.serve.server import TcpListener, UnixListener

        lock = FileLock(self.directory / SERVE_LOCK)
        if not lock.acquire():
            raise ConfigError(
                f"an ohfp service already runs for this user (runtime directory {self.directory})"
            )
        listeners: list[Any] = []
        try:
            unix = UnixListener(socket_path(self.directory), self)
            listeners.append(unix)
            if self.settings.listen:
                host, _, port = self.settings.listen.rpartition(":")
                listeners.append(TcpListener(host.strip("[]"), int(port), self))
                if host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
                    log.warning(
                        "read-only API listens beyond loopback: anyone who can reach it reads it",
                        listen=self.settings.listen,
                    )
            _release_starter()
            from ohfp_core.serve import metrics

            self.metrics = metrics.Metrics(self)
            self.stats.observe = self.metrics.observe
            self.pool.on_build = lambda ops: self.metrics.watch_hooks(ops.hooks.pm)
            for listener in listeners:
                threading.Thread(target=listener.serve_forever, args=(0.2,), daemon=True).start()
            log.info(
                "service started",
                pid=os.getpid(),
                build=self.build.id,
                socket=str(unix.path),
                listen=self.settings.listen,
            )
            self._watch(unix)
        finally:
            for listener in listeners:
                if isinstance(listener, UnixListener):
                    listener.remove()
                listener.shutdown() if self._stop_event.is_set() else None
                listener.server_close()
            lock.release()
        if self.successor:  # the call told to restart found this one still holding the lock
            start_detached(self.env)
        self._drain()
        log.info("service stopped", reason=self.stopping, served=sum(self.stats.served.values()))
        return 0

    def listen(self) -> None:
        """Start ``ohfp_wait_for_events`` on each served instance that has no listener yet
        and whose plugins implement it (an instance without is not asked again)."""
        now = time.monotonic()
        for key in list(self.pool.seen.values()):
            if key in self._listening or self._not_before.get(key, 0.0) > now:
                continue
            self._listening.add(key)
            worker = self.pool.checkout(key)
            future = worker.submit(functools.partial(_wait_for_events, key=key))
            future.add_done_callback(functools.partial(self._listened, worker, key))

    def _listened(self, worker: Any, key: Any, done: Any) -> None:
        error = done.exception()
        if error is not None or done.result() is False:  # failed, or nobody listens: not soon again
            self._not_before[key] = time.monotonic() + (LISTEN_RETRY_SEC if error is not None else 1e12)
            if error is not None:
                log.warning("waiting for events failed", instance=key.name, error=str(error))
        if self.stopping is None:
            self.pool.checkin(worker)
        else:
            worker.retire()
        self._listening.discard(key)

    def _watch(self, unix: Any) -> None:
        while not self._stop_event.wait(TICK_SEC):
            self.listen()
            if not unix.still_ours():
                self.stop("its socket was removed or replaced")
            elif self.calls.hung():
                self.stop("a call answered as overrun is still running one timeout later")
            elif (
                not self.stats.in_flight
                and time.monotonic() - self.stats.last_call > self.settings.idle_exit_sec
            ):
                self.stop(f"idle for {self.settings.idle_exit_sec:g} s")

    def _drain(self) -> None:
        """Wait for the calls in flight (each ends within its limit), then close."""
        deadline = time.monotonic() + 300
        while self.stats.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pool.close()


def _wait_for_events(worker: Any, key: Any) -> bool:
    """On ``worker``'s thread: the instance's plugins wait for events; False when none
    implements ``ohfp_wait_for_events``."""
    from ohfp_core.environment import using

    with using(dict(key.env)):
        ops = worker.operations(key.provider)
        if not ops.hooks.pm.hook.ohfp_wait_for_events.get_hookimpls():
            return False
        ops.wait_for_events(LISTEN_SEC)
    return True


def _release_starter() -> None:
    """Let go of the start lock handed down by the call that started this service."""
    fd = os.environ.pop(START_FD_ENV, "")
    if fd.isdigit():
        with contextlib.suppress(OSError):
            os.close(int(fd))


def settings_for(idle_exit_sec: float | None = None, listen: str | None = None) -> ServeSettings:
    """The options given, else the ``serve`` section of ``ohfp.json`` in the instance's config
    directory (``HF_PROVIDER_CONFDIR``: the call that started the service):
    ``{"serve": {"idleExitSeconds": 3600, "listen": "127.0.0.1:9180"}}``.

    :raises ConfigError: naming a bad key.
    """
    from ohfp_core.config import SETTINGS_FILE, read_json_file, resolve_paths

    section: Mapping[str, Any] = {}
    confdir = resolve_paths().confdir
    if confdir is not None and (confdir / SETTINGS_FILE).is_file():
        raw = read_json_file(confdir / SETTINGS_FILE, "settings file")
        found = raw.get("serve", {}) if isinstance(raw, Mapping) else {}
        section = found if isinstance(found, Mapping) else {}
    problems = [
        f"$.serve.{key}: unknown setting (known: idleExitSeconds, listen)"
        for key in section
        if key not in ("idleExitSeconds", "listen")
    ]
    idle = section.get("idleExitSeconds", DEFAULT_IDLE_SEC) if idle_exit_sec is None else idle_exit_sec
    if isinstance(idle, bool) or not isinstance(idle, int | float) or idle <= 0:
        problems.append(f"$.serve.idleExitSeconds: a number of seconds above 0, got {idle!r}")
    where = section.get("listen") if listen is None else listen
    if where is not None and not (isinstance(where, str) and re.fullmatch(r"[^\s]+:\d{1,5}", where)):
        problems.append(f"$.serve.listen: HOST:PORT, got {where!r}")
    if problems:
        raise ConfigError("invalid service settings", problems)
    return ServeSettings(idle_exit_sec=float(idle), listen=where)


def serve(settings: ServeSettings, environ: Mapping[str, str] | None = None) -> Service:
    """Run the service in this process until it stops (``ohfp serve``); the stopped service.

    :raises ConfigError: for an unusable runtime directory, or when a service already runs.
    """
    from ohfp_core.config import LOG_LEVELS
    from ohfp_core.logs import configure_logging

    directory = private_runtime_dir(runtime_dir(dict(environ or os.environ)))
    level = os.environ.get("OHFP_LOG_LEVEL", "").strip().upper()
    configure_logging(logdir=directory, instance=LOG_INSTANCE, level=level if level in LOG_LEVELS else "INFO")
    service = Service(directory, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop("signal"))
    service.run()
    return service


# --------------------------------------------------------------------------------------
# ohfp serve --status / --stop: a client of the private socket.
# --------------------------------------------------------------------------------------


def request(
    method: str, path: str, environ: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One request to this user's service; raises OSError when there is none."""
    import http.client
    import socket

    sock_path = socket_path(runtime_dir(dict(environ or os.environ)))

    class _Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(sock_path))

    connection = _Connection("ohfp", timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def status() -> dict[str, Any]:
    """``ohfp serve --status``: the service's ``/v1/status``.

    :raises ConfigError: when no service runs (exit 3 is not used: the CLI says 4).
    """
    try:
        code, body = request("GET", "/v1/status")
    except OSError as exc:
        raise NotRunning(f"no ohfp service is running for this user ({exc.strerror or exc})") from None
    document: dict[str, Any] = json.loads(body)
    return (
        {"message": f"ohfp service running, pid {document.get('pid')}", **document}
        if code == 200
        else document
    )


def stop(wait_sec: float = 330.0) -> dict[str, Any]:
    """``ohfp serve --stop``: ask the service to stop and wait until it has let go of its lock."""
    directory = runtime_dir()
    try:
        request("POST", "/v1/stop")
    except OSError as exc:
        raise NotRunning(f"no ohfp service is running for this user ({exc.strerror or exc})") from None
    deadline = time.monotonic() + wait_sec
    while serving(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"message": "ohfp service stopped" if not serving(directory) else "ohfp service still stopping"}


class NotRunning(ConfigError):
    """No service answers on this user's socket."""

    exit_code = 4

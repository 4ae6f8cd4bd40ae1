"""``ohfp serve``: one resident process per host, user and installation that answers the
Host Factory calls of any number of provider instances, warm, behind the same five
generated scripts.

- :mod:`~ohfp_core.serve.runtime`: the private runtime directory, its socket and locks, and
  the build id that names the installed code.
- :mod:`~ohfp_core.serve.wire`: what a script sends and what it gets back.
- :mod:`~ohfp_core.serve.workers`: warm instances, each on a thread of its own.
- :mod:`~ohfp_core.serve.calls`: one Host Factory call answered within its time.
- :mod:`~ohfp_core.serve.server`: HTTP/1.1 over the Unix socket (and the read-only API on
  an optional loopback TCP port).
- :mod:`~ohfp_core.serve.state`: the running service as its listeners, documents and
  metrics see it (a protocol the lifecycle's ``Service`` fulfils).
- :mod:`~ohfp_core.serve.api`, :mod:`~ohfp_core.serve.metrics`, :mod:`~ohfp_core.serve.page`,
  :mod:`~ohfp_core.serve.routes`: the read-only status documents, Prometheus metrics, the
  HTML status page, and the paths that reach them.
- :mod:`~ohfp_core.serve.lifecycle`: start (in the foreground or detached on demand), idle
  exit, drain on SIGTERM, restart when the installed code changes, ``--status``/``--stop``.
- ``client.py``: the thin client the scripts run where no suitable curl is found (standard
  library only, run with ``python -I -S``).

The guarantees are the in-process path's: the same replies and exit codes (the same code
writes them, :mod:`ohfp_core.replies`), the same state transitions, crash safety (a call's
request locks are the service's open files: the kernel drops them when it dies, and the
next call reconciles), the same log files. A script runs the call in its own process only
when the request provably never reached a service.
"""

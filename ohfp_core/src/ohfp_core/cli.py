"""The ``ohfp`` command.

``ohfp hf <call> -f FILE`` answers one Host Factory call: exactly one JSON document on stdout,
logs to ``HF_PROVIDER_LOGDIR`` (or stderr). Exit codes: 0 a reply was given (including an
IBM-style ``"… failed."`` reply for a cloud refusal), 1 internal error, 2 invalid input,
3 invalid configuration or plugins.

Heavy modules are imported inside the commands that need them: every HF call is a new
process, so start-up time is the budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ohfp_core.errors import ConfigError, OhfpError
from ohfp_core.replies import EXIT_ENVIRONMENT, EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, Outcome
from ohfp_core.replies import run as _run
from ohfp_core.replies import write_reply as _print_reply

if TYPE_CHECKING:
    from ohfp_core.config import Settings
    from ohfp_core.deadline import Deadline
    from ohfp_core.models import ProviderContext
    from ohfp_core.operations import Operations
    from ohfp_core.plugins import Hooks
    from ohfp_core.storage import Storage

from ohfp_core.serve.wire import CALLS as HF_CALLS  # the five calls, in the order HF documents them

__all__ = ["HF_CALLS", "main"]


def _version() -> str:
    from importlib.metadata import version

    return version("ohfp-core")


def _context(provider: str | None) -> tuple[ProviderContext, Settings]:
    """The instance's context and ohfp's settings; configures logging (:mod:`ohfp_core.assembly`)."""
    from ohfp_core.assembly import context

    return context(provider)


def _operations(provider: str | None) -> Operations:
    from ohfp_core.assembly import operations

    return operations(provider)


def _open_store(
    hooks: Hooks,
    context: ProviderContext,
    settings: Settings,
    name: str | None = None,
    deadline: Deadline | None = None,
) -> Storage:
    from ohfp_core.assembly import open_store

    return open_store(hooks, context, settings, name, deadline)


class _OneReply:
    """A call's one reply and the code it ends with, whoever writes first: the call, or its
    last resort."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.code: int | None = None

    def write(self, reply: Any, code: int) -> bool:
        """Write ``reply`` unless a reply is out already; whether this one was written."""
        with self._lock:
            if self.code is not None:
                return False
            _print_reply(reply)
            self.code = code
            return True

    def __call__(self, reply: Any, code: int) -> None:
        self.write(reply, code)


def _answer_late(what: str, deadline: Deadline, reply: _OneReply) -> None:
    """The last resort of a call still at work past its deadline: answer Host Factory with a
    JSON failure unless the call's own reply is out, and end the process (with the reply's
    code). Its leases die with it; the next call reconciles what it left."""
    from ohfp_core.replies import log_failure

    message = (
        f"{what} failed: no reply within the {deadline.budget:g} s this call may take"
        " (HF_PROVIDER_ACTION_TIMEOUT less a reserve): something it waited on did not answer;"
        " the next call reconciles what this one left"
    )
    if reply.write({"message": message, "errors": [message]}, EXIT_ENVIRONMENT):
        log_failure(what, OhfpError(message))
    else:
        log_failure(what, OhfpError(f"still at work past its deadline after its reply: ended; {message}"))
    sys.stdout.flush()
    os._exit(reply.code if reply.code is not None else EXIT_ENVIRONMENT)


def cmd_hf(args: argparse.Namespace) -> int:
    from ohfp_core.assembly import operations
    from ohfp_core.converter import read_input
    from ohfp_core.deadline import last_resort

    made: list[Operations] = []
    reply = _OneReply()
    timers: list[threading.Timer] = []
    if args.start_service:
        from ohfp_core.serve.runtime import start_detached

        start_detached()

    def watch(deadline: Deadline) -> None:
        timers.append(last_resort(deadline, lambda: _answer_late(args.call, deadline, reply)))

    def action() -> Any:
        data = read_input(args.file)
        ops = operations(args.provider, begun_sec=args.begun_sec, watch=watch)
        made.append(ops)
        return ops.answer(args.call, data, ops.deadline)

    def delivered() -> None:
        for ops in made:
            ops.reply_written()

    def failed() -> None:
        for ops in made:
            ops.call_failed()

    try:
        return _run(args.call, action, delivered, failed, write=reply)
    finally:
        for timer in timers:
            timer.cancel()


def cmd_scripts(args: argparse.Namespace) -> int:
    from ohfp_core.scripts import write_scripts

    def action() -> Any:
        written = write_scripts(Path(args.directory), args.provider, python=args.python, service=args.service)
        return {"message": f"wrote {len(written)} Host Factory scripts", "scripts": [str(p) for p in written]}

    return _run("scripts", action)


def cmd_plugins(args: argparse.Namespace) -> int:
    from ohfp_core.plugin_listing import describe_plugins

    return _run("plugins", lambda: describe_plugins(args.provider, include_builtin=args.all))


def cmd_templates_validate(args: argparse.Namespace) -> int:
    def action() -> Any:
        ops = _operations(args.provider)
        report = ops.validate_templates_online() if args.online else ops.validate_templates()
        if report is None:
            raise ConfigError(
                f"the {ops.context.provider_type} provider has no online checks: run without --online"
            )
        files, warnings = ops.files_read()
        problems = [p for items in report.values() for p in items]
        if problems:  # each names its file
            named = [f"{files['templates']}: {p}" for p in problems] if files["templates"] else problems
            raise ConfigError(f"{len(problems)} problem(s) in the templates", named)
        reply: dict[str, Any] = {
            "message": f"{len(report)} templates valid.",
            "templates": sorted(report),
            "files": files,
        }
        if warnings:
            reply["warnings"] = warnings
        return reply

    return _run("templates validate", action)


def cmd_requests_show(args: argparse.Namespace) -> int:
    def action() -> Any:
        shown = _operations(args.provider).show_request(args.request_id)
        if args.json:
            return shown
        from ohfp_core.summaries import request_text

        return request_text(shown)

    return _run("requests show", action)


def cmd_requests_list(args: argparse.Namespace) -> int:
    def action() -> Any:
        from ohfp_core.summaries import list_entry, requests_table

        records = _operations(args.provider).list_requests(args.state, args.kind, args.limit)
        entries = [list_entry(record) for record in records]
        if args.json:
            return {"message": f"{len(entries)} request(s)", "requests": entries}
        return requests_table(entries)

    return _run("requests list", action)


def cmd_health(args: argparse.Namespace) -> int:
    def action() -> Any:
        from ohfp_core import health
        from ohfp_core.plugins import load_hooks

        try:
            context, settings = _context(args.provider)
            hooks = load_hooks(context, settings.sections)
        except ConfigError as exc:  # the instance cannot even be set up: a failed check
            reply = health.unusable(args.provider, exc)
        else:
            checks = health.core_checks(context, lambda: _open_store(hooks, context, settings))
            reply = health.report(context, [*checks, *hooks.health_check()])
        return Outcome(reply, EXIT_OK if reply["message"] == "healthy" else EXIT_UNHEALTHY)

    return _run("health", action)


def cmd_storage(args: argparse.Namespace) -> int:
    """``ohfp storage check`` / ``ohfp storage migrate --to BACKEND [--force]`` (a copy takes
    as long as it takes: no Host Factory call waits on it)."""
    from ohfp_core import storage_admin
    from ohfp_core.deadline import Deadline
    from ohfp_core.plugins import Hooks, make_manager

    unbounded = Deadline.never() if args.storage_command == "migrate" else None

    def action() -> Any:
        context, settings = _context(args.provider)
        hooks = Hooks(make_manager(load_entry_points=True))
        source = _open_store(hooks, context, settings, deadline=unbounded)
        try:
            if args.storage_command == "check":
                report = storage_admin.check(source)
                return Outcome(report, EXIT_OK if report.get("ok") else EXIT_UNHEALTHY)
            if args.to == settings.storage:
                raise ConfigError(f"the instance already uses {args.to!r}: name another backend with --to")
            target = _open_store(hooks, context, settings, args.to, deadline=unbounded)
            try:
                return storage_admin.migrate(
                    source, target, source_name=settings.storage, target_name=args.to, force=args.force
                )
            finally:
                target.close()
        finally:
            source.close()

    return _run(f"storage {args.storage_command}", action)


def cmd_serve(args: argparse.Namespace) -> int:
    """``ohfp serve``: run the resident service, or ``--status``/``--stop`` it."""
    from ohfp_core.serve import lifecycle

    if args.describe:
        from ohfp_core.serve.runtime import TAG, current_build

        client = Path(lifecycle.__file__).parent / "client.py"
        return _run(
            "serve --describe", lambda: {"build": current_build().id, "client": str(client), "tag": TAG}
        )
    if args.status:
        return _run("serve --status", lifecycle.status)
    if args.stop:
        return _run("serve --stop", lifecycle.stop)

    def action() -> Any:
        service = lifecycle.serve(lifecycle.settings_for(args.idle_exit, args.listen))
        return {
            "message": f"ohfp service stopped: {service.stopping}",
            "served": sum(service.stats.served.values()),
        }

    return _run("serve", action)


class _Parser(argparse.ArgumentParser):
    """argparse with one JSON reply on stdout for a usage error (usage itself on stderr)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        _print_reply({"message": f"{self.prog}: {message}", "errors": [message]})
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ohfp", description="Open Host Factory provider framework for IBM Spectrum Symphony."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    provider_help = "provider type (else OHFP_PROVIDER, the 'provider' setting, or the only one installed)"
    hf = commands.add_parser("hf", help="answer a Host Factory call, or write the Host Factory scripts")
    hf_calls = hf.add_subparsers(dest="call", metavar="CALL", required=True)
    for call in HF_CALLS:
        sub = hf_calls.add_parser(call, help=f"the {call} call")
        sub.add_argument("-f", "--file", required=True, help="Host Factory's input JSON file")
        sub.add_argument("--provider", help=provider_help)
        sub.add_argument("--start-service", action="store_true", help=argparse.SUPPRESS)
        sub.set_defaults(handler=cmd_hf)
    scripts = hf_calls.add_parser("scripts", help="write the five Host Factory scripts for a provider")
    scripts.add_argument("directory", help="the plugin's script directory")
    scripts.add_argument("--provider", required=True, help="provider type the scripts run")
    scripts.add_argument("--python", help="interpreter the scripts run (default: this one)")
    scripts.add_argument(
        "--no-service",
        dest="service",
        action="store_const",
        const="off",
        default="curl",
        help="scripts that always answer in their own process, never through 'ohfp serve'",
    )
    scripts.set_defaults(handler=cmd_scripts)

    serve = commands.add_parser("serve", help="run the resident service that answers the Host Factory calls")
    serve.add_argument(
        "--status", action="store_true", help="the running service's status as JSON (exit 4: none)"
    )
    serve.add_argument(
        "--stop", action="store_true", help="stop the running service after its calls in flight"
    )
    serve.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="exit after this long without calls"
    )
    serve.add_argument("--listen", metavar="HOST:PORT", help="also serve the read-only API and page over TCP")
    serve.add_argument("--from-call", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)

    plugins = commands.add_parser("plugins", help="list installed providers and plugins as JSON")
    plugins.add_argument("--provider", help=provider_help)
    plugins.add_argument("--all", action="store_true", help="include core's built-in plugins")
    plugins.set_defaults(handler=cmd_plugins)

    templates = commands.add_parser("templates", help="work with the instance's templates")
    template_cmds = templates.add_subparsers(dest="templates_command", metavar="ACTION", required=True)
    validate = template_cmds.add_parser("validate", help="check every template (core and provider rules)")
    validate.add_argument("--provider", help=provider_help)
    validate.add_argument(
        "--online",
        action="store_true",
        help="also ask the cloud whether what the templates name exists (images, networks, launch templates)",
    )
    validate.set_defaults(handler=cmd_templates_validate)

    requests = commands.add_parser("requests", help="look into the instance's requests")
    request_cmds = requests.add_subparsers(dest="requests_command", metavar="ACTION", required=True)
    show = request_cmds.add_parser("show", help="one request: record, machines, why it fell short")
    show.add_argument("request_id", metavar="ID", help="a req-… or ret-… id")
    show.add_argument("--json", action="store_true", help="print the JSON document instead of text")
    show.add_argument("--provider", help=provider_help)
    show.set_defaults(handler=cmd_requests_show)
    listing = request_cmds.add_parser("list", help="the instance's requests, newest first")
    listing.add_argument(
        "--state",
        choices=("running", "complete", "complete_with_error", "all"),
        default="all",
        help="only requests in this state (default: all)",
    )
    listing.add_argument("--kind", choices=("acquire", "return"), help="only acquire or return requests")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0: all)")
    listing.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    listing.add_argument("--provider", help=provider_help)
    listing.set_defaults(handler=cmd_requests_list)

    health = commands.add_parser("health", help="run the provider's health checks")
    health.add_argument("--provider", help=provider_help)
    health.set_defaults(handler=cmd_health)

    storage = commands.add_parser("storage", help="check the state store, or copy it to another backend")
    storage_cmds = storage.add_subparsers(dest="storage_command", metavar="ACTION", required=True)
    check = storage_cmds.add_parser(
        "check", help="verify the store (schema version, integrity); exit 4 if not ok"
    )
    check.add_argument("--provider", help=provider_help)
    check.set_defaults(handler=cmd_storage)
    migrate = storage_cmds.add_parser("migrate", help="copy requests, machines and values to another backend")
    migrate.add_argument(
        "--to", required=True, metavar="BACKEND", help="target backend (its ohfp.json section)"
    )
    migrate.add_argument("--force", action="store_true", help="copy into a target that is not empty")
    migrate.add_argument("--provider", help=provider_help)
    migrate.set_defaults(handler=cmd_storage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names; without ``argv``, the process's own command line: a
    call that is a process of its own, whose time (Host Factory's) began with the process."""
    from ohfp_core.deadline import process_age

    begun_sec = process_age() if argv is None else 0.0
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already answered in JSON
        return int(exc.code or 0)
    args.begun_sec = begun_sec
    if args.version:
        sys.stdout.write(f"ohfp {_version()}\n")
        return EXIT_OK
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        _print_reply({"message": "ohfp: a command is required", "errors": ["a command is required"]})
        return EXIT_USAGE
    if args.command in ("hf", "templates", "health", "requests", "storage") and handler is not cmd_scripts:
        from ohfp_core.assembly import early_logging

        early_logging(getattr(args, "provider", None))
    return int(handler(args))


if __name__ == "__main__":
    raise SystemExit(main())

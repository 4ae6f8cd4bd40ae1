"""Control the mock cloud from outside Host Factory (admins, end-to-end tests). Prints JSON.

    python -m ohfp_mock --workdir DIR advance SECONDS
    python -m ohfp_mock --workdir DIR reclaim MACHINE_ID_OR_NAME [--grace N]
    python -m ohfp_mock --workdir DIR console-terminate MACHINE_ID_OR_NAME
    python -m ohfp_mock --workdir DIR fail-next [COUNT]
    python -m ohfp_mock --workdir DIR list

``--workdir`` defaults to ``HF_PROVIDER_WORKDIR``. Exit status 1 (with a JSON ``message``)
when the machine is unknown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ohfp_mock.cloud import MockCloud
from ohfp_mock.knobs import Knobs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ohfp_mock", description="Control the ohfp mock cloud.")
    parser.add_argument(
        "--workdir",
        default=os.environ.get("HF_PROVIDER_WORKDIR"),
        help="the provider instance's work dir (default: $HF_PROVIDER_WORKDIR)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    advance = commands.add_parser("advance", help="move the simulated clock forward")
    advance.add_argument("seconds", type=float)
    reclaim = commands.add_parser("reclaim", help="give a machine a spot interruption notice")
    reclaim.add_argument("machine", help="machine id or host name")
    reclaim.add_argument("--grace", type=int, default=None, help="seconds of notice (default 120)")
    console = commands.add_parser("console-terminate", help="terminate a machine outside Host Factory")
    console.add_argument("machine", help="machine id or host name")
    fail = commands.add_parser("fail-next", help="make the next cloud calls fail like a throttled API")
    fail.add_argument("count", type=int, nargs="?", default=1)
    commands.add_parser("list", help="every machine, as JSON")
    return parser


def run(args: argparse.Namespace, cloud: MockCloud) -> dict[str, Any]:
    """Carry out one command; returns the JSON reply."""
    if args.command == "advance":
        return {"now": cloud.advance(args.seconds)}
    if args.command == "reclaim":
        return {"machine": cloud.reclaim(args.machine, args.grace).as_json(cloud.now())}
    if args.command == "console-terminate":
        return {"machine": cloud.console_terminate(args.machine).as_json(cloud.now())}
    if args.command == "fail-next":
        cloud.inject_errors(args.count)
        return {"failNext": args.count}
    now = cloud.now()
    return {"now": now, "machines": [machine.as_json(now) for machine in cloud.machines()]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.workdir:
        parser.error("--workdir is required when HF_PROVIDER_WORKDIR is not set")
    try:
        with MockCloud(Path(args.workdir), Knobs()) as cloud:
            reply = run(args, cloud)
    except (LookupError, ValueError) as exc:
        print(json.dumps({"message": str(exc)}))
        return 1
    try:
        print(json.dumps(reply, indent=2), flush=True)
    except BrokenPipeError:  # the reader stopped (``… list | head``): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush cannot fail
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ohfp-aws``: administrator helpers for the AWS provider (not called by Host Factory).

``ohfp-aws iam-policy [--handlers EC2Fleet,ASG] [--events] [--quotas]`` prints the IAM policy
the provider needs. ``ohfp-aws events setup|teardown [--name NAME] [--config FILE]`` makes or
removes the interruption queue and the EventBridge rules that feed it. Every command prints
one JSON document on stdout; errors print ``{"message": …}`` and exit 1 (AWS refused) or 3
(bad configuration).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ohfp_aws.apis import HANDLERS

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise argparse.ArgumentTypeError("1 to 40 characters of [A-Za-z0-9_-]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohfp-aws", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    policy = commands.add_parser("iam-policy", help="print the least-privilege IAM policy as JSON")
    policy.add_argument(
        "--handlers",
        default=",".join(HANDLERS),
        help=f"comma-separated AWS APIs the provider may use (default: {','.join(HANDLERS)})",
    )
    policy.add_argument("--events", action="store_true", help="the interruption queue is set (aws.events)")
    policy.add_argument("--quotas", action="store_true", help="quota-aware capacity is on (aws.quotas)")
    events = commands.add_parser("events", help="the interruption queue and its EventBridge rules")
    events.add_argument("action", choices=("setup", "teardown"))
    events.add_argument(
        "--name", type=_name, default="ohfp", help="prefix of the queue and rule names (default: ohfp)"
    )
    events.add_argument(
        "--config",
        type=Path,
        help="the instance's awsprov_config.json: region, endpoint, credentials file, proxy",
    )
    events.add_argument("--region", help="AWS region (default: the config's, then AWS_REGION)")
    return parser


def _print(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _iam_policy(args: argparse.Namespace) -> int:
    from ohfp_aws.iam import policy_for

    apis = [name.strip() for name in args.handlers.split(",") if name.strip()]
    unknown = [api for api in apis if api not in HANDLERS]
    if unknown or not apis:
        print(
            f"ohfp-aws: unknown API {unknown[0]!r}; choose from {', '.join(HANDLERS)}"
            if unknown
            else "ohfp-aws: --handlers is empty",
            file=sys.stderr,
        )
        return 2
    _print(policy_for(apis, events=args.events, quotas=args.quotas))
    return 0


def _events(args: argparse.Namespace) -> int:
    from ohfp_aws.access.services import Services
    from ohfp_aws.access.session import AwsClients
    from ohfp_aws.interruptions import event_rules
    from ohfp_aws.settings import load_config
    from ohfp_core.errors import CloudError, ConfigError

    try:
        raw: dict[str, Any] = {}
        if args.config is not None:
            try:
                raw = json.loads(args.config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {args.config}: {exc}") from None
        if args.region:
            raw = {**raw, "AWS_REGION": args.region}
        config = load_config(raw, config_file=args.config)
    except ConfigError as exc:
        _print({"message": str(exc)})
        return 3
    act = event_rules.setup if args.action == "setup" else event_rules.teardown
    try:
        _print(act(Services(AwsClients(config)), args.name))
    except CloudError as exc:
        _print({"message": f"events {args.action} failed: {exc.message}"})
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "iam-policy":
        return _iam_policy(args)
    return _events(args)


if __name__ == "__main__":
    raise SystemExit(main())

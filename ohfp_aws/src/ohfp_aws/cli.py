"""``ohfp-aws``: administrator helpers for the AWS provider (not called by Host Factory).

``ohfp-aws iam-policy [--handlers EC2Fleet,ASG]`` prints the IAM policy the provider needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ohfp_aws.handlers import HANDLERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohfp-aws", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    policy = commands.add_parser("iam-policy", help="print the least-privilege IAM policy as JSON")
    policy.add_argument(
        "--handlers",
        default=",".join(HANDLERS),
        help=f"comma-separated AWS APIs the provider may use (default: {','.join(HANDLERS)})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "iam-policy":
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
        sys.stdout.write(json.dumps(policy_for(apis), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``ohfp-dynamodb``: administrator helpers for the DynamoDB state store.

``ohfp-dynamodb create-table --table NAME [--region R] [--endpoint-url URL]`` creates the
table; ``ohfp-dynamodb iam-policy --table NAME [--region R] [--account A] [--create]``
prints the IAM policy the store needs. Each prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohfp-dynamodb", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-table", help="create the state table (on-demand capacity)")
    create.add_argument("--table", required=True)
    create.add_argument("--region", help="default: AWS_REGION or the AWS config")
    create.add_argument("--endpoint-url", help="default: AWS_ENDPOINT_URL or AWS's")
    policy = commands.add_parser("iam-policy", help="print the least-privilege IAM policy as JSON")
    policy.add_argument("--table", required=True)
    policy.add_argument("--region", default="*")
    policy.add_argument("--account", default="*")
    policy.add_argument("--create", action="store_true", help="also allow creating the table")
    return parser


def _print(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "iam-policy":
        from ohfp_dynamodb.iam import policy_for

        _print(policy_for(args.table, args.region, args.account, create=args.create))
        return 0
    from botocore.exceptions import BotoCoreError, ClientError

    from ohfp_core.masking import mask_secrets
    from ohfp_dynamodb.client import make_client
    from ohfp_dynamodb.settings import DynamoSettings
    from ohfp_dynamodb.table import create_table, describe_table

    try:
        settings = DynamoSettings(table=args.table, region=args.region, endpoint_url=args.endpoint_url)
        client = make_client(settings)
        created = create_table(client, args.table, wait_sec=300.0)
        described = describe_table(client, args.table)
    except (ClientError, BotoCoreError, TimeoutError, ValueError) as exc:
        _print({"message": f"create-table failed: {mask_secrets(str(exc))}"})
        return 1
    verb = "created" if created else "already exists"
    _print({"message": f"table {args.table} {verb}", "table": args.table, "arn": described["arn"],
            "status": described["status"]})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The table: its definition, creation and description (botocore client calls only)."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
ATTRIBUTES = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]


def create_table(client: Any, name: str, wait_sec: float = 60.0) -> bool:
    """Create the table (on-demand capacity, no secondary index: every query reads the base
    table, strongly consistent) unless it exists, and wait until it is ACTIVE.

    :returns: True when this call created it.
    """
    created = True
    try:
        client.create_table(
            TableName=name,
            KeySchema=KEY_SCHEMA,
            AttributeDefinitions=ATTRIBUTES,
            BillingMode="PAY_PER_REQUEST",
            Tags=[{"Key": "ohfp:purpose", "Value": "Host Factory state"}],
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        created = False
    deadline = time.monotonic() + wait_sec
    while describe_table(client, name)["status"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name!r} did not become ACTIVE within {wait_sec:g} s")
        time.sleep(0.5)
    return created


def describe_table(client: Any, name: str) -> dict[str, Any]:
    """The table's status, ARN and the problems of its definition for ohfp."""
    table = client.describe_table(TableName=name)["Table"]
    problems = []
    schema = sorted((k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", []))
    if schema != sorted((k["AttributeName"], k["KeyType"]) for k in KEY_SCHEMA):
        problems.append(f"key schema {schema} is not pk (HASH, S) + sk (RANGE, S)")
    return {"status": table.get("TableStatus", ""), "arn": table.get("TableArn", ""), "problems": problems}

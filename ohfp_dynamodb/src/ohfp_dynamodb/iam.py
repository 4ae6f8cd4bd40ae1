"""The IAM policy the DynamoDB store needs, for one table."""

from __future__ import annotations

from typing import Any

RUNTIME_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)
"""Every Host Factory call: keyed reads, consistent queries, the lock item, transactions
(authorized per item by PutItem, DeleteItem, UpdateItem and ConditionCheckItem)."""
ADMIN_ACTIONS = ("dynamodb:Scan",)
"""``ohfp storage migrate`` and ``ohfp storage check`` read the whole table."""
CREATE_ACTIONS = ("dynamodb:CreateTable", "dynamodb:TagResource")
"""``ohfp-dynamodb create-table``, or ``"createTable": true``."""


def table_arn(table: str, region: str = "*", account: str = "*", partition: str = "aws") -> str:
    return f"arn:{partition}:dynamodb:{region}:{account}:table/{table}"


def policy_for(table: str, region: str = "*", account: str = "*", create: bool = False) -> dict[str, Any]:
    """A least-privilege policy document for the table (its ARN with wildcards where unknown)."""
    actions = [*RUNTIME_ACTIONS, *ADMIN_ACTIONS, *(CREATE_ACTIONS if create else ())]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OhfpStateTable",
                "Effect": "Allow",
                "Action": sorted(actions),
                "Resource": table_arn(table, region, account),
            }
        ],
    }

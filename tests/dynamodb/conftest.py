"""Fixtures for the DynamoDB backend: moto (testbeds/dynamodb.py)."""

from __future__ import annotations

from tests.store_servers import dynamo_server

__all__ = ["dynamo_server"]

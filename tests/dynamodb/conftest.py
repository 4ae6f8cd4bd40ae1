"""Fixtures for the DynamoDB backend: moto (tests/dynamo_support.py)."""

from __future__ import annotations

from tests.dynamo_support import dynamo_server

__all__ = ["dynamo_server"]

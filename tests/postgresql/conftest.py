"""Fixtures for the PostgreSQL backend: a live server (tests/postgres_support.py), and moto
for the migrations between backends (tests/dynamo_support.py)."""

from __future__ import annotations

from tests.dynamo_support import dynamo_server
from tests.postgres_support import postgres_server

__all__ = ["dynamo_server", "postgres_server"]

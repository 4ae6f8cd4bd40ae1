"""Fixtures for the PostgreSQL backend: a live server (testbeds/postgresql.py), and moto
for the migrations between backends (testbeds/dynamodb.py)."""

from __future__ import annotations

from tests.store_servers import dynamo_server, postgres_server

__all__ = ["dynamo_server", "postgres_server"]

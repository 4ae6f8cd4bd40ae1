"""Fixtures for the PostgreSQL backend: a live server (tests/postgres_support.py)."""

from __future__ import annotations

from tests.postgres_support import postgres_server

__all__ = ["postgres_server"]

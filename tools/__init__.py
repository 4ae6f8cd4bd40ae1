"""Maintainers' tools run by nox sessions (not shipped)."""

"""Session fixtures for the shared stores' servers: DynamoDB on moto and PostgreSQL
(:mod:`testbeds.dynamodb`, :mod:`testbeds.postgresql`). A directory's conftest or a test
module imports the fixture it uses."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from testbeds.dynamodb import FAKE_ENV, SerialMotoServer, fast_moto
from testbeds.postgresql import PostgresServer, find_server

REQUIRE_POSTGRESQL_ENV = "OHFP_REQUIRE_POSTGRESQL"
"""Set to ``1`` (.ci/run sets it) to make a missing PostgreSQL server fail the tests, not skip them."""


@pytest.fixture(scope="session")
def dynamo_server() -> Iterator[SerialMotoServer]:
    """A moto server for DynamoDB, fake credentials in the environment."""
    saved = {name: os.environ.get(name) for name in FAKE_ENV}
    os.environ.update(FAKE_ENV)
    server = SerialMotoServer()
    try:
        with fast_moto():
            yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A live server (:func:`testbeds.postgresql.find_server`), its schemas dropped at the end;
    the tests that use it skip without one, saying why, or fail under
    ``OHFP_REQUIRE_POSTGRESQL=1``."""
    found = find_server()
    if isinstance(found, str):
        if os.environ.get(REQUIRE_POSTGRESQL_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRESQL_ENV}=1 but {found}")
        pytest.skip(found)
    try:
        yield found
    finally:
        found.stop()

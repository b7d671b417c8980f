"""Real Redis and PostgreSQL for the whole run, started on loopback from the Debian packages' binaries."""

from __future__ import annotations

import pytest

from tests.support.cluster import Backends
from tests.support.servers import PostgresServer, RedisServer

# What the concurrency tests measured, printed at the end of the run (see pytest_terminal_summary).
MEASURED: list[str] = []


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def backends(redis_server, postgres_server) -> Backends:
    return Backends(redis=redis_server, postgres=postgres_server)


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("measured (not asserted): what the non-atomic strategies do")
        for line in MEASURED:
            terminalreporter.write_line(line)

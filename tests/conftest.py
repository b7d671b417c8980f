"""Real Redis and PostgreSQL for the whole run, started on loopback from the Debian packages' binaries."""

from __future__ import annotations

import os

import pytest

from harness.cluster import Backends
from harness.servers import PostgresServer, RedisServer

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


def pytest_collection_modifyitems(config, items):
    """A run that includes the lab or end-to-end tests needs root: say so in one line instead of skipping them (a
    green run that tested nothing on the lab would hide it)."""
    if os.geteuid() != 0 and any(item.get_closest_marker("lab") for item in items):
        raise pytest.UsageError(
            "the lab and end-to-end tests need root (network namespaces, mounts, containers): "
            "run ./kit test as root, or select tests/unit tests/app"
        )

from __future__ import annotations

import asyncio
import time

import pytest

from harness.cluster import Cluster
from sample_app.settings import STRATEGIES


@pytest.fixture(scope="module", params=STRATEGIES)
def cluster(request, backends):
    """Three nodes of one strategy; every test in a module runs once per strategy."""
    cluster = Cluster(request.param, backends, size=3).start()
    yield cluster
    cluster.destroy()


def eventually(check, timeout: float = 3.0, interval: float = 0.02):
    """Retry until check() returns something other than None or False (replication is asynchronous); return it,
    or the last result when time is up. (Not plain truthiness: a 4xx requests.Response is falsy.)"""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if (result is not None and result is not False) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a test's coroutine on a new loop of asyncio's kind and of uvloop's (the app's: sample_app/serve.py), 20 s
    at most."""
    factory = asyncio.new_event_loop if request.param == "asyncio" else __import__("uvloop").new_event_loop

    def run(coroutine):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coroutine, 20))

    return run

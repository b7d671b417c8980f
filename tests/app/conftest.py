from __future__ import annotations

import time

import pytest

from sample_app.settings import STRATEGIES
from tests.support.cluster import Cluster


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

"""200 increments of one session sent in parallel, spread over three nodes.

database, redis and token must count every one. cookie, sticky and replication are measured and reported at the end
of the run (they cannot be exact here, and the report says by how much).
"""

from __future__ import annotations

import concurrent.futures

from harness.client import SessionClient
from harness.cluster import ATOMIC
from tests.conftest import MEASURED

from .conftest import eventually

INCREMENTS, WORKERS = 200, 24


def test_parallel_increments(cluster):
    owner = SessionClient(bearer=cluster.bearer)
    owner.login(cluster.urls[0], "racer")
    handle = owner.handle
    if cluster.strategy == "replication":
        eventually(
            lambda: all(
                SessionClient(bearer=False, timeout=5).get(url + "/session", headers={"Cookie": f"SESSION={handle}"}).ok
                for url in cluster.urls
            )
        )

    def increment(i: int) -> tuple[int, int | None]:
        client = SessionClient(bearer=cluster.bearer)
        client.handle = handle
        response = client.post(cluster.urls[i % len(cluster.urls)] + "/session/counter")
        return response.status_code, response.json().get("counter")

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(increment, range(INCREMENTS)))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 401}, f"unexpected statuses {set(statuses)}"
    accepted = statuses.count(200)

    def counters() -> list[int]:
        reader = SessionClient(bearer=cluster.bearer)
        reader.handle = handle
        return [reader.get(url + "/session").json().get("counter") for url in cluster.urls]

    if cluster.strategy in ATOMIC:
        assert accepted == INCREMENTS
        assert counters() == [INCREMENTS] * 3, "an atomic store lost increments"
        return
    if cluster.strategy == "sticky":
        # Only the node that holds the session accepts; there one event loop runs each increment to completion.
        final = counters()[0]
        assert accepted == len(range(0, INCREMENTS, 3)) and final == accepted
    elif cluster.strategy == "cookie":
        # Each request starts from the cookie it carried: every answer is 1, and the client keeps one of them.
        final = max(counter for _, counter in results)
        assert accepted == INCREMENTS and final == 1
    else:
        # replication: each node's increments are its own part of the counter (a grow-only counter), so once the
        # nodes agree every accepted increment counts.
        settled = eventually(lambda: (lambda seen: seen[0] if len(set(seen)) == 1 else None)(counters()))
        assert settled is not None, f"replicas never converged: {counters()}"
        final = settled
        assert accepted == INCREMENTS and final == INCREMENTS, f"replication lost {accepted - final} increments"
    MEASURED.append(
        f"{cluster.strategy:12s}: {INCREMENTS} parallel increments over 3 nodes -> {accepted} accepted, "
        f"counter ends at {final}: {accepted - final} of the accepted increments lost "
        f"({100 * (accepted - final) / accepted:.0f}%)"
    )

"""The rolling restart's plan: batches of app_rolling_batch nodes, and a bounded health wait."""

from __future__ import annotations

import subprocess

from deploys.rolling import batches, wait_healthy_command

NODES = [{"name": f"app{i}", "ip": f"10.0.0.{i}"} for i in range(1, 6)]


def test_batches_cover_every_node_once_in_order():
    for size in (1, 2, 3, 5, 10):
        plan = batches(NODES, size)
        assert [node for batch in plan for node in batch] == NODES
        assert all(1 <= len(batch) <= size for batch in plan)
        assert len(plan) == -(-len(NODES) // size)


def test_health_wait_is_bounded_and_says_what_failed():
    # nothing listens on this port: the wait gives up after its bound, with one line naming the URL
    command = wait_healthy_command("http://127.0.0.1:9/healthz", within=1, settle=0)
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "http://127.0.0.1:9/healthz not healthy within 1 s" in result.stderr

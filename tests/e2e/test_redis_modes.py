"""Every redis_mode switch in one apply. First cluster on the lab's one Redis host (inventories/lab.py), then
redis_mode=sentinel and redis_mode=cluster on inventories/lab_ha.py (Redis on three hosts): each deployed, verified
and applied again with zero changes; a primary killed under load fails over within the goal and
loses nothing, and an apply after the failover still changes nothing (who is primary is Redis' own state, not the
kit's files). Then back to standalone on inventories/lab.py: what the other modes left running retired and the
app's Redis a primary, verified."""

from __future__ import annotations

import re

import pytest

from drills.catalog import DRILLS, Params
from drills.cluster import Target
from session_kit.verification import verify_command
from tests.e2e.test_deploy import PYINFRA, run, totals

pytestmark = pytest.mark.lab
HA = "inventories/lab_ha.py"
LAB = "inventories/lab.py"
ONE_HOST_CLUSTER = {"redis_mode": "cluster", "redis_cluster_node_timeout": "2s"}
MODES = {
    "sentinel": {"session_strategy": "token", "redis_mode": "sentinel", "redis_sentinel_down_after": "2s"},
    "cluster": {"session_strategy": "redis", "redis_mode": "cluster", "redis_cluster_node_timeout": "2s"},
}


def verify(inventory: str, data: dict, outside_source: str) -> None:
    result = run(*verify_command(inventory, data, "--outside-source", outside_source))
    assert result.returncode == 0, f"verification of {inventory} {data} failed:\n{result.stdout[-6000:]}"
    assert re.search(r"\d+ passed", result.stdout)


def test_cluster_on_the_one_redis_host_in_one_apply(lab, outside_source):
    """redis_mode=cluster on inventories/lab.py, whose one Redis host is also the balancer and the database, applied
    over a standalone deployment: one run makes the instances and the cluster before any app node waits for it
    (deploys/site.py's barrier, not the steps' positions), verified, and applied again with zero changes. Sentinel on
    three hosts comes next (the tests below), retiring these instances."""
    data = {"session_strategy": "redis"}
    target = Target(LAB, data)
    try:
        standalone = target.apply_unloaded()
        assert standalone.get("errors") == 0, standalone
        switched = target.apply_unloaded(ONE_HOST_CLUSTER)
        assert switched.get("errors") == 0 and switched.get("changed", 0) > 0, switched
        again = target.apply(ONE_HOST_CLUSTER)
        assert again.get("changed") == 0 and again.get("errors") == 0, f"second apply changed things: {again}"
    finally:
        target.close()
    verify(LAB, {**data, **ONE_HOST_CLUSTER}, outside_source)


@pytest.fixture(scope="module", params=list(MODES))
def mode(lab, request):
    target = Target(HA, MODES[request.param])
    yield target
    target.close()


def test_deploys_verifies_and_reapplies(mode, outside_source):
    first = mode.apply_unloaded()
    assert first.get("errors") == 0, first
    verify(HA, mode.data, outside_source)
    again = mode.apply()
    assert again.get("changed") == 0 and again.get("errors") == 0, f"second apply changed things: {again}"


def test_failover_under_load_and_an_apply_after_it_changes_nothing(mode, outside_source):
    result = DRILLS["failover"].run(mode, Params(clients=200, seconds=6))
    figures, goals = result["figures"], result["goals"]
    missed = {name: goal for name, goal in goals.items() if not goal["met"]}
    assert not missed, f"failover: {missed}; figures {figures}"
    assert figures["promoted"] != figures["killed"]
    print(
        f"failover: {figures['killed']} -> {figures['promoted']}, writes back after "
        f"{figures['seconds_until_writes']} s, {figures['failed']} of {figures['requests']} failed"
    )
    after = mode.apply()
    assert after.get("changed") == 0 and after.get("errors") == 0, f"an apply after the failover changed: {after}"
    verify(HA, mode.data, outside_source)  # the new primary, its replicas (the old one among them), one view


def test_back_to_standalone(lab, outside_source):
    target = Target("inventories/lab.py", {"session_strategy": "token"})
    try:
        applied = target.apply_unloaded()
        assert applied.get("errors") == 0, applied
        for node in target.deployment.nodes:
            # a Sentinel, a Cluster instance, and outside the redis group (lab2, lab3 in lab_ha) Redis itself
            units = "'redis-sentinel.service' 'redis-server@*.service'" + (
                "" if "redis" in node.roles else " redis-server.service"
            )
            running = target.ssh(node, f"systemctl list-units --plain --no-legend --state=active {units}")
            assert not running.strip(), f"{node.name}: still running after the switch back to standalone: {running}"
    finally:
        target.close()
    verify("inventories/lab.py", {"session_strategy": "token"}, outside_source)
    again = run(PYINFRA, "-y", "inventories/lab.py", "deploys/site.py", "--data", "session_strategy=token")
    assert totals(again)["changed"] == 0

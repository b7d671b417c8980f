"""The drills on the app nodes: one stopped (node-stop) or killed (node-kill) under load, all restarted by a deploy
(rolling), one added by an apply under load (scale-out)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .cluster import DrillError, Target
from .load import Load, upstreams_of_failures
from .measure import (
    SHARED,
    Params,
    goal,
    lab_client_addresses,
    under_load,
    under_load_from,
    without_load,
    zero_loss_goals,
)

# -- node-stop, node-kill -------------------------------------------------------------------------------------------


def _node(target: Target):
    apps = target.role("app")
    return apps[len(apps) // 2]


def node_stop(target: Target, params: Params) -> dict[str, Any]:
    node = _node(target)

    def action(mark):
        mark("stop")
        target.ssh(node, "systemctl stop session-kit-app")
        mark("stopped")
        time.sleep(2)
        target.ssh(node, "systemctl start session-kit-app")
        mark("start")
        return {"node": node.name, "seconds_until_serving": target.wait_healthy(node)}

    figures = under_load(target, params, action)
    return {
        "figures": without_load(figures),
        "goals": zero_loss_goals(target, figures),
        "restored": f"{node.name} started again and healthy",
    }


def node_kill(target: Target, params: Params) -> dict[str, Any]:
    node = _node(target)
    address = f"{node.ip}:{target.deployment.vars['app_port']}"

    def action(mark):
        mark("kill")
        target.ssh(node, "systemctl kill --signal=SIGKILL session-kit-app")
        # systemd brings it back (Restart=on-failure): the seconds until it serves again
        time.sleep(0.5)
        return {"node": node.name, "seconds_until_serving": target.wait_healthy(node, within=120)}

    figures = under_load(target, params, action)
    load: Load = figures["_load"]
    sent_to = upstreams_of_failures(load.outcomes, target.access_log(load.run_id))
    on_killed = sum(1 for nodes in sent_to.values() if address in nodes)
    figures["failed_on_killed_node"] = on_killed
    figures["failed_elsewhere"] = figures["failed"] - on_killed
    goals = {}
    if target.strategy in SHARED:
        goals["sessions_lost"] = goal(0, figures["sessions_lost"], figures["sessions_lost"] == 0)
        goals["failed_only_on_killed_node"] = goal(0, figures["failed_elsewhere"], figures["failed_elsewhere"] == 0)
    return {
        "figures": without_load(figures),
        "goals": goals,
        "restored": f"{node.name} restarted by systemd and healthy",
    }


# -- rolling --------------------------------------------------------------------------------------------------------


def rolling(target: Target, params: Params) -> dict[str, Any]:
    """A deploy that restarts every app node (a changed app_session_ttl), under load; then the TTL is put back."""
    ttl = int(target.deployment.vars["app_session_ttl"])

    def action(mark):
        mark("deploy")
        applied = target.apply({"app_session_ttl": ttl + 1})
        mark("deployed")
        return {"deploy": applied}

    # the deploy itself is the event and lasts half a minute: a few seconds of load around it are enough
    params = dataclasses.replace(params, seconds=6)
    figures = under_load(target, params, action)
    # no load any more: put the TTL back restarting every node at once (one health wait instead of one per node)
    restored = target.apply_unloaded()
    return {
        "figures": without_load(figures),
        "goals": zero_loss_goals(target, figures),
        "restored": f"app_session_ttl back to {ttl} (every node restarted at once, no load: {restored['seconds']} s)",
    }


# -- scale-out (needs the lab: client addresses in many /24s) -------------------------------------------------------


def scale_out(target: Target, params: Params) -> dict[str, Any]:
    """A new app node added to the lab's inventory and applied under load: clients whose requests move to another
    node, sessions lost. Then the node is removed again and the cluster applied as it was."""
    import subprocess
    import sys

    from .cluster import ROOT

    addresses = lab_client_addresses(target)
    hosts = len(target.deployment.nodes)

    def lab_hosts(count: int) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "lab", "up", "--hosts", str(count)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise DrillError(f"lab up --hosts {count}: {result.stderr.strip()[-300:]}")
        lab_client_addresses(target)  # routes back to the client networks in the new host too

    def action(mark):
        mark("apply")
        applied = target.apply()
        mark("applied")
        return {"deploy": applied, "app_nodes_before": hosts - 1, "app_nodes_after": hosts}

    params = dataclasses.replace(params, seconds=6)  # the apply itself (a new node's first deploy) is the event
    try:
        # the new host is made before the load starts (a server that has come up, not yet in the inventory's
        # cluster): the lab's inventory lists it from now on, the balancer only once the apply has put it there
        lab_hosts(hosts + 1)
        figures = under_load_from(target, params, action, addresses)
    finally:
        lab_hosts(hosts)
        restored = target.apply_unloaded()  # replication: the peers that learnt the new node restart at once
    load: Load = figures["_load"]
    before_at, after_at = figures["events"]["apply"], figures["events"]["applied"]
    moved = considered = 0
    for client in range(params.clients):
        before = _main_node(o.node for o in load.outcomes if o.client == client and o.end < before_at and o.node)
        after = _main_node(o.node for o in load.outcomes if o.client == client and o.start > after_at and o.node)
        if before and after:
            considered += 1
            moved += before != after
    pinned = target.deployment.lb_method != "round_robin"
    figures["clients_moved_share"] = round(moved / considered, 3) if pinned and considered else None
    figures["sessions_lost_share"] = round(figures["sessions_lost"] / params.clients, 3)
    goals = zero_loss_goals(target, figures) if target.strategy in SHARED else {}
    goals.pop("failed_requests", None)  # a reload under load may fail a request the balancer had in hand
    return {
        "figures": without_load(figures),
        "goals": goals,
        "restored": f"the added node removed and the cluster applied as before ({restored['seconds']} s)",
    }


def _main_node(nodes) -> str | None:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node] = counts.get(node, 0) + 1
    return max(counts, key=counts.get) if counts else None

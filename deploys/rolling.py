"""Rolling restarts of the app nodes: `app_rolling_batch` nodes at a time (default 1), each batch drained, restarted
and healthy, and back in the balancer's rotation, before the next batch is touched.

How it keeps traffic whole:
- the restart's stop drains the node (sample_app/serve.py): it refuses new connections, so Nginx passes every new
  request to another node (a POST too: nothing was sent), and it answers what is in flight before it exits;
- the node listens again only when its store is ready (replication: it has pulled its snapshot from a live peer);
- before the next batch, the kit waits until the node answers /healthz on its private address, and then for
  `nginx_fail_timeout`: the time Nginx may still skip a node that refused it, so that two batches are never out of
  rotation at once.

The steps are declared on every host, in the same order, so pyinfra runs them as one sequence across the cluster
(an operation runs on all its hosts before the next one starts); each step acts only on the hosts of its batch, and
only when that node's code, settings or unit changed in this apply and it was already running (a node that was not
running is started by the app deploy, with nothing to drain). A second apply restarts nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from pyinfra import host
from pyinfra.operations import server

from session_kit.defaults import VARIABLES

from .cluster import Cluster, bounded, private_ip

# host name -> "does this app node need a restart?", filled while the app deploy is declared for each host
NEEDS_RESTART: dict[str, Callable[[], bool]] = {}
HEALTHY_WITHIN = 120  # seconds a restarted node has to answer /healthz before the deploy stops with an error


def batches(nodes: list[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
    return [nodes[i : i + size] for i in range(0, len(nodes), size)]


def wait_healthy_command(url: str, within: int, settle: float) -> str:
    """Poll /healthz until it answers 200 (bounded), then wait `settle` seconds for the balancer to take it back."""
    poll = f"until curl -fsS -o /dev/null --max-time 2 {shlex.quote(url)}; do sleep 0.2; done"
    return (
        f"timeout {within} sh -c {shlex.quote(poll)} "
        f"|| {{ echo 'session-kit: {url} not healthy within {within} s after the restart' >&2; exit 1; }}; "
        f"sleep {settle:g}"
    )


def restart_app_nodes(cluster: Cluster) -> None:
    """Declared on every host (see the module's docstring); acts on the app nodes of each batch in turn."""
    me = host.name
    nodes = cluster.nodes("app")
    port = cluster.vars["app_port"]
    settle = VARIABLES["nginx_fail_timeout"].type.seconds(cluster.vars["nginx_fail_timeout"]) + 0.5
    for batch in host.loop(batches(nodes, cluster.vars["app_rolling_batch"])):
        names = [node["name"] for node in batch]
        mine = me in names

        def needed(mine=mine) -> bool:
            return mine and NEEDS_RESTART.get(me, lambda: False)()

        label = ", ".join(names)
        server.shell(
            name=f"Rolling restart: {label} (drains, restarts)",
            commands=["systemctl restart session-kit-app"],
            _if=needed,
            **bounded(120),
        )
        url = f"http://{private_ip(host)}:{port}/healthz"
        server.shell(
            name=f"Rolling restart: {label} healthy and back in rotation",
            commands=[wait_healthy_command(url, HEALTHY_WITHIN, settle)],
            _if=needed,
            **bounded(HEALTHY_WITHIN + int(settle) + 30),
        )

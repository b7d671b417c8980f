"""A host firewall (nftables): each service port the kit opens answers only the hosts that need it.

Redis and PostgreSQL: the app nodes (with Sentinel, Redis also the other Redis and the Sentinels; Sentinel the app
nodes and the other Sentinels). The app's port: the load balancers and the other app nodes (replication's peers).
Each host also reaches itself, and `firewall_allow_from` (a monitor, the machine that deploys and drills) reaches
everything. The rules live in one table of the kit's own (inet session_kit), replaced whole on each change, so other
tables on the host are left alone; SSH and every other port stay as they are, so a deploy can never lock itself out.
Rules follow the host's roles, not the strategy: a Redis left running after a switch to another strategy stays closed.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import systemd

from session_kit.defaults import FIREWALL_DEFAULTS

from .cluster import Cluster, bounded_deploy, install_packages, private_ip, render

CONF = "/etc/nftables.conf"


def rules(cluster: Cluster) -> list[dict]:
    """The ports of this host's roles, each with the addresses that may reach it (besides this host and
    firewall_allow_from)."""
    app = [node["ip"] for node in cluster.nodes("app")]
    lb = [node["ip"] for node in cluster.nodes("lb")]
    result = []
    sentinels = [node["ip"] for node in cluster.sentinel_nodes()]
    if cluster.has_role("redis"):
        if sentinels:
            redis = [node["ip"] for node in cluster.nodes("redis")]
            result.append(
                {
                    "name": "redis_clients",
                    "port": cluster.vars["redis_port"],
                    "sources": _sorted(set(app + redis + sentinels)),
                    "why": "Redis: the app nodes, the other Redis (replication) and the Sentinels",
                }
            )
        else:
            result.append(
                {
                    "name": "redis_clients",
                    "port": cluster.vars["redis_port"],
                    "sources": app,
                    "why": "Redis: the app nodes",
                }
            )
    here = [node["port"] for node in cluster.cluster_instances() if node["name"] == cluster.host.name]
    if here:
        redis = [node["ip"] for node in cluster.nodes("redis")]

        def span(offset: int = 0) -> str:
            """This host's instances' ports (+ offset) as nftables writes them: "7000" or "7000-7001"."""
            low, high = min(here) + offset, max(here) + offset
            return f"{low}-{high}" if high > low else str(low)

        ports, bus = span(), span(10000)
        result.append(
            {
                "name": "cluster_clients",
                "port": ports,
                "sources": _sorted(set(app + redis)),
                "why": "Redis Cluster's instances: the app nodes and the other instances (replication)",
            }
        )
        result.append(
            {
                "name": "cluster_bus",
                "port": bus,
                "sources": _sorted(set(redis)),
                "why": "Redis Cluster's bus (port + 10000): the other instances",
            }
        )
    if cluster.runs_sentinel():
        result.append(
            {
                "name": "sentinel_clients",
                "port": cluster.vars["redis_sentinel_port"],
                "sources": _sorted(set(app + sentinels)),
                "why": "Redis Sentinel: the app nodes and the other Sentinels",
            }
        )
    if cluster.has_role("db"):
        result.append(
            {
                "name": "postgres_clients",
                "port": cluster.vars["postgres_port"],
                "sources": app,
                "why": "PostgreSQL: the app nodes",
            }
        )
    if cluster.has_role("app"):
        result.append(
            {
                "name": "app_clients",
                "port": cluster.vars["app_port"],
                "sources": _sorted(set(lb + app)),
                "why": "the app: the load balancers, and the other app nodes (replication's peers)",
            }
        )
    return result


def _sorted(addresses) -> list[str]:
    return sorted(addresses, key=lambda ip: tuple(int(p) for p in ip.split(".")))


@bounded_deploy("Host firewall", data_defaults=FIREWALL_DEFAULTS)
def install_firewall(cluster: Cluster) -> None:
    install_packages("Install nftables", ["nftables"])
    conf = render(
        CONF,
        name="Render the firewall (nftables.conf)",
        mode="755",
        host_name=host.name,
        roles=[role for role in ("lb", "app", "redis", "db") if cluster.has_role(role)],
        own_ip=private_ip(host),
        allow_from=list(cluster.vars["firewall_allow_from"]),
        rules=rules(cluster),
    )
    # nftables.service loads the file at boot; a reload loads it now (atomically: a file nft refuses changes nothing).
    systemd.service(name="Keep the firewall loaded, and at boot", service="nftables", running=True, enabled=True)
    systemd.service(name="Load the changed firewall", service="nftables", reloaded=True, _if=conf.did_change)

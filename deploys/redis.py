"""Redis for the redis and token strategies: bound to the private address, password required, protected mode on."""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import files, systemd

from session_kit.defaults import REDIS_DEFAULTS

from .cluster import Cluster, bounded_deploy, install_packages, private_ip, template

CONF = "/etc/redis/redis.conf"


@bounded_deploy("Redis session store", data_defaults=REDIS_DEFAULTS)
def install_redis(cluster: Cluster) -> None:
    install_packages("Install redis-server", ["redis-server"])
    conf = files.template(
        name="Render redis.conf", src=template(CONF), dest=CONF, user="redis", group="redis", mode="640",
        private_ip=private_ip(host), redis_password=cluster.secrets["redis_password"],
        **cluster.values(REDIS_DEFAULTS))
    # Redis cannot reload its configuration: a changed file means a restart.
    systemd.service(name="Restart redis", service="redis-server", restarted=True, _if=conf.did_change)
    systemd.service(name="Keep redis running and enabled", service="redis-server", running=True, enabled=True)

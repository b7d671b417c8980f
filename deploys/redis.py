"""Redis for the redis and token strategies: bound to the private address, protected mode on, no login without an
ACL user: the app's user limited to the session keys and the commands the app sends, and an admin user."""

from __future__ import annotations

import hashlib

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
        private_ip=private_ip(host), **acl(cluster.secrets["redis_password"], cluster.secrets["redis_admin_password"]),
        **cluster.values(REDIS_DEFAULTS))
    # Redis cannot reload its configuration: a changed file means a restart.
    systemd.service(name="Restart redis", service="redis-server", restarted=True, _if=conf.did_change)
    systemd.service(name="Keep redis running and enabled", service="redis-server", running=True, enabled=True)


def acl(password: str, admin_password: str) -> dict:
    """redis.conf's ACL values: the passwords' SHA-256 digests (what `user ... #DIGEST` takes), and what the app's
    user may touch, from the app itself."""
    from sample_app.stores.redis import ACL_COMMANDS, KEY_PATTERNS

    def digest(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    return {"app_digest": digest(password), "admin_digest": digest(admin_password), "key_patterns": KEY_PATTERNS,
            "commands": ACL_COMMANDS}

"""Apply everything by group: pyinfra -y INVENTORY deploys/site.py [--data session_strategy=X]

The inventory is checked first (session_kit/validate.py): a mistake stops the run, with one line naming it, before
any operation exists. Only what the chosen strategy needs is deployed: Redis for redis and token (and its Sentinels
with redis_mode=sentinel), PostgreSQL for database; the load balancer and the app nodes always; a host firewall on
every host first (deploys/firewall.py); with lb_vip, keepalived on the balancers (deploys/keepalived.py). App nodes
that must restart do so one batch at a time, each drained, restarted and healthy before the next
(deploys/rolling.py): a deploy under load fails no request."""

from pyinfra import host, inventory

from deploys.app import install_app
from deploys.cluster import Cluster, barrier
from deploys.firewall import install_firewall
from deploys.keepalived import install_keepalived, retire_keepalived
from deploys.nginx import install_nginx
from deploys.postgres import install_postgres
from deploys.redis import install_redis, install_sentinel, retire_redis
from deploys.rolling import restart_app_nodes

cluster = Cluster(host, inventory)

if cluster.vars["firewall"]:
    install_firewall(cluster)
retire_redis(cluster)  # what another redis_mode left running (a Sentinel, Cluster instances), stopped first
if cluster.has_role("redis") and "redis" in cluster.strategy.needs:
    install_redis(cluster)
if cluster.runs_sentinel():
    install_sentinel(cluster)
if cluster.has_role("db") and "db" in cluster.strategy.needs:
    install_postgres(cluster)
barrier("Every store ready before any app node starts")
if cluster.has_role("app"):
    install_app(cluster)
if cluster.has_role("lb"):
    install_nginx(cluster)
if cluster.has_role("lb") and cluster.vars["lb_vip"]:
    install_keepalived(cluster)
else:
    retire_keepalived()
# Declared on every host, so that the batches run one after the other across the cluster (deploys/rolling.py).
restart_app_nodes(cluster)

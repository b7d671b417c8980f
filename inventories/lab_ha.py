"""The local lab with no single balancer and Redis on three hosts, for redis_mode=sentinel and cluster: lab1 = lb +
redis (the first primary) + db, lab2 = lb + app + redis, lab3 = app + redis, lab4.. = app. The two balancers share
the floating address 10.213.0.10 (lb_vip; keepalived), which clients use; a Sentinel on each redis host.

    pyinfra -y inventories/lab_ha.py deploys/site.py --data redis_mode=sentinel

Same hosts, secrets and certificate as inventories/lab.py (inventory_name "lab").
"""

from lab.inventory import groups

_groups = groups("lab", redis_hosts=3, lb_hosts=2)
lb = _groups["lb"]
app = _groups["app"]
redis = _groups["redis"]
db = _groups["db"]

"""The local lab with Redis on three hosts, for redis_mode=sentinel: lab1 = lb + redis (the first primary) + db,
lab2 and lab3 = app + redis (replicas) and lab4.. = app; a Sentinel on each redis host.

    pyinfra -y inventories/lab_ha.py deploys/site.py --data redis_mode=sentinel

Same hosts, secrets and certificate as inventories/lab.py (inventory_name "lab").
"""

from lab.inventory import groups

_groups = groups("lab", redis_hosts=3)
lb = _groups["lb"]
app = _groups["app"]
redis = _groups["redis"]
db = _groups["db"]

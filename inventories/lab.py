"""The local lab (python -m lab up) as an inventory: lab1 = lb + redis + db, lab2..labN = app.

pyinfra -y inventories/lab.py deploys/site.py [--data session_strategy=token]
"""

from lab.inventory import groups

_groups = groups("lab")
lb = _groups["lb"]
app = _groups["app"]
redis = _groups["redis"]
db = _groups["db"]

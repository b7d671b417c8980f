"""A production-shaped example with no single balancer and no single Redis: copy it, put your servers' private
addresses in, and apply. inventories/lab_ha.py is its twin on the local lab.

    pyinfra -y inventories/example_ha.py deploys/site.py

Everything in inventories/example.py holds here; what differs is commented. Every variable and its default:
session_kit/defaults.py. Secrets go to secrets/example_ha.json (git-ignored, mode 0600) on the first apply.
"""

_ssh = {
    "ssh_user": "deploy",
    "ssh_key": "~/.ssh/id_ed25519",
    "ssh_known_hosts_file": "~/.ssh/known_hosts",
    "ssh_strict_host_key_checking": "yes",
    "_sudo": True,
    "inventory_name": "example_ha",
    # The address clients use (DNS points here): a free address on the balancers' network, held by one balancer at
    # a time and moved by keepalived when that balancer or its Nginx dies (docs/deploying.md: A balancer pair).
    # Your network must let the balancers' VRRP (IP protocol 112) reach each other; it is unicast, no multicast.
    "lb_vip": "10.0.1.100",
    # Redis with Sentinel on the three redis hosts: a primary and two replicas, a failover decided by a majority.
    "redis_mode": "sentinel",
}

# Two balancers with the same configuration; either serves every client alike (ip_hash and cookie routing too).
lb = [
    ("lb1.example.internal", {**_ssh, "private_ip": "10.0.1.10"}),
    ("lb2.example.internal", {**_ssh, "private_ip": "10.0.1.11"}),
]

app = [
    ("app1.example.internal", {**_ssh, "private_ip": "10.0.2.11"}),
    ("app2.example.internal", {**_ssh, "private_ip": "10.0.2.12"}),
    ("app3.example.internal", {**_ssh, "private_ip": "10.0.2.13"}),
]

# Three, so that losing one leaves a majority of Sentinels and a replica to promote.
redis = [
    ("cache1.example.internal", {**_ssh, "private_ip": "10.0.3.20"}),
    ("cache2.example.internal", {**_ssh, "private_ip": "10.0.3.21"}),
    ("cache3.example.internal", {**_ssh, "private_ip": "10.0.3.22"}),
]

# Still one PostgreSQL: the kit does not fail PostgreSQL over yet (issue 28). Use redis or token sessions here, or
# accept that the database strategy stops with this host.
db = [("db1.example.internal", {**_ssh, "private_ip": "10.0.3.30"})]

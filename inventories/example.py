"""A production-shaped example: copy it, put your servers' private addresses in, and apply.

    pyinfra -y inventories/example.py deploys/site.py

Every variable and its default: session_kit/defaults.py. Strategy and balancing for this inventory: group_data/all.py
(or --data session_strategy=database on the command line). Secrets are generated on the first apply into
secrets/example.json (git-ignored, mode 0600), or read from SESSION_KIT_<NAME> environment variables.
"""

# How pyinfra reaches every host: a deploy user with sudo, your key, and known host keys (no blind trust).
_ssh = {
    "ssh_user": "deploy",
    "ssh_key": "~/.ssh/id_ed25519",
    "ssh_known_hosts_file": "~/.ssh/known_hosts",
    "ssh_strict_host_key_checking": "yes",
    "_sudo": True,
    "inventory_name": "example",  # names the secrets file: secrets/example.json
}

# The one public entry: Nginx. private_ip is the address services bind to and peers use.
lb = [("lb1.example.internal", {**_ssh, "private_ip": "10.0.1.10"})]

# Two or more app nodes (sample_app under systemd), reached by Nginx on their private addresses.
app = [
    ("app1.example.internal", {**_ssh, "private_ip": "10.0.2.11"}),
    ("app2.example.internal", {**_ssh, "private_ip": "10.0.2.12"}),
    ("app3.example.internal", {**_ssh, "private_ip": "10.0.2.13"}),
]

# Needed by the redis and token strategies. With redis_mode = "sentinel" or "cluster" (docs/deploying.md: Redis with
# Sentinel, Redis Cluster), list two hosts or more here, three to keep a majority when one is lost.
redis = [("cache1.example.internal", {**_ssh, "private_ip": "10.0.3.20"})]

# Needed by the database strategy.
db = [("db1.example.internal", {**_ssh, "private_ip": "10.0.3.30"})]

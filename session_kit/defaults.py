"""Every inventory variable, with its default and what it means: the one place to look them up.

Set them in group data (inventories/group_data/*.py), per host, or on the command line (`--data key=value`).
Each component's deploy takes its own block as `data_defaults`; a variable not listed here is an error.
"""

from __future__ import annotations

KIT_DEFAULTS = {
    # Where sessions live: cookie | sticky | database | replication | redis | token (see session_kit/strategies.py).
    "session_strategy": "redis",
    # How Nginx spreads requests: round_robin | ip_hash | hash_cookie. None: the strategy's default
    # (ip_hash for sticky, round_robin for the others). Replication may use hash_cookie (see README).
    "lb_method": None,
    # The address the host's services bind to and its peers use (never 0.0.0.0). Default: ssh_hostname.
    "private_ip": None,
    # Where the controller keeps generated secrets (one git-ignored JSON file per inventory, mode 0600).
    "secrets_dir": "secrets",
}

NGINX_DEFAULTS = {
    # Address and port the load balancer listens on (the only public entry of the cluster).
    "nginx_listen": "0.0.0.0:80",
    # Idle keepalive connections from Nginx to each app node.
    "nginx_keepalive": 32,
    # An app node that fails this many times within nginx_fail_timeout is skipped for nginx_fail_timeout.
    "nginx_max_fails": 1,
    "nginx_fail_timeout": "5s",
    # Timeouts towards the app nodes.
    "nginx_connect_timeout": "2s",
    "nginx_read_timeout": "10s",
}

REDIS_DEFAULTS = {
    "redis_port": 6379,
    # Memory cap and eviction: sessions must not be evicted silently, so the default refuses writes when full.
    "redis_maxmemory": "256mb",
    "redis_maxmemory_policy": "noeviction",
    # Snapshots to disk: "" disables; the default keeps sessions across a restart.
    "redis_save": "300 10 60 10000",
}

POSTGRES_DEFAULTS = {
    "postgres_version": 15,
    "postgres_port": 5432,
    "postgres_database": "sessions",
    "postgres_user": "session_kit",
    "postgres_max_connections": 100,
}

APP_DEFAULTS = {
    "app_port": 8000,
    # Seconds of inactivity before a session expires (SESSION_TTL).
    "app_session_ttl": 1800,
    # Mark the SESSION cookie Secure: set it when TLS terminates in front of the cluster.
    "app_cookie_secure": False,
    # PostgreSQL connections per app node.
    "app_database_pool_size": 4,
    "app_log_level": "info",
    # Where the app lives on the hosts.
    "app_dir": "/opt/session-kit",
    "app_user": "session-kit",
}

ALL_DEFAULTS = {**KIT_DEFAULTS, **NGINX_DEFAULTS, **REDIS_DEFAULTS, **POSTGRES_DEFAULTS, **APP_DEFAULTS}

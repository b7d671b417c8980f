# Cluster-wide choices for every inventory in this folder. Every variable, its default and its meaning:
# session_kit/defaults.py. `--data session_strategy=X` on the pyinfra command line overrides what is set here.

# cookie | sticky | database | replication | redis | token
session_strategy = "redis"

# round_robin | ip_hash | hash_cookie; leave unset for the strategy's default (ip_hash for sticky).
# lb_method = "hash_cookie"

"""Local servers, session client and load driver shared by tests, benchmarks and the report: real Redis, PostgreSQL,
Nginx and app nodes on loopback (servers.py, nginx.py, redis_cluster.py), app clusters of one strategy (cluster.py),
an HTTP client that carries one session (client.py) and wrk (wrk.py)."""

"""What a live report measures besides the drills: the environment (cores, memory, OS, versions, over SSH), and the
load: wrk through the balancer at a no-session baseline (`GET /ping`) and the session's endpoints, in the same run,
with the CPU seconds each part of the cluster used meanwhile (read from /proc over SSH before and after)."""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from drills.cluster import ROOT, Target
from harness import wrk
from harness.client import SessionClient

ENDPOINTS = (("baseline", "GET", "/ping"), ("read", "GET", "/session"), ("change", "POST", "/session/counter"))
STORE_ROLE = {"redis": "redis", "token": "redis", "database": "db"}
APP_ENV = "/etc/session-kit/app.env"  # the app's settings on a node (deploys/app.py): WORKERS among them


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- the environment -------------------------------------------------------------------------------------------------

HOST_FACTS = r"""
echo "cores=$(nproc)"
echo "mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
. /etc/os-release && echo "os=$PRETTY_NAME"
command -v nginx >/dev/null 2>&1 && echo "nginx=$(nginx -v 2>&1)"
command -v redis-server >/dev/null 2>&1 && echo "redis=$(redis-server --version)"
for b in /usr/lib/postgresql/*/bin/postgres; do [ -x "$b" ] && echo "postgresql=$($b --version)"; done
echo "python=$(python3 --version 2>&1)"
true
"""
VERSION = {
    "nginx": r"nginx/(\S+)",
    "redis": r"v=(\S+)",
    "postgresql": r"PostgreSQL\)\s+(\S+)",
    "python": r"Python\s+(\S+)",
}


def parse_host_facts(output: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key == "cores" and value.strip().isdigit():
            facts["cores"] = int(value)
        elif key == "mem_kb" and value.strip().isdigit():
            facts["memory_bytes"] = int(value) * 1024
        elif key == "os":
            facts["os"] = value.strip()
        elif key in VERSION:
            match = re.search(VERSION[key], value)
            if match:
                facts[key] = match.group(1)
    return facts


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    return result.stdout.strip()


def controller(params: dict[str, Any], inventory: str) -> dict[str, Any]:
    """The environment record with this machine's facts (the hosts' come from hosts())."""
    meminfo = Path("/proc/meminfo").read_text()
    os_release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    facts = {
        "cores": os.cpu_count(),
        "memory_bytes": int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) * 1024,
        "os": os_release.get("PRETTY_NAME", "").strip('"'),
        "python": platform.python_version(),
        "kit_commit": _git("rev-parse", "--short", "HEAD"),
        "kit_uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    return {
        "kind": "environment",
        "when": now(),
        "inventory": inventory,
        "controller": facts,
        "hosts": {},
        "params": params,
    }


def hosts(target: Target) -> dict[str, Any]:
    """Each host's roles, cores, memory, OS and the versions of what runs there, read over SSH."""
    found = {}
    for node in target.deployment.nodes:
        facts = parse_host_facts(target.ssh(node, HOST_FACTS, timeout=60, check=False))
        found[node.name] = {"roles": list(node.roles), **facts}
    return found


# -- CPU time of each part --------------------------------------------------------------------------------------------

CPU_SCRIPT = r"""
echo "tck $(getconf CLK_TCK)"
for u in session-kit-app redis-server; do echo "unit $u $(systemctl show -p MainPID --value $u 2>/dev/null)"; done
awk '{print "proc", $1, $2, $14 + $15, $4}' /proc/[0-9]*/stat 2>/dev/null
true
"""


def parse_cpu(output: str) -> dict[str, float]:
    """CPU seconds so far of the app and of Redis (each its unit's main process and the processes it forked: the
    app's workers with app_workers > 1, whose parent only supervises them), Nginx and PostgreSQL (every process of
    that name) on one host. A proc line is "proc PID (COMM) TICKS [PPID]"."""
    tck, units, procs = 100.0, {}, []
    for line in output.splitlines():
        fields = line.split()
        if fields[:1] == ["tck"] and len(fields) == 2:
            tck = float(fields[1])
        elif fields[:1] == ["unit"] and len(fields) == 3 and fields[2] != "0":
            units[fields[2]] = fields[1]
        elif fields[:1] == ["proc"] and len(fields) in (4, 5):
            procs.append((fields[1], fields[2], float(fields[3]), fields[4] if len(fields) == 5 else None))
    cpu = {"app": 0.0, "redis": 0.0, "nginx": 0.0, "postgresql": 0.0}
    for pid, comm, ticks, ppid in procs:
        unit = units.get(pid) or units.get(ppid)
        if unit == "session-kit-app":
            cpu["app"] += ticks / tck
        elif unit == "redis-server":
            cpu["redis"] += ticks / tck
        elif comm == "(nginx)":
            cpu["nginx"] += ticks / tck
        elif comm == "(postgres)":
            cpu["postgresql"] += ticks / tck
    return cpu


def cpu_by_role(target: Target) -> dict[str, float]:
    """CPU seconds so far, by the report's parts: app (every app node), lb, store (the strategy's Redis or
    PostgreSQL)."""
    total = {"app": 0.0, "lb": 0.0, "store": 0.0}
    store_role = STORE_ROLE.get(target.strategy)
    nodes = target.deployment.nodes
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(nodes)) as pool:  # one SSH per host, at once
        outputs = list(pool.map(lambda node: target.ssh(node, CPU_SCRIPT, timeout=60, check=False), nodes))
    for node, output in zip(nodes, outputs, strict=True):
        cpu = parse_cpu(output)
        if "app" in node.roles:
            total["app"] += cpu["app"]
        if "lb" in node.roles:
            total["lb"] += cpu["nginx"]
        if store_role == "redis" and "redis" in node.roles:
            total["store"] += cpu["redis"]
        if store_role == "db" and "db" in node.roles:
            total["store"] += cpu["postgresql"]
    return total


# -- the load (wrk: harness/wrk.py) -----------------------------------------------------------------------------------


def log_in(base_url: str, bearer: bool, sessions: int, verify: str | bool = True) -> tuple[list[str], dict[str, int]]:
    """`sessions` logged-in handles, and how many of the logins and first reads each node served. verify: requests'
    `verify=` for an HTTPS balancer (the inventory's certificate file, or True)."""
    handles, per_node = [], {}
    for i in range(sessions):
        client = SessionClient(bearer=bearer, verify=verify)
        login = client.login(base_url, f"report{i}")
        read = client.get(base_url + "/session")
        if login.status_code != 200 or read.status_code != 200 or client.handle is None:
            raise RuntimeError(f"login {i} through {base_url}: {login.status_code}, then {read.status_code}")
        handles.append(client.handle)
        for response in (login, read):
            node = response.headers.get("X-Served-By", "")
            per_node[node] = per_node.get(node, 0) + 1
    return handles, dict(sorted(per_node.items(), key=lambda kv: -kv[1]))


def load(target: Target, seconds: int, connections: int = 32, sessions: int = 200, cpu: bool = True) -> dict[str, Any]:
    """Throughput and latency of each endpoint through the balancer, the baseline first, in one run. With lb_tls,
    over HTTPS as clients reach it (wrk does not verify the certificate; the logins before it do)."""
    url, bearer = target.lb_url, target.deployment.strategy.bearer
    handles, per_node = log_in(url, bearer, sessions, target.tls_verify)
    wrk.run(url, "GET", "/ping", [], False, 1, connections)  # warm up: connections, code paths, caches
    endpoints = {}
    for key, method, path in ENDPOINTS:
        before = cpu_by_role(target) if cpu else None
        run = wrk.run(url, method, path, handles, bearer, seconds, connections)
        if before is not None:
            after = cpu_by_role(target)
            run["cpu_seconds"] = {part: round(after[part] - before[part], 2) for part in after}
        endpoints[key] = {"method": method, "path": path, **run}
    cores, workers = {}, {}
    for role, part in (("app", "app"), ("lb", "lb"), (STORE_ROLE.get(target.strategy), "store")):
        nodes = target.role(role) if role else []
        if nodes:
            facts = parse_host_facts(target.ssh(nodes[0], "echo cores=$(nproc)", check=False))
            if "cores" in facts:
                cores[part] = facts["cores"]
    if target.role("app"):  # the app's processes per node, as the deploy wrote them (app_workers)
        env = target.ssh(target.role("app")[0], f"cat {APP_ENV}", check=False)
        match = re.search(r"^WORKERS=(\d+)\s*$", env, re.MULTILINE)
        if match or "SESSION_STRATEGY=" in env:  # no WORKERS line: the app's default, one process
            workers["app"] = int(match.group(1)) if match else 1
    return {
        "kind": "load",
        "strategy": target.strategy,
        "lb_url": url,
        "lb_method": target.deployment.lb_method,
        "when": now(),
        "tool": f"wrk -t1 -c{connections}",
        "seconds": seconds,
        "connections": connections,
        "sessions": sessions,
        "app_nodes": len(target.role("app")),
        "cores": cores,
        "workers": workers,
        "per_node": per_node,
        "endpoints": endpoints,
    }

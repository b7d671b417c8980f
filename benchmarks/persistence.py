"""What Redis's persistence costs a session write: the kit's redis_appendonly / redis_appendfsync settings side by
side, each on a Redis of its own (data on this machine's disk, not tmpfs), each behind one app node (redis strategy).

    python -m benchmarks.persistence [--seconds 5] [--rounds 3] [--sessions 200] [--connections 32]

The settings, as session_kit/defaults.py names them:
  snapshot   appendonly no: snapshots only (redis_save); a crash loses everything since the last one
  everysec   appendonly yes, appendfsync everysec (the kit's default): a process crash loses no answered write, a
             crash of the host up to the last second
  always     appendonly yes, appendfsync always: every write on disk (fsync) before its answer
For each, wrk drives POST /session/counter (a write) and GET /session (a read) in turns, round after round, and it
prints the median req/s and p99 of each, and the write's and the read's throughput as a ratio of the snapshot-only
Redis's in the same round (the paired ratio). This is a benchmark, not a test: nothing is asserted; the machine is
shared and noisy, compare within a run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time

import harness.wrk
from harness.client import SessionClient
from harness.cluster import Backends, Cluster
from harness.servers import RedisServer

SETTINGS = {
    "snapshot": ("--appendonly", "no", "--save", "300 10 60 10000"),
    "everysec": ("--appendonly", "yes", "--appendfsync", "everysec", "--save", "300 10 60 10000"),
    "always": ("--appendonly", "yes", "--appendfsync", "always", "--save", "300 10 60 10000"),
}
ENDPOINTS = (("write", "POST", "/session/counter"), ("read", "GET", "/session"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.persistence", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk, or ./kit setup)")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}  redis strategy, one app node per Redis; wrk -t1 -c{args.connections} "
        f"-d{args.seconds}s, {args.sessions} sessions, median of {args.rounds} interleaved rounds; ratio = median "
        f"over rounds of req/s / the snapshot-only Redis's req/s of the same endpoint and round",
        flush=True,
    )
    servers, clusters, handles = {}, {}, {}
    try:
        for name, extra in SETTINGS.items():
            servers[name] = RedisServer(extra=extra, parent="/var/tmp").start()
            clusters[name] = Cluster("redis", Backends(redis=servers[name]), size=1).start()
            url = clusters[name].urls[0]
            handles[name] = []
            for i in range(args.sessions):
                client = SessionClient()
                assert client.login(url, f"user{i}").status_code == 200
                handles[name].append(client.handle)
            harness.wrk.run(url, "GET", "/ping", [], False, 1)  # warm up
        runs = {(name, kind): [] for name in SETTINGS for kind, _, _ in ENDPOINTS}
        for _ in range(args.rounds):
            for kind, method, path in ENDPOINTS:
                for name in SETTINGS:
                    run = harness.wrk.run(
                        clusters[name].urls[0], method, path, handles[name], False, args.seconds, args.connections
                    )
                    runs[name, kind].append(run)
        print(f"{'setting':10s} {'endpoint':22s} {'req/s':>9s} {'p99 ms':>8s} {'x snapshot':>11s}")
        for kind, method, path in ENDPOINTS:
            for name in SETTINGS:
                median = sorted(runs[name, kind], key=lambda r: r["rps"])[len(runs[name, kind]) // 2]
                ratio = statistics.median(
                    run["rps"] / max(base["rps"], 1e-9)
                    for run, base in zip(runs[name, kind], runs["snapshot", kind], strict=True)
                )
                print(
                    f"{name:10s} {method + ' ' + path:22s} {median['rps']:9.0f} {median['latency_ms']['p99']:8.2f} "
                    f"{ratio:10.2f}x",
                    flush=True,
                )
    finally:
        for cluster in clusters.values():
            cluster.destroy()
        for server in servers.values():
            server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The database store's lanes: the app's CPU per batched statement, the lane's own wait beside psycopg's.

    python -m benchmarks.postgres_lane [--statements 2000] [--rounds 5] [--batch 10]

Starts a real PostgreSQL on loopback (as the tests do: TLS on), creates sessions through the store, and sends the
read lane's prepared statement (LOAD_MANY, --batch handles) one after another, in turns:
  psycopg   the statement sent through the lane's connection and waited for by psycopg's wait
            (conn.wait(execute generator): a socket registration, a timer and a poll per statement), the lane's way
            before the lanes
  lane      _Lane.run: the same statement, its socket watched by the event loop for the connection's life
It prints the process's CPU time per statement (user + system, time.process_time) of each, round by round, and the
median, and beside it the CPU of the lane connection's PostgreSQL backend per statement (from /proc: clock ticks,
10 ms, so a round needs a few hundred statements to read it to a few per cent). The store's JSON parse of the
answer is in both. One statement at a time: every wait ends in the event loop sleeping, as with light load; under wrk
a batch answers 8-11 requests, so a statement's saving is shared by that many.

This is a benchmark, not a test: nothing is asserted. The machine is shared and noisy; compare within a run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import uvloop
from psycopg import pq
from psycopg.generators import execute as execute_generator

from harness.servers import PostgresServer
from sample_app.stores.base import Limits, Session
from sample_app.stores.postgres import PostgresStore

from .sessions import cpu_seconds


async def psycopg_wait(store: PostgresStore, handles: list[str]) -> object:
    """The lane's statement as it was sent before: psycopg's wait."""
    lane = store._load_lane
    conn = lane.conn
    params = [("{" + ",".join(handles) + "}").encode(), str(store.limits.ttl).encode()]
    lane._unwatch()  # psycopg registers the socket itself, per statement
    conn.pgconn.send_query_prepared(lane.name, params)
    result = lane._check(await conn.wait(execute_generator(conn.pgconn)), conn, pq.ExecStatus.TUPLES_OK)
    return json.loads(result.get_value(0, 0))


async def measure(args) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    server = PostgresServer().start()
    try:
        store = PostgresStore(Limits(ttl=1800, max_data_keys=64), server.url, pool_size=2)
        await store.start()
        try:
            handles = [await store.create(Session(user=f"u{i}")) for i in range(max(200, args.batch))]
            batch = handles[: args.batch]
            assert len(await store._load_lane.run(batch)) == args.batch  # the lane's connection open, statement right
            backend = store._load_lane.conn.info.backend_pid  # the server's process for the lane's connection
            ways = {"psycopg": lambda: psycopg_wait(store, batch), "lane": lambda: store._load_lane.run(batch)}
            figures: dict[str, list[float]] = {name: [] for name in ways}
            server_figures: dict[str, list[float]] = {name: [] for name in ways}
            for round_ in range(args.rounds):
                for name, statement in ways.items():
                    started, server_started = time.process_time(), cpu_seconds(backend)
                    for _ in range(args.statements):
                        await statement()
                    figures[name].append((time.process_time() - started) / args.statements * 1e6)
                    server_figures[name].append((cpu_seconds(backend) - server_started) / args.statements * 1e6)
                print(
                    f"round {round_ + 1}: "
                    + "  ".join(
                        f"{name} {figures[name][-1]:6.1f} us (PostgreSQL {server_figures[name][-1]:5.1f})"
                        for name in ways
                    ),
                    flush=True,
                )
            return figures, server_figures
        finally:
            await store.close()
    finally:
        server.destroy()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=2000, help="statements per way and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10, help="handles per statement")
    args = parser.parse_args(argv)
    if args.statements < 1 or args.rounds < 1 or not 1 <= args.batch <= 256:
        parser.error("--statements and --rounds at least 1, --batch 1-256")
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}  app CPU per statement (LOAD_MANY, {args.batch} handles), "
        f"{args.statements} statements per way and round, {args.rounds} rounds in turns",
        flush=True,
    )
    figures, server_figures = uvloop.run(measure(args))
    medians = {name: statistics.median(us) for name, us in figures.items()}
    print(
        "median: "
        + "  ".join(
            f"{name} {us:6.1f} us (PostgreSQL {statistics.median(server_figures[name]):5.1f})"
            for name, us in medians.items()
        )
        + f"  (app, lane - psycopg: {medians['lane'] - medians['psycopg']:+.1f} us per statement)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

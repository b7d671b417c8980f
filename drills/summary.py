"""python -m drills.summary [DIR]   the drills' JSON results (default report/drills) as one Markdown table

The drill figures in docs/drills.md are this command's output over one run's results: nothing in the table is typed
by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from session_kit.strategies import STRATEGIES

from .__main__ import OUT


def load(directory: Path) -> dict[tuple[str, str, str], dict]:
    """(drill, strategy, variant) -> result ("" for the plain run: catalog.Drill.variants)."""
    results = {}
    for path in sorted(directory.glob("*--*.json")):
        result = json.loads(path.read_text())
        results[result["drill"], result["strategy"], result.get("variant", "")] = result
    return results


def cell(result: dict | None, render) -> str:
    if result is None:
        return ""
    if result.get("status") != "ok":
        return f"failed: {result.get('error', '?')[:60]}"
    text = render(result["figures"])
    missed = [name for name, goal in result.get("goals", {}).items() if not goal["met"]]
    return text + (f" **(missed: {', '.join(missed)})**" if missed else "")


COLUMNS = {
    "node-stop": ("node-stop: failed / lost", lambda f: f"{f['failed']} of {f['requests']:,} / {f['sessions_lost']}"),
    "node-kill": (
        "node-kill: failed (on the killed node) / lost / back in",
        lambda f: (
            f"{f['failed']} ({f.get('failed_on_killed_node', '?')}) / {f['sessions_lost']} / "
            f"{f.get('seconds_until_serving', '?')} s"
        ),
    ),
    "rolling": (
        "rolling deploy: failed / lost / deploy",
        lambda f: (
            f"{f['failed']} of {f['requests']:,} / {f['sessions_lost']} / {f.get('deploy', {}).get('seconds', '?')} s"
        ),
    ),
    "store-restart": (
        "store restart: failed (not JSON 503) / errors for / lost",
        lambda f: (
            f"{f['failed']} ({f.get('failed_not_503', 0) + f.get('failed_not_json', 0)}) / "
            f"{f['failure_window_seconds']} s / {f['sessions_lost']}"
        ),
    ),
    "store-freeze": (
        "store frozen 5 s: failed (not JSON 503) / longest request / increments failed but applied / lost",
        lambda f: (
            f"{f['failed']} ({f.get('failed_not_503', 0) + f.get('failed_not_json', 0)}) / "
            f"{f['longest_request_seconds']} s / {f['counter_higher']} / {f['sessions_lost']}"
        ),
    ),
    "store-kill": (
        "store killed: failed (not JSON 503) / writes back in / answered increments lost / lost",
        lambda f: (
            f"{f['failed']} ({f.get('failed_not_503', 0) + f.get('failed_not_json', 0)}) / "
            f"{f['seconds_until_writes']} s / {f['increments_lost']} / {f['sessions_lost']}"
        ),
    ),
    "power-off": (
        "store host powered off: failed (not 503/refused) / writes back in / answered increments lost / lost",
        lambda f: (
            f"{f['failed']} ({f.get('failed_not_503_or_refused', 0)}) / "
            f"{f['seconds_until_writes']} s / {f['increments_lost']} / {f['sessions_lost']}"
        ),
    ),
    "lb-failover": (
        "balancer's Nginx killed: failed (not 503/refused) / longest silence / sessions lost / flapped back",
        lambda f: (
            f"{f['failed']} ({f.get('failed_not_503_or_refused', 0)}) / {f['longest_silence_seconds']} s / "
            f"{f['sessions_lost']} / {'yes' if f['held_after_return'] == f.get('held_by') else 'no'}"
        ),
    ),
    "host-loss": (
        "any host cut off, worst of each: failed / longest silence / writes back in / lost / answered increments "
        "lost / whole after its return",
        lambda f: (
            f"{f['failed']} / {f['longest_silence_seconds']} s / {f['seconds_until_writes']} s / "
            f"{f['sessions_lost']} / {f['increments_lost']} / {f['whole_after_return_seconds']} s"
        ),
    ),
    "contention": ("200 parallel increments: lost", lambda f: f"{f['lost_updates']}"),
    "footprint": (
        "bytes per session (sessions per GiB)",
        lambda f: (
            f"{f['bytes_per_session']:,.0f} ({f['sessions_per_gib']:,})"
            if f.get("sessions_per_gib")
            else f"{f['bytes_per_session']}"
        ),
    ),
    "scale-out": (
        "scale-out: clients moved / sessions lost",
        lambda f: (
            f"{'n/a' if f.get('clients_moved_share') is None else format(f['clients_moved_share'], '.0%')}"
            f" / {f['sessions_lost_share']:.0%}"
        ),
    ),
}


def table(results: dict[tuple[str, str, str], dict]) -> str:
    drills = [name for name in COLUMNS if any(key[0] == name for key in results)]
    lines = ["| strategy | " + " | ".join(COLUMNS[name][0] for name in drills) + " |", "|---|" + "---|" * len(drills)]
    for strategy in STRATEGIES:
        # the plain run's row, then a row per variant with the drills run in it (sticky's scale-out, hash_cookie)
        for variant in sorted({key[2] for key in results if key[1] == strategy and key[0] in COLUMNS}):
            label = strategy + (
                f" ({', '.join(f'{k}={v}' for k, v in _overrides(results, strategy, variant))})" if variant else ""
            )
            cells = [cell(results.get((name, strategy, variant)), COLUMNS[name][1]) for name in drills]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    extra = []
    for (name, strategy, _), result in sorted(results.items()):
        if result.get("status") != "ok":
            continue
        f = result["figures"]
        if name == "lag":
            rejoin = ", ".join(f"{n} sessions {r['seconds']} s" for n, r in f.get("rejoin", {}).items())
            balanced = f.get("through_balancer")
            through = (
                f"; through the balancer ({balanced['lb_method']}), {balanced['stale']} of {balanced['reads']} "
                f"reads right after a write stale ({balanced['read_on_another_node']} read on another node)"
                + (
                    f", {balanced['writes_refused']} of {balanced['writes']} writes refused (401: the node had "
                    f"not seen the session yet)"
                    if balanced.get("writes_refused")
                    else ""
                )
                if balanced
                else ""
            )
            extra.append(
                f"- lag ({strategy}, {f['mode']}): a write seen on the other nodes after p50 "
                f"{f['lag_ms']['p50']} ms, p99 {f['lag_ms']['p99']} ms, max {f['lag_ms']['max']} ms; "
                f"{f['stale_first_reads']} of {f['reads']} first reads stale{through}; a restarted node "
                f"serves again after: {rejoin}"
            )
        elif name == "ip-hash-spread":
            one, many = f["one_24"], f["many_24"]
            extra.append(
                f"- ip-hash-spread ({strategy}, {f['lb_method']}): clients in one /24: the busiest node "
                f"takes {one['max_share']:.0%} of requests ({one['nodes_used']} of {f['app_nodes']} nodes "
                f"used); in {many['networks']} /24s: {many['max_share']:.0%} "
                f"({many['nodes_used']} of {f['app_nodes']} used)"
            )
        elif name == "failover":
            extra.append(
                f"- failover ({strategy}, redis_mode={f['mode']}): primary {f['killed']} killed, "
                f"{f['promoted']} took over after {f['seconds_until_promoted']} s, the last write failed "
                f"{f['seconds_until_writes']} s after the kill; {f['failed']:,} of {f['requests']:,} "
                f"requests failed ({f['failed_not_503'] + f['failed_not_json']} not a JSON 503), "
                f"{f['sessions_lost']} sessions lost, {f['counter_mismatch']} counters off"
            )
        elif name == "cookie-limits":
            extra.append(
                f"- cookie-limits ({strategy}): the 4 KB cookie is full at {f['data_bytes_at_limit']:,} bytes "
                f"of (incompressible) data, refused with {f['refused_with']}; a cookie copied before logout "
                f"is {'still accepted' if f['replay_after_logout_accepted'] else 'refused'} after it "
                f"({f['replay_after_logout_status']})"
            )
    return "\n".join(lines + ([""] + extra if extra else []))


def _overrides(results: dict, strategy: str, variant: str) -> list[tuple[str, str]]:
    for (_, st, v), result in results.items():
        if st == strategy and v == variant:
            return list(result.get("overrides", {}).items()) or [("variant", variant)]
    return []


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else OUT
    results = load(directory)
    if not results:
        print(f"drills.summary: no results in {directory}", file=sys.stderr)
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The report (python -m reporting): rendered from fixture results shaped like real ones (drills/__main__.py's drill
results, reporting/run.py's load, environment and steps records), it has its sections, a verdict row per strategy,
PNG plots that the page references relatively, leaves out a plot whose measurement is missing, writes each finding
from the figures, and prints no number that is not in the results."""

from __future__ import annotations

import copy
import html
import json
import re
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="matplotlib is in the kit extras: ./kit setup")

from reporting import check, findings, write
from reporting.run import Progress
from reporting.sources import Sources, check_printed

STRATEGIES = ["cookie", "sticky", "database", "replication", "redis", "token"]
PNG = b"\x89PNG\r\n\x1a\n"
REAL_RESULTS = Path(__file__).resolve().parents[2] / "report" / "drills"


def drill(name: str, strategy: str, figures: dict, goals: dict | None = None, status: str = "ok") -> dict:
    """A drill result as drills/__main__.py writes it."""
    result = {
        "drill": name,
        "strategy": strategy,
        "doc": f"the {name} drill",
        "inventory": "inventories/lab.py",
        "params": {"clients": 200, "seconds": 9.0, "think": 0.1},
        "when": "2026-11-25T07:54:08+00:00",
        "lb_method": "ip_hash" if strategy == "sticky" else "round_robin",
        "figures": figures,
        "goals": goals or {},
        "restored": "put back",
        "status": status,
        "seconds": 18.3,
    }
    if status != "ok":
        result["error"] = "DrillError: lab3 did not answer /healthz within 60 s"
    return result


def under_load(failed: int, lost: int, per_node: dict, requests: int = 24284, **extra) -> dict:
    return {
        "requests": requests,
        "ok": requests - failed,
        "failed": failed,
        "failed_not_json": 0,
        "unauthorized": lost,
        "errors": {"503 unavailable": failed} if failed else {},
        "per_node": per_node,
        "seconds": 12.37,
        "requests_per_second": 1962.7,
        "latency_ms": {"p50": 1.33, "p99": 7.81},
        "gone_at_end": 0,
        "counter_mismatch": 0,
        "clients": 200,
        "sessions_lost": lost,
        "failure_window_seconds": 0.0,
        "events": {"stop": 3.057, "action_done": 6.374},
        "node": "lab3",
        "seconds_until_serving": 0.42,
        **extra,
    }


def load(strategy: str, base: float, read: float, change: float) -> dict:
    def endpoint(method, path, rps, p99, cpu):
        return {
            "method": method,
            "path": path,
            "rps": rps,
            "requests": int(rps * 5),
            "non_2xx": 0,
            "latency_ms": {"p50": round(p99 / 4, 2), "p75": round(p99 / 3, 2), "p90": round(p99 / 2, 2), "p99": p99},
            "cpu_seconds": cpu,
        }

    store = 1.2 if strategy in ("redis", "token", "database") else 0.0
    return {
        "kind": "load",
        "strategy": strategy,
        "lb_url": "http://10.213.0.11",
        "when": "2026-11-25T08:00:00+00:00",
        "tool": "wrk",
        "seconds": 5,
        "connections": 32,
        "sessions": 200,
        "app_nodes": 3,
        "cores": {"app": 2, "lb": 2, "store": 2},
        "workers": {"app": 1 if strategy in ("sticky", "replication") else 2},
        "per_node": {"lab2": 100} if strategy == "sticky" else {"lab2": 34, "lab3": 33, "lab4": 33},
        "endpoints": {
            "baseline": endpoint("GET", "/ping", base, 9.5, {"app": 4.1, "lb": 1.1, "store": 0.0}),
            "read": endpoint("GET", "/session", read, 21.25, {"app": 4.6, "lb": 0.9, "store": store}),
            "change": endpoint("POST", "/session/counter", change, 23.5, {"app": 4.7, "lb": 0.9, "store": store}),
        },
    }


def results() -> dict[str, dict]:
    """A whole run's results: every strategy measured, every plot drawable."""
    docs: dict[str, dict] = {
        "environment.json": {
            "kind": "environment",
            "when": "2026-11-25T07:50:00+00:00",
            "controller": {
                "cores": 2,
                "memory_bytes": 8323805184,
                "os": "Debian GNU/Linux 12",
                "python": "3.11.2",
                "kit_commit": "208db5b",
            },
            "hosts": {
                "lab1": {
                    "roles": ["lb", "redis", "db"],
                    "cores": 2,
                    "memory_bytes": 8323805184,
                    "os": "Debian GNU/Linux 12 (bookworm)",
                    "nginx": "1.22.1",
                    "redis": "7.0.15",
                    "postgresql": "15.14",
                },
                "lab2": {
                    "roles": ["app"],
                    "cores": 2,
                    "memory_bytes": 8323805184,
                    "os": "Debian GNU/Linux 12 (bookworm)",
                    "python": "3.11.2",
                },
            },
            "params": {"quick": False, "clients": 200, "seconds": 9.0, "load_seconds": 5, "strategies": STRATEGIES},
        },
        "steps.json": {
            "kind": "steps",
            "started": "2026-11-25T07:50:00+00:00",
            "finished": "2026-11-25T08:14:00+00:00",
            "seconds": 1440.5,
            "interrupted": False,
            "steps": [
                {"name": "deploy", "strategy": "redis", "status": "ok", "seconds": 31.2},
                {
                    "name": "drill store-restart",
                    "strategy": "database",
                    "status": "failed",
                    "seconds": 61.0,
                    "error": "DrillError: lab1 did not come back",
                },
            ],
        },
    }
    for strategy in STRATEGIES:
        docs[f"verify/{strategy}.json"] = {
            "kind": "verify",
            "strategy": strategy,
            "when": "2026-11-25T07:52:00+00:00",
            "exit": 0,
            "summary": "7 passed, 2 skipped in 25.1s",
            "passed": 7,
            "failed": 0,
            "skipped": 2,
            "errors": 0,
            "seconds": 25.1,
        }
    ratios = {"cookie": 0.54, "sticky": 0.85, "database": 0.45, "replication": 0.83, "redis": 0.72, "token": 0.7}
    for strategy in STRATEGIES:
        docs[f"load/{strategy}.json"] = load(strategy, 2000.0, 2000.0 * ratios[strategy], 1500.0)
        shared = strategy != "sticky"
        nodes = {"lab2": 9000} if strategy == "sticky" else {"lab2": 8100, "lab3": 8000, "lab4": 8184}
        docs[f"drills/node-stop--{strategy}.json"] = drill(
            "node-stop",
            strategy,
            under_load(0, 0 if shared else 67, nodes),
            {"sessions_lost": {"expected": 0, "measured": 0, "met": True}} if shared else {},
        )
        docs[f"drills/contention--{strategy}.json"] = drill(
            "contention",
            strategy,
            {
                "parallel": 200,
                "accepted": 200,
                "final_counter": {"cookie": 1, "replication": 106}.get(strategy, 200),
                "lost_updates": {"cookie": 199, "replication": 94}.get(strategy, 0),
                "per_node": nodes,
            },
        )
        docs[f"drills/footprint--{strategy}.json"] = drill(
            "footprint",
            strategy,
            {
                "sessions": 10000,
                "store": "Redis used_memory",
                "value_bytes": 200,
                "bytes_per_session": {"cookie": 402.0, "database": 611.2}.get(strategy, 517.3),
                "sessions_per_gib": 2075647,
                "create_seconds": 14.1,
            },
        )
    docs["drills/node-kill--redis.json"] = drill(
        "node-kill",
        "redis",
        under_load(2, 0, {"lab2": 8929, "lab4": 8929, "lab3": 3357}, failed_on_killed_node=2, failed_elsewhere=0),
    )
    docs["drills/store-restart--database.json"] = drill("store-restart", "database", {}, status="failed")
    docs["drills/cookie-limits--cookie.json"] = drill(
        "cookie-limits",
        "cookie",
        {
            "data_bytes_at_limit": 3612,
            "cookie_bytes_at_limit": 3924,
            "refused_with": "413 cookie_too_large",
            "replay_after_logout_status": 200,
            "replay_after_logout_accepted": True,
        },
    )
    for mode, stale, samples in (("sync", 0, [0.35, 0.5, 0.72, 0.9, 1.56, 3.66]), ("async", 3, [0.8, 2.1, 4.4, 9.9])):
        docs[f"drills/lag--replication--{mode}.json"] = drill(
            "lag",
            "replication",
            {
                "mode": mode,
                "writes": 200,
                "reads": 400,
                "lag_ms": {"p50": samples[len(samples) // 2], "p99": samples[-2], "max": samples[-1]},
                "lag_ms_samples": samples,
                "stale_first_reads": stale,
                "stale_first_read_share": stale / 400,
                "through_balancer": {
                    "lb_method": "round_robin",
                    "reads": 200,
                    "read_on_another_node": 197,
                    "stale": stale * 2,
                    "stale_share": stale / 100,
                },
                "rejoin": {"1000": {"seconds": 8.61, "sessions_pulled": 1000}},
            },
        )
    phases = {
        "start": 1.1,
        "Loading config": 0.2,
        "Connecting to hosts": 0.9,
        "Preparing operations": 2.4,
        "Beginning operation run": 0.8,
    }
    docs["deploy-scale.json"] = {
        "kind": "deploy-scale",
        "strategy": "redis",
        "inventory": "inventories/lab.py",
        "when": "2026-11-25T08:10:00+00:00",
        "runs": [
            {
                "app_nodes": n,
                "hosts": n + 1,
                "lab_up_seconds": 9.5,
                "first_apply": {
                    "hosts": n + 1,
                    "changed": 40 + 20 * n,
                    "errors": 0,
                    "unchanged": 30,
                    "seconds": 50.0 + 9 * n,
                },
                "noop_apply": {
                    "hosts": n + 1,
                    "changed": 0,
                    "errors": 0,
                    "unchanged": 80,
                    "seconds": 4.5 + 0.6 * n,
                    "phases": phases,
                },
            }
            for n in (2, 4, 8)
        ],
        "goals": {"noop_apply_seconds": {"expected": "<= 3.0", "measured": 9.3, "met": False}},
    }
    return docs


def written(tmp_path: Path, docs: dict[str, dict]) -> tuple[Path, Path]:
    source, out = tmp_path / "results", tmp_path / "report"
    for name, doc in docs.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(json.dumps(doc))
    write(source, out)
    return source, out


NUMBER, numbers = check.NUMBER, check.numbers


def test_the_report_has_its_sections_a_verdict_row_per_strategy_and_png_plots(tmp_path):
    source, out = written(tmp_path, results())
    assert check.problems(out, source) == []
    md, page = (out / "report.md").read_text(), (out / "index.html").read_text()
    for section in (*check.SECTIONS, "### Verified after each deploy"):
        assert section in md, section
    table = md.split("## The usual verdicts", 1)[1].split("### Findings", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| strategy")]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == STRATEGIES
    assert "not measured" not in rows[STRATEGIES.index("redis")].split(" | ")[2], "redis' throughput was measured"
    findings_list = md.split("### Findings", 1)[1].split("##", 1)[0]
    assert len(re.findall(r"^- \*\*", findings_list, re.MULTILINE)) == len(STRATEGIES)
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert set(images) == {
        "throughput.png",
        "latency.png",
        "drills.png",
        "lag.png",
        "footprint.png",
        "per-node.png",
        "deploy-scale.png",
    }
    scale = md.split("### Deploy time against the number of app nodes", 1)[1].split("##", 1)[0]
    assert "| 8 | 122 | 200 | 9.3 | 0 | start 1.1, Loading config 0.2," in scale, scale
    for image in images:
        assert (out / image).read_bytes()[:8] == PNG, image
        assert f'src="{image}"' in page, f"the page shows {image} by a relative path"
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page opens from disk: nothing from the network"
    # The same content in both: the same table rows, and the same numbers in the same order.
    assert len(re.findall(r"^\| ", md, re.MULTILINE)) == page.count("<tr>")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.split("</style>", 1)[1]))
    assert NUMBER.findall(text) == NUMBER.findall(md)
    assert "failed" in md.split("### How long each part took", 1)[1].split("##", 1)[0], "a failed step is shown"
    assert "DrillError: lab1 did not come back" in md
    assert "7.0.15" in md and "1.22.1" in md and "15.14" in md, "the versions of Redis, Nginx, PostgreSQL"
    assert "saturates first" in md
    # capacity: a node's workers use up to its cores (redis: 2 workers on 2 cores; sticky: 1 process)
    capacity = md.split("## A capacity model", 1)[1]
    redis_line = next(line for line in capacity.splitlines() if line.startswith("**redis**"))
    sticky_line = next(line for line in capacity.splitlines() if line.startswith("**sticky**"))
    assert "one app node (2 worker(s), 2 cores)" in redis_line and "one app node (1 worker(s), 2 cores)" in sticky_line
    per_core, per_node = (
        int(n.replace(",", ""))
        for n in re.findall(r"carries about ([\d,]+) session reads/s on one core.*?about ([\d,]+) req/s", redis_line)[0]
    )
    assert abs(per_node - 2 * per_core) <= 1, redis_line


def test_the_check_finds_a_broken_report(tmp_path):
    source, out = written(tmp_path, results())
    (out / "lag.png").write_text("not a picture")
    md = (out / "report.md").read_text()
    (out / "report.md").write_text(md.replace("## Bytes per session", "## Bytes") + "\nAbout 12,345 sessions.\n")
    found = check.problems(out, source)
    assert "plot lag.png: not a PNG file beside the report" in found
    assert "section missing: ## Bytes per session" in found
    assert "numbers in report.md that no result gave: {'12,345': 1}" in found
    assert "the page and report.md do not print the same numbers" in found


def test_every_number_in_the_report_comes_from_the_results(tmp_path):
    docs = results()
    _, out = written(tmp_path, docs)
    record = json.loads((out / "sources.json").read_text())
    assert check_printed(record, docs) == []
    printed = Counter()
    for item in record["printed"]:
        printed.update(numbers(item["text"]))
    md = (out / "report.md").read_text()
    extra = numbers(md) - printed
    assert not extra, f"numbers in report.md that no result gave: {dict(extra)}"
    assert sum(numbers(md).values()) > 150, "the report prints the figures"


def test_the_check_fails_on_a_number_that_is_not_in_the_results(tmp_path):
    docs = results()
    _, out = written(tmp_path, docs)
    record = json.loads((out / "sources.json").read_text())
    changed = copy.deepcopy(docs)
    changed["drills/contention--cookie.json"]["figures"]["lost_updates"] = 150
    problems = check_printed(record, changed)
    assert any("199" in problem for problem in problems), problems
    gone = copy.deepcopy(docs)
    del gone["load/redis.json"]["endpoints"]["read"]["latency_ms"]["p99"]
    assert any("does not resolve" in problem for problem in check_printed(record, gone))


def test_a_plot_whose_measurement_is_missing_is_left_out_and_said(tmp_path):
    docs = {
        name: doc
        for name, doc in results().items()
        if not name.startswith("load/")
        and "footprint" not in name
        and "async" not in name
        and name != "deploy-scale.json"
    }
    _, out = written(tmp_path, docs)
    md = (out / "report.md").read_text()
    assert not (out / "throughput.png").exists() and not (out / "footprint.png").exists()
    assert "_Not shown: throughput and latency per strategy" in md
    assert "_Not shown: bytes per session (no footprint result)._" in md
    assert "_Not shown: the lag distribution in async mode" in md
    assert (out / "lag.png").exists(), "sync's lag is still drawn"
    assert not (out / "deploy-scale.png").exists()
    assert "_Not shown: deploy time against the number of app nodes" in md


@pytest.mark.skipif(not any(REAL_RESULTS.glob("*.json")), reason="no drill results in report/drills (./kit drill)")
def test_the_real_drill_results_render_and_trace(tmp_path):
    write(REAL_RESULTS, tmp_path)
    assert check.problems(tmp_path, REAL_RESULTS) == []


# -- the findings follow the figures -----------------------------------------------------------------------------------


def finding(docs: dict[str, dict], strategy: str) -> str:
    return findings.RULES[strategy](Sources(docs)).text


def test_cookie_finding_follows_lost_updates_and_replay():
    docs = results()
    before = finding(docs, "cookie")
    docs["drills/contention--cookie.json"]["figures"].update(final_counter=200, lost_updates=0)
    docs["drills/cookie-limits--cookie.json"]["figures"].update(
        replay_after_logout_status=401, replay_after_logout_accepted=False
    )
    after = finding(docs, "cookie")
    assert before.startswith("Partly borne out: 199 of 200 parallel increments") and "still got 200" in before
    assert after.startswith("Partly borne out: a session holds at most 3,612 bytes of data")
    assert "but no update lost of 200 parallel increments; a cookie copied before logout was refused" in after


def test_sticky_finding_follows_the_busiest_nodes_share():
    docs = results()
    before = finding(docs, "sticky")
    docs["load/sticky.json"]["per_node"] = {"lab2": 40, "lab3": 30, "lab4": 30}
    docs["drills/node-stop--sticky.json"]["figures"]["sessions_lost"] = 0
    after = finding(docs, "sticky")
    assert before.startswith("Borne out: from one client address, lab2 served 100%"), before
    assert (
        after == "Not borne out: from one client address, the busiest node served 40% of the requests "
        "(the load's probe)."
    ), after


def test_sticky_finding_and_drill_table_show_scale_out_with_ip_hash_and_with_cookie_routing(tmp_path):
    docs = results()
    for variant, moved in (("", 0.333), ("hash_cookie", 0.0)):
        doc = drill(
            "scale-out",
            "sticky",
            under_load(0, int(moved * 200), {"lab2": 4000, "lab3": 3000}, clients_moved_share=moved),
        )
        doc["variant"] = variant
        docs["drills/scale-out--sticky" + (f"--{variant}" if variant else "") + ".json"] = doc
    text = finding(docs, "sticky")
    assert "a node added moved 33% of the clients with ip_hash" in text, text
    assert "but a node added moved 0% of the clients with cookie routing" in text, text
    _, out = written(tmp_path, docs)
    markdown = (out / "report.md").read_text()
    assert "| scale-out | sticky | ok |" in markdown and "| scale-out (hash_cookie) | sticky | ok |" in markdown


def test_database_finding_follows_its_throughput_beside_redis():
    docs = results()
    before = finding(docs, "database")
    docs["load/database.json"]["endpoints"]["read"]["rps"] = 1500.0
    after = finding(docs, "database")
    assert before.startswith("Partly borne out: reads at 900 req/s, 0.45x the no-session baseline (redis: 0.72x)")
    assert after.startswith("Not borne out: reads at 1,500 req/s, 0.75x"), after


def test_replication_finding_follows_stale_reads():
    docs = results()
    before = finding(docs, "replication")
    docs["drills/lag--replication--async.json"]["figures"]["stale_first_reads"] = 0
    docs["drills/lag--replication--async.json"]["figures"]["through_balancer"]["stale"] = 0
    docs["drills/contention--replication.json"]["figures"]["lost_updates"] = 0
    del docs["load/replication.json"]
    after = finding(docs, "replication")
    assert "async: 3 of 400 first reads after a write were stale" in before and "94 of 200" in before
    assert "async: 6 of 200 reads right after a write through the balancer stale" in before, before
    assert after.startswith("Not borne out: sync: no stale read") and "async: no stale read" in after, after


def test_redis_finding_follows_lost_sessions():
    docs = results()
    before = finding(docs, "redis")
    docs["drills/node-stop--redis.json"]["figures"].update(sessions_lost=12, failed=3)
    after = finding(docs, "redis")
    assert before.startswith("Borne out: no session lost and no request failed in node-stop, node-kill"), before
    assert after.startswith("Partly borne out") and "node-stop: 12 sessions lost, 3 requests failed" in after, after


def test_a_verdict_without_figures_is_not_measured():
    assert finding({}, "token").startswith("Not measured")


# -- progress ----------------------------------------------------------------------------------------------------------


def test_progress_says_each_step_its_time_and_what_is_left():
    clock = iter([0.0, 0.0, 30.0, 30.0, 90.0]).__next__
    lines: list[str] = []
    progress = Progress(
        [("deploy", "redis", 30.0), ("load", "redis", 60.0), ("drill node-stop", "redis", 30.0)],
        clock=clock,
        say=lines.append,
    )
    progress.start(0)
    progress.end(0, "ok")
    progress.start(1)
    progress.end(1, "failed", "wrk: connection refused")
    assert lines[0] == "[1/3] deploy on redis: started at 0:00, about 2 min left"
    assert lines[1] == "[1/3] deploy on redis: ok in 30 s (0:30 so far)"
    assert lines[2].startswith("[2/3] load on redis: started at 0:30, about 2 min left")
    assert lines[3] == "[2/3] load on redis: FAILED in 60 s (1:30 so far): wrk: connection refused"


# -- what a live run reads from the hosts ------------------------------------------------------------------------------


def test_host_facts_and_cpu_times_are_read_from_real_outputs():
    from harness.wrk import parse as parse_wrk
    from reporting.measure import parse_cpu, parse_host_facts

    facts = parse_host_facts(
        "cores=2\nmem_kb=24684084\nos=Debian GNU/Linux 12 (bookworm)\n"
        "nginx=nginx version: nginx/1.22.1\n"
        "redis=Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64\n"
        "postgresql=postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\npython=Python 3.11.7\n"
    )
    assert facts == {
        "cores": 2,
        "memory_bytes": 24684084 * 1024,
        "os": "Debian GNU/Linux 12 (bookworm)",
        "nginx": "1.22.1",
        "redis": "7.0.15",
        "postgresql": "15.18",
        "python": "3.11.7",
    }
    cpu = parse_cpu(
        "tck 100\nunit session-kit-app 812\nunit redis-server 0\nproc 812 (python) 250 1\n"
        "proc 90 (nginx) 10 1\nproc 91 (nginx) 35 90\nproc 77 (postgres) 5 1\nproc 78 (postgres) 20 77\n"
        "proc 1 (systemd) 900 0\n"
    )
    assert {part: round(seconds, 6) for part, seconds in cpu.items()} == {
        "app": 2.5,
        "redis": 0.0,
        "nginx": 0.45,
        "postgresql": 0.25,
    }
    # app_workers > 1: the parent (812) supervises, its workers (813, 814) serve: all three are the app's CPU
    workers = parse_cpu(
        "tck 100\nunit session-kit-app 812\nproc 812 (python) 10 1\nproc 813 (python) 300 812\n"
        "proc 814 (python) 290 812\nproc 900 (python) 50 1\n"
    )
    assert round(workers["app"], 6) == 6.0
    run = parse_wrk("""Running 2s test @ http://127.0.0.1:41163
  1 threads and 16 connections
  Latency Distribution
     50%    2.03ms
     75%    2.52ms
     90%    3.09ms
     99%   61.30us
  15218 requests in 2.01s, 3.07MB read
  Non-2xx or 3xx responses: 4
Requests/sec:   7587.41
""")
    assert run == {
        "rps": 7587.41,
        "requests": 15218,
        "non_2xx": 4,
        "socket_errors": 0,
        "latency_ms": {"p50": 2.03, "p75": 2.52, "p90": 3.09, "p99": 0.0613},
    }


def test_a_live_report_on_an_inventory_it_cannot_read_stops_in_one_line_and_writes_nothing(tmp_path, capsys):
    from reporting.run import run

    out = tmp_path / "report"
    assert run(["redis"], quick=True, out=out, inventory="inventories/example.py", data={"no_such_variable": "1"}) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("report: ") and "no_such_variable" in error, error
    assert not out.exists(), "a report that could not start wrote results"

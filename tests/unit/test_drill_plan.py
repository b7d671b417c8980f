"""What `./kit drill` and `./kit report` run: every drill on every strategy it applies to, and a drill's second
configurations (drills.catalog.Drill.variants) as runs of their own, each configuration deployed once."""

from __future__ import annotations

from drills.__main__ import file_name, plan
from drills.catalog import DRILLS
from reporting.run import FULL_DRILLS, QUICK_DRILLS, REPORT_STRATEGIES
from reporting.run import plan as report_plan
from session_kit.strategies import STRATEGIES


def test_all_runs_each_drill_where_it_applies_and_each_variant_once():
    runs = plan(list(DRILLS), list(STRATEGIES))
    assert len(runs) == len(set(runs))
    for name, drill in DRILLS.items():
        for strategy in STRATEGIES:
            expected = set(drill.variants(strategy))
            assert {v for n, s, v in runs if n == name and s == strategy} == expected, (name, strategy)
    assert ("scale-out", "sticky", "hash_cookie") in runs  # sticky's cookie routing beside ip_hash
    assert ("lag", "replication", "async") in runs  # async's lag beside sync's
    assert ("scale-out", "redis", "hash_cookie") not in runs
    assert not DRILLS["lag"].variants("redis")  # a drill that does not apply has no variant either


def test_runs_are_grouped_so_that_each_configuration_is_deployed_once():
    runs = plan(list(DRILLS), list(STRATEGIES))
    configurations = [(s, v) for _, s, v in runs]
    changes = sum(1 for a, b in zip(configurations, configurations[1:]) if a != b) + 1
    assert changes == len(set(configurations))
    assert list(dict.fromkeys(s for s, _ in configurations)) == list(STRATEGIES)


def test_a_variant_has_its_own_result_file():
    assert file_name("scale-out", "sticky", "") == "scale-out--sticky.json"
    assert file_name("scale-out", "sticky", "hash_cookie") == "scale-out--sticky--hash_cookie.json"


def test_the_full_report_deploys_each_variant_and_the_quick_one_none():
    full = report_plan(list(STRATEGIES), quick=False)
    deploys = [(s.strategy, s.variant, s.data) for s in full if s.name == "deploy"]
    assert ("sticky", "hash_cookie", {"lb_method": "hash_cookie"}) in deploys
    assert ("replication", "async", {"replication_mode": "async"}) in deploys
    assert len(deploys) == len(set((st, v) for st, v, _ in deploys))
    drills = {(s.name, s.strategy, s.variant) for s in full if s.name.startswith("drill ")}
    assert ("drill scale-out", "sticky", "hash_cookie") in drills
    # every drill where it applies, except where the report takes one strategy for others (REPORT_STRATEGIES)
    assert {
        (f"drill {n}", st, v)
        for n, st, v in plan(list(FULL_DRILLS), list(STRATEGIES))
        if st in REPORT_STRATEGIES.get(n, (st,))
    } == drills
    assert ("drill failover", "redis", "sentinel") in drills and ("drill failover", "token", "sentinel") not in drills
    # failover's configurations run on the lab with three redis hosts
    assert {s.lab_inventory for s in full if s.variant in ("sentinel", "cluster")} == {"inventories/lab_ha.py"}
    assert {s.lab_inventory for s in full if s.variant not in ("sentinel", "cluster")} == {None}
    quick = report_plan(list(STRATEGIES), quick=True)
    assert not any(s.variant for s in quick)
    assert {s.name.removeprefix("drill ") for s in quick if s.name.startswith("drill ")} <= set(QUICK_DRILLS)


def test_failover_runs_only_with_sentinel_or_cluster_and_on_the_lab_with_three_redis_hosts():
    runs = plan(["failover"], list(STRATEGIES))
    assert runs == [("failover", s, v) for s in ("redis", "token") for v in ("cluster", "sentinel")]
    assert DRILLS["failover"].variants("redis") == {
        "sentinel": {"redis_mode": "sentinel"},
        "cluster": {"redis_mode": "cluster"},
    }
    assert DRILLS["failover"].inventory("inventories/lab.py", "sentinel") == "inventories/lab_ha.py"
    assert (
        DRILLS["failover"].inventory("inventories/mine.py", "sentinel") == "inventories/mine.py"
    )  # a user's own: as given
    assert DRILLS["node-stop"].inventory("inventories/lab.py") == "inventories/lab.py"


def test_the_lab_inventory_is_recognised_however_it_is_written():
    assert DRILLS["failover"].inventory("./inventories/lab.py", "cluster") == "inventories/lab_ha.py"


def test_drills_on_an_inventory_they_cannot_read_stop_in_one_line_before_any_drill(tmp_path, capsys):
    from drills.__main__ import run
    from drills.catalog import Params

    out = tmp_path / "drills"
    assert run(plan(["node-stop"], ["redis"]), "inventories/example.py", {"no_such_variable": "1"}, Params(), out) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("drills: ") and "no_such_variable" in error, error
    assert not out.exists(), "drills that could not start wrote results"

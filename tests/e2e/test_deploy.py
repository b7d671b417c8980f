"""End to end on the local lab: for EACH strategy, deploy with pyinfra, verify (tests/verify), and apply again with
zero changes; a wrong inventory value fails before any host is touched; --dry shows diffs and changes nothing.
Needs root (CI runs as root). The lab is taken down at the end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from session_kit.strategies import STRATEGIES
from session_kit.verification import verify_command

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = "inventories/lab.py"
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
pytestmark = pytest.mark.lab  # needs root: tests/conftest.py stops the run with one line when it is missing


def run(*command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def apply(strategy: str, *extra: str) -> subprocess.CompletedProcess:
    # --dry runs change detection, which -y skips
    yes = [] if "--dry" in extra else ["-y"]
    return run(PYINFRA, *yes, INVENTORY, "deploys/site.py", "--data", f"session_strategy={strategy}", *extra)


def totals(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The Grand total row of pyinfra's results table: hosts, success (changed), error, no change."""
    match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", result.stdout + result.stderr)
    assert match, f"no results table in pyinfra's output:\n{(result.stdout + result.stderr)[-3000:]}"
    return dict(zip(("hosts", "changed", "errors", "unchanged"), (0 if v == "-" else int(v) for v in match.groups())))


def changed_steps(result: subprocess.CompletedProcess) -> list[str]:
    """The steps that changed something, from pyinfra's output: "step: host, host"."""
    changed: dict[str, list[str]] = {}
    step = ""
    for line in (result.stdout + result.stderr).splitlines():
        started = re.match(r"--> Starting (?:[a-z ,]+ )?operation: (.*?)\s*$", line)  # "serial operation" too
        if started:
            step = started.group(1)
        success = re.match(r"\s+\[(\S+)\] Success", line)
        if success and step:
            changed.setdefault(step, []).append(success.group(1))
    return [f"{step}: {', '.join(hosts)}" for step, hosts in changed.items()]


def test_wrong_value_fails_before_any_host_is_touched(lab):
    check = run(sys.executable, "-m", "session_kit", "check", INVENTORY, "--data", "session_strategy=memcached")
    assert check.returncode == 2
    lines = check.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("session-kit: session_strategy:")
    result = apply("memcached")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "session_strategy: must be one of" in output
    assert "Starting operation" not in output and "Results" not in output, "operations ran despite a bad inventory"


def test_strategy_without_its_group_is_refused(lab, tmp_path):
    inventory = tmp_path / "no_db.py"
    inventory.write_text("from lab.inventory import groups\n_g = groups('nodb')\nlb = _g['lb']\napp = _g['app']\n")
    check = run(sys.executable, "-m", "session_kit", "check", str(inventory), "--data", "session_strategy=database")
    assert check.returncode == 2
    assert check.stderr.strip() == "session-kit: db: group is empty, but session_strategy=database needs it"


def deploy_verify_and_reapply(strategy: str, outside_source: str) -> None:
    """Apply INVENTORY with the strategy, run the verification suite against it, apply again: zero changes."""
    first = apply(strategy)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert totals(first)["errors"] == 0
    verify = run(*verify_command(INVENTORY, {"session_strategy": strategy}, "--outside-source", outside_source))
    assert verify.returncode == 0, f"verification of {strategy} failed:\n{verify.stdout[-6000:]}"
    assert re.search(r"\d+ passed", verify.stdout)
    second = apply(strategy)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    counts = totals(second)
    assert counts["changed"] == 0 and counts["errors"] == 0, (
        f"second apply of {strategy} changed things: {counts}; " + "; ".join(changed_steps(second))
    )


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_deploy_verify_and_reapply(lab, outside_source, strategy):
    deploy_verify_and_reapply(strategy, outside_source)


@pytest.mark.parametrize("strategy", ["sticky", "replication"])
def test_cookie_routing(lab, strategy):
    """Tomcat's jvmRoute: the node that creates a session marks its cookie, and Nginx sends the session there from
    the first request after login on (verified: every request on exactly one node, no retry)."""
    first = apply(strategy, "--data", "lb_method=hash_cookie")
    assert first.returncode == 0 and totals(first)["errors"] == 0, (first.stdout + first.stderr)[-3000:]
    verify = run(*verify_command(INVENTORY, {"session_strategy": strategy, "lb_method": "hash_cookie"}))
    assert verify.returncode == 0, f"verification of {strategy} + hash_cookie failed:\n{verify.stdout[-6000:]}"
    second = apply(strategy, "--data", "lb_method=hash_cookie")
    assert totals(second)["changed"] == 0


def test_dry_run_shows_the_diff_and_changes_nothing(lab):
    assert apply("redis").returncode == 0
    dry = apply("sticky", "--dry", "--diff")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "ip_hash" in dry.stdout + dry.stderr, "the dry run should show the upstream's change to ip_hash"
    again = apply("redis")
    assert totals(again)["changed"] == 0, "--dry changed something on the hosts"


def test_limit_and_serial_as_pyinfra_users_expect_them(lab):
    """pyinfra's --limit: only the named host changes, while the deploy still sees the whole inventory (the node's
    settings name Redis on lab1 and its peers, which are outside the limit); then an apply without it, with
    --serial (one host after another: all its steps, then the next host's), brings the rest of the cluster along,
    each node restarted in its turn and healthy; a last apply changes nothing."""
    from lab.config import paths
    from session_kit.inventory import load

    ssh = ["ssh", "-F", str(paths().ssh_config)]

    def ttls() -> dict[str, str]:
        return {
            node: run(*ssh, node, "sed -n 's/^SESSION_TTL=//p' /etc/session-kit/app.env").stdout.strip()
            for node in ("lab2", "lab3", "lab4")
        }

    def restarts() -> dict[str, int]:
        """When each node's app last started (monotonic us)."""
        return {
            node: int(run(*ssh, node, "systemctl show -P ActiveEnterTimestampMonotonic session-kit-app").stdout)
            for node in ("lab2", "lab3", "lab4")
        }

    assert apply("redis").returncode == 0
    before = ttls()
    changed = str(int(before["lab3"]) + 1)
    limited = apply("redis", "--limit", "lab3", "--data", f"app_session_ttl={changed}")
    assert limited.returncode == 0 and totals(limited)["errors"] == 0, (limited.stdout + limited.stderr)[-3000:]
    assert totals(limited)["changed"] > 0
    output = limited.stdout + limited.stderr
    assert "[lab3]" in output and not any(f"[{other}]" in output for other in ("lab1", "lab2", "lab4")), output[-3000:]
    assert ttls() == {**before, "lab3": changed}
    assert "REDIS_URL" in run(*ssh, "lab3", "cat /etc/session-kit/app.env").stdout
    started = restarts()
    whole = apply("redis", "--serial", "--data", f"app_session_ttl={changed}")
    assert whole.returncode == 0 and totals(whole)["errors"] == 0, (whole.stdout + whole.stderr)[-3000:]
    # --serial: every step on one host, then every step on the next: each host's lines are one block
    run_part = (whole.stdout + whole.stderr).partition("--> Beginning operation run")[2]
    hosts = re.findall(r"^\s+\[(lab\d+)\] ", run_part, re.M)
    blocks = [name for i, name in enumerate(hosts) if i == 0 or hosts[i - 1] != name]
    assert len(blocks) == len(set(blocks)) >= 2, f"hosts did not run one after another: {blocks}"
    assert set(ttls().values()) == {changed}
    again = restarts()
    assert again["lab3"] == started["lab3"] and all(again[node] > started[node] for node in ("lab2", "lab4")), (
        f"the serial apply restarts the nodes whose settings changed, and only them: {started} -> {again}"
    )
    deployment = load(INVENTORY)
    for node in deployment.role("app"):
        health = run(*ssh, node.name, f"curl -fsS --max-time 3 http://{node.ip}:{deployment.vars['app_port']}/healthz")
        assert health.returncode == 0, f"{node.name}: {health.stderr}"
    back = apply("redis")  # the inventory as it is, for the modules after this one
    assert back.returncode == 0 and set(ttls().values()) == set(before.values())
    assert totals(apply("redis"))["changed"] == 0

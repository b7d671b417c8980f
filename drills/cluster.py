"""The deployed cluster as the drills act on it: apply the kit with pyinfra, run a command on a host over SSH, read a
node's health over HTTP. Everything goes through the inventory (session_kit/inventory.py), so a drill knows hosts by
their roles, never by the lab's internals. The balancer is reached as its clients reach it (HTTPS verified against
the inventory's certificate with lb_tls); app nodes straight, over the private network, in plain HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from session_kit.inventory import Deployment, Node, load

ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


class DrillError(Exception):
    """A drill could not run (the cluster was not in the state it needs); str() says what to do."""


def grand_total(output: str) -> dict[str, int]:
    match = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", output)
    if not match:
        return {}
    return dict(zip(("hosts", "changed", "errors", "unchanged"), (0 if v == "-" else int(v) for v in match.groups())))


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_marked(
    command: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, list[tuple[str, float]]]:
    """Run a command (output and errors merged), noting when each line starting `--> ` came (seconds from the
    start): pyinfra's stage headers. Killed past `timeout` (DrillError)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    lines, marks = [], []
    try:
        for line in process.stdout:
            lines.append(line)
            clean = ANSI.sub("", line).strip()
            if clean.startswith("--> "):
                marks.append((clean[4:].rstrip(".: "), round(time.monotonic() - started, 2)))
        returncode = process.wait()
    finally:
        timer.cancel()
        process.stdout.close()
    if time.monotonic() - started >= timeout:
        raise DrillError(f"`{' '.join(command[:4])} ...` took more than {timeout} s and was stopped")
    marks.append(("done", round(time.monotonic() - started, 2)))
    return returncode, "".join(lines), marks


def phases(marks: list[tuple[str, float]]) -> dict[str, float]:
    """Seconds spent in each stage: from the start to the first mark ("start": Python, pyinfra, the inventory),
    then from each mark to the next."""
    spent: dict[str, float] = {}
    previous_name, previous_at = "start", 0.0
    for name, at in marks:
        spent[previous_name] = round(spent.get(previous_name, 0.0) + at - previous_at, 2)
        previous_name, previous_at = name, at
    return spent


def slowest_steps(lines: str, count: int = 8) -> list[dict[str, Any]]:
    """The steps that took longest (deploys/cluster.py: StepTimes), each with its slowest host: pyinfra runs a step
    on every host at once, so its slowest host is what the step adds to the apply's time."""
    slowest: dict[str, dict[str, Any]] = {}
    for line in lines.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry["step"] not in slowest or entry["seconds"] > slowest[entry["step"]]["seconds"]:
            slowest[entry["step"]] = entry
    return sorted(slowest.values(), key=lambda e: -e["seconds"])[:count]


def check_inventory(inventory: str, data: dict[str, Any], strategies: Iterable[str]) -> None:
    """Read the inventory as a Target will, once per strategy (whatever their order): KitError (the lab not up, a
    wrong value) before any step of a run touches a host or writes a result."""
    for strategy in dict.fromkeys(strategies):
        load(inventory, {**data, "session_strategy": strategy})


class Target:
    """One inventory, deployed with one strategy (and any other `--data` overrides)."""

    def __init__(self, inventory: str, data: dict[str, Any]):
        self.inventory, self.data = inventory, dict(data)
        self.deployment: Deployment = load(inventory, self.data)
        self._ssh_config: Path | None = None

    @property
    def strategy(self) -> str:
        return self.deployment.strategy.name

    @property
    def lb_url(self) -> str:
        """https://... with lb_tls (verify with tls_verify / ssl_context()), else http://..."""
        return self.deployment.lb_url

    @property
    def tls_verify(self) -> str | bool:
        """requests' `verify=` for the balancer: the inventory's certificate file, or True (the system's CAs)."""
        return self.deployment.tls_verify

    def ssl_context(self):
        """An ssl.SSLContext for the balancer (aiohttp: drills/load.py and the drills' own clients)."""
        return self.deployment.ssl_context()

    def role(self, role: str) -> list[Node]:
        return self.deployment.role(role)

    def apply(self, extra: dict[str, Any] | None = None, timeout: float = 900) -> dict[str, Any]:
        """pyinfra -y INVENTORY deploys/site.py with this target's data (and `extra`): its totals, its duration, and
        where the time went (phases: seconds from the start until each of pyinfra's `--> ` stages began)."""
        command = [PYINFRA, "-y", self.inventory, "deploys/site.py"]
        for key, value in {**self.data, **(extra or {})}.items():
            command += ["--data", f"{key}={value}"]
        started = time.monotonic()
        times = Path(tempfile.mkstemp(prefix="apply-steps-", suffix=".jsonl")[1])
        try:
            returncode, output, marks = run_marked(command, timeout, {"SESSION_KIT_STEP_TIMES": str(times)})
            steps = slowest_steps(times.read_text())
        finally:
            times.unlink(missing_ok=True)
        if returncode != 0:
            raise DrillError(f"pyinfra apply failed (exit {returncode}): {output.strip().splitlines()[-1:]}")
        return {
            **grand_total(output),
            "seconds": round(time.monotonic() - started, 2),
            "phases": phases(marks),
            "slowest_steps": steps,
        }

    def apply_unloaded(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """apply(), for when no load is running (a configuration deployed between drills, a drill's restore): the app
        nodes that must restart do so all at once (app_rolling_batch = every node), with one health wait instead of
        a drain, a restart and nginx_fail_timeout's settle per node. Nothing is measured then, and no client is
        there to fail; the inventory's own batch size stays what a deploy under load uses."""
        return self.apply({"app_rolling_batch": max(1, len(self.role("app"))), **(extra or {})})

    # -- SSH ------------------------------------------------------------------------------------------------------

    def ssh_config(self) -> Path:
        if self._ssh_config is None:
            path = Path(tempfile.mkstemp(prefix="drill-ssh-", suffix=".conf")[1])
            path.write_text(self.deployment.ssh_config_text())
            self._ssh_config = path
        return self._ssh_config

    def ssh(self, node: Node, command: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            ["ssh", "-F", str(self.ssh_config()), node.name, node.as_root(command)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise DrillError(
                f"{node.name}: `{command}` failed (exit {result.returncode}): {result.stderr.strip()[-300:]}"
            )
        return result.stdout

    # -- HTTP -----------------------------------------------------------------------------------------------------

    def node_url(self, node: Node) -> str:
        return f"http://{node.ip}:{self.deployment.vars['app_port']}"

    def healthy(self, node: Node) -> bool:
        try:
            return requests.get(self.node_url(node) + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self, node: Node, within: float = 60) -> float:
        """Seconds until the node answers /healthz with 200; DrillError past `within`."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            if self.healthy(node):
                return round(time.monotonic() - started, 2)
            time.sleep(0.1)
        raise DrillError(f"{node.name} did not answer /healthz within {within} s")

    def wait_settled(self, within: float = 60) -> None:
        """Every app node and the balancer answer /healthz: what the previous drill did has settled."""
        for node in self.role("app"):
            self.wait_healthy(node, within=within)
        started = time.monotonic()
        while time.monotonic() - started < within:
            try:
                if requests.get(self.lb_url + "/healthz", timeout=2, verify=self.tls_verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise DrillError(f"the balancer {self.lb_url} did not answer /healthz within {within} s")

    def access_log(self, run_id: str) -> str:
        """The balancer's access log lines of one load run (every request carries an X-Request-Id with its run id)."""
        return "".join(  # every balancer's: with lb_vip, the one holding it, and any that held it before
            self.ssh(lb, f"grep -F -- ' {run_id}-' /var/log/nginx/session-kit.access.log || true", timeout=60)
            for lb in self.role("lb")
        )

    def close(self) -> None:
        if self._ssh_config is not None:
            self._ssh_config.unlink(missing_ok=True)

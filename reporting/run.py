"""The live run: for each strategy, deploy (drills.cluster.Target.apply), verify (tests/verify), measure the load
through the balancer, run the drills; record each step's outcome and time; then write the report.

Every result goes into OUT/results/ as JSON as soon as it is measured, so that an interrupted run still renders what
it measured. A failed step is recorded with its error and the run goes on (after a failed deploy, that strategy's
other steps are skipped: they would measure another strategy). Ctrl-C stops the step in progress, re-applies the
inventory as it is (the lab back in the state the inventory describes), and writes the report of what was done.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drills.catalog import DRILLS, LAB_INVENTORY, Params, configurations
from drills.cluster import ROOT, Target, check_inventory
from session_kit.validate import KitError

from . import measure, write

FULL_DRILLS = (
    "node-stop",
    "node-kill",
    "rolling",
    "store-restart",
    "store-freeze",
    "contention",
    "cookie-limits",
    "footprint",
    "ip-hash-spread",
    "scale-out",
    "lag",
    "failover",
    "store-kill",
    "power-off",
)
# Drills the full report runs on fewer strategies than they apply to (its time goal is 30 min): the Redis of failover,
# store-kill and power-off is the same for redis and token, so redis stands for both (./kit drill NAME runs both).
REPORT_STRATEGIES = {"failover": ("redis",), "store-kill": ("redis", "database"), "power-off": ("redis", "database")}
QUICK_DRILLS = ("node-stop", "contention", "footprint", "lag")
# Seconds each kind of step is expected to take on the lab (2 cores), for the estimate of what is left; the
# estimate scales them by how long the steps done so far took against theirs.
ESTIMATE = {
    "environment": 15,
    "deploy": 30,
    "verify": 30,
    "load": 25,
    "restore": 45,
    "node-stop": 20,
    "node-kill": 20,
    "rolling": 75,
    "store-restart": 20,
    "store-freeze": 20,
    "contention": 5,
    "cookie-limits": 40,
    "footprint": 45,
    "ip-hash-spread": 30,
    "scale-out": 75,
    "lag": 60,
    "failover": 40,
    "store-kill": 30,
    "power-off": 40,
    "deploy-scale": 600,
}
QUICK_ESTIMATE = {**ESTIMATE, "verify": 12, "load": 15, "node-stop": 12, "footprint": 10, "lag": 25}
# --quick verifies the sessions through the balancer only (the checks over SSH of services and sockets are the slow
# half of tests/verify; the deploy has just checked that every node answers /healthz)
QUICK_VERIFY = "tests/verify/test_sessions.py"


def clock_text(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class Progress:
    """One line as each step starts (time so far, estimate of what is left) and one as it ends (its time)."""

    def __init__(
        self,
        plan: list[tuple[str, str | None, float]],
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = lambda line: print(line, flush=True),
    ):
        self.plan, self.clock, self.say = plan, clock, say
        self.t0 = clock()
        self.started: dict[int, float] = {}
        self.took: dict[int, float] = {}

    def _label(self, index: int) -> str:
        name, strategy, _ = self.plan[index]
        return f"[{index + 1}/{len(self.plan)}] {name}" + (f" on {strategy}" if strategy else "")

    def left(self, index: int) -> float:
        done_estimate = sum(self.plan[i][2] for i in self.took)  # skipped steps are not in `took`: they say nothing
        scale = sum(self.took.values()) / done_estimate if done_estimate else 1.0
        return scale * sum(estimate for _, _, estimate in self.plan[index:])

    def start(self, index: int) -> None:
        at = self.clock()
        self.started[index] = at
        left = self.left(index)
        left_text = f"about {round(left / 60)} min left" if left >= 90 else f"about {round(left)} s left"
        self.say(f"{self._label(index)}: started at {clock_text(at - self.t0)}, {left_text}")

    def end(self, index: int, status: str, error: str = "") -> float:
        at = self.clock()
        took = at - self.started[index]
        if status != "skipped":
            self.took[index] = took
        mark = "ok" if status == "ok" else status.upper()
        self.say(
            f"{self._label(index)}: {mark} in {round(took)} s ({clock_text(at - self.t0)} so far)"
            + (f": {error}" if error else "")
        )
        return took


@dataclasses.dataclass
class Step:
    name: str  # environment | deploy | verify | load | drill NAME | restore
    strategy: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # inventory overrides (replication_mode=async)
    variant: str = ""  # a second run of a drill in another mode: its file's suffix
    lab_inventory: str | None = None  # on the lab, the inventory this configuration runs on (Drill.lab_inventories)

    @property
    def kind(self) -> str:
        return self.name.removeprefix("drill ").split(" ")[0]


def plan(strategies: list[str], quick: bool, deploy_scale: list[int] | None = None) -> list[Step]:
    drills = QUICK_DRILLS if quick else FULL_DRILLS
    steps = [Step("environment", strategies[0])]
    for strategy in strategies:
        steps += [Step("deploy", strategy), Step("verify", strategy), Step("load", strategy)]
        # the plain configuration (already deployed), then, in a full run, each drill's second configuration
        # (catalog.Drill.variants: async lag, sticky's scale-out with cookie routing), each deployed once
        for variant, overrides, names in configurations(list(drills), strategy):
            names = [name for name in names if strategy in REPORT_STRATEGIES.get(name, (strategy,))]
            if (variant and quick) or not names:
                continue
            lab_inventory = next(filter(None, (DRILLS[name].lab_inventories.get(variant) for name in names)), None)
            if variant:
                steps.append(Step("deploy", strategy, overrides, variant, lab_inventory))
            steps += [Step(f"drill {name}", strategy, overrides, variant, lab_inventory) for name in names]
    if deploy_scale:
        # a fresh lab per size (benchmarks/deploy.py, the counts of Run.deploy_scale), once the strategies are
        # measured: it remakes every host
        steps.append(Step("deploy-scale", "redis" if "redis" in strategies else strategies[0]))
    return steps + [Step("restore")]


def drill_function(name: str, quick: bool) -> Callable[[Target, Params], dict[str, Any]]:
    function = DRILLS[name].run
    if quick and name == "footprint":
        return functools.partial(function, sessions=1000)
    if quick and name == "lag":
        return functools.partial(function, writes=50, rejoin_sessions=(1000,))
    return function


def verify(inventory: str, strategy: str, data: dict[str, Any], tests: str = "tests/verify") -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        tests,
        "--inventory",
        inventory,
        "--strategy",
        strategy,
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    for key, value in data.items():
        command += ["--data", f"{key}={value}"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    summary = (result.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    return {
        "kind": "verify",
        "strategy": strategy,
        "tests": tests,
        "when": measure.now(),
        "exit": result.returncode,
        "summary": summary.strip("= "),
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "errors": counts.get("error", 0),
        "seconds": round(time.monotonic() - started, 1),
    }


@dataclasses.dataclass(eq=False)
class Run:
    strategies: list[str]
    quick: bool
    out: Path
    inventory: str
    data: dict[str, Any]
    deploy_scale: list[int] | None = None

    def __post_init__(self):
        self.deploy_scale = self.deploy_scale or []
        self.results = self.out / "results"
        self.params = Params(seconds=4.0) if self.quick else Params(seconds=9.0)
        self.load_seconds = 3 if self.quick else 8
        self.steps = plan(self.strategies, self.quick, self.deploy_scale)
        self.records: list[dict[str, Any]] = []
        self.target: Target | None = None
        self.deployed: tuple | None = None  # (strategy, overrides) the cluster is in, as far as we know
        self.failed_deploys: set[tuple] = set()
        self.started_at = measure.now()

    def run_params(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "clients": self.params.clients,
            "seconds": self.params.seconds,
            "think": self.params.think,
            "load_seconds": self.load_seconds,
            "inventory": self.inventory,
            "overrides": dict(self.data),
            "strategies": self.strategies,
            "deploy_scale": self.deploy_scale,
        }

    def save(self, name: str, document: dict[str, Any]) -> None:
        path = self.results / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")

    def inventory_for(self, step: Step) -> str:
        """The run's inventory, or on the lab the one the step's configuration needs (Step.lab_inventory)."""
        on_lab = os.path.normpath(self.inventory) == LAB_INVENTORY
        return step.lab_inventory if step.lab_inventory and on_lab else self.inventory

    def target_for(self, step: Step) -> Target:
        wanted = {**self.data, **step.data, "session_strategy": step.strategy}
        inventory = self.inventory_for(step)
        if self.target is None or self.target.data != wanted or self.target.inventory != inventory:
            if self.target is not None:
                self.target.close()
            self.target = Target(inventory, wanted)
        return self.target

    def deploy(self, step: Step) -> dict[str, Any]:
        target = self.target_for(step)
        applied = target.apply_unloaded()  # no load runs during a deploy step: nodes that must restart do so at once
        if applied.get("errors"):
            raise RuntimeError(f"pyinfra reported {applied['errors']} errors")
        self.deployed = (step.strategy, tuple(sorted(step.data.items())))
        return applied

    def do(self, step: Step) -> dict[str, Any]:
        """Run one step; returns what goes into its record (besides status and time)."""
        overrides = tuple(sorted(step.data.items()))
        if step.name == "environment":
            environment = measure.controller(self.run_params(), self.inventory)
            self.save("environment.json", environment)  # the controller's facts, even when no host answers
            environment["hosts"] = measure.hosts(self.target_for(Step("", step.strategy)))
            self.save("environment.json", environment)
            return {}
        if step.name == "deploy-scale":
            from benchmarks import deploy

            if self.target is not None:
                self.target.close()
            self.target, self.deployed = None, None  # every host is made again: nothing is as it was
            result = deploy.run(self.deploy_scale, step.strategy, say=lambda line: print("      " + line, flush=True))
            self.save("deploy-scale.json", result)
            missed = [goal for goal, value in result["goals"].items() if not value["met"]]
            return {"goals_missed": missed} if missed else {}
        if step.name == "restore":
            if self.target is not None:
                self.target.close()
            self.target = Target(self.inventory, dict(self.data))
            applied = self.target.apply()
            return {"applied": applied, "note": "the inventory re-applied as it is"}
        if step.name != "deploy" and (step.strategy, overrides) in self.failed_deploys:
            raise SkipStep(
                f"the deploy of {step.strategy}" + (f" ({step.variant})" if step.variant else "") + " failed"
            )
        if step.name == "deploy":
            return {"applied": self.deploy(step)}
        if self.deployed != (step.strategy, overrides):
            self.deploy(step)  # a failed step before may have left the cluster otherwise
        target = self.target_for(step)
        suffix = f"--{step.variant}" if step.variant else ""
        if step.name == "verify":
            result = verify(
                self.inventory,
                step.strategy,
                {**self.data, **step.data},
                QUICK_VERIFY if self.quick else "tests/verify",
            )
            self.save(f"verify/{step.strategy}.json", result)
            if result["exit"] != 0:
                raise RuntimeError(f"verification: {result['summary']}")
            return {}
        if step.name == "load":
            self.save(
                f"load/{step.strategy}.json",
                measure.load(target, self.load_seconds, sessions=50 if self.quick else 200),
            )
            return {}
        name = step.name.removeprefix("drill ")
        result = {
            "drill": name,
            "strategy": step.strategy,
            "variant": step.variant,
            "overrides": step.data,
            "doc": DRILLS[name].doc,
            "inventory": self.inventory_for(step),
            "params": dataclasses.asdict(self.params),
            "when": measure.now(),
            "lb_method": target.deployment.lb_method,
        }
        started = time.monotonic()
        try:
            result.update(drill_function(name, self.quick)(target, self.params))
            result["status"] = "ok"
        except Exception as error:
            result.update(status="failed", error=f"{type(error).__name__}: {error}")
            self.deployed = None  # the cluster may not be as the drill found it
            raise
        except KeyboardInterrupt:
            result.update(status="interrupted", error="stopped by Ctrl-C")
            raise
        finally:
            result["seconds"] = round(time.monotonic() - started, 1)
            self.save(f"drills/{name}--{step.strategy}{suffix}.json", result)
        missed = [goal for goal, value in result.get("goals", {}).items() if not value["met"]]
        return {"goals_missed": missed} if missed else {}

    def record(self, step: Step, status: str, seconds: float, error: str = "", extra: dict | None = None) -> None:
        self.records.append(
            {
                "name": step.name + (f" ({step.variant})" if step.variant else ""),
                "strategy": step.strategy,
                "status": status,
                "seconds": round(seconds, 1),
                **({"error": error} if error else {}),
                **(extra or {}),
            }
        )

    def write_steps(self, interrupted: bool, total: float) -> None:
        self.save(
            "steps.json",
            {
                "kind": "steps",
                "params": self.run_params(),
                "started": self.started_at,
                "finished": measure.now(),
                "seconds": round(total, 1),
                "interrupted": interrupted,
                "steps": self.records,
            },
        )

    def __call__(self) -> int:
        if self.results.exists():
            shutil.rmtree(self.results)  # this run's results only: the report must not mix runs
        self.results.mkdir(parents=True)
        progress = Progress(
            [
                (
                    s.name + (f" ({s.variant})" if s.variant else ""),
                    s.strategy,
                    (QUICK_ESTIMATE if self.quick else ESTIMATE).get(s.kind, 30),
                )
                for s in self.steps
            ]
        )
        began, interrupted, failures = time.monotonic(), False, 0
        try:
            for index, step in enumerate(self.steps):
                progress.start(index)
                try:
                    extra = self.do(step)
                except SkipStep as skipped:
                    self.record(step, "skipped", progress.end(index, "skipped", str(skipped)), str(skipped))
                    continue
                except Exception as error:  # noqa: BLE001 (any failure is recorded as failed; the rest still runs)
                    failures += 1
                    message = f"{type(error).__name__}: {error}"
                    if step.name == "deploy":
                        self.failed_deploys.add((step.strategy, tuple(sorted(step.data.items()))))
                    self.record(
                        step,
                        "failed",
                        progress.end(index, "failed", message),
                        message,
                        {"traceback": traceback.format_exc(limit=4)},
                    )
                    continue
                self.record(step, "ok", progress.end(index, "ok"), extra=extra)
        except KeyboardInterrupt:
            interrupted = True
            print(
                "report: interrupted; re-applying the inventory as it is, so that the lab is as it describes "
                "(Ctrl-C again to stop at once: then run `./kit deploy inventories/lab.py`)",
                file=sys.stderr,
            )
            self.records.append(
                {
                    "name": "interrupted",
                    "strategy": None,
                    "status": "interrupted",
                    "seconds": 0.0,
                    "error": f"Ctrl-C during step {len(self.records) + 1} of {len(self.steps)}",
                }
            )
            try:
                if self.target is not None:
                    self.target.close()
                started = time.monotonic()
                applied = Target(self.inventory, dict(self.data)).apply()
                self.record(Step("restore"), "ok", time.monotonic() - started, extra={"applied": applied})
            except KeyboardInterrupt:
                print(
                    "report: stopped; the lab may be mid-step: `./kit deploy inventories/lab.py` puts it back",
                    file=sys.stderr,
                )
            except Exception as error:  # noqa: BLE001 (recorded in the report)
                self.record(Step("restore"), "failed", 0.0, f"{type(error).__name__}: {error}")
        finally:
            if self.target is not None:
                self.target.close()
        self.write_steps(interrupted, time.monotonic() - began)
        write(self.results, self.out)
        print(
            f"report: {self.out / 'index.html'} and {self.out / 'report.md'}; {failures} steps failed"
            + (" (interrupted)" if interrupted else ""),
            flush=True,
        )
        return 130 if interrupted else (1 if failures else 0)


class SkipStep(Exception):
    """A step that cannot run for a reason recorded with it."""


def run(
    strategies: list[str],
    quick: bool,
    out: Path,
    inventory: str,
    data: dict[str, Any],
    deploy_scale: list[int] | None = None,
) -> int:
    try:  # an inventory that cannot be read stops here, in one line, with nothing written
        check_inventory(inventory, data, strategies)
    except KitError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    print(
        f"report: {len(strategies)} strategies ({', '.join(strategies)}), {'quick' if quick else 'full'}; "
        f"results into {out / 'results'}, started {datetime.datetime.now():%H:%M}",
        flush=True,
    )
    return Run(strategies, quick, out, inventory, data, deploy_scale)()

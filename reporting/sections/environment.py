"""What the report ran on and how the run went: the hosts and their software, the parameters, each step's time
and outcome, and the verification after each deploy."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from ..document import MISSING, Report


def header(report: Report) -> None:
    s = report.s
    report.heading("What it ran on")
    env = s.environment
    if env is None:
        report.missing(
            "cores, memory, OS and the versions of Nginx, Redis, PostgreSQL, Python and the kit: these "
            "results hold no environment record (a live run, `./kit report`, reads them from the hosts "
            "over SSH and records them)"
        )
    else:
        doc = s.documents[env]
        commit = report.show(s.ref(env, "controller", "kit_commit"))
        dirty = s.ref(env, "controller", "kit_uncommitted_changes")
        commit += " (with uncommitted changes)" if dirty is not None and dirty.value else ""
        report.para(
            f"Date: {report.show(s.ref(env, 'when'))}; kit commit {commit}; Python "
            f"{report.show(s.ref(env, 'controller', 'python'))} on the controller."
        )
        rows = []
        hosts = [("controller", ("controller",))] + [(name, ("hosts", name)) for name in doc.get("hosts", {})]
        for name, keys in hosts:
            memory = s.ref(env, *keys, "memory_bytes")
            software = []
            for key, label in (
                ("nginx", "Nginx"),
                ("redis", "Redis"),
                ("postgresql", "PostgreSQL"),
                ("python", "Python"),
            ):
                ref = s.ref(env, *keys, key)
                if ref is not None and not (name == "controller" and key == "python"):
                    software.append(f"{label} {s.show(ref)}")
            roles = s.ref(env, *keys, "roles")
            rows.append(
                [
                    name,
                    ", ".join(roles.value) if roles else "wrk, this report",
                    report.show(s.ref(env, *keys, "cores")),
                    s.derive("gib", [memory], digits=1)[0] if memory else MISSING,
                    report.show(s.ref(env, *keys, "os")),
                    ", ".join(software) or "-",
                ]
            )
        report.table(["host", "roles", "cores", "memory (GiB)", "OS", "software"], rows)
    parameters(report)
    timings(report)
    verification(report)


def parameters(report: Report) -> None:
    s = report.s
    report.heading("Parameters", 3)
    for file in (s.environment, s.steps):
        params = s.ref(file, "params")
        if params is None:
            continue
        report.listing(
            [
                f"{key}: {report.show(s.ref(file, 'params', key))}"
                for key in params.value
                if not isinstance(params.value[key], (list, dict))
            ]
            + [f"strategies: {', '.join(params.value.get('strategies', []))}"]
            + [
                f"inventory override {key}: {report.show(s.ref(file, 'params', 'overrides', key))}"
                for key in params.value.get("overrides", {})
            ]
        )
        return
    seen, items = set(), []
    for files in s.drills.values():
        for file in files:
            params = s.documents[file].get("params")
            key = repr(sorted(params.items())) if isinstance(params, dict) else None
            if key is None or key in seen:
                continue
            seen.add(key)
            items.append(
                "drills: "
                + ", ".join(f"{name} {report.show(s.ref(file, 'params', name))}" for name in params)
                + " (clients; seconds of load around each event; seconds of pause between a client's "
                "requests)"
            )
    if items:
        report.listing(items)
    else:
        report.missing("the parameters (no result records them)")


def timings(report: Report) -> None:
    s = report.s
    report.heading("How long each part took, and how it ended", 3)
    rows = []
    if s.steps:
        first = s.ref(s.steps, "started")
        last = s.ref(s.steps, "finished")
        total = s.ref(s.steps, "seconds")
        report.para(
            f"Started {report.show(first)}, finished {report.show(last)}: "
            f"{s.derive('minutes', [total], digits=1)[0] if total else MISSING} min in all"
            + (" (interrupted)" if s.documents[s.steps].get("interrupted") else "")
            + "."
        )
        for i, step in enumerate(s.documents[s.steps]["steps"]):
            error = s.ref(s.steps, "steps", i, "error")
            rows.append(
                [
                    step["name"],
                    step.get("strategy") or "-",
                    step["status"],
                    report.show(s.ref(s.steps, "steps", i, "seconds")),
                    s.show(error) if error else "",
                ]
            )
    else:
        whens = sorted((doc["when"], file) for file, doc in s.documents.items() if "drill" in doc and "when" in doc)
        if whens:
            report.para(
                f"Drill results from {report.show(s.ref(whens[0][1], 'when'))} to "
                f"{report.show(s.ref(whens[-1][1], 'when'))}; no record of the whole run's steps "
                f"(a live run writes one)."
            )
        for (drill, strategy), files in s.drills.items():
            for file in files:
                doc = s.documents[file]
                error = s.ref(file, "error")
                rows.append(
                    [
                        f"drill {drill}",
                        strategy,
                        doc.get("status", "?"),
                        report.show(s.ref(file, "seconds")),
                        s.show(error) if error else "",
                    ]
                )
    if rows:
        report.table(["step", "strategy", "status", "seconds", "error"], rows)
    else:
        report.missing("the steps' times (no result records them)")


def verification(report: Report) -> None:
    s = report.s
    if not s.verify:
        return  # a run without a deploy of its own (drill results only) verified nothing: nothing to say
    report.heading("Verified after each deploy", 3)
    rows = []
    for st in STRATEGIES:
        file = s.verify.get(st)
        if file:
            rows.append([st] + [report.show(s.ref(file, key)) for key in ("passed", "failed", "skipped", "seconds")])
    report.para(
        "`pytest tests/verify --inventory INVENTORY --strategy S`: services, private sockets and sessions "
        "through the balancer, as a user would see them."
    )
    report.table(["strategy", "passed", "failed", "skipped", "seconds"], rows)

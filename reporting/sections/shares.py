"""Per-node share: how the requests of the load and the drills spread over the app nodes."""

from __future__ import annotations

from session_kit.strategies import STRATEGIES

from .. import plots
from ..document import Report


def shares(report: Report) -> None:
    s = report.s
    report.heading("Per-node share")
    labels, counts, rows = [], [], []
    for st in STRATEGIES:
        spread = s.drill("ip-hash-spread", st)
        sources = (
            [("load probe", s.loads.get(st), ("per_node",))]
            + [
                (drill, s.drill(drill, st), ("figures", "per_node"))
                for drill in ("contention", "rolling", "node-kill", "node-stop")
            ]
            + [
                ("ip-hash-spread, clients in one network", spread, ("figures", "one_24", "share")),
                ("ip-hash-spread, clients in many networks", spread, ("figures", "many_24", "share")),
            ]
        )
        for label, file, keys in sources:
            per_node = s.ref(file, *keys)
            if per_node is None or not isinstance(per_node.value, dict) or not per_node.value:
                continue
            labels.append(f"{label} / {st}")
            counts.append({node: float(v) for node, v in per_node.value.items()})
            refs = [s.ref(file, *keys, node) for node in per_node.value]
            rows.append(
                [
                    label,
                    st,
                    ", ".join(
                        f"{r.keys[-1]} {s.show(r)} ({s.derive('share', [r, *refs], scale=100, digits=0)[0]}%)"
                        for r in refs
                    ),
                ]
            )
    if not rows:
        report.missing("per-node share (no result records requests per node)")
        return
    report.para(
        "Requests per app node (from the X-Served-By of each answer), from this controller's one "
        "address, except the ip-hash-spread rows (clients spread over many networks, each its own first "
        "three octets: addresses the lab puts on its bridge). A drill that stops or kills a node shows that "
        "node's gap."
    )
    report.image(plots.shares(report.out / "per-node.png", labels, counts), "per-node share of requests")
    report.table(["measurement", "strategy", "requests per node (share)"], rows)
    if not any("many networks" in label for label in labels):
        report.missing(
            "per-node share from many client addresses (the ip-hash-spread drill, on sticky: ip_hash "
            "keys on the first three octets of the client's IPv4 address)"
        )

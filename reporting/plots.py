"""The report's plots, as PNG files (matplotlib, no display). Each takes measured series only; the caller leaves a
plot out, and says which measurement is missing, when there is nothing to draw."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _label(value: float) -> str:
    """Short enough for neighbouring bars not to run into each other (the tables give every figure in full)."""
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def grouped_bars(
    path: Path,
    groups: list[str],
    series: dict[str, list[float | None]],
    ylabel: str,
    title: str,
    xlabel: str = "strategy",
    log: bool = False,
) -> Path:
    """Bars per group, one colour per series; a missing value (None) leaves a gap."""
    fig, ax = plt.subplots(figsize=(max(6.0, (0.5 + 0.4 * len(series)) * len(groups) + 2), 4.2))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        points = [(x, v) for x, v in zip(xs, values) if v is not None]
        if points:
            bars = ax.bar(
                [x for x, _ in points], [v for _, v in points], width, label=name, color=COLOURS[i % len(COLOURS)]
            )
            ax.bar_label(bars, fmt=_label, fontsize=7, padding=1)
    ax.set_xticks(
        range(len(groups)), groups, rotation=20 if len(groups) > 5 else 0, ha="right" if len(groups) > 5 else "center"
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    ax.margins(y=0.15)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def drills(path: Path, labels: list[str], failed: list[float], lost: list[float]) -> Path:
    """Failed requests and sessions lost, one bar pair per drill run (drill on strategy)."""
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.7 * len(labels) + 4), 4.4), sharey=False)
    for ax, values, title, colour in (
        (axes[0], failed, "failed requests (5xx or no answer)", COLOURS[3]),
        (axes[1], lost, "sessions lost (401 on a held session)", COLOURS[0]),
    ):
        bars = ax.bar(range(len(labels)), values, color=colour)
        ax.bar_label(bars, fmt="%d", fontsize=7, padding=1)
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("count (requests or sessions)")
        ax.set_xlabel("drill on strategy")
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.2)
        ax.set_ylim(bottom=0, top=max(1.0, max(values, default=0) * 1.25))
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def lag(path: Path, samples: dict[str, list[float]]) -> Path:
    """The distribution of replication lag (ms), one cumulative curve per mode."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (mode, values) in enumerate(samples.items()):
        ordered = sorted(values)
        ys = [100 * (k + 1) / len(ordered) for k in range(len(ordered))]
        ax.step(ordered, ys, where="post", label=f"{mode} ({len(ordered)} reads)", color=COLOURS[i])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("lag: a write's answer until another node shows it (ms, log scale)")
    ax.set_ylabel("reads seeing the write by then (%)")
    ax.set_title("replication lag, cumulative distribution")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def shares(path: Path, labels: list[str], per_node: list[dict[str, float]]) -> Path:
    """Stacked percentages of requests per app node, one bar per measurement."""
    nodes = sorted({node for counts in per_node for node in counts})
    fig, ax = plt.subplots(figsize=(max(6.5, 0.8 * len(labels) + 3), 4.4))
    bottoms = [0.0] * len(labels)
    for i, node in enumerate(nodes):
        values = [100 * counts.get(node, 0) / sum(counts.values()) for counts in per_node]
        ax.bar(range(len(labels)), values, bottom=bottoms, label=node, color=COLOURS[i % len(COLOURS)])
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("share of requests (%)")
    ax.set_xlabel("measurement on strategy")
    ax.set_ylim(0, 100)
    ax.set_title("requests per app node")
    ax.legend(fontsize=8, title="node", bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)


def latency(
    path: Path, strategies: list[str], percentiles: list[str], values: dict[str, dict[str, list[float | None]]]
) -> Path:
    """Latency percentiles (ms) per strategy, one panel per endpoint (the baseline beside the session's)."""
    endpoints = list(values)
    fig, axes = plt.subplots(1, len(endpoints), figsize=(4.2 * len(endpoints) + 1, 4.2), sharey=True, squeeze=False)
    for ax, endpoint in zip(axes[0], endpoints):
        width = 0.8 / len(percentiles)
        for i, pct in enumerate(percentiles):
            xs = [g + (i - (len(percentiles) - 1) / 2) * width for g in range(len(strategies))]
            points = [(x, v) for x, v in zip(xs, values[endpoint][pct]) if v is not None]
            ax.bar([x for x, _ in points], [v for _, v in points], width, label=pct, color=COLOURS[i])
        ax.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right", fontsize=8)
        ax.set_title(endpoint, fontsize=10)
        ax.set_xlabel("strategy")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("latency through the balancer (ms)")
    axes[0][-1].legend(fontsize=8, title="percentile", loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


def deploy_scale(path: Path, nodes: list[int], series: dict[str, list[float]]) -> Path:
    """Seconds of an apply against the number of app nodes, one line per kind of apply (first, no-op)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (name, values) in enumerate(series.items()):
        ax.plot(nodes, values, marker="o", label=name, color=COLOURS[i])
        for x, y in zip(nodes, values):
            ax.annotate(_label(y), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xticks(nodes)
    ax.set_xlabel("app nodes (plus one host for the balancer and the stores)")
    ax.set_ylabel("pyinfra apply, wall time (s)")
    ax.set_ylim(bottom=0)
    ax.margins(y=0.15)
    ax.set_title("deploy time against the number of app nodes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)

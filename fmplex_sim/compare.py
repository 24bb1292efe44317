"""Side-by-side comparison of systems on one identical request stream."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from fmplex_sim.plotting import user_text_as_is

COMPARISON_COLUMNS = (
    "system", "placement", "scheduler",
    "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "slo_attainment", "throughput_rps", "jain",
    "gpus_used", "memory_gib", "tasks_hosted", "tasks_unplaced",
    "arrived", "completed", "rejected", "unfinished", "mean_batch_size",
)


def comparison_row(summary: dict) -> dict:
    """The headline numbers of one summary, as one row of ``comparison.csv``."""
    lat, req, cl = summary["latency_ms"], summary["requests"], summary["cluster"]
    return {
        "system": summary["system"]["name"],
        "placement": summary["system"]["placement"],
        "scheduler": summary["system"]["scheduler"],
        "latency_mean_ms": lat["mean"],
        "latency_p50_ms": lat["p50"],
        "latency_p95_ms": lat["p95"],
        "latency_p99_ms": lat["p99"],
        "slo_attainment": summary["slo_attainment"],
        "throughput_rps": summary["throughput_rps"],
        "jain": summary["fairness"]["jain"],
        "gpus_used": cl["gpus_used"],
        "memory_gib": cl["memory_gib"],
        "tasks_hosted": cl["tasks_hosted"],
        "tasks_unplaced": cl["tasks_unplaced"],
        "arrived": req["arrived"],
        "completed": req["completed"],
        "rejected": req["rejected"],
        "unfinished": req["unfinished"],
        "mean_batch_size": cl.get("mean_batch_size"),
    }


def write_comparison_csv(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COMPARISON_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in COMPARISON_COLUMNS})


@user_text_as_is()
def plot_comparison(path: Path, rows: Sequence[dict], title: str = "") -> None:
    """Four panels: mean and p99 latency, SLO attainment, memory, devices used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["system"] for r in rows]
    x = range(len(rows))
    colors = [f"C{i}" for i in x]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    ax = axes[0]
    w = 0.38
    ax.bar([i - w / 2 for i in x], [r["latency_mean_ms"] or 0 for r in rows], w, label="mean", color=colors)
    ax.bar([i + w / 2 for i in x], [r["latency_p99_ms"] or 0 for r in rows], w, label="p99",
           color=colors, alpha=0.5, hatch="//")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency: mean (solid), p99 (hatched)", fontsize=9)
    panels = [
        ("slo_attainment", "SLO attainment", (0, 1.05)),
        ("memory_gib", "memory (GiB)", None),
        ("gpus_used", "devices used", None),
    ]
    for ax, (key, label, ylim) in zip(axes[1:], panels):
        ax.bar(list(x), [r[key] or 0 for r in rows], color=colors)
        ax.set_title(label, fontsize=9)
        if ylim:
            ax.set_ylim(*ylim)
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

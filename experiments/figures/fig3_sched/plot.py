"""Figure 3: scheduler ablation on one shared backbone (placement fmplex).

Reads two sweep folders under ``--results``: ``overload/`` (``sweep_overload.yaml``: every task
above its fair share, about 2x what the backbone serves, service measured over the arrival
window) and ``hot/`` (``sweep_hot.yaml``: two hot tasks above their share, six light tasks
below it, about 1.1x). Each holds fifo, rr, wfq, vtc and bfq with ``system.cross_task`` true and
false. Panels: Jain's index (``summary.json`` ``fairness.jain``, overload), throughput, p99
latency of the light tasks (computed from ``requests.csv``: tasks named ``light-*``), and p99
of all requests (hot). Writes ``fig3_sched.png/.pdf`` and ``headlines.json["fig3_sched"]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

FIGURE = "fig3_sched"
MODES = (("true", "cross-task batches"), ("false", "one task per batch"))


def collect(folder: Path) -> dict:
    """{scheduler: {"true"|"false": {"summary": ..., "light_p99_ms": ..., ...}}}."""
    out: dict = {}
    for r in common.sweep_points(folder):
        s = r["summary"]
        sched = s["system"]["scheduler"]
        ct = r["system.cross_task"].lower()
        req = common.Requests(r["folder"] / "requests.csv")
        done = np.isfinite(req.finish_s)
        lat = (req.finish_s - req.arrival_s) * 1000.0
        light = np.array([str(t).startswith("light") for t in req.task], dtype=bool)
        slo = {t: p["slo_ms"] for t, p in s["per_task"].items()}
        met = done & (lat <= np.array([slo[t] for t in req.task]) + 1e-9)
        entry = {"summary": s}
        if light.any():
            ld = light & done
            entry["light_p99_ms"] = float(np.percentile(lat[ld], 99)) if ld.any() else None
            entry["light_slo_attainment"] = float(met[light].mean())
        out.setdefault(sched, {})[ct] = entry
    return out


def headlines(over: dict | None, hot: dict | None) -> dict:
    h: dict = {"scenario": "8 tasks on one BERT-base (512-token inputs), 1 x H100-80GB, roofline; "
               "overload: every task above its fair share (~2x capacity), service over the arrival window; "
               "hot: 2 tasks above their share, 6 light tasks below it (~1.1x capacity), all requests drained"}
    if over:
        h["jain_overload"] = {s: {("cross_task" if ct == "true" else "single_task"): e["summary"]["fairness"]["jain"]
                                  for ct, e in m.items()} for s, m in over.items()}
    if hot:
        def pick(key):
            return {s: {("cross_task" if ct == "true" else "single_task"): e[key] for ct, e in m.items()}
                    for s, m in hot.items()}
        h["light_p99_ms_hot"] = pick("light_p99_ms")
        h["light_slo_attainment_hot"] = pick("light_slo_attainment")
        h["p99_ms_hot"] = {s: {("cross_task" if ct == "true" else "single_task"): e["summary"]["latency_ms"]["p99"]
                               for ct, e in m.items()} for s, m in hot.items()}
        h["throughput_rps_hot"] = {s: {("cross_task" if ct == "true" else "single_task"): e["summary"]["throughput_rps"]
                                       for ct, e in m.items()} for s, m in hot.items()}
        bfq = hot.get("bfq", {})
        if "true" in bfq and "false" in bfq:
            h["bfq_throughput_gain_from_cross_task"] = (
                bfq["true"]["summary"]["throughput_rps"] / bfq["false"]["summary"]["throughput_rps"] - 1.0)
        fifo = hot.get("fifo", {}).get("true")
        if fifo and "true" in bfq and fifo.get("light_p99_ms") and bfq["true"].get("light_p99_ms"):
            h["light_p99_reduction_bfq_vs_fifo"] = common.reduction(bfq["true"]["light_p99_ms"], fifo["light_p99_ms"])
    return h


def _bars(ax, data: dict, value, ylabel: str, title: str, log: bool = False) -> None:
    scheds = [s for s in common.SCHEDULERS if s in data]
    x = np.arange(len(scheds))
    w = 0.38
    for i, (ct, label) in enumerate(MODES):
        vals = [value(data[s][ct]) if ct in data[s] else None for s in scheds]
        ax.bar(x + (i - 0.5) * w, [v if v is not None else 0 for v in vals], w, label=label,
               color=("#1f77b4", "#9ecae1")[i], edgecolor="black", lw=0.4)
        for xi, v in zip(x + (i - 0.5) * w, vals):
            if v is None:
                ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x)
    ax.set_xticklabels(scheds)
    ax.set_xlabel("scheduler")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3, which="both")


def draw(over: dict | None, hot: dict | None, out: Path) -> list[Path]:
    plt = common.pyplot()
    panels = []
    if over:
        panels.append((over, lambda e: e["summary"]["fairness"]["jain"], "Jain's index (1 = fair)",
                       "fairness, overload (all tasks above share)", False))
    if hot:
        panels += [
            (hot, lambda e: e["summary"]["throughput_rps"], "throughput (requests/s)", "throughput, hot tasks", False),
            (hot, lambda e: e.get("light_p99_ms"), "p99 latency of light tasks (ms, log)",
             "light tasks' p99 next to hot tasks", True),
            (hot, lambda e: e["summary"]["latency_ms"]["p99"], "p99 latency, all requests (ms, log)",
             "all requests' p99, hot tasks", True),
        ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.1 * len(panels), 4.0), squeeze=False)
    for ax, (data, value, ylabel, title, log) in zip(axes[0], panels):
        _bars(ax, data, value, ylabel, title, log)
    if over:
        axes[0][0].set_ylim(0, 1.05)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=2)
    any_s = next(iter(next(iter((over or hot).values())).values()))["summary"]
    fig.suptitle("Scheduler ablation on one shared backbone (placement fmplex), with and without "
                 "cross-task batching", fontsize=11, x=0.4)
    text = common.caption_from(any_s, "8 tasks on BERT-base, 512-token inputs, equal weights, SLO 50 ms. Fairness: "
                               "every task above its fair share (~2x capacity), Jain's index over service/weight "
                               "within the arrival window. Other panels: 2 hot tasks above their share and 6 light "
                               "tasks below it (~1.1x capacity), every request drained")
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    def load(args):
        root = Path(args.results)
        over = collect(root / "overload") if (root / "overload" / "sweep.csv").is_file() else None
        hot = collect(root / "hot") if (root / "hot" / "sweep.csv").is_file() else None
        return (over, hot) if over or hot else None, f"no sweep results in {root}/overload or {root}/hot"

    return common.main(FIGURE, __doc__, argv, load, lambda d, out: draw(*d, out), lambda d: headlines(*d))

if __name__ == "__main__":
    sys.exit(main())

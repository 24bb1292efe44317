"""Figure 4: noisy neighbour. Per-task weighted service over time when one task floods at 10x
its fair share, under fifo and bfq.

Reads the compare folder ``--results`` (``fmplex-sim compare experiments/figures/fig4_noisy/config.yaml``:
subfolders ``fmplex-fifo`` and ``fmplex``). Service per task and time bin is computed from
``requests.csv`` (:func:`common.batch_service`): a batch's service is the time its instance's
output advanced for it (its finish minus the later of its start and the previous batch's finish
on that instance), split over its tasks by rows (all tasks here have equal input lengths, so
rows are tokens), and counted in the bin where the batch finished; divided by the task's weight
and the bin width it is the fraction of the backbone's time the task received. (The engine's
per-task ``service_s`` in ``summary.json`` covers the whole run including the drain, so it
cannot show the flood window.)

Writes ``fig4_noisy.png/.pdf`` and ``headlines.json["fig4_noisy"]``: per scheduler, the flood's
and the smallest neighbour's share of the backbone while the flood arrives, the neighbours'
p99 latency and SLO attainment before and during the flood, and the fair share. The
neighbours send less than their share, so a fair scheduler gives the flood the rest (more
than 1/n) and the neighbours what they ask.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

FIGURE = "fig4_noisy"
BIN_S = 0.25  # width of a time bin, simulated seconds
NEIGHBOUR_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
RUNS = (("fmplex-fifo", "fifo"), ("fmplex", "bfq"))
METHOD = ("service per batch = finish minus the later of its start and the previous batch's finish on the "
          "same instance, split by rows, binned by finish time (from requests.csv)")


def analyse(folder: Path) -> dict:
    """Weighted service per task and bin, and the flood window's numbers, for one run."""
    s = common.read_json(folder / "summary.json")
    cfg = _config(folder)
    req = common.Requests(folder / "requests.csv")
    fin, svc, rows = common.batch_service(req)
    total_rows = sum(rows.values())
    edges = np.arange(0.0, s["duration_s"] + BIN_S / 2, BIN_S)
    flood_task = next(t["name"] for t in cfg["tasks"] if t.get("start_s"))
    flood_start = next(t["start_s"] for t in cfg["tasks"] if t.get("start_s"))
    series, share = {}, {}
    in_flood = (fin >= flood_start) & (fin <= s["duration_s"])  # the flood, arrivals still coming
    busy = svc[in_flood].sum()
    for t, r in rows.items():
        per_batch = svc * r / np.maximum(total_rows, 1)
        w = s["per_task"][t]["weight"]
        series[t] = np.histogram(fin, bins=edges, weights=per_batch)[0] / w / BIN_S
        share[t] = float(per_batch[in_flood].sum() / busy) if busy > 0 else None
    lat = (req.finish_s - req.arrival_s) * 1000.0
    neigh = np.array([t != flood_task for t in req.task]) & (req.arrival_s >= flood_start) & np.isfinite(req.finish_s)
    before = np.array([t != flood_task for t in req.task]) & (req.arrival_s < flood_start) & np.isfinite(req.finish_s)
    arrived_n = np.array([t != flood_task for t in req.task]) & (req.arrival_s >= flood_start)
    slo = {t: p["slo_ms"] for t, p in s["per_task"].items()}
    met = np.isfinite(req.finish_s) & (lat <= np.array([slo[t] for t in req.task]) + 1e-9)
    return {
        "summary": s, "edges": edges, "series": series, "flood_task": flood_task, "flood_start_s": flood_start,
        "share_during_flood": share,
        "neighbour_p99_ms_during_flood": float(np.percentile(lat[neigh], 99)) if neigh.any() else None,
        "neighbour_p99_ms_before_flood": float(np.percentile(lat[before], 99)) if before.any() else None,
        "neighbour_slo_attainment_during_flood": float(met[arrived_n].mean()) if arrived_n.any() else None,
        "neighbour_lat": (req.arrival_s[neigh | before], lat[neigh | before]),
    }


def _config(folder: Path) -> dict:
    import yaml

    return yaml.safe_load((folder / "config.yaml").read_text())


def headlines(runs: dict) -> dict:
    any_r = next(iter(runs.values()))
    n = len(any_r["summary"]["per_task"])
    h: dict = {"scenario": f"{n} equal-weight tasks on one BERT-base (1 x H100-80GB, roofline); "
               f"'{any_r['flood_task']}' sends 10x its fair share from t = {any_r['flood_start_s']} s",
               "fair_share": 1.0 / n, "method": METHOD}
    for label, r in runs.items():
        h[label] = {
            "flood_share_of_service": r["share_during_flood"][r["flood_task"]],
            "neighbour_min_share_of_service": min(v for t, v in r["share_during_flood"].items() if t != r["flood_task"]),
            "neighbour_p99_ms_before_flood": r["neighbour_p99_ms_before_flood"],
            "neighbour_p99_ms_during_flood": r["neighbour_p99_ms_during_flood"],
            "neighbour_slo_attainment_during_flood": r["neighbour_slo_attainment_during_flood"],
        }
    return h


def draw(runs: dict, out: Path) -> list[Path]:
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(4.6 * (len(runs) + 1), 4.0))
    any_r = next(iter(runs.values()))
    n = len(any_r["series"])
    top = max(v.max() for r in runs.values() for v in r["series"].values()) * 1.1
    for ax, (label, r) in zip(axes, runs.items()):
        mid = (r["edges"][:-1] + r["edges"][1:]) / 2
        others = iter(NEIGHBOUR_COLORS)
        for t, y in sorted(r["series"].items(), key=lambda kv: kv[0] != r["flood_task"]):
            flood = t == r["flood_task"]
            ax.plot(mid, y, lw=2.0 if flood else 1.3, color="#d62728" if flood else next(others),
                    label=f"{t} (floods)" if flood else t)
        ax.axhline(1.0 / n, color="black", ls=":", lw=1, label=f"fair share (1/{n})")
        ax.axvspan(r["flood_start_s"], r["edges"][-1], color="#d62728", alpha=0.06)
        ax.set_ylim(0, max(top, 1.0 / n * 1.5))
        ax.set_xlim(0, r["edges"][-1])
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel("weighted service (fraction of backbone time)")
        ax.set_title(f"{label}: flood takes {r['share_during_flood'][r['flood_task']]:.0%} during the flood",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    for (label, r), c in zip(runs.items(), ("#ff7f0e", "#1f77b4")):
        t, lat = r["neighbour_lat"]
        if t.shape[0]:
            edges = r["edges"]
            idx = np.digitize(t, edges) - 1
            p99 = [np.percentile(lat[idx == k], 99) if (idx == k).any() else np.nan for k in range(len(edges) - 1)]
            ax.plot((edges[:-1] + edges[1:]) / 2, p99, color=c, lw=1.6, label=label)
    ax.axvspan(any_r["flood_start_s"], any_r["edges"][-1], color="#d62728", alpha=0.06)
    ax.set_yscale("log")
    ax.set_xlim(0, any_r["edges"][-1])
    ax.set_xlabel("simulated time of arrival (s)")
    ax.set_ylabel("neighbours' p99 latency (ms, log scale)")
    ax.set_title("latency of the three neighbours", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.suptitle(f"Noisy neighbour: '{any_r['flood_task']}' floods at 10x its share from "
                 f"t = {any_r['flood_start_s']:g} s (shaded)", fontsize=11)
    text = common.caption_from(any_r["summary"], f"Service per {BIN_S:g} s bin from requests.csv: {METHOD}")
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    def load(args):
        root = Path(args.results)
        runs = {label: analyse(root / name) for name, label in RUNS if (root / name / "summary.json").is_file()}
        return runs, f"no compare results in {root}"

    return common.main(FIGURE, __doc__, argv, load, draw, headlines)

if __name__ == "__main__":
    sys.exit(main())

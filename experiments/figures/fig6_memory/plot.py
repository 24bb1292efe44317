"""Figure 6: memory footprint against the number of tasks.

Reads the sweep folder ``--results``/``sim`` (``fmplex-sim sweep experiments/figures/fig6_memory/sweep.yaml``:
``cluster.memory_gib``, the simulator's memory model, per task count and system) and, when
``--harness-memory DIR`` is given, every ``summary.json`` under DIR that carries
``cluster.memory_measured`` (written by ``fmplex-exec replay``): the measured weight bytes and
peak RSS next to the model's ``memory_gib`` for the same run. Without it the figure shows the
simulator only and its caption says so. Writes ``fig6_memory.png/.pdf`` and
``headlines.json["fig6_memory"]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

FIGURE = "fig6_memory"
STYLE = {"spatial": ("o", "-"), "colocate": ("s", "--"), "fmplex": ("^", "-")}


def collect_sim(folder: Path) -> tuple[dict, dict]:
    """({system: [(tasks, memory_gib, gpus_used, unplaced), ...] sorted by tasks}, one summary)."""
    out: dict = {}
    s = {}
    for r in common.sweep_points(folder):
        s = r["summary"]
        n = len(s["per_task"])
        out.setdefault(common.system_of(s), []).append(
            (n, s["cluster"]["memory_gib"], s["cluster"]["gpus_used"], s["cluster"]["tasks_unplaced"]))
    for v in out.values():
        v.sort()
    return out, s


def collect_harness(folder: Path) -> list[dict]:
    """One entry per fmplex-exec replay summary under ``folder`` with measured memory."""
    runs = []
    for p in sorted(folder.rglob("summary.json")):
        s = common.read_json(p)
        m = s.get("cluster", {}).get("memory_measured")
        if not m:
            continue
        runs.append({"path": str(p.parent), "system": s["system"]["placement"], "tasks": s["cluster"]["tasks_hosted"],
                     "weights_gib": m.get("weights_gib"), "peak_rss_gib": m.get("peak_rss_gib"),
                     "model_gib": s["cluster"]["memory_gib"], "device": s["cluster"].get("torch_device")
                     or s["cluster"]["device"]})
    return runs


def headlines(sim: dict, harness: list[dict] | None, harness_dir: str | None) -> dict:
    h: dict = {"scenario": "tasks round-robin over 7 backbones (bench.py's), LoRA + head each, 16 x H100-80GB, "
               "light load; fmplex with spread_idle off",
               "memory_gib": {s: {str(n): m for n, m, _, _ in v} for s, v in sim.items()},
               "unplaced_anywhere": any(u for v in sim.values() for *_, u in v)}
    if "fmplex" in sim:
        top = max(n for n, *_ in sim["fmplex"])
        fm = dict((n, m) for n, m, *_ in sim["fmplex"])[top]
        h["at_tasks"] = top
        for base in ("spatial", "colocate"):
            if base in sim:
                b = dict((n, m) for n, m, *_ in sim[base]).get(top)
                h[f"memory_ratio_{base}_over_fmplex"] = b / fm if b and fm else None
                h[f"memory_saving_vs_{base}"] = common.reduction(fm, b)
    if harness:
        h["harness"] = {"folder": harness_dir, "runs": harness}
    else:
        h["harness"] = None
        h["harness_note"] = ("no harness measurement given (--harness-memory DIR); simulator model only"
                             if harness_dir is None else f"no fmplex-exec summary with memory_measured under {harness_dir}")
    return h


def draw(sim: dict, sample: dict, harness: list[dict] | None, harness_dir: str | None, out: Path) -> list[Path]:
    plt = common.pyplot()
    n_panels = 2 if harness else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6.4 * n_panels, 4.4), squeeze=False)
    ax = axes[0][0]
    for s in common.SYSTEMS:
        if s not in sim:
            continue
        marker, ls = STYLE[s]
        wide = s == "spatial"  # drawn wide underneath: spatial and colocate both hold one replica per task
        ax.plot([n for n, *_ in sim[s]], [m for _, m, *_ in sim[s]], ls, marker=marker, color=common.SYSTEM_COLORS[s],
                lw=5 if wide else 1.6, alpha=0.45 if wide else 1.0, ms=8 if wide else 5, label=f"{s} (simulator model)")
    counts = sorted({n for v in sim.values() for n, *_ in v})
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    from matplotlib.ticker import NullLocator

    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log")
    ax.set_xlabel("number of tasks (log scale)")
    ax.set_ylabel("accelerator memory (GiB, log scale)")
    ax.set_title("Memory footprint, simulator model", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if harness:
        ax = axes[0][1]
        for s in common.SYSTEMS:
            runs = sorted((r for r in harness if r["system"] == s), key=lambda r: r["tasks"])
            if not runs:
                continue
            c = common.SYSTEM_COLORS[s]
            x = [r["tasks"] for r in runs]
            ax.plot(x, [r["weights_gib"] for r in runs], "-o", color=c, label=f"{s}: measured weights")
            ax.plot(x, [r["model_gib"] for r in runs], ":x", color=c, label=f"{s}: model (same run)")
            if any(r["peak_rss_gib"] for r in runs):
                ax.plot(x, [r["peak_rss_gib"] for r in runs], "--", color=c, alpha=0.5, label=f"{s}: peak RSS")
        ax.set_xlabel("number of tasks")
        ax.set_ylabel("memory (GiB)")
        devices = sorted({str(r["device"]) for r in harness})
        ax.set_title(f"Harness (fmplex-exec replay on {', '.join(devices)}): measured vs model", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Memory footprint vs number of tasks", fontsize=11)
    extra = (("Left: s" if harness else "S") + "imulator memory model (cluster.memory_gib); tasks round-robin over 7 backbones, LoRA + head "
             "each; fmplex with spread_idle off. "
             + (f"Right: measured by fmplex-exec replays in {harness_dir}." if harness
                else "Simulator only: no harness measurement was given (--harness-memory DIR)."))
    text = common.caption_from(sample, extra)
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    def add_arguments(p) -> None:
        p.add_argument("--harness-memory", metavar="DIR",
                       help="folder of fmplex-exec replay results (summary.json with cluster.memory_measured)")

    def load(args):
        folder = Path(args.results) / "sim"
        if not (folder / "sweep.csv").is_file():
            return None, f"no sweep results in {folder}"
        sim, sample = collect_sim(folder)
        harness = None
        if args.harness_memory:
            if not Path(args.harness_memory).is_dir():
                print(f"{FIGURE}: --harness-memory {args.harness_memory} is not a folder; simulator only")
            else:
                harness = collect_harness(Path(args.harness_memory)) or None
        return (sim, sample, harness, args.harness_memory), ""

    return common.main(FIGURE, __doc__, argv, load, lambda d, out: draw(*d, out),
                       lambda d: headlines(d[0], d[2], d[3]), add_arguments)

if __name__ == "__main__":
    sys.exit(main())

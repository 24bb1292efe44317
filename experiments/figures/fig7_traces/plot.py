"""Figure 7: replay of public multi-tenant traces (Alibaba GenAI 2026 tenants, ServeGen
clients) under spatial, colocate and fmplex.

Reads one compare folder per trace under ``--results`` (``alibaba/`` and ``servegen/``, written
by ``fmplex-sim compare experiments/traces/alibaba_tenants.yaml`` and
``experiments/traces/servegen_clients.yaml`` with the windows ``traces.yaml`` gives). When the
public traces are missing, ``make_figures.py`` runs nothing and calls this script with
``--skipped REASON``, which is recorded in ``headlines.json``. Writes ``fig7_traces.png/.pdf``
and ``headlines.json["fig7_traces"]``: per trace and system, mean/p99 latency, SLO attainment,
unplaced tasks and memory, and fmplex's reductions against each baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

FIGURE = "fig7_traces"
TRACES = (("alibaba", "Alibaba GenAI 2026 tenants"), ("servegen", "ServeGen m-small clients"))


def collect(root: Path) -> dict:
    """{trace: {system: summary}} for the traces present."""
    out: dict = {}
    for key, _ in TRACES:
        for s in common.SYSTEMS:
            p = root / key / s / "summary.json"
            if p.is_file():
                out.setdefault(key, {})[s] = common.read_json(p)
    return out


def headlines(data: dict) -> dict:
    h: dict = {"scenario": "public traces replayed through experiments/traces configs (roofline, H100-80GB)"}
    for trace, by_sys in data.items():
        any_s = next(iter(by_sys.values()))
        e: dict = {"requests": any_s["requests"]["arrived"], "tasks": len(any_s["per_task"]),
                   "duration_s": any_s["duration_s"], "gpus": any_s["cluster"]["gpus"], "systems": {}}
        for s, sm in by_sys.items():
            e["systems"][s] = {"mean_ms": sm["latency_ms"]["mean"], "p99_ms": sm["latency_ms"]["p99"],
                               "slo_attainment": sm["slo_attainment"], "tasks_unplaced": sm["cluster"]["tasks_unplaced"],
                               "memory_gib": sm["cluster"]["memory_gib"]}
        if "fmplex" in by_sys:
            fm = by_sys["fmplex"]
            for base in ("spatial", "colocate"):
                if base in by_sys:
                    b = by_sys[base]
                    e[f"mean_reduction_vs_{base}"] = common.reduction(fm["latency_ms"]["mean"], b["latency_ms"]["mean"])
                    e[f"p99_reduction_vs_{base}"] = common.reduction(fm["latency_ms"]["p99"], b["latency_ms"]["p99"])
                    e[f"memory_saving_vs_{base}"] = common.reduction(fm["cluster"]["memory_gib"], b["cluster"]["memory_gib"])
        h[trace] = e
    return h


def draw(data: dict, out: Path) -> list[Path]:
    plt = common.pyplot()
    traces = [(k, label) for k, label in TRACES if k in data]
    panels = (("mean latency (ms, log)", lambda s: s["latency_ms"]["mean"], True),
              ("p99 latency (ms, log)", lambda s: s["latency_ms"]["p99"], True),
              ("SLO attainment", lambda s: s["slo_attainment"], False),
              ("memory (GiB)", lambda s: s["cluster"]["memory_gib"], False))
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2))
    x = np.arange(len(traces))
    w = 0.26
    for ax, (label, value, log) in zip(axes, panels):
        for i, s in enumerate(common.SYSTEMS):
            vals = [value(data[k][s]) if s in data[k] else None for k, _ in traces]
            ax.bar(x + (i - 1) * w, [v or 0 for v in vals], w, color=common.SYSTEM_COLORS[s], label=s,
                   edgecolor="black", lw=0.4)
        ax.set_xticks(x)
        ax.set_xticklabels([lab.replace(" ", "\n", 1) for _, lab in traces], fontsize=8)
        ax.set_ylabel(label)
        ax.set_title(label.split(" (")[0], fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[2].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    descr = []
    for k, lab in traces:
        s = next(iter(data[k].values()))
        unpl = data[k].get("spatial", {}).get("cluster", {}).get("tasks_unplaced")
        descr.append(f"{lab}: {s['requests']['arrived']:,} requests, {len(s['per_task'])} tasks, "
                     f"{s['duration_s']:.0f} s, {s['cluster']['gpus']} GPUs"
                     + (f" (spatial leaves {unpl} tasks unplaced)" if unpl else ""))
    fig.suptitle("Trace replay: multi-tenant LoRA traffic (Alibaba) and per-client patterns (ServeGen)", fontsize=11)
    any_s = next(iter(data[traces[0][0]].values()))
    text = common.caption(any_s["latency_model"], any_s["cluster"]["device"], None, "; ".join(descr))
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    return common.main(FIGURE, __doc__, argv,
                       lambda a: (collect(Path(a.results)), f"no trace replay results in {a.results}"),
                       draw, headlines)

if __name__ == "__main__":
    sys.exit(main())

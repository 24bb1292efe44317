"""Figure 2: latency CDFs of spatial, colocate and fmplex at one load.

Reads the compare folder ``--results`` (``fmplex-sim compare experiments/figures/fig2_cdf/config.yaml``:
one subfolder per system with ``requests.csv`` and ``summary.json``). Writes ``fig2_cdf.png/.pdf``
and ``headlines.json["fig2_cdf"]``: the load, every system's mean/p50/p99 latency and SLO
attainment, and fmplex's reductions of mean, p50 and p99 against each baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

FIGURE = "fig2_cdf"


def collect(folder: Path) -> dict:
    """{system: (summary, latencies in ms)} for the systems present, in the usual order."""
    runs = {}
    for s in common.SYSTEMS:
        d = folder / s
        if (d / "summary.json").is_file():
            runs[s] = (common.read_json(d / "summary.json"), common.Requests(d / "requests.csv").latency_ms)
    return runs


def headlines(runs: dict) -> dict:
    any_s = next(iter(runs.values()))[0]
    out: dict = {
        "load_rps": round(any_s["requests"]["arrived"] / any_s["duration_s"], 1),
        "scenario": f"{len(any_s['per_task'])} tasks over BERT-base, ViT-base, Chronos-T5-small, "
                    f"{any_s['cluster']['gpus']} x {any_s['cluster']['device']}, roofline",
        "systems": {s: {**sm["latency_ms"], "slo_attainment": sm["slo_attainment"]} for s, (sm, _) in runs.items()},
    }
    if "fmplex" in runs:
        fm = runs["fmplex"][0]["latency_ms"]
        for base in ("spatial", "colocate"):
            if base in runs:
                b = runs[base][0]["latency_ms"]
                for stat in ("mean", "p50", "p99"):
                    out[f"{stat}_reduction_vs_{base}"] = common.reduction(fm[stat], b[stat])
        out["latency_reduction_vs_spatial"] = out.get("mean_reduction_vs_spatial")
        out["latency_reduction_vs_colocate"] = out.get("mean_reduction_vs_colocate")
    return out


def draw(runs: dict, out: Path) -> list[Path]:
    plt = common.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for s, (sm, lat) in runs.items():
        x, y = common.ecdf(lat)
        c = common.SYSTEM_COLORS[s]
        label = f"{s}: p50 {sm['latency_ms']['p50']:.2f}, p99 {sm['latency_ms']['p99']:.2f} ms"
        a1.plot(x, y, color=c, lw=1.6, label=label)
        a2.plot(x, np.clip(1.0 - y + 1.0 / max(1, len(y)), 1e-6, 1), color=c, lw=1.6, label=s)
    a1.set_xscale("log")
    a1.set_xlabel("latency (ms, log scale)")
    a1.set_ylabel("fraction of requests completed within x")
    a1.set_title("CDF", fontsize=10)
    a1.legend(fontsize=8, loc="lower right")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("latency (ms, log scale)")
    a2.set_ylabel("fraction of requests slower than x (log scale)")
    a2.set_title("tail (complementary CDF)", fontsize=10)
    a2.axhline(0.01, color="grey", lw=0.8, ls=":")
    a2.text(a2.get_xlim()[0], 0.011, " p99", fontsize=7, color="grey")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3, which="both")
    any_s = next(iter(runs.values()))[0]
    load = any_s["requests"]["arrived"] / any_s["duration_s"]
    fig.suptitle(f"Latency distribution at {load:,.0f} requests/s "
                 f"({len(any_s['per_task'])} tasks, identical request stream for every system)", fontsize=11)
    text = common.caption_from(any_s, "Tasks over BERT-base, ViT-base and Chronos-T5-small, Zipf(0.8) "
                               "popularity, SLO 100 ms")
    return common.save(fig, out, FIGURE, text)


def main(argv: list[str] | None = None) -> int:
    return common.main(FIGURE, __doc__, argv,
                       lambda a: (collect(Path(a.results)), f"no compare results in {a.results}"),
                       draw, headlines)

if __name__ == "__main__":
    sys.exit(main())

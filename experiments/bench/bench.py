"""Simulator throughput benchmark: simulated requests per wall-second, per system.

Scenario: 92 tasks over 7 backbones (one per family) on 16 H100s, Zipf-skewed rates, at
least 1,000,000 requests. The clock covers the engine run only (not workload generation or
writing results). Each system runs ``--repeat`` times in one process: the first run is
reported as ``cold`` (it also pays for growing the allocator's memory), the median of all runs
as the headline. Usage: python experiments/bench/bench.py [--requests N] [--repeat R] [--out DIR]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from fmplex_sim.config import parse_config
from fmplex_sim.results import provenance, results_dir, write_json
from fmplex_sim.run import build_workload, simulate

BACKBONES = ["bert-base", "vit-base", "chronos-t5-small", "clip-vit-b16",
             "moment-1-base", "qwen2.5-0.5b", "minilm-l6"]


def scenario(total_rps: float, duration_s: float, n_tasks: int = 92, gpus: int = 16) -> dict:
    """92 tasks round-robin over 7 backbones; task k gets a Zipf(0.8) share of ``total_rps``."""
    shares = [1.0 / (k + 1) ** 0.8 for k in range(n_tasks)]
    z = sum(shares)
    tasks = []
    for k in range(n_tasks):
        bb = BACKBONES[k % len(BACKBONES)]
        tasks.append({
            "name": f"t{k:02d}-{bb}",
            "backbone": bb,
            "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 4}],
            "slo_ms": 200,
            "arrival": {"process": "poisson", "rate_rps": total_rps * shares[k] / z},
        })
    return {
        "seed": 7, "duration_s": duration_s, "drain_s": 5,
        "cluster": {"device": "H100-80GB", "gpus": gpus},
        "system": "fmplex", "tasks": tasks,
    }


def bench_traces(shared: Path) -> list[dict]:
    """Load times (best of 3): the Azure conv trace, and a 1,000,000-row native CSV."""
    import tempfile

    import numpy as np

    from fmplex_sim.traces import load_trace
    from fmplex_sim.traces.formats.native import write_native

    def best(fn, n=3):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    rows = []
    conv = shared / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
    if conv.exists():
        t, tr = best(lambda: load_trace("azure", str(conv)))
        rows.append({"load": "azure conv", "requests": len(tr), "seconds": round(t, 3)})
    rng = np.random.default_rng(1)
    n = 1_000_000
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "native_1m.csv"
        arrival = np.cumsum(rng.exponential(0.001, n))
        tasks = np.array([f"task-{k}" for k in range(92)], dtype=object)[rng.integers(0, 92, n)]
        write_native(str(path), arrival, tasks, rng.integers(1, 512, n), rng.integers(0, 256, n))
        t, tr = best(lambda: load_trace("native", str(path)))
        rows.append({"load": "native CSV", "requests": len(tr), "seconds": round(t, 3)})
    for r in rows:
        print(f"load {r['load']:>11}: {r['requests']:>9,} requests in {r['seconds']:.3f} s", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000, help="target request count")
    ap.add_argument("--duration", type=float, default=100.0, help="simulated seconds of arrivals")
    ap.add_argument("--systems", default="fmplex,colocate,spatial")
    ap.add_argument("--repeat", type=int, default=3, help="runs per system (median reported)")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--traces", default="../shared/traces", help="folder of the public traces")
    args = ap.parse_args()
    trace_rows = bench_traces(Path(args.traces))
    cfg = parse_config(scenario(args.requests / args.duration, args.duration), "bench scenario")
    wl = build_workload(cfg)
    rows = []
    print(f"{len(cfg.tasks)} tasks, 7 backbones, {cfg.cluster.gpus} x {cfg.cluster.device}, "
          f"{len(wl):,} requests", flush=True)
    for name in args.systems.split(","):
        c = cfg.with_system(name)
        rates, walls = [], []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            out = simulate(c, wl)
            walls.append(time.perf_counter() - t0)
            rates.append(out.summary["run"]["sim_requests_per_s"])
        s = out.summary
        row = {
            "system": name,
            "requests": len(wl),
            "sim_requests_per_s_median": round(statistics.median(rates)),
            "sim_requests_per_s_cold": round(rates[0]),
            "sim_requests_per_s_all": [round(r) for r in rates],
            "engine_wall_s_median": round(len(wl) / statistics.median(rates), 3),
            "with_summary_wall_s_median": round(statistics.median(walls), 3),
            "batches": s["cluster"]["batches"],
            "mean_batch_size": s["cluster"]["mean_batch_size"],
            "completed": s["requests"]["completed"],
            "latency_p99_ms": s["latency_ms"]["p99"],
        }
        rows.append(row)
        print(f"{name:>9}: {row['sim_requests_per_s_median']:>10,} simulated requests/s median of "
              f"{len(rates)} (cold {row['sim_requests_per_s_cold']:,}; {row['batches']:,} batches, "
              f"mean batch {row['mean_batch_size']})", flush=True)
    with results_dir(args.out) as tmp:
        write_json(tmp / "bench.json", {
            "machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0]},
            "rows": rows,
            "trace_loading": trace_rows,
            "provenance": provenance(cfg.seed, {"kind": "roofline", "source": "analytic"}),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Harness: the other tasks' p99 while one task's extensions are swapped for a new version.

Four tasks on MiniLM-L6 (real weights, LoRA rank 8 and a head each) share one backbone on the
CPU under fmplex/bfq, Poisson load; task ``upd`` is updated at ``--update-s`` (``update_s``:
same spec, new weights, built beside the serving thread and swapped between two batches, see
fmplex_exec/lifecycle.py). Replays without and with the update alternate (``--pairs`` pairs,
identical request streams), each in its own process, so the machine's drift hits both sides.
For each pair, the other tasks' p99 over the requests that arrived in
``[update_s - 1, update_s + 3)`` is compared with the same window of the run without the update
(target: within 10%), per pair and pooled over all pairs (a window holds about 175 requests,
so one pair's p99 is its second-worst request). Because the streams are identical, the JSON also
compares the very requests that arrived while the update was under way (``around_swap``), and
holds how long the build took, how long the swap held the instance's lock, and whole-run numbers.

Usage: python experiments/lifecycle/update_swap.py --out results/lifecycle/update_swap.json
       [--pairs 6] [--duration 16] [--update-s 8] [--rate 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "cpu-2core" / "minilm-l6.csv"
TASKS = ("upd", "a", "b", "c")
WINDOW = (-1.0, 3.0)  # seconds around update_s


def config(args, update: bool) -> dict:
    tasks = []
    for name in TASKS:
        t = {"name": name, "backbone": "minilm-l6", "slo_ms": 500, "input_len": 16,
             "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 4}],
             "arrival": {"process": "poisson", "rate_rps": args.rate}}
        if update and name == "upd":
            t["update_s"] = args.update_s
        tasks.append(t)
    return {"seed": args.seed, "duration_s": args.duration, "drain_s": 10,
            "cluster": {"device": "CPU", "gpus": 1}, "latency_model": {"profile": str(PROFILE)},
            "system": "fmplex", "tasks": tasks}


def replay(raw: dict) -> dict:
    """One replay in a process of its own (fmplex_exec.isolated): summary, lifecycle events
    and per-request latencies."""
    from fmplex_exec.isolated import replay_in_child

    return replay_in_child(raw, "update_swap")


def others_in(run: dict, lo: float, hi: float) -> np.ndarray:
    """Latencies (ms, nan if not completed) of the other tasks' requests that arrived in
    ``[lo, hi)``, in request order: the same requests in every run of one stream."""
    task = np.asarray(run["task"])
    arr = np.asarray(run["arrival_s"])
    lat = np.asarray(run["latency_ms"], dtype=float)
    others = np.isin(task, [run["tasks"].index(n) for n in TASKS if n != "upd"])
    return lat[others & (arr >= lo) & (arr < hi)]


def p99(lat: np.ndarray) -> float:
    return float(np.percentile(lat[np.isfinite(lat)], 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--duration", type=float, default=16.0)
    ap.add_argument("--update-s", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=15.0, help="requests/s per task")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from fmplex_sim.results import provenance

    lo, hi = args.update_s + WINDOW[0], args.update_s + WINDOW[1]
    pairs = []
    pooled: dict[str, list] = {"without": [], "with": []}
    for k in range(args.pairs):
        base = replay(config(args, update=False))
        upd = replay(config(args, update=True))
        swap = next(e for e in upd["events"] if e["event"] == "swapped")
        began = next(e for e in upd["events"] if e["event"] == "update")["t_s"]
        w_base, w_upd = others_in(base, lo, hi), others_in(upd, lo, hi)
        pooled["without"].append(w_base)
        pooled["with"].append(w_upd)
        # the requests that can have waited for the swap: arrived from the update's start to its end
        near = (began - 0.1, swap["t_s"] + 0.05)
        n_base, n_upd = others_in(base, *near), others_in(upd, *near)
        p_base, p_upd = p99(w_base), p99(w_upd)
        pair = {
            "pair": k, "window_s": [lo, hi], "requests_in_window": int(len(w_base)),
            "others_p99_ms_without": round(p_base, 3), "others_p99_ms_with": round(p_upd, 3),
            "ratio": round(p_upd / p_base, 4),
            "swap": swap,
            "around_swap": {"arrived_s": [round(near[0], 4), round(near[1], 4)], "requests": int(len(n_base)),
                            "mean_ms_without": round(float(np.nanmean(n_base)), 3) if len(n_base) else None,
                            "mean_ms_with": round(float(np.nanmean(n_upd)), 3) if len(n_upd) else None,
                            "max_ms_without": round(float(np.nanmax(n_base)), 3) if len(n_base) else None,
                            "max_ms_with": round(float(np.nanmax(n_upd)), 3) if len(n_upd) else None},
            "whole_run_p99_ms": {"without": base["summary"]["latency_ms"]["p99"],
                                 "with": upd["summary"]["latency_ms"]["p99"]},
            "completed": {"without": base["summary"]["requests"]["completed"],
                          "with": upd["summary"]["requests"]["completed"]},
        }
        pairs.append(pair)
        print(json.dumps(pair), flush=True)
    ratio = statistics.median(p["ratio"] for p in pairs)
    pool = {k: p99(np.concatenate(v)) for k, v in pooled.items()}
    result = {
        "what": "others' p99 in the swap window, with the update vs without (same stream)",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "pairs": pairs, "median_ratio": ratio,
        "pooled_p99_ms": {k: round(v, 3) for k, v in pool.items()},
        "pooled_ratio": round(pool["with"] / pool["without"], 4),
        "target": 1.10, "met": ratio <= 1.10 and pool["with"] <= 1.10 * pool["without"],
        "provenance": provenance(args.seed, {"kind": "profile", "source": str(PROFILE)}, sys.argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"median ratio {ratio:.3f}, pooled ratio {result['pooled_ratio']:.3f} (target <= 1.10); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

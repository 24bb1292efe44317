"""Does fmplex < colocate < spatial (mean and p99 latency) hold at moderate load?

Draws random scenarios: 1-3 backbones out of 11, at least 3 tasks per backbone with LoRA
adapters and heads, H100/A100/L4, 1-3 devices, Poisson or Gamma arrivals, offered load 15-50%
of the cluster (by batch-1 roofline service time), and compares the three systems on the same
request stream. Writes ordering.csv and prints a tally.

Usage: python experiments/ordering/ordering.py --seeds 21,22 --trials 12 --out results/ordering
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from fmplex_sim.catalog import get_device
from fmplex_sim.cluster import ClusterCost
from fmplex_sim.config import parse_config
from fmplex_sim.latency.roofline import RooflineModel
from fmplex_sim.run import build_workload, simulate

BACKBONES = ["minilm-l6", "bert-base", "bert-large", "vit-base", "vit-large", "chronos-t5-small",
             "chronos-t5-base", "clip-vit-b16", "moment-1-base", "llama-3.2-1b", "qwen2.5-0.5b"]
DEVICES = ["H100-80GB", "A100-80GB", "L4-24GB"]
SYSTEMS = ("fmplex", "colocate", "spatial")


def scenario(rng: np.random.Generator) -> dict:
    device = DEVICES[rng.integers(len(DEVICES))]
    gpus = int(rng.integers(1, 4))
    nbb = int(rng.integers(1, 4))
    bbs = [str(b) for b in rng.choice(BACKBONES, nbb, replace=False)]
    ntasks = int(rng.integers(3 * nbb, 4 * nbb + 4))
    tasks = []
    for k in range(ntasks):
        arrival = {"process": "poisson", "rate_rps": 1.0}
        if rng.random() >= 0.6:
            arrival = {"process": "gamma", "rate_rps": 1.0, "cv": float(rng.uniform(1, 3))}
        tasks.append({
            "name": f"t{k}", "backbone": bbs[k % nbb], "slo_ms": 200, "arrival": arrival,
            "extensions": [{"kind": "lora", "rank": int(rng.choice([4, 8, 16]))},
                           {"kind": "head", "outputs": int(rng.integers(2, 100))}],
        })
    raw = {"seed": int(rng.integers(1 << 30)), "duration_s": 20, "drain_s": 5,
           "cluster": {"device": device, "gpus": gpus}, "system": "fmplex", "tasks": tasks}
    cfg = parse_config(raw, "ordering")
    cost = ClusterCost(get_device(device), gpus, RooflineModel(), 32)
    per_request = [cost.request_s(t, 1.0, batch=1) for t in cfg.tasks]
    load = float(rng.uniform(0.15, 0.5))
    share = rng.dirichlet(np.full(ntasks, 2.0))
    for t, s, r in zip(tasks, share, per_request):
        t["arrival"]["rate_rps"] = float(load * gpus * s / r)
    raw["_load"] = load
    return raw


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="21,22")
    ap.add_argument("--trials", type=int, default=12, help="scenarios per seed")
    ap.add_argument("--out", default="results/ordering")
    args = ap.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rng = np.random.default_rng(seed)
        for trial in range(args.trials):
            raw = scenario(rng)
            load = raw.pop("_load")
            cfg = parse_config(raw, "ordering")
            wl = build_workload(cfg)
            res = {s: simulate(cfg.with_system(s), wl).summary["latency_ms"] for s in SYSTEMS}
            row = {"seed": seed, "trial": trial, "device": cfg.cluster.device, "gpus": cfg.cluster.gpus,
                   "backbones": " ".join(sorted({t.backbone for t in cfg.tasks})), "tasks": len(cfg.tasks),
                   "load": round(load, 3)}
            for s in SYSTEMS:
                row[f"{s}_mean_ms"], row[f"{s}_p99_ms"] = res[s]["mean"], res[s]["p99"]
            for k in ("mean", "p99"):
                row[f"fmplex_lt_colocate_{k}"] = res["fmplex"][k] < res["colocate"][k]
                row[f"colocate_lt_spatial_{k}"] = res["colocate"][k] < res["spatial"][k]
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ordering.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    for col in [c for c in rows[0] if c.endswith(("_mean", "_p99")) and "_lt_" in c]:
        print(f"{col}: {sum(r[col] for r in rows)}/{len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

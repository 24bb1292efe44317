"""Simulate a validation folder's request stream again and compare it with the replays it holds.

    python experiments/validation/resimulate.py results/validation/minilm_low [--profile FILE]

The replays (`<system>/real*/requests.csv`) are what the host measured and stay as they are;
only the simulated side is recomputed, with this checkout's simulator and the folder's
`profile.csv` (or `--profile`, e.g. the same profile with rows added). Prints, per system, the
p50 and p99 errors the folder's `validation.json` recorded and those of the new simulation.
Nothing is written. A change to the simulator can so be judged on replays that took many
minutes to measure, in seconds; the replays' own noise is still in them (`round_spread`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from fmplex_sim.config import LatencyConfig, load_config
from fmplex_sim.latency.profile import ProfileModel
from fmplex_sim.metrics import read_requests_csv
from fmplex_sim.run import prepare, simulate
from fmplex_sim.validation import compare_runs, ranking


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `fmplex-exec validate` results folder")
    ap.add_argument("--profile", type=Path, help="profile CSV (default: the folder's profile.csv)")
    args = ap.parse_args()
    folder: Path = args.folder
    profile = args.profile or folder / "profile.csv"
    before = json.loads((folder / "validation.json").read_text())
    cfg = load_config(folder / "config.yaml")
    cfg = replace(cfg, latency_model=LatencyConfig(kind="profile", path=str(profile)))
    cfg, wl, _ = prepare(cfg)
    latency = ProfileModel(profile)
    systems = {}
    print(f"{folder}: {len(wl)} requests, profile {profile}")
    print(f"{'system':>9}  {'p50 err before -> now':>22}  {'p99 err before -> now':>22}")
    for name, old in before["systems"].items():
        c = cfg.with_system(name)
        reals = sorted((folder / name).glob("real*"), key=lambda p: (len(p.name), p.name))
        real = [read_requests_csv(d / "requests.csv", wl.tasks) for d in reals]
        for rec in real:
            if not np.allclose(rec.arrival_s, wl.arrival_s, atol=2e-6):
                sys.exit(f"{folder}: {name}'s replay does not hold this config's request stream")
        entry = compare_runs(real, simulate(c, wl, latency=latency).records, c.tasks, c.duration_s)
        systems[name] = entry
        o, b = entry["overall"], old["overall"]
        print(f"{name:>9}  {b['p50_rel_err'] * 100:+9.1f}% -> {o['p50_rel_err'] * 100:+7.1f}%  "
              f"{b['p99_rel_err'] * 100:+9.1f}% -> {o['p99_rel_err'] * 100:+7.1f}%")
    real_rank, sim_rank = ranking(systems, "real"), ranking(systems, "sim")
    print(f"ranking by mean latency: real {', '.join(real_rank)}; sim {', '.join(sim_rank)} "
          f"({'same' if real_rank == sim_rank else 'DIFFERENT'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

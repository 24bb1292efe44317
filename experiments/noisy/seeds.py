"""Simulator: light-neighbour p99 against alone, per seed, for the scenarios of tests/test_noisy.py.

Prints, per setup and seed, each backlogged task's service over its fair share and, for each
light task, its p99 shared / alone, shared over the same run without the flood, and the
fraction of the backbone's time it uses alone against its weighted share (all tasks'
weights), under bfq or (with --light-first) bfq with ``light_first``. A light task that uses more than its share alone cannot be served as it is
alone while the backlogged tasks keep their fair share of backbone time.

Also prints how many requests the backlogged tasks completed, with the pipeline depth of the
config or the one given.

Usage (from the repository root): python experiments/noisy/seeds.py [--light-first] [--pipeline-depth N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import test_noisy as tn  # noqa: E402  (the scenario generator and configs the tests use)

from fmplex_sim.run import simulate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--light-first", action="store_true", help="bfq with light_first")
    ap.add_argument("--pipeline-depth", type=int, default=None,
                    help="batches in flight per instance (default: the config's, 2)")
    args = ap.parse_args()
    sched = "bfq+lf" if args.light_first else "bfq"

    depth = {} if args.pipeline_depth is None else {"pipeline_depth": args.pipeline_depth}

    def cfg(setup, tasks, seed):
        return tn._cfg(setup, tasks, sched, seed, **depth)

    for setup in tn.SETUPS:
        cap = tn.capacity_rps(setup)
        dur = tn.SETUPS[setup][5]
        for seed in tn.SEEDS:
            tasks = tn.scenario(seed, cap)
            s = simulate(cfg(setup, tasks, seed)).summary
            calm = simulate(cfg(setup, [t for t in tasks if t[0] != "flood"], seed)).summary
            shares = {n: round(r, 3) for n, r in tn.fair_share_ratios(s, tasks).items()}
            light = []
            share = tn.weighted_shares(tasks)
            for n, w, r in tasks:
                if n.startswith("light"):
                    a = simulate(cfg(setup, [(n, w, r)], seed)).summary["per_task"][n]
                    alone = a["latency_ms"]["p99"]
                    shared = s["per_task"][n]["latency_ms"]["p99"]
                    without = calm["per_task"][n]["latency_ms"]["p99"]
                    light.append(f"{n} {shared:.1f}/{alone:.1f} ms = {shared / alone:.2f}x "
                                 f"({shared / without:.2f}x without the flood), "
                                 f"alone uses {a['service_s'] / dur:.2f} of the backbone (share {share[n]:.2f})")
            done = sum(p["completed"] for n, p in s["per_task"].items() if not n.startswith("light"))
            print(setup, f"seed {seed}", sched, shares, f"backlogged completed {done};", "; ".join(light))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

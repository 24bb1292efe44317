"""How much the ``throttle`` term moves from one series of batches to the next, in one process.

    python experiments/validation/throttle_series.py [--backbone minilm-l6] [--series 6]
        [--batches 12] [--shapes 1x16,1x64,1x128]

The profiler's ``throttle`` rows time a batch on a new serving thread while another thread's
OpenMP pool waits idle in the process (every pool then sleeps between parallel loops,
``fmplex_exec.threads``), minus the same batch with the pool alone (the median of a series run
just before). This script repeats that pair of series ``--series`` times per shape, on an
instance holding a LoRA adapter, and prints each series' median and mean extra ms (as the
profiler summarizes them), so one sees whether the spread lies within a series (a batch pays
a wake-up or not) or between series (the host's state moves, so a row needs many series).

Nothing is written; the host must be otherwise idle (2 cores: nothing else running).
"""

from __future__ import annotations

import argparse
import sys

from fmplex_exec import profiler as P
from fmplex_exec.backbones import load_backbone
from fmplex_exec.threads import off_main
from fmplex_exec.vfm import ExecRequest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--series", type=int, default=6)
    ap.add_argument("--batches", type=int, default=12, help="timed batches per series")
    ap.add_argument("--shapes", default="1x16,1x64,1x128")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in part.split("x")) for part in args.shapes.split(",")]

    def run() -> None:
        fm = P.lora_harness_fm(load_backbone(args.backbone, device="cpu", dtype="float32", seed=0))
        print(f"throttle: extra ms per series of {args.batches} batches beside an idle pool, "
              "median | mean")
        for b, s in shapes:
            reqs = [ExecRequest("plain", s)] * b
            meds, means = [], []
            for _ in range(args.series):
                row = P.summarize(P.throttle_samples(fm, reqs, args.batches), extra_cost=True)
                meds.append(row["median_ms"])
                means.append(row["mean_ms"])
            print(f"{b}x{s:<5d} " + " ".join(f"{m:5.1f}" for m in meds) + "  | "
                  + " ".join(f"{m:5.1f}" for m in means), flush=True)

    off_main(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())

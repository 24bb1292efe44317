"""How many batches a wake-up lasts: each batch after an idle gap, against a hot series.

    python experiments/validation/wake_settle.py [--backbone minilm-l6] [--gap 200]
        [--samples 25] [--after 4] [--shapes 1x32,1x64] [--beside self,bert-base]

On an instance holding a LoRA adapter (built and served off the main thread, as the runtime
does), per shape and per condition (the instance's thread pool alone in the process; beside
the idle pool of each instance named by ``--beside``, ``self`` being the measured instance
itself as the profiler's rows have it, any other name a LoRA instance of that backbone: every
pool then throttled, ``fmplex_exec.threads``): a hot
series of 15 batches back to back, then ``--samples`` times an idle gap (exponential, mean
``--gap`` ms) followed by ``--after`` batches back to back. It prints the hot median, each
position's mean after the gap (#0 is the batch that starts after it), and two estimates of the
wake-up: #0 minus the batch right after it, and #0 minus the ``WAKE_SETTLE``-th after it (what
the profiler's ``wake`` rows take). Where the batches after #0 are still slow, the first
estimate misses what they still pay. Last, the ``warmup`` row the profiler would write from
these series (``warmup_ms``: how long the instance ran before it settled).

Nothing is written; the host must be otherwise idle (2 cores: nothing else running).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time

import torch

from fmplex_exec import profiler as P
from fmplex_exec.threads import off_main
from fmplex_exec.vfm import ExecRequest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--gap", type=float, default=200.0, help="mean idle gap, ms")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--after", type=int, default=4, help="batches timed from the one after the gap")
    ap.add_argument("--shapes", default="1x32,1x64")
    ap.add_argument("--beside", default="self", help="whose idle pool: self or backbone names, comma-separated")
    args = ap.parse_args()
    if args.after <= P.WAKE_SETTLE:
        ap.error(f"--after must be more than WAKE_SETTLE ({P.WAKE_SETTLE})")
    shapes = [tuple(int(v) for v in part.split("x")) for part in args.shapes.split(",")]
    fm = P.cpu_lora_instance(args.backbone)  # built on a thread that exits: the main one holds no pool
    others = {name: fm if name == "self" else P.cpu_lora_instance(name) for name in args.beside.split(",")}
    rng = random.Random(1)
    print(f"ms per batch; after a gap of ~{args.gap:g} ms: mean of {args.samples} at each position")
    for cond in ("alone", *others):
        with P.idle_pool_beside(others[cond], 32) if cond != "alone" else contextlib.nullcontext():
            for b, s in shapes:
                reqs = [ExecRequest("plain", s)] * b

                def timed() -> float:
                    t0 = time.perf_counter()
                    fm.run_batch(reqs)
                    return (time.perf_counter() - t0) * 1000.0

                def serve() -> tuple[list[float], list[list[float]]]:
                    with torch.inference_mode():
                        for _ in range(3):
                            fm.run_batch(reqs)
                        hot = [timed() for _ in range(15)]
                        runs: list[list[float]] = []  # the profiler's wake samples, every batch timed
                        gaps = [rng.expovariate(1.0 / args.gap) for _ in range(args.samples)]
                        P._wake_pairs(lambda: fm.run_batch(reqs), gaps, settle=args.after - 1, series=runs)
                        return hot, runs

                hot, runs = off_main(serve)
                pos = list(zip(*runs))
                next_pair = statistics.mean(r[0] - r[1] for r in runs)
                settled = statistics.mean(r[0] - r[P.WAKE_SETTLE] for r in runs)
                warm = P.warmup_ms([r[:P.WAKE_SETTLE + 1] for r in runs])
                print(f"{cond:16s} {b}x{s:<4d} hot {statistics.median(hot):5.1f} | "
                      + " ".join(f"#{i} {statistics.mean(p):5.1f}" for i, p in enumerate(pos))
                      + f" | #0-#1 {next_pair:+5.1f}  #0-#{P.WAKE_SETTLE} {settled:+5.1f}  warm-up {warm:5.1f} ms",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

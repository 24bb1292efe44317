"""Do the profile's forward rows read the host as a series of one shape does, in the same minutes?

    python experiments/validation/forward_protocol.py [--backbone minilm-l6]
        [--watch 1x48,1x128,4x96] [--rounds 15]

The profile (format 1.9) takes each sample of a ``forward`` row in a sweep of its own through
the grid (batches 1-16 x the seq_lens of ``--watch``), one untimed forward of the point before
it; validate's host probe, like a replay serving one shape again and again, runs the same shape
back to back. If moving from shape to shape cost something (allocator, caches), the rows would
read slower than the forwards a replay runs. Each round here times, in turn, 6 forwards back to
back of each ``--watch`` shape (after 2 untimed), then two sweeps of the grid the profiler's
way, so both sample the same minutes of the host. It prints each watched shape's median and
mean both ways. Nothing is written; the host must be otherwise idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from fmplex_exec.backbones import load_backbone
from fmplex_exec.threads import off_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention_shapes import _shapes  # noqa: E402  (a sibling script: its BATCHxSEQ_LEN parser)

BATCHES = (1, 2, 4, 8, 16)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--watch", type=_shapes, default=[(1, 48), (1, 128), (4, 96)],
                    help="BATCHxSEQ_LEN shapes compared, comma-separated")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    seqs = sorted({s for _, s in args.watch} | {16})
    grid = sorted({(b, s) for b in BATCHES for s in seqs} | set(args.watch))
    bb = off_main(lambda: load_backbone(args.backbone, device="cpu", dtype="float32", seed=0))
    gen = torch.Generator().manual_seed(0)
    inputs = {p: bb.make_inputs(p[0], p[1], gen) for p in grid}

    def timed(p) -> float:
        t0 = time.perf_counter()
        bb.model(**inputs[p])
        return (time.perf_counter() - t0) * 1000.0

    def run() -> dict:
        out: dict = {(way, p): [] for way in ("series", "sweep") for p in args.watch}
        with torch.inference_mode():
            for p in grid:
                timed(p)
            for r in range(args.rounds):
                for p in args.watch:
                    for _ in range(2):
                        timed(p)
                    out[("series", p)] += [timed(p) for _ in range(6)]
                for _ in range(2):
                    for p in grid:
                        timed(p)  # the profiler's one untimed forward of the point first
                        ms = timed(p)
                        if p in args.watch:
                            out[("sweep", p)].append(ms)
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        return out

    res = off_main(run)
    print(f"{args.backbone}: ms per forward, {args.rounds} rounds; grid {len(grid)} points")
    print(f"{'shape':>8s} {'series median / mean':>22s} {'sweep median / mean':>22s} {'sweep/series':>13s}")
    for b, s in args.watch:
        a, w = res[("series", (b, s))], res[("sweep", (b, s))]
        print(f"{b:>3d} x {s:<3d} {statistics.median(a):10.2f} / {statistics.fmean(a):6.2f}      "
              f"{statistics.median(w):10.2f} / {statistics.fmean(w):6.2f}   "
              f"{statistics.fmean(w) / statistics.fmean(a):12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

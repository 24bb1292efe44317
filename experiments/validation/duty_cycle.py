"""Does a batch after the same idle gap cost more when the host has been idle most of the time?

    python experiments/validation/duty_cycle.py [--backbone minilm-l6] [--shape 1x64]
        [--gaps 30,100,300,1000] [--phase-s 20] [--cycles 3]

The profiler's ``wake`` rows time a batch after an idle gap against the same batch a few
batches later, with gaps drawn over 3-600 ms one after another: while they are measured the
host is busy about 40% of the time. A replay at light load keeps it busy far less (one
instance serving 5 requests/s of 20 ms: about 10%). If the host slows down over seconds of
mostly idling (power states, the hypervisor's scheduling of an idle vCPU), a batch after a
200 ms gap costs more in such a replay than in the profile, which no per-gap row can show.

On an instance holding a LoRA adapter, served from a thread of its own (as the runtime serves
one instance alone in its process), this runs phases of ``--phase-s`` seconds each: a batch of
``--shape``, then an idle gap drawn exponential with the phase's mean (one of ``--gaps``, ms),
again and again. Every cycle runs each mean once, in a shuffled order, after a hot series (15
batches back to back). It prints, per phase mean, the host's busy share and each batch's time
by the gap before it (bins of 10-40, 40-150, 150-600 and 600-2000 ms): equal rows across a bin
say the cost depends on the gap alone; rising times down a bin's column say the host's recent
idling adds to it. Nothing is written; the host must be otherwise idle.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from fmplex_exec import profiler as P
from fmplex_exec.threads import off_main
from fmplex_exec.vfm import ExecRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention_shapes import _shapes  # noqa: E402  (a sibling script: its BATCHxSEQ_LEN parser)

#: upper bounds (ms) of the gap bins the batches are grouped by
BINS_MS = (10.0, 40.0, 150.0, 600.0, 2000.0)


#: windows (s into a phase) of the time course after a switch of mean gap
WINDOWS_S = (0.0, 2.0, 5.0, 10.0, float("inf"))


def window(at_s: float) -> int:
    """The index of the window of :data:`WINDOWS_S` holding ``at_s``."""
    return next(k for k in range(len(WINDOWS_S) - 1) if at_s < WINDOWS_S[k + 1])


def gap_bin(gap_ms: float) -> int | None:
    """The index of the bin ``[BINS_MS[k], BINS_MS[k + 1])`` holding ``gap_ms``; None outside."""
    for k in range(len(BINS_MS) - 1):
        if BINS_MS[k] <= gap_ms < BINS_MS[k + 1]:
            return k
    return None


def _means(text: str) -> list[float]:
    """``--gaps``: positive means, ms, comma-separated."""
    try:
        out = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (ms), got {text!r}") from None
    if not out or any(not (v > 0) for v in out):
        raise argparse.ArgumentTypeError(f"every gap must be a positive number of ms, got {text!r}")
    return out


def phase(run, mean_gap_ms: float, seconds: float,
          rng: random.Random) -> tuple[float, list[tuple[float, float, float]]]:
    """Run batches with exponential gaps of ``mean_gap_ms`` for ``seconds``: the busy share and
    ``(gap before it, ms; its time, ms; its start, s into the phase)`` per batch (the first,
    after an unknown gap, left out)."""
    out, busy, gap = [], 0.0, None
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < seconds:
        t0 = time.perf_counter()
        run()
        took = time.perf_counter() - t0
        busy += took
        if gap is not None:
            out.append((gap * 1000.0, took * 1000.0, t0 - t_start))
        gap = rng.expovariate(1000.0 / mean_gap_ms)
        time.sleep(gap)
    return busy / (time.perf_counter() - t_start), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--shape", type=_shapes, default=[(1, 64)], help="BATCHxSEQ_LEN (one)")
    ap.add_argument("--gaps", type=_means, default=[30.0, 100.0, 300.0, 1000.0], help="phase mean gaps, ms")
    ap.add_argument("--phase-s", type=float, default=20.0)
    ap.add_argument("--cycles", type=int, default=3)
    args = ap.parse_args()
    if len(args.shape) != 1:
        ap.error("--shape: give one BATCHxSEQ_LEN")
    if not args.phase_s > 0 or args.cycles < 1:
        ap.error("--phase-s must be positive and --cycles at least 1")
    (b, s), = args.shape
    fm = P.cpu_lora_instance(args.backbone)
    reqs = [ExecRequest("plain", s)] * b
    rng = random.Random(1)

    def serve():
        busy: dict[float, list[float]] = defaultdict(list)
        times: dict[tuple[float, int], list[float]] = defaultdict(list)
        hot: list[float] = []
        course: dict[tuple, list[float]] = defaultdict(list)
        prev = None  # the phase before, None after a hot series
        with torch.inference_mode():
            for c in range(args.cycles):
                order = list(args.gaps)
                rng.shuffle(order)
                prev = "hot"
                for _ in range(3):
                    fm.run_batch(reqs)
                for _ in range(15):
                    t0 = time.perf_counter()
                    fm.run_batch(reqs)
                    hot.append((time.perf_counter() - t0) * 1000.0)
                for g in order:
                    share, rows = phase(lambda: fm.run_batch(reqs), g, args.phase_s, rng)
                    busy[g].append(share)
                    for gap, ms, at in rows:
                        k = gap_bin(gap)
                        if k is not None:
                            times[(g, k)].append(ms)
                        if BINS_MS[1] <= gap < BINS_MS[3]:
                            course[(prev, g, window(at))].append(ms)
                    prev = g
                    print(f"cycle {c + 1}, mean gap {g:g} ms: busy {share:.0%}, {len(rows)} batches",
                          file=sys.stderr, flush=True)
        return busy, times, hot, course

    busy, times, hot, course = off_main(serve)
    print(f"{args.backbone} {b}x{s}, alone in its process: hot series median {statistics.median(hot):.1f} ms")
    print("ms per batch by the idle gap before it (mean, n), per phase mean gap")
    heads = [f"{BINS_MS[k]:g}-{BINS_MS[k + 1]:g} ms" for k in range(len(BINS_MS) - 1)]
    print(f"{'phase mean gap':>15s} {'busy':>5s} " + " ".join(f"{h:>16s}" for h in heads))
    for g in args.gaps:
        cells = []
        for k in range(len(heads)):
            xs = times.get((g, k), [])
            cells.append(f"{statistics.fmean(xs):7.1f} ({len(xs):4d})" if len(xs) >= 5 else f"{'-':>16s}")
        print(f"{g:>12g} ms {statistics.fmean(busy[g]):5.0%} " + " ".join(f"{c:>16s}" for c in cells))
    print(f"after a switch: ms per batch with a gap of {BINS_MS[1]:g}-{BINS_MS[3]:g} ms before it, by seconds "
          "into the phase (mean, n)")
    heads = [f"{lo:g}-{hi:g} s" for lo, hi in zip(WINDOWS_S, WINDOWS_S[1:])]
    print(f"{'from':>8s} {'to':>8s} " + " ".join(f"{h:>14s}" for h in heads))
    for prev, g in sorted({(p, g) for p, g, _ in course}, key=str):
        cells = []
        for w in range(len(heads)):
            xs = course.get((prev, g, w), [])
            cells.append(f"{statistics.fmean(xs):6.1f} ({len(xs):3d})" if len(xs) >= 3 else "-")
        name = prev if isinstance(prev, str) else f"{prev:g} ms"
        print(f"{name:>8s} {g:>5g} ms " + " ".join(f"{c:>14s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())

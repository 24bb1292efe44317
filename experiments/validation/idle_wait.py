"""How a serving thread waits while idle changes its next batch: asleep, or polling.

    python experiments/validation/idle_wait.py [--backbone minilm-l6] [--shape 1x64]
        [--gaps 30,100,300,600] [--batches 60] [--rounds 2]

The profiler's ``wake`` rows time a batch after its thread slept through an idle gap
(``time.sleep``). The harness's serving thread used to wait for work on its condition 50 ms at
a time, waking to look at its queues. On an instance holding a LoRA adapter, served from a
thread of its own, this runs ``--batches`` batches, each after an idle gap drawn from
``--gaps`` (ms), waiting each of three ways in turn: ``sleep`` (as the profiler), ``poll``
(condition waits of at most 50 ms, as the harness did until this script's commit) and
``condwait`` (one condition wait for the whole gap, as the harness does now). It prints each
way's median and mean batch time by gap. Nothing is written; the host must be otherwise idle.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from fmplex_exec import profiler as P
from fmplex_exec.threads import off_main
from fmplex_exec.vfm import ExecRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention_shapes import _shapes  # noqa: E402  (a sibling script: its BATCHxSEQ_LEN parser)
from duty_cycle import _means  # noqa: E402  (positive ms, comma-separated)

WAYS = ("sleep", "poll", "condwait")
POLL_S = 0.05  # the harness's old idle wait


def idle(way: str, gap_s: float, cond: threading.Condition) -> None:
    """Wait ``gap_s`` the ``way`` named (see the module's docstring)."""
    if way == "sleep":
        time.sleep(gap_s)
        return
    end = time.perf_counter() + gap_s
    with cond:
        while (left := end - time.perf_counter()) > 0:
            cond.wait(min(POLL_S, left) if way == "poll" else left)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--shape", type=_shapes, default=[(1, 64)], help="BATCHxSEQ_LEN (one)")
    ap.add_argument("--gaps", type=_means, default=[30.0, 100.0, 300.0, 600.0], help="idle gaps, ms")
    ap.add_argument("--batches", type=int, default=60, help="batches per way and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if len(args.shape) != 1:
        ap.error("--shape: give one BATCHxSEQ_LEN")
    if args.batches < 1 or args.rounds < 1:
        ap.error("--batches and --rounds must be at least 1")
    (b, s), = args.shape
    rng = random.Random(3)
    gaps = [rng.choice(args.gaps) for _ in range(args.batches)]
    fm = P.cpu_lora_instance(args.backbone)
    reqs = [ExecRequest("plain", s)] * b
    cond = threading.Condition()

    def serve() -> dict:
        out: dict = {}
        with torch.inference_mode():
            for _ in range(3):
                fm.run_batch(reqs)
            for _ in range(args.rounds):
                for way in WAYS:
                    for g in gaps:
                        idle(way, g / 1000.0, cond)
                        t0 = time.perf_counter()
                        fm.run_batch(reqs)
                        out.setdefault((way, g), []).append((time.perf_counter() - t0) * 1000.0)
        return out

    res = off_main(serve)
    print(f"{args.backbone} {b}x{s}: ms per batch after an idle gap, median / mean (n), by how the thread waited")
    print(f"{'gap':>8s} " + " ".join(f"{w:>20s}" for w in WAYS))
    for g in sorted(set(gaps)):
        cells = [f"{statistics.median(xs):6.1f} / {statistics.fmean(xs):5.1f} ({len(xs):3d})"
                 for xs in (res[(w, g)] for w in WAYS)]
        print(f"{g:>5g} ms " + " ".join(f"{c:>20s}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What an idle gap costs a batch alone in its process and beside another instance's pool.

    python experiments/validation/wake_beside.py [--backbone minilm-l6] [--cycles 2]
        [--shapes 1x16,1x64,1x128] [--gaps 2,20,200,1000] [--switch]

Times, on this host, the pairs the profiler's ``wake`` rows are made of (a batch after an idle
gap of about ``gap`` ms minus the same batch run again ``WAKE_SETTLE`` batches later, on an
instance holding a LoRA adapter, built and served off the main thread): once with the
instance's thread pool the only one in the process, once while another instance's pool waits
idle in it (every pool then
throttled, as in a process serving several instances: ``fmplex_exec.threads``). Each cycle
measures both conditions, alternating which goes first; the table gives each point's median
over all cycles' pairs, in ms.

``--switch`` also times the other candidate for colocate's extra cost: a batch right after
another model copy's batch (its weights evicted from the caches), against one after its own
batch and an idle wait as long as the other copy's batch took, each copy served from a
thread of its own.

Nothing is written; the host must be otherwise idle (2 cores: nothing else running).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from fmplex_exec import profiler as P
from fmplex_exec.backbones import load_backbone
from fmplex_exec.threads import off_main
from fmplex_exec.vfm import ExecRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention_shapes import _shapes  # noqa: E402  (a sibling script: its BATCHxSEQ_LEN parser)


class _Served:
    """An instance served from a thread of its own; ``self(reqs)`` returns the batch's ms."""

    def __init__(self, fm) -> None:
        self.fm, self.inbox, self.outbox = fm, queue.Queue(), queue.Queue()
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _loop(self) -> None:
        with torch.inference_mode():
            while (reqs := self.inbox.get()) is not None:
                t0 = time.perf_counter()
                self.fm.run_batch(reqs)
                self.outbox.put((time.perf_counter() - t0) * 1000.0)

    def __call__(self, reqs) -> float:
        self.inbox.put(reqs)
        return self.outbox.get()

    def close(self) -> None:
        self.inbox.put(None)
        self.th.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=8, help="pairs per point per cycle")
    ap.add_argument("--shapes", type=_shapes, default="1x16,1x64,1x128")
    ap.add_argument("--gaps", type=lambda s: [float(v) for v in s.split(",")], default=[2.0, 20.0, 200.0, 1000.0])
    ap.add_argument("--switch", action="store_true")
    args = ap.parse_args()

    def run() -> None:
        bb = load_backbone(args.backbone, device="cpu", dtype="float32", seed=0)
        fm = P.lora_harness_fm(bb)
        rng = random.Random(0)
        res: dict[tuple, list[float]] = {}

        def measure(cond: str) -> None:
            for b, s in args.shapes:
                reqs = [ExecRequest("plain", s)] * b
                with torch.inference_mode():
                    for g in args.gaps:
                        res.setdefault((cond, b, s, g), []).extend(
                            P._wake_pairs(lambda: fm.run_batch(reqs),
                                          [rng.expovariate(1.0 / g) for _ in range(args.pairs)]))

        for cyc in range(args.cycles):
            for cond in (("alone", "beside") if cyc % 2 == 0 else ("beside", "alone")):
                with P.idle_pool_beside(fm, 16) if cond == "beside" else contextlib.nullcontext():
                    measure(cond)
            print(f"cycle {cyc + 1} of {args.cycles} done", file=sys.stderr, flush=True)
        print("wake-up: extra ms of a batch after ~gap ms idle (median of pairs), alone / beside another pool")
        print("shape     " + "".join(f"{g:>18.0f} ms" for g in args.gaps))
        for b, s in args.shapes:
            cells = "".join(f"{statistics.median(res[('alone', b, s, g)]):>9.1f} /{statistics.median(res[('beside', b, s, g)]):>6.1f}   "
                            for g in args.gaps)
            print(f"{b}x{s:<7d} {cells}")
        if args.switch:
            switch(bb, fm)

    def switch(bb, fm) -> None:
        a, b = _Served(fm), _Served(P.lora_harness_fm(bb))
        print("after another model copy's batch, minus after its own + an equal idle wait (ms, median):")
        for bs, s in args.shapes:
            reqs = [ExecRequest("plain", s)] * bs
            a(reqs)
            t_b = b(reqs)
            out = []
            for _ in range(args.pairs * args.cycles):
                a(reqs)
                time.sleep(t_b / 1000.0)
                own = a(reqs)
                t_b = b(reqs)
                out.append(a(reqs) - own)
            print(f"  {bs}x{s}: {statistics.median(out):+.1f}")
        a.close()
        b.close()

    off_main(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())

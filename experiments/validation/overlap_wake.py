"""A batch started while another replica's one batch runs: its wake-up and its slowdown, as met.

    python experiments/validation/overlap_wake.py [--backbone minilm-l6] [--shapes 1x16,1x64,4x32]
        [--other 1x64] [--gaps 20,100,400,1000] [--offset-ms 3] [--pairs 8] [--profile FILE]

Two replicas of one backbone, each holding a LoRA adapter and served from a thread of its own
in this process (as ``colocate`` serves them). Replica A runs one batch of ``--other``; replica B
starts a batch ``--offset-ms`` later, while A's batch runs. Each sample is a pair, the host's
drift cancelling within it:

* cold: both replicas idle for a gap, then A's batch and B's into it;
* hot: right after, B runs ``WAKE_SETTLE`` batches back to back (the last one is B's solo
  time, beside A's idle pool), then A's batch and B's into it again
  (:func:`overlap_pairs`).

The simulator runs a batch as solo work on cores shared by processor sharing: while ``k`` run,
each progresses at ``1/c`` of its solo speed. Given ``c`` for two batches at once, B's wall time
and its overlap with A's batch say how much solo work B did: ``wall - overlap * (1 - 1/c)``.
Over B's solo time that leaves, per sample, the residual the model would have to charge as
extra work. Printed per shape:

* ``c`` of two streams at the shape (the profiler's ``contention`` measurement: two threads
  running forwards at once, over one alone) and, with ``--profile``, the model's
  ``contention_for``;
* the ``c`` the hot pairs met (the median at which their solo work is B's solo time: the
  slowdown of a batch started into another's, its wake-up worn off);
* by gap, the cold residual minus the hot one (mean and median, in ms of solo time, at the
  ``c`` met): the wake-up of a batch started into another's, as the replays meet it; with
  ``--profile``, what the model charges there (``woken`` with ``beside`` running, and beside
  idle pools).

Nothing is written; the host must be otherwise idle (2 cores: nothing else running).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contention_shapes import _shapes  # noqa: E402  (a sibling script: its BATCHxSEQ_LEN parser)


class Served:
    """An instance served from a thread of its own, as the runtime serves a co-located replica.
    ``submit(reqs)`` starts a batch and returns a queue that gets its ``(start, end)``
    (``time.perf_counter`` seconds); ``run(reqs)`` waits for them. A context manager: the
    thread ends on exit."""

    def __init__(self, fm) -> None:
        import queue
        import threading

        import torch

        self.inbox: queue.Queue = queue.Queue()
        self._queue = queue.Queue

        def loop() -> None:
            with torch.inference_mode():
                while (job := self.inbox.get()) is not None:
                    reqs, out = job
                    t0 = time.perf_counter()
                    fm.run_batch(reqs)
                    out.put((t0, time.perf_counter()))

        self.thread = threading.Thread(target=loop, name="fmplex-profile-replica", daemon=True)
        self.thread.start()

    def submit(self, reqs):
        out = self._queue()
        self.inbox.put((reqs, out))
        return out

    def run(self, reqs) -> tuple[float, float]:
        return self.submit(reqs).get()

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        self.inbox.put(None)
        self.thread.join()


def overlap_pairs(run: Callable[[], object], other: Served, other_reqs, gaps_ms: Sequence[float],
                   offsets_ms: Sequence[float], settle: int | None = None) -> list[dict]:
    """Per gap of ``gaps_ms``: idle that long, start ``other``'s batch, and ``run()`` (on this
    thread) the matching offset later, into it (``cold``, ``cold_other``: the two batches'
    ``(start, end)``); then ``run()`` ``settle`` times alone (``series``: their ms, the last
    one settled) and the two batches again the same way (``hot``, ``hot_other``). Two untimed
    runs of each first. ``settle``: default the profiler's ``WAKE_SETTLE``."""
    if settle is None:
        from fmplex_exec.profiler import WAKE_SETTLE as settle
    def into(offset_ms: float) -> tuple[tuple[float, float], tuple[float, float]]:
        done = other.submit(other_reqs)
        time.sleep(offset_ms / 1000.0)
        t0 = time.perf_counter()
        run()
        mine = (t0, time.perf_counter())
        return mine, done.get()

    for _ in range(2):
        other.run(other_reqs)
        run()
    out = []
    for gap, offset in zip(gaps_ms, offsets_ms):
        time.sleep(gap / 1000.0)
        cold, cold_other = into(offset)
        series = []
        for _ in range(settle):
            t0 = time.perf_counter()
            run()
            series.append((time.perf_counter() - t0) * 1000.0)
        hot, hot_other = into(offset)
        out.append(dict(cold=cold, cold_other=cold_other, hot=hot, hot_other=hot_other, series=series))
    return out


def _overlap_s(mine: tuple[float, float], other: tuple[float, float]) -> float:
    return max(0.0, min(mine[1], other[1]) - max(mine[0], other[0]))


def overlap_solo_ms(mine: tuple[float, float], other: tuple[float, float], c: float) -> float:
    """The solo work (ms) a batch that ran over ``mine`` (start, end; seconds) did, as the
    simulator's processor sharing counts it: at ``1/c`` of its solo speed while ``other`` ran
    too, at full speed otherwise."""
    return 1000.0 * ((mine[1] - mine[0]) - _overlap_s(mine, other) * (1.0 - 1.0 / max(c, 1.0)))


def overlap_slowdown(mine: tuple[float, float], other: tuple[float, float], solo_ms: float) -> float | None:
    """The ``c`` at which :func:`overlap_solo_ms` of the batch is ``solo_ms`` (at least 1);
    None when the two did not overlap or the batch lost more than the overlap."""
    overlap = _overlap_s(mine, other) * 1000.0
    lost = (mine[1] - mine[0]) * 1000.0 - solo_ms
    if overlap <= 0 or lost >= overlap:
        return None
    return 1.0 / (1.0 - lost / overlap) if lost > 0 else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--shapes", type=_shapes, default="1x16,1x64,4x32", help="B's batches, BATCHxSEQ_LEN")
    ap.add_argument("--other", type=_shapes, default="1x64", help="A's batch, BATCHxSEQ_LEN (default 1x64)")
    ap.add_argument("--gaps", default="20,100,400,1000", help="idle gaps before the cold pairs, ms")
    ap.add_argument("--offset-ms", type=float, default=3.0, help="B starts this long after A")
    ap.add_argument("--pairs", type=int, default=8, help="pairs per shape and gap (default 8)")
    ap.add_argument("--profile", help="a CPU profile of the backbone: print what the model charges")
    args = ap.parse_args()
    if len(args.other) != 1:
        ap.error(f"--other: one shape, e.g. 1x64 (got {len(args.other)})")
    shapes, (other,) = args.shapes, args.other
    gaps = [float(g) for g in args.gaps.split(",")]
    if args.pairs < 1 or any(g <= 0 for g in gaps) or args.offset_ms < 0:
        ap.error("--pairs must be >= 1, --gaps > 0 and --offset-ms >= 0")

    import copy

    import torch

    from fmplex_exec import profiler as P
    from fmplex_exec.backbones import load_backbone
    from fmplex_exec.vfm import ExecRequest
    from fmplex_sim.catalog.backbones import get_backbone
    from fmplex_sim.catalog.devices import get_device
    from fmplex_sim.latency.base import BESIDE_RUNNING, SETTLED

    model = None
    spec, dev = get_backbone(args.backbone), get_device("CPU")
    if args.profile:
        from fmplex_sim.latency.profile import ProfileModel

        model = ProfileModel(args.profile)
    bb = load_backbone(args.backbone)
    gen = torch.Generator().manual_seed(0)
    a_fm, b_fm = P.lora_harness_fm(bb), P.lora_harness_fm(copy.deepcopy(bb))
    a_reqs = [ExecRequest("plain", other[1])] * other[0]
    rng = random.Random(0)
    print(f"{args.backbone}: A runs {other[0]}x{other[1]}, B starts {args.offset_ms} ms into it; "
          f"{args.pairs} pairs per gap; residuals in ms of solo time, medians")
    for b, s in shapes:
        rows = P._contention_rows(bb, {"backbone": args.backbone}, (1, 2), (b, s), gen, P._Gate(False),
                                  24, lambda msg: None)
        ms = {r["batch"]: r["median_ms"] for r in rows}
        c = max(1.0, ms[2] / ms[1])
        b_reqs = [ExecRequest("plain", s)] * b
        plan = [g for g in gaps for _ in range(args.pairs)]
        rng.shuffle(plan)
        with Served(a_fm) as a:
            a_solo = statistics.median(1000.0 * (e - s0) for s0, e in (a.run(a_reqs) for _ in range(12)))
            pairs = overlap_pairs(lambda: b_fm.run_batch(b_reqs), a, a_reqs, plan,
                                     [args.offset_ms] * len(plan))
        a_c = [ci for p in pairs if (ci := overlap_slowdown(p["hot_other"], p["hot"], a_solo))]
        hot_c = [ci for p in pairs if (ci := overlap_slowdown(p["hot"], p["hot_other"], p["series"][-1]))]
        met = statistics.median(hot_c) if hot_c else 1.0
        cold: dict[float, list[float]] = {g: [] for g in gaps}
        for g, p in zip(plan, pairs):
            cold[g].append(overlap_solo_ms(p["cold"], p["cold_other"], met)
                           - overlap_solo_ms(p["hot"], p["hot_other"], met))
        line = f"{b}x{s}: alone {ms[1]:.1f} ms, c of two streams {c:.2f}"
        if model is not None:
            line += f", model {model.contention_for(spec, dev, 2, b, s):.2f}"
        print(line + f"; c met by the settled pairs {met:.2f} ({len(hot_c)} of {len(plan)} overlapped)"
              + (f"; by A's batch beside them {statistics.median(a_c):.2f} (A alone {a_solo:.1f} ms)" if a_c else ""))
        for g in gaps:
            xs = cold[g]
            out = f"  after {g:g} ms idle: wake as met {statistics.fmean(xs):+.2f} ms mean, " \
                  f"{statistics.median(xs):+.2f} median " \
                  f"(p25 {statistics.quantiles(xs, n=4)[0]:+.2f}, p75 {statistics.quantiles(xs, n=4)[2]:+.2f})"
            if model is not None:
                hot_s = ms[1] / 1000.0
                charged = {}
                for name, beside in (("running", BESIDE_RUNNING), ("idle pools", True)):
                    extra, _ = model.woken(dev, SETTLED, g / 1000.0, hot_s, True, 0, bb=spec,
                                           tokens=b * s, beside=beside)
                    charged[name] = extra * 1000.0
                out += "; model charges " + ", ".join(f"{k} {v:+.2f}" for k, v in charged.items())
            print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

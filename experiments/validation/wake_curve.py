"""What a batch pays after an idle gap, by gap, and how long a woken instance stays slow.

    python experiments/validation/wake_curve.py [--config experiments/validation/mix_two_backbones.yaml]
        [--task sst2] [--len 64] [--gaps 5,20,30,45,60,75,100,200,500] [--spacing 0,2,10,20]
        [--rounds 3] [--profile FILE]

One request of ``--task`` (``--len`` tokens) on its backbone's instance holding the config's
tasks of that backbone, built and served off the main thread as the runtime does; "beside" with
an instance of another of the config's backbones in the process, idle after one batch (every
thread pool then throttled: ``fmplex_exec.threads``). Printed, as medians over ``--rounds``:

1. per condition (alone, beside): a hot series back to back, then for each of ``--gaps`` (ms),
   4 times a hot stretch, a sleep of exactly that gap and the batch after it: its time over
   the condition's hot median (that median over the alone one first). Shows where the cost
   jumps with the gap.
2. beside: after a 300 ms gap, 6 batches spaced by each of ``--spacing`` (ms): each over the hot
   median. Shows how long a woken instance stays slow, and that idling meanwhile delays it.

With ``--profile``, each line is followed by what the simulator's model charges for the same
sequence (``LatencyModel.woken`` and ``ran`` with the profile's rows, the measured hot batch
as the batch's settled time). Nothing is written; the host must be otherwise idle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

SPACED_BATCHES = 6
LONG_GAP_S = 0.3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="experiments/validation/mix_two_backbones.yaml")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--len", type=int, default=64)
    ap.add_argument("--gaps", default="5,20,30,45,60,75,100,200,500")
    ap.add_argument("--spacing", default="0,2,10,20")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()
    gaps = [float(x) / 1000.0 for x in args.gaps.split(",")]
    spacing = [float(x) / 1000.0 for x in args.spacing.split(",")]

    import torch

    from fmplex_exec.executors import build_fm
    from fmplex_exec.threads import off_main
    from fmplex_exec.vfm import ExecRequest
    from fmplex_sim.config import load_config

    cfg = load_config(args.config)
    tasks = {t.name: t for t in cfg.tasks}
    if args.task not in tasks:
        ap.error(f"--task {args.task!r}: not a task of {args.config}")
    mine_bb = tasks[args.task].backbone
    others = sorted({t.backbone for t in cfg.tasks} - {mine_bb})
    if not others:
        ap.error(f"{args.config} has one backbone: nothing to serve beside")

    def of(bb: str):
        return off_main(build_fm, bb, [t for t in cfg.tasks if t.backbone == bb], "cpu", "float32", cfg.seed)

    mine, other = of(mine_bb), of(others[0])
    other_req = [ExecRequest(next(t.name for t in cfg.tasks if t.backbone == others[0]), 32)]
    req = [ExecRequest(args.task, args.len)]
    res: dict[str, list] = {}

    def timed() -> float:
        t0 = time.perf_counter()
        mine.run_batch(req)
        return (time.perf_counter() - t0) * 1000.0

    def serve(cond: str) -> None:
        with torch.inference_mode():
            for _ in range(5):
                mine.run_batch(req)
            res.setdefault((cond, "hot"), []).extend(timed() for _ in range(15))
            for g in gaps:
                for _ in range(4):
                    for _ in range(3):
                        mine.run_batch(req)
                    time.sleep(g)
                    res.setdefault((cond, g), []).append(timed())
            if cond == "beside":
                for g in spacing:
                    for _ in range(3):
                        time.sleep(LONG_GAP_S)
                        xs = []
                        for _ in range(SPACED_BATCHES):
                            xs.append(timed())
                            time.sleep(g)
                        res.setdefault(("spaced", g), []).append(xs)

    def run(cond: str) -> None:
        stop, ready = threading.Event(), threading.Event()

        def hold() -> None:
            with torch.inference_mode():
                other.run_batch(other_req)
            ready.set()
            stop.wait()

        holder = threading.Thread(target=hold, daemon=True) if cond == "beside" else None
        if holder:
            holder.start()
            ready.wait()
        th = threading.Thread(target=serve, args=(cond,))
        th.start()
        th.join()
        stop.set()
        if holder:
            holder.join()

    for _ in range(args.rounds):
        for cond in ("alone", "beside"):
            run(cond)

    model = _model(args.profile, cfg, tasks[args.task], args.len) if args.profile else None
    alone_hot = statistics.median(res[("alone", "hot")])
    print(f"{args.task} ({mine_bb}, 1 x {args.len}); beside: an idle {others[0]} instance; "
          f"alone hot median {alone_hot:.2f} ms")
    for cond in ("alone", "beside"):
        hot = statistics.median(res[(cond, "hot")])
        print(f"{cond:7s} hot {hot - alone_hot:+6.2f} | after a gap of (ms), over its hot median: "
              + "  ".join(f"{g * 1000:g}: {statistics.median(res[(cond, g)]) - hot:+6.2f}" for g in gaps))
        if model:
            print(f"{'  model':17s} | {'':39s}" + "  ".join(
                f"{g * 1000:g}: {model(cond == 'beside', hot, [g])[0]:+6.2f}" for g in gaps))
    hot = statistics.median(res[("beside", "hot")])
    print(f"beside, batches after a {LONG_GAP_S * 1000:g} ms gap, spaced by g, over the beside hot median {hot:.2f}:")
    for g in spacing:
        runs = res[("spaced", g)]
        print(f"  g={g * 1000:4g} ms: " + " ".join(
            f"{statistics.median(r[k] for r in runs) - hot:+6.2f}" for k in range(SPACED_BATCHES)))
        if model:
            print("  model     : " + " ".join(
                f"{x:+6.2f}" for x in model(True, hot, [LONG_GAP_S] + [g] * (SPACED_BATCHES - 1))))
    return 0


def _model(path: str, cfg, task, seq_len: int):
    """``charge(beside, hot_ms, gaps_s) -> [extra ms per batch]``: the profile's model over a
    run of batches of ``hot_ms`` each after the given idle gaps, from a settled instance."""
    from fmplex_sim.catalog import get_backbone, get_device
    from fmplex_sim.latency.base import SETTLED
    from fmplex_sim.latency.profile import ProfileModel

    lm = ProfileModel(path)
    dev, bb = get_device(cfg.cluster.device), get_backbone(task.backbone)
    lora = any(e.kind == "lora" for t in cfg.tasks if t.backbone == task.backbone for e in t.extensions)

    def charge(beside: bool, hot_ms: float, gaps_s: list[float]) -> list[float]:
        warmth, out = SETTLED, []
        for g in gaps_s:
            extra, warmth = lm.woken(dev, warmth, g, hot_ms / 1000.0, lora, bb=bb, tokens=seq_len, beside=beside)
            warmth = lm.ran(dev, warmth, hot_ms / 1000.0 + extra, lora, bb=bb, beside=beside)
            out.append(extra * 1000.0)
        return out

    return charge


if __name__ == "__main__":
    sys.exit(main())

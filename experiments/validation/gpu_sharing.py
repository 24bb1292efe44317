"""How replicas share one CUDA device in the execution harness: host time against device time,
co-located threads, and partitioned processes.

    python experiments/validation/gpu_sharing.py [--backbones minilm-l6,bert-base] [--seconds 3] [--serving]

For each backbone, on a task with a rank-8 LoRA adapter and a 2-way head (what the validation
suites serve), through the harness's own ``PhysicalFM.run_batch``:

* per shape (batch x seq_len): the wall time of a batch (to ``torch.cuda.synchronize``), the
  host time (until ``run_batch`` returns, before the synchronize: the Python, dispatch and
  kernel launches), and the device's busy time (the sum of the batch's kernel times, from
  ``torch.profiler``). When the host time is close to the wall time, the batch is launch bound:
  the device waits on the host, not the other way round.
* ``k`` co-located replicas (``colocate``): ``k`` threads of one process, each its own replica,
  running 1 x 64 batches back to back; the median batch time of each.
* ``k`` partitioned replicas (``spatial`` on CUDA: a process per slice, no MPS or MIG): ``k``
  processes, each its own replica, the same.

``--serving``: only a 1 x 64 batch with and without LoRA, on the main thread and on a worker
thread, back to back and after idle gaps, alone and beside idle threads (:func:`serving`).

Prints a table; ``--json FILE`` writes every number.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SHAPES = ((1, 16), (1, 64), (4, 64), (16, 64), (16, 128))
KS = (1, 2, 4, 8)


def _fm(backbone: str, seed: int = 0):
    from fmplex_exec.executors import build_fm
    from fmplex_sim.specs import ExtensionSpec, TaskSpec

    task = TaskSpec(name="t", backbone=backbone,
                    extensions=(ExtensionSpec("lora", rank=8), ExtensionSpec("head", outputs=2)))
    return build_fm(backbone, [task], "cuda", "float32", seed)


def _reqs(b: int, s: int):
    from fmplex_exec.vfm import ExecRequest

    return [ExecRequest("t", s) for _ in range(b)]


def shapes(backbone: str, n: int) -> list[dict]:
    import torch

    fm = _fm(backbone)
    out = []
    with torch.inference_mode():
        for b, s in SHAPES:
            reqs = _reqs(b, s)
            for _ in range(5):
                fm.run_batch(reqs)
            torch.cuda.synchronize()
            walls, hosts = [], []
            for _ in range(n):
                t0 = time.perf_counter()
                fm.run_batch(reqs)
                t1 = time.perf_counter()
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                hosts.append((t1 - t0) * 1e3)
                walls.append((t2 - t0) * 1e3)
            from torch.profiler import ProfilerActivity, profile

            reps = 5
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(reps):
                    fm.run_batch(reqs)
                torch.cuda.synchronize()
            dev_us = sum(e.device_time_total for e in prof.key_averages()) / reps
            out.append(dict(backbone=backbone, batch=b, seq_len=s, wall_ms=statistics.median(walls),
                            host_ms=statistics.median(hosts), device_ms=dev_us / 1e3))
    return out


def _loop(fm, reqs, stop_at: float, start, box: list) -> None:
    import torch

    with torch.inference_mode():
        fm.run_batch(reqs)
        torch.cuda.synchronize()
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            fm.run_batch(reqs)
            torch.cuda.synchronize()
            box.append((time.perf_counter() - t0) * 1e3)


def threads(backbone: str, k: int, seconds: float) -> list[float]:
    fms = [_fm(backbone, i) for i in range(k)]
    reqs = _reqs(1, 64)
    stop = [0.0]
    start = threading.Barrier(k + 1)
    boxes: list[list[float]] = [[] for _ in range(k)]
    ths = [threading.Thread(target=_loop, args=(fms[i], reqs, stop, start, boxes[i])) for i in range(k)]
    for th in ths:
        th.start()
    stop[0] = time.perf_counter() + 1e9
    start.wait()
    stop[0] = time.perf_counter() + seconds
    for th in ths:
        th.join()
    return [statistics.median(b[1:-1] or b) for b in boxes]


def _proc(backbone: str, seed: int, seconds: float, start, conn) -> None:
    fm = _fm(backbone, seed)
    box: list[float] = []
    start.wait()
    _loop(fm, _reqs(1, 64), [time.perf_counter() + seconds], threading.Barrier(1), box)
    conn.send(statistics.median(box[1:-1] or box))


def processes(backbone: str, k: int, seconds: float) -> list[float]:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(k)
    pipes = [ctx.Pipe() for _ in range(k)]
    ps = [ctx.Process(target=_proc, args=(backbone, i, seconds, start, pipes[i][1])) for i in range(k)]
    for p in ps:
        p.start()
    res = [pipes[i][0].recv() for i in range(k)]
    for p in ps:
        p.join()
    return res


def serving(backbone: str, n: int, device: str = "cuda") -> list[dict]:
    """One 1 x 64 batch, with and without a LoRA adapter, as a replay serves it and as the
    profiler times it: back to back on the main thread; back to back on a worker thread; on a
    worker thread with 30 ms idle between batches; the same beside 7 idle threads that wake
    every 50 ms, as a process of co-located replicas has them."""
    import torch

    from fmplex_exec.executors import build_fm
    from fmplex_sim.specs import ExtensionSpec, TaskSpec

    out = []
    for lora in (False, True):
        exts = (ExtensionSpec("lora", rank=8),) if lora else ()
        task = TaskSpec(name="t", backbone=backbone, extensions=(*exts, ExtensionSpec("head", outputs=2)))
        fm = build_fm(backbone, [task], device, "float32", 0)
        reqs = _reqs(1, 64)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def timed(gap_s: float) -> list[float]:
            xs = []
            with torch.inference_mode():
                for _ in range(3):
                    fm.run_batch(reqs)
                sync()
                for _ in range(n):
                    if gap_s:
                        time.sleep(gap_s)
                    t0 = time.perf_counter()
                    fm.run_batch(reqs)
                    sync()
                    xs.append((time.perf_counter() - t0) * 1e3)
            return xs

        def on_thread(gap_s: float, pollers: int = 0) -> list[float]:
            stop = threading.Event()

            def poll() -> None:
                cond = threading.Condition()
                with cond:
                    while not stop.is_set():
                        cond.wait(0.05)

            ps = [threading.Thread(target=poll) for _ in range(pollers)]
            for p in ps:
                p.start()
            box: list[float] = []
            th = threading.Thread(target=lambda: box.extend(timed(gap_s)))
            th.start()
            th.join()
            stop.set()
            for p in ps:
                p.join()
            return box

        for how, fn in (("main thread, back to back", lambda: timed(0.0)),
                        ("worker thread, back to back", lambda: on_thread(0.0)),
                        ("worker thread, 30 ms idle between", lambda: on_thread(0.03)),
                        ("worker thread, 30 ms idle, 7 idle pollers", lambda: on_thread(0.03, 7))):
            xs = fn()
            out.append(dict(backbone=backbone, lora=lora, how=how, median_ms=statistics.median(xs),
                            p90_ms=sorted(xs)[int(0.9 * len(xs))]))
            print(f"{backbone:>10} {'LoRA' if lora else 'no LoRA':<8} {how:<42} median "
                  f"{out[-1]['median_ms']:7.3f} ms  p90 {out[-1]['p90_ms']:7.3f} ms", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="minilm-l6,bert-base")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--device", default="cuda", help="--serving only: cuda, or cpu to try it here")
    ap.add_argument("--serving", action="store_true",
                    help="only how a batch's time depends on the thread serving it (serving())")
    args = ap.parse_args()
    report: dict = {"shapes": [], "threads": {}, "processes": {}, "serving": []}
    if args.serving:
        for bb in args.backbones.split(","):
            report["serving"] += serving(bb, args.repeats, args.device)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return 0
    for bb in args.backbones.split(","):
        rows = shapes(bb, args.repeats)
        report["shapes"] += rows
        for r in rows:
            print(f"{bb:>10} {r['batch']:>3} x {r['seq_len']:<4} wall {r['wall_ms']:7.3f} ms  "
                  f"host {r['host_ms']:7.3f} ms  device busy {r['device_ms']:7.3f} ms", flush=True)
        for what, fn in (("threads", threads), ("processes", processes)):
            report[what][bb] = {}
            for k in KS:
                meds = fn(bb, k, args.seconds)
                report[what][bb][k] = meds
                print(f"{bb:>10} {k} {what:<9} 1 x 64 each: median batch "
                      f"{statistics.median(meds):7.3f} ms (per replica {', '.join(f'{m:.2f}' for m in meds)})",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

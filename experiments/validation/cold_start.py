"""How much slower a serving thread's first batch is than its later ones (why the harness warms
every instance up before its replay clock starts).

    python experiments/validation/cold_start.py [CONFIG] [--rounds N]

Builds one PhysicalFM hosting the config's tasks of its first task's backbone on a short-lived
thread (as the runtime does), then, on a fresh thread (as an instance's serving thread), runs
single-request batches of each task at its input length, ``--rounds`` times over: the first
batch is cold. Prints each batch's time and the first against the median of the rest. CPU.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(HERE / "minilm_low.yaml"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from fmplex_exec.executors import build_fm, local_executor
    from fmplex_exec.threads import off_main
    from fmplex_sim.config import load_config
    from fmplex_sim.records import Batch, Request

    cfg = load_config(args.config)
    backbone = cfg.tasks[0].backbone
    tasks = [t for t in cfg.tasks if t.backbone == backbone]
    fm = off_main(build_fm, backbone, tasks, "cpu", "float32", cfg.seed)
    run = off_main(local_executor, fm, "cpu")
    times: list[tuple[str, int, float]] = []

    def serve() -> None:
        for _ in range(args.rounds):
            for t in tasks:
                batch = Batch((Request(0, t.name, 0.0, t.input_len, 0),))
                t0 = time.perf_counter()
                run(batch)
                times.append((t.name, t.input_len, (time.perf_counter() - t0) * 1000.0))

    th = threading.Thread(target=serve)
    th.start()
    th.join()
    for i, (name, n, ms) in enumerate(times):
        print(f"{i:3d} {name:10s} {n:4d} tokens {ms:8.1f} ms")
    first = times[0]
    same = [ms for name, _, ms in times[1:] if name == first[0]]
    print(f"{backbone}, {len(tasks)} tasks: first batch ({first[0]}) {first[2]:.1f} ms cold, "
          f"{statistics.median(same):.1f} ms warm (median of its {len(same)} later batches)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

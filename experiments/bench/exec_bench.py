"""Execution-harness overheads on real models (CPU by default).

1. Throughput of the fmplex runtime's mixed batches (16 tasks, each with a LoRA adapter and a
   head, one row per task) against the raw backbone forward at the same batch size and length:
   ratio of throughputs (target >= 0.85 on CPU), with the batched LoRA path (default) and with
   peft's per-adapter loop.
2. The bfq scheduler's decision time (16 backlogged tasks, a full batch) as a share of the
   batch's execution time (target < 2%).

Usage: python experiments/bench/exec_bench.py [--backbone minilm-l6] [--batch 16] [--seq 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from fmplex_exec.backbones import load_backbone
from fmplex_exec.vfm import ExecRequest, PhysicalFM
from fmplex_sim.policies.scheduling import InstanceView, make_scheduler
from fmplex_sim.records import Request
from fmplex_sim.specs import ExtensionSpec, TaskSpec


def timed(fn, repeats: int) -> float:
    fn()
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="minilm-l6")
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    raw = load_backbone(args.backbone)
    gen = torch.Generator().manual_seed(0)
    inputs = raw.make_inputs(args.batch, args.seq, gen)

    def raw_forward():
        with torch.inference_mode():
            out = raw.model(**inputs)
            raw.pooled(out, inputs.get("attention_mask"))

    t_raw = timed(raw_forward, args.repeats)

    fm = PhysicalFM(load_backbone(args.backbone))
    tasks = [TaskSpec(f"t{k}", args.backbone, (ExtensionSpec("lora", rank=8), ExtensionSpec("head", outputs=4)))
             for k in range(args.tasks)]
    for t in tasks:
        fm.add_task(t)
    reqs = [ExecRequest(tasks[i % args.tasks].name, args.seq) for i in range(args.batch)]
    t_fm = timed(lambda: fm.run_batch(reqs), args.repeats)
    one = [ExecRequest(tasks[0].name, args.seq) for _ in range(args.batch)]
    t_fm_one = timed(lambda: fm.run_batch(one), args.repeats)
    fm.lora_kernel = "peft"  # the same adapters through peft's per-adapter loop, for comparison
    t_fm_peft = timed(lambda: fm.run_batch(reqs), args.repeats)
    fm.lora_kernel = "batched"

    sched = make_scheduler("bfq")
    for t in tasks:
        sched.add_task(t.name, 1.0, 1.0)
    view = InstanceView(args.batch, args.batch * args.seq, lambda b, s, k: 0.001 * b)
    decisions = []
    rid = 0
    for _ in range(200):
        for t in tasks:
            for _ in range(2):
                sched.enqueue(Request(rid, t.name, 0.0, args.seq), 0.0)
                rid += 1
        t0 = time.perf_counter()
        batch = sched.schedule(0.0, view)
        decisions.append(time.perf_counter() - t0)
        sched.on_batch_done(batch, 0.01, 0.0)
    t_dec = statistics.median(decisions)

    result = {
        "backbone": args.backbone, "tasks": args.tasks, "batch": args.batch, "seq_len": args.seq,
        "torch_threads": torch.get_num_threads(),
        "raw_forward_ms": round(1000 * t_raw, 3),
        "fmplex_mixed_batch_ms": round(1000 * t_fm, 3),
        "fmplex_one_task_batch_ms": round(1000 * t_fm_one, 3),
        "fmplex_mixed_batch_peft_kernel_ms": round(1000 * t_fm_peft, 3),
        "throughput_ratio_mixed": round(t_raw / t_fm, 4),
        "throughput_ratio_mixed_peft_kernel": round(t_raw / t_fm_peft, 4),
        "throughput_ratio_one_task": round(t_raw / t_fm_one, 4),
        "bfq_decision_us": round(1e6 * t_dec, 2),
        "decision_share_of_batch": round(t_dec / t_fm, 5),
    }
    for k, v in result.items():
        print(f"{k}: {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

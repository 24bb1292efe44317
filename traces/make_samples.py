"""Regenerate the synthetic sample traces in traces/samples/ (one per supported format).

The samples are made by FMplex's own generators from a fixed seed (no public data is copied),
each well under 1 MB, so every loader can be tried without downloading anything:

    python traces/make_samples.py            # writes traces/samples/
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from fmplex_sim.arrivals import onoff, zipf_weights
from fmplex_sim.workload import arrival_times
from fmplex_sim.specs import ArrivalSpec

OUT = Path(__file__).resolve().parent / "samples"
SEED = 2026


def _lengths(rng: np.random.Generator, n: int, median: float, sigma: float, cap: int) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(median), sigma, n), 1, cap).astype(int)


def native(rng: np.random.Generator) -> None:
    """8 tasks, Zipf(1.1) popularity, on/off bursts, 120 s, about 2,400 requests."""
    rates = 20.0 * zipf_weights(8, 1.1)  # 20 requests/s in all, long-run
    rows = []
    for k, r in enumerate(rates):
        t = onoff(float(r), 5.0, 5.0, 0.0, 120.0, rng)
        lens = _lengths(rng, t.shape[0], 96, 0.6, 512)
        rows += [(float(a), f"task-{k}", int(n)) for a, n in zip(t, lens)]
    rows.sort(key=lambda x: (x[0], x[1]))
    with open(OUT / "native_zipf_onoff.csv", "w") as fh:
        fh.write("arrival_s,task,input_len\n")
        for a, task, n in rows:
            fh.write(f"{a:.6f},{task},{n}\n")


def azure_like(rng: np.random.Generator) -> None:
    """Azure LLM 2023 columns: 10 minutes of bursty (Gamma, CV 3) arrivals at 4 requests/s."""
    t = arrival_times(ArrivalSpec("gamma", 4.0, 3.0), 0.0, 600.0, rng)
    ctx = _lengths(rng, t.shape[0], 800, 0.9, 8000)
    gen = _lengths(rng, t.shape[0], 150, 0.8, 1500)
    start = dt.datetime(2025, 1, 1, 12, 0, 0)
    with open(OUT / "azure_like.csv", "w") as fh:
        fh.write("TIMESTAMP,ContextTokens,GeneratedTokens\n")
        for a, c, g in zip(t, ctx, gen):
            stamp = start + dt.timedelta(seconds=float(a))
            fh.write(f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond:06d}0,{c},{g}\n")


def mooncake_like(rng: np.random.Generator) -> None:
    """Mooncake JSON lines: 5 minutes at 3 requests/s, millisecond timestamps, long inputs."""
    t = arrival_times(ArrivalSpec("poisson", 3.0), 0.0, 300.0, rng)
    ins = _lengths(rng, t.shape[0], 6000, 0.7, 60000)
    outs = _lengths(rng, t.shape[0], 400, 0.5, 2000)
    with open(OUT / "mooncake_like.jsonl", "w") as fh:
        for a, i, o in zip(t, ins, outs):
            blocks = list(range(int(i) // 512 + 1))
            fh.write(json.dumps({"timestamp": int(a * 1000), "input_length": int(i),
                                 "output_length": int(o), "hash_ids": blocks}) + "\n")


def alibaba_like(rng: np.random.Generator) -> None:
    """Alibaba GenAI 2026 columns: 200 tenants with Zipf(1.2) popularity on 6 base models, one day."""
    n = 3000
    t = np.sort(rng.uniform(0, 86400, n))
    tenants = rng.choice(200, n, p=zipf_weights(200, 1.2))
    model_of = rng.choice(6, 200, p=zipf_weights(6, 1.0))
    start = dt.datetime(2025, 1, 1)
    status = rng.choice(["SUCCEED", "FAILED"], n, p=[0.98, 0.02])
    with open(OUT / "alibaba_like.csv", "w") as fh:
        fh.write("gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length,"
                 "negative_prompt_length,num_images_per_prompt,num_inference_steps,"
                 "checkpoint_model_version_id,num_lora\n")
        for a, g, s in zip(t, tenants, status):
            stamp = start + dt.timedelta(seconds=float(a))
            fh.write(f"{stamp:%Y-%m-%d %H:%M:%S},TXT_2_IMG,{s},{rng.integers(10, 60)}.0,G{g:04d},"
                     f"{rng.integers(5, 120)}.0,,1.0,30.0,M{model_of[g]:04d},{rng.integers(0, 3)}\n")


def servegen_like(rng: np.random.Generator) -> None:
    """ServeGen per-client statistics: 3 clients, 6 windows of 600 s (one hour)."""
    folder = OUT / "servegen_like"
    folder.mkdir(exist_ok=True)
    for client in range(3):
        with open(folder / f"chunk-{client}-trace.csv", "w") as fh:
            for w in range(6):
                rate = float(rng.uniform(0.5, 5.0)) * (client + 1)
                cv = float(rng.uniform(0.8, 3.0))
                if client == 2 and w == 3:
                    fh.write(f"{w * 600},0,0,,0,0\n")  # an idle window
                elif client == 1:
                    fh.write(f"{w * 600},{rate},{cv},Weibull,{0.6:.4f},{0.01:.4f}\n")
                else:
                    fh.write(f"{w * 600},{rate},{cv},Gamma,{1 / cv**2:.6f},{0.05:.4f}\n")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for k, make in enumerate((native, azure_like, mooncake_like, alibaba_like, servegen_like)):
        make(np.random.default_rng([SEED, k]))
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(OUT.parent)}: {p.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Harness: noisy neighbour on real MiniLM-L6 on the CPU, fifo against bfq (and bfq with light_first).

Four tasks with equal weights share one backbone (placement fmplex, max_batch 16, 16-token
inputs, LoRA rank 8 and a head each): ``flood`` is offered 10x its weighted share, ``heavy``
2.5x (it stays backlogged), ``light0`` and ``light1`` 0.3x. The shares are quarters of the
capacity the simulator finds for one saturating task on the measured profile of this machine
(profiles/cpu-2core/minilm-l6.csv). No drain: every backlogged task stays backlogged to the end.

Replays (each in its own process, identical request stream): the four tasks under fifo, bfq
and bfq with ``light_first``, and each light task alone under both bfq variants. The simulator runs the same configs on the same
stream with the profile, for comparison. Checked, as in tests/test_noisy.py:
- every backlogged task's backbone time against its weighted max-min fair share (target
  within 10%): the light tasks get what they ask, the rest is split by weight;
- each light task's p99 against its p99 alone (target within 1.5x).

Usage: python experiments/noisy/noisy.py --out results/noisy/noisy.json [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "cpu-2core" / "minilm-l6.csv"
OFFERED = {"flood": 10.0, "heavy": 2.5, "light0": 0.3, "light1": 0.3}  # x the weighted share


def config(tasks: dict[str, float], scheduler: str, duration: float, seed: int) -> dict:
    """``scheduler``: fifo, bfq, or bfq+lf (bfq with ``light_first``)."""
    name, _, lf = scheduler.partition("+")
    system = {"placement": "fmplex", "scheduler": name, "max_batch": 16}
    if lf:
        system["light_first"] = True
    return {"seed": seed, "duration_s": duration, "drain_s": 0,
            "cluster": {"device": "CPU", "gpus": 1}, "latency_model": {"profile": str(PROFILE)},
            "system": system,
            "tasks": [{"name": n, "backbone": "minilm-l6", "slo_ms": 1000, "input_len": 16,
                       "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
                       "arrival": {"process": "poisson", "rate_rps": r}} for n, r in tasks.items()]}


def capacity_rps() -> float:
    """Requests/s one task completes when it saturates the instance (simulator, profile)."""
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import simulate

    s = simulate(parse_config(config({"probe": 2000.0}, "fifo", 2.0, 0), "capacity")).summary
    return s["per_task"]["probe"]["completed"] / 2.0


def replay(raw: dict) -> dict:
    """One replay in a process of its own (fmplex_exec.isolated): its summary."""
    from fmplex_exec.isolated import replay_in_child

    return replay_in_child(raw, "noisy")["summary"]


def simulated(raw: dict) -> dict:
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import simulate

    return simulate(parse_config(raw, "noisy")).summary


def fair_share_ratios(summary: dict) -> dict[str, float]:
    """Backlogged task -> backbone time received / weighted max-min fair share (equal weights)."""
    pt = summary["per_task"]
    back = [n for n in pt if not n.startswith("light")]
    rest = sum(p["service_s"] for p in pt.values()) - sum(pt[n]["service_s"] for n in pt if n not in back)
    return {n: round(pt[n]["service_s"] / (rest / len(back)), 4) for n in back}


def digest(summary: dict, alone: dict[str, float]) -> dict:
    pt = summary["per_task"]
    out = {"fair_share_ratio": fair_share_ratios(summary), "per_task": {}}
    for n, p in pt.items():
        row = {"arrived": p["arrived"], "completed": p["completed"], "rejected": p["rejected"],
               "unfinished": p["unfinished"], "service_s": p["service_s"],
               "p50_ms": p["latency_ms"]["p50"], "p99_ms": p["latency_ms"]["p99"]}
        if n in alone and p["latency_ms"]["p99"] is not None:
            row["p99_alone_ms"] = alone[n]
            row["p99_vs_alone"] = round(p["latency_ms"]["p99"] / alone[n], 3)
        out["per_task"][n] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from fmplex_sim.results import provenance

    cap = capacity_rps()
    rates = {n: x * cap / len(OFFERED) for n, x in OFFERED.items()}
    result = {"capacity_rps_simulated": round(cap, 2), "offered_rps": {n: round(r, 2) for n, r in rates.items()},
              "offered_x_share": OFFERED, "engines": {}}
    for engine, run in (("harness", replay), ("simulator", simulated)):
        alone: dict[str, dict[str, float]] = {}
        for sched in ("bfq", "bfq+lf"):
            alone[sched] = {}
            for n in OFFERED:
                if n.startswith("light"):
                    s = run(config({n: rates[n]}, sched, args.duration, args.seed))
                    alone[sched][n] = s["per_task"][n]["latency_ms"]["p99"]
        res = {}
        for sched in ("fifo", "bfq", "bfq+lf"):
            res[sched] = digest(run(config(rates, sched, args.duration, args.seed)), alone.get(sched, alone["bfq"]))
            print(engine, sched, json.dumps(res[sched]), flush=True)
        result["engines"][engine] = res
    result["targets"] = {}
    for sched, tag in (("bfq", "bfq"), ("bfq+lf", "bfq_light_first")):
        h = result["engines"]["harness"][sched]
        result["targets"][f"{tag}_fair_share_within_10pct"] = all(0.9 <= r <= 1.1 for r in h["fair_share_ratio"].values())
        result["targets"][f"{tag}_light_p99_within_1_5x_alone"] = all(
            p.get("p99_vs_alone", 0) <= 1.5 for n, p in h["per_task"].items() if n.startswith("light"))
    result["provenance"] = provenance(args.seed, {"kind": "profile", "source": str(PROFILE)}, sys.argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["targets"]), f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

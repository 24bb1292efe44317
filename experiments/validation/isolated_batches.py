"""Per task: requests that ran alone, measured against the same requests simulated.

    python experiments/validation/isolated_batches.py FOLDER [--systems colocate,fmplex]

FOLDER is an `fmplex-exec validate` results folder. A request counts when it ran as a batch of
one and no other batch, on any instance, overlapped that batch, in a replay
(`<system>/real*/requests.csv`) and also in the simulation (`<system>/sim/requests.csv`). Such
a batch's service time (finish minus start) holds no queueing and no contention: only what
one batch costs, wake-up included. The script prints, per system and task, the median service
time measured and simulated, and their difference. Nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def alone(path: Path) -> dict[str, tuple[float, str]]:
    """``request_id -> (service ms, task)`` of the completed requests in ``path`` that ran as a
    batch of one that overlapped no other batch."""
    batches: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["status"] == "completed":
                batches[(r["instance"], r["batch_id"])].append(r)
    spans = sorted((min(float(r["start_s"]) for r in rs), max(float(r["finish_s"]) for r in rs), rs)
                   for rs in batches.values())
    out, ended = {}, float("-inf")  # the latest finish of the batches started before
    for i, (start, finish, rs) in enumerate(spans):
        nxt = spans[i + 1][0] if i + 1 < len(spans) else float("inf")
        if len(rs) == 1 and ended < start and finish < nxt:
            out[rs[0]["request_id"]] = ((finish - start) * 1000.0, rs[0]["task"])
        ended = max(ended, finish)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--systems", default="spatial,colocate,fmplex")
    args = ap.parse_args()
    for system in args.systems.split(","):
        base = args.folder / system
        if not (base / "sim" / "requests.csv").is_file():
            print(f"{system}: no {base / 'sim' / 'requests.csv'}", file=sys.stderr)
            continue
        sim = alone(base / "sim" / "requests.csv")
        pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for real_dir in sorted(p for p in base.glob("real*") if (p / "requests.csv").is_file()):
            for rid, (ms, task) in alone(real_dir / "requests.csv").items():
                if rid in sim:
                    pairs[task].append((ms, sim[rid][0]))
        print(system)
        for task, xs in sorted(pairs.items()):
            real = statistics.median(x[0] for x in xs)
            simulated = statistics.median(x[1] for x in xs)
            print(f"  {task:12s} n={len(xs):4d}  measured {real:7.1f} ms  simulated {simulated:7.1f} ms  "
                  f"measured - simulated {real - simulated:+6.1f} ms ({(simulated - real) / real:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per task: requests that ran alone, measured against the same requests simulated.

    python experiments/validation/isolated_batches.py FOLDER [--systems colocate,fmplex]
        [--by-gap] [--overlap | --beside | --concurrency]

FOLDER is an `fmplex-exec validate` results folder. A request counts when it ran as a batch of
one and no other batch, on any instance, overlapped that batch, in a replay
(`<system>/real*/requests.csv`) and also in the simulation (`<system>/sim/requests.csv`). Such
a batch's service time (finish minus start) holds no queueing and no contention: only what
one batch costs, wake-up included. The script prints, per system and task, the median service
time measured and simulated, and their difference. ``--by-gap`` groups them instead by how
long the request's instance had been idle before its batch in the replay (its wake-up's gap).
``--overlap`` takes every completed request instead, grouped by whether its batch overlapped
another instance's batch in the replay and in the simulation, and prints the median and 90th
percentile of its batch's service time on both sides. ``--beside`` takes the requests whose
batch started while another instance's batch ran, in the replay and in the simulation, by task
(or, with ``--by-gap``, by its instance's idle gap before it in the replay): what a batch costs
among others (contention, and the wake-up beside running pools). ``--concurrency`` prints, for
the simulation and each replay, the seconds some batch ran and the share of them with ``k``
batches running at once. Nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path


#: ``--by-gap``: upper bounds (s) of the idle-gap classes, the last open
GAPS_S = (0.05, 0.2, 0.6, 1.5, float("inf"))


def batch_spans(path: Path) -> list[tuple[float, float, str, list[dict]]]:
    """``(start, finish, instance, rows)`` of every batch of completed requests in ``path``
    (a ``requests.csv``), by start."""
    batches: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["status"] == "completed":
                batches[(r["instance"], r["batch_id"])].append(r)
    return sorted((min(float(r["start_s"]) for r in rs), max(float(r["finish_s"]) for r in rs), inst, rs)
                  for (inst, _), rs in batches.items())


def idle_gaps(spans: list[tuple[float, float, str, list[dict]]]) -> list[float | None]:
    """Per span of :func:`batch_spans`, how long its instance had been idle before it (None
    for the instance's first batch)."""
    gaps, last = [], {}  # each instance's latest finish so far
    for start, finish, inst, _ in spans:
        gaps.append(start - last[inst] if inst in last else None)
        last[inst] = max(last.get(inst, finish), finish)
    return gaps


def alone(path: Path) -> dict[str, tuple[float, str, float | None]]:
    """``request_id -> (service ms, task, idle s)`` of the completed requests in ``path`` that
    ran as a batch of one that overlapped no other batch; ``idle s`` is how long its instance
    had been idle before that batch (None for the instance's first batch)."""
    spans = batch_spans(path)
    out, ended = {}, float("-inf")  # the latest finish of the batches started before
    for i, ((start, finish, _, rs), idle) in enumerate(zip(spans, idle_gaps(spans))):
        nxt = spans[i + 1][0] if i + 1 < len(spans) else float("inf")
        if len(rs) == 1 and ended < start and finish < nxt:
            out[rs[0]["request_id"]] = ((finish - start) * 1000.0, rs[0]["task"], idle)
        ended = max(ended, finish)
    return out


def overlapped(path: Path) -> dict[str, tuple[float, bool]]:
    """``request_id -> (service ms, overlapped)`` of the completed requests in ``path``: its
    batch's finish minus start, and whether another instance's batch ran during it."""
    spans = batch_spans(path)
    out = {}
    for start, finish, inst, rs in spans:
        hit = any(s2 < finish and f2 > start and i2 != inst for s2, f2, i2, _ in spans)
        for r in rs:
            out[r["request_id"]] = ((finish - start) * 1000.0, hit)
    return out


def _overlap_report(base: Path) -> None:
    sim = overlapped(base / "sim" / "requests.csv")
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for real_dir in sorted(p for p in base.glob("real*") if (p / "requests.csv").is_file()):
        for rid, (ms, hit) in overlapped(real_dir / "requests.csv").items():
            if rid in sim:
                key = f"{'overlapped' if hit else 'alone'} measured, {'overlapped' if sim[rid][1] else 'alone'} simulated"
                groups[key].append((ms, sim[rid][0]))
    for key, xs in sorted(groups.items()):
        real, simulated = sorted(x[0] for x in xs), sorted(x[1] for x in xs)
        p90 = int(0.9 * (len(xs) - 1))
        print(f"  {key:40s} n={len(xs):5d}  median measured {statistics.median(real):6.1f} ms, simulated "
              f"{statistics.median(simulated):6.1f}  p90 measured {real[p90]:6.1f}, simulated {simulated[p90]:6.1f}")


def started_beside(path: Path) -> dict[str, tuple[float, str, float | None, bool]]:
    """``request_id -> (service ms, task, idle s, beside)`` of the completed requests in
    ``path``: ``beside`` when its batch started while another instance's batch ran; ``idle
    s`` as in :func:`alone`."""
    spans = batch_spans(path)
    out = {}
    for (start, finish, inst, rs), idle in zip(spans, idle_gaps(spans)):
        beside = any(s2 < start < f2 and i2 != inst for s2, f2, i2, _ in spans)
        for r in rs:
            out[r["request_id"]] = ((finish - start) * 1000.0, r["task"], idle, beside)
    return out


def concurrency(path: Path) -> tuple[float, dict[int, float]]:
    """Seconds some batch ran in ``path``, and the share of them with ``k`` batches running."""
    spans = batch_spans(path)
    edges = sorted([(s, 1) for s, _, _, _ in spans] + [(f, -1) for _, f, _, _ in spans])
    k, last, spent = 0, edges[0][0] if edges else 0.0, defaultdict(float)
    for t, step in edges:
        spent[k] += t - last
        last, k = t, k + step
    busy = sum(v for kk, v in spent.items() if kk > 0)
    return busy, {kk: v / busy for kk, v in sorted(spent.items()) if kk > 0 and busy > 0}


def _print_pairs(pairs: dict[str, list[tuple[float, float]]], by_gap: bool) -> None:
    order = [_gap_class(None)] + [_gap_class(g - 1e-9) for g in GAPS_S[:-1]] + [_gap_class(1e9)]
    for key, xs in sorted(pairs.items(), key=lambda kv: order.index(kv[0]) if by_gap else kv[0]):
        real = statistics.median(x[0] for x in xs)
        simulated = statistics.median(x[1] for x in xs)
        print(f"  {key:16s} n={len(xs):4d}  measured {real:7.1f} ms  simulated {simulated:7.1f} ms  "
              f"measured - simulated {real - simulated:+6.1f} ms ({(simulated - real) / real:+.0%})")


def _replays(base: Path) -> list[Path]:
    return sorted(p for p in base.glob("real*") if (p / "requests.csv").is_file())


def _gap_class(idle: float | None) -> str:
    if idle is None:
        return "first batch"
    lo = 0.0
    for hi in GAPS_S:
        if idle < hi:
            return f"idle {lo:g}-{hi:g} s" if hi != float("inf") else f"idle >= {lo:g} s"
        lo = hi
    raise AssertionError(idle)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--systems", default="spatial,colocate,fmplex")
    ap.add_argument("--by-gap", action="store_true",
                    help="group by how long the instance had been idle in the replay, not by task")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--overlap", action="store_true",
                     help="every request, by whether its batch overlapped another instance's batch")
    how.add_argument("--beside", action="store_true",
                     help="requests whose batch started while another instance's batch ran, on both sides")
    how.add_argument("--concurrency", action="store_true",
                     help="how many batches ran at once, share of the busy time, per side")
    args = ap.parse_args()
    if args.by_gap and (args.overlap or args.concurrency):
        ap.error("--by-gap groups the default report or --beside")
    for system in args.systems.split(","):
        base = args.folder / system
        if not (base / "sim" / "requests.csv").is_file():
            print(f"{system}: no {base / 'sim' / 'requests.csv'}", file=sys.stderr)
            continue
        print(system)
        if args.overlap:
            _overlap_report(base)
            continue
        if args.concurrency:
            for side in [base / "sim", *_replays(base)]:
                busy, share = concurrency(side / "requests.csv")
                print(f"  {side.name:8s} busy {busy:7.1f} s  " + "  ".join(f"k={k}: {v:.2f}" for k, v in share.items()))
            continue
        pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
        if args.beside:
            sim_b = started_beside(base / "sim" / "requests.csv")
            for real_dir in _replays(base):
                for rid, (ms, task, idle, beside) in started_beside(real_dir / "requests.csv").items():
                    if beside and rid in sim_b and sim_b[rid][3] and (idle is not None or not args.by_gap):
                        pairs[_gap_class(idle) if args.by_gap else task].append((ms, sim_b[rid][0]))
        else:
            sim = alone(base / "sim" / "requests.csv")
            for real_dir in _replays(base):
                for rid, (ms, task, idle) in alone(real_dir / "requests.csv").items():
                    if rid in sim:
                        pairs[_gap_class(idle) if args.by_gap else task].append((ms, sim[rid][0]))
        _print_pairs(pairs, args.by_gap)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Simulate a validation folder's request stream again and compare it with the replays it holds.

    python experiments/validation/resimulate.py results/validation/minilm_low [--profile FILE]
        [--per-round] [--first N]

The replays (`<system>/real*/requests.csv`) are what the host measured and stay as they are;
only the simulated side is recomputed, with this checkout's simulator and the folder's
`profile.csv` (or `--profile`, e.g. the same profile with rows added). Prints, per system, the
p50 and p99 errors the folder's `validation.json` recorded and those of the new simulation.
Nothing is written unless `--out DIR` is given: then DIR gets this simulation's
`validation.json` (the folder's, with the new simulated side and errors), `validation.png` and
`provenance.json`. A change to the simulator can so be judged on replays that took many
minutes to measure, in seconds; the replays' own noise is still in them (`round_spread`).
`--per-round` simulates the stream once per round with that round's own profile
(`profile-round<k>.csv`) and pools those simulations, as the replays are pooled: if the host
drifted between rounds, and each round's profile caught the same spell as its replays, this
pairing takes the drift out of the comparison. `--first N` compares as if the run had stopped
after round N: its first N rounds' profiles merged as validate merges them, and their replays
pooled (say `--first 2` on a folder where validate added an extra round).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from fmplex_exec.cli import as_run
from fmplex_sim.config import LatencyConfig, load_config
from fmplex_sim.latency.profile import ProfileModel
from fmplex_sim.metrics import read_requests_csv
from fmplex_sim.run import prepare, simulate
from fmplex_sim.results import provenance, write_json
from fmplex_sim.validation import compare_runs, plot_validation, rank_line, rank_report, within_targets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an `fmplex-exec validate` results folder")
    ap.add_argument("--profile", type=Path, help="profile CSV (default: the folder's profile.csv)")
    ap.add_argument("--per-round", action="store_true",
                    help="simulate once per round with that round's profile-round<k>.csv, pooled")
    ap.add_argument("--first", type=int, metavar="N",
                    help="only the first N rounds: their profiles merged, their replays pooled")
    ap.add_argument("--out", type=Path, help="write validation.json, validation.png and provenance.json here")
    args = ap.parse_args()
    folder: Path = args.folder
    if (args.per_round or args.first) and args.profile:
        ap.error("--per-round and --first read the folder's per-round profiles; they take no --profile")
    if args.first is not None and args.first < 1:
        ap.error("--first: give a number of rounds, 1 or more")
    per_round = sorted(folder.glob("profile-round*.csv"), key=lambda p: (len(p.name), p.name))[:args.first]
    if (args.per_round or args.first) and len(per_round) < (args.first or 1):
        ap.error(f"{folder}: fewer than {args.first or 1} profile-round<k>.csv (a run with fewer rounds, or "
                 "given --profile)")
    profile = args.profile or folder / "profile.csv"
    if args.first and not args.per_round:
        from fmplex_exec.profiler import merge_rows, read_rows
        from fmplex_sim.latency.profile import write_profile

        scratch = tempfile.TemporaryDirectory()  # removed when main returns
        profile = Path(scratch.name) / f"profile-first{args.first}.csv"
        write_profile(profile, merge_rows([read_rows(p) for p in per_round]),
                      [f"merged: the median of each row over {', '.join(p.name for p in per_round)}"])
    before = json.loads((folder / "validation.json").read_text())
    # as the harness ran it (a folder written before as_run existed records the config as given)
    cfg = as_run(load_config(folder / "config.yaml"), before.get("device", "cpu"))
    cfg = replace(cfg, latency_model=LatencyConfig(kind="profile", path=str(profile)))
    cfg, wl, _ = prepare(cfg)
    if args.per_round:
        models = [ProfileModel(p) for p in per_round]
        profile = ", ".join(p.name for p in per_round)
    else:
        models = [ProfileModel(profile)]
    systems, runs = {}, {}
    print(f"{folder}: {len(wl)} requests, profile {profile}")
    print(f"{'system':>9}  {'p50 err before -> now':>22}  {'p99 err before -> now':>22}")
    for name, old in before["systems"].items():
        c = cfg.with_system(name)
        reals = sorted((folder / name).glob("real*"), key=lambda p: (len(p.name), p.name))[:args.first]
        real = [read_requests_csv(d / "requests.csv", wl.tasks) for d in reals]
        for rec in real:
            if not np.allclose(rec.arrival_s, wl.arrival_s, atol=2e-6):
                ap.error(f"{folder}: {name}'s replay does not hold this config's request stream")
        if args.per_round and len(models) != len(real):
            ap.error(f"{folder}: {name} has {len(real)} replays and {len(models)} round profiles")
        sims = [simulate(c, wl, latency=m).records for m in models]
        entry = compare_runs(real, sims, c.tasks, c.duration_s)
        entry["meets_targets"] = within_targets(entry["overall"])
        systems[name] = entry
        runs[name] = (real, sims[0] if len(sims) == 1 else sims)
        o, b = entry["overall"], old["overall"]
        print(f"{name:>9}  {b['p50_rel_err'] * 100:+9.1f}% -> {o['p50_rel_err'] * 100:+7.1f}%  "
              f"{b['p99_rel_err'] * 100:+9.1f}% -> {o['p99_rel_err'] * 100:+7.1f}%")
    ranked = rank_report(systems)
    print(rank_line(ranked))
    if args.out:
        report = dict(before, systems=systems, resimulated={"folder": str(folder), "profile": str(profile),
                                                            "per_round": args.per_round})
        report["ranking"] = ranked
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "validation.json", report)
        write_json(args.out / "provenance.json", provenance(cfg.seed, {"kind": "profile", "source": str(profile)},
                                                            sys.argv))
        plot_validation(args.out / "validation.png", runs, report,
                        title=f"{folder.name}: {len(cfg.tasks)} tasks, {len(wl)} requests, {cfg.duration_s:g} s; "
                        "measured (solid) vs simulated again (dashed)",
                        caption=f"replays of {folder}; simulated by this checkout with {profile}")
        print(f"report: {args.out / 'validation.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``fmplex-sim isolation``: what one noisy task does to the tasks that share its backbone.

Runs one request stream, per system, with every task (``<system>/shared``), each other task
alone on its own requests (``<system>/alone/<task>``) and without the noisy task
(``<system>/without-noisy``), each an ordinary results folder; ``isolation.json`` holds the
report of :mod:`fmplex_sim.isolation` per system.
"""

from __future__ import annotations

from pathlib import Path

from fmplex_sim.clitools import writing_results


def cmd_isolation(args) -> int:
    from fmplex_sim.cli import _load, _simulate, system_names
    from fmplex_sim.isolation import check_noisy, print_reports, run_isolation
    from fmplex_sim.results import provenance, results_dir, write_json
    from fmplex_sim.run import prepare, write_run

    cfg = _load(args)
    cfg, wl, info = prepare(cfg)  # one request stream for every run
    check_noisy(cfg, args.noisy)
    names = system_names(args.systems, (cfg.system.name,), cfg)
    with writing_results(args.out), results_dir(args.out) as tmp:
        latency = {}

        def run_one(label, c, w):
            out = _simulate(c, w, label)
            write_run(tmp / label, c, out, args.argv, workload_info=info)
            latency.update(out.summary["latency_model"])
            return out.summary, out.result.placement.to_dict()

        reports = run_isolation(cfg, wl, args.noisy, names, run_one)
        write_json(tmp / "isolation.json", {"engine": "fmplex_sim", "noisy": args.noisy, "systems": reports})
        write_json(tmp / "provenance.json", provenance(cfg.seed, latency, args.argv))
    print_reports(reports, Path(args.out))
    return 0


def add_parsers(sub, parser_class) -> None:
    """Add ``isolation`` to the ``fmplex-sim`` subcommands."""
    from fmplex_sim.cli import common

    p = sub.add_parser("isolation", help="measure what one noisy task does to the others (shared, alone, without it)")
    common(p)
    p.add_argument("--noisy", required=True, help="the task whose load is judged (e.g. one offered 10x its share)")
    p.add_argument("--systems", default=None,
                   help="comma-separated systems: presets or PLACEMENT-SCHEDULER (default: the config's system)")
    p.set_defaults(func=cmd_isolation)

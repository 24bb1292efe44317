"""``fmplex-sim sweep`` (many runs of one base config) and ``fmplex-sim capacity`` (the most
tasks a cluster hosts within their SLOs).

``sweep`` resumes: ``--out`` is a new or empty folder or a sweep folder written before, whose
finished points are kept. Interrupted by SIGINT or SIGTERM it keeps the finished points, leaves
no half-written one, prints one line and exits 130 or 143; rerunning finishes the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fmplex_sim.clitools import writing_results

PROG = "fmplex-sim"


def cmd_sweep(args) -> int:
    from fmplex_sim.sweep import check_sweep_out, count_finished, load_sweep, run_sweep
    from fmplex_sim.sweep_exec import Interrupted, backend, interruptible

    sweep = load_sweep(args.sweep)  # every point validated before anything is written
    check_sweep_out(args.out)
    be = backend(args.workers, args.ray, args.argv)
    out = Path(args.out)
    try:
        with writing_results(args.out), interruptible():
            ran, skipped = run_sweep(sweep, out, be, progress=sys.stderr.isatty())
    except Interrupted as e:
        done = count_finished(out, sweep)
        sys.stderr.write(
            f"{PROG}: interrupted ({e.name}): {done} of {len(sweep.points)} points finished in {out}; "
            f"rerun the same command to finish the rest\n"
        )
        return 128 + e.signum
    print(f"sweep: {len(sweep.points)} points ({ran} run, {skipped} already finished)")
    print(f"table: {out / 'sweep.csv'}")
    return 0


def cmd_capacity(args) -> int:
    from fmplex_sim.capacity import capacity
    from fmplex_sim.cli import _load
    from fmplex_sim.results import provenance, results_dir, write_json, write_yaml

    cfg = _load(args)
    cfg, found = capacity(cfg, args.system, args.slo_attainment, args.min_tasks, args.max_tasks)
    with writing_results(args.out), results_dir(args.out) as tmp:
        write_json(tmp / "capacity.json", found)
        write_yaml(tmp / "config.yaml", cfg.to_dict())
        write_json(tmp / "provenance.json", provenance(cfg.seed, found["latency_model"], args.argv))
    best, lo, pool = found["tasks_hosted_max"], found["min_tasks"], found["pool_size"]
    amount = f"fewer than {lo}" if best < lo and lo > 1 else f"{best}"
    print(
        f"{found['system']}: {amount} of {pool} tasks hosted with every task's SLO attainment >= "
        f"{args.slo_attainment:g} on {found['gpus']} x {found['device']} ({len(found['search'])} probes)"
    )
    print(f"results: {args.out}")
    return 0


def add_parsers(sub, parser_class) -> None:
    """Add ``sweep`` and ``capacity`` to the ``fmplex-sim`` subcommands."""
    s = sub.add_parser("sweep", help="run a grid or list of config overrides, one results folder per point")
    s.add_argument("sweep", help="sweep file (YAML: base, grid, points)")
    s.add_argument("--out", required=True, help="sweep folder: new, empty, or an earlier sweep folder (resumed)")
    s.add_argument("--workers", type=int,
                   help="local worker processes (default: the number of CPUs; 1 runs in-process)")
    s.add_argument("--ray", metavar="ADDRESS", help="run points as Ray tasks on this cluster (local: start one here)")
    s.set_defaults(func=cmd_sweep)
    c = sub.add_parser("capacity", help="find the most tasks of a config that meet their SLOs")
    c.add_argument("config", help="YAML run configuration: its tasks are the pool, in config order")
    c.add_argument("--out", required=True,
                   help="results folder: new, empty, or an earlier results folder (replaced atomically)")
    c.add_argument("--system", required=True, help="a preset or PLACEMENT-SCHEDULER")
    c.add_argument("--slo-attainment", type=float, required=True, help="per-task target in (0, 1], e.g. 0.99")
    c.add_argument("--min-tasks", type=int, help="smallest number of tasks to probe (default 1)")
    c.add_argument("--max-tasks", type=int, help="largest number of tasks to probe (default: the pool)")
    c.add_argument("--seed", type=int, help="override the config's seed")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. cluster.gpus=4 or tasks[0].weight=2")
    c.set_defaults(func=cmd_capacity)

"""``fmplex-sim``: simulate, compare systems, sweep configs, search capacity, measure what one
noisy task does to the others (``isolation``), list the catalog, inspect and convert traces.

Exit status: 0 on success, 2 on invalid input (one line on stderr naming the file, the key
and the problem; no traceback, no half-written results folder). ``--out`` must be a new or empty
folder or one this tool wrote before (it is replaced whole); anything else is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fmplex_sim.clitools import OneLineParser, check_results_out, run_cli, writing_results
from fmplex_sim.errors import InputError

PROG = "fmplex-sim"


def _progress_bar(total: float, desc: str):
    """A tqdm bar over simulated seconds, silent when stderr is not a terminal."""
    from tqdm import tqdm

    bar = tqdm(total=round(total, 3), desc=desc, unit="sim-s", disable=not sys.stderr.isatty(),
               leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} sim-s [{elapsed}<{remaining}]")
    state = {"last": 0.0}

    def update(t: float) -> None:
        bar.update(round(t - state["last"], 3))
        state["last"] = t

    return bar, update


def _load(args) -> "RunConfig":  # noqa: F821
    from fmplex_sim.config import load_config

    overrides = list(args.set or [])
    if args.seed is not None:
        if args.seed < 0:
            raise InputError("--seed", str(args.seed), "must be >= 0")
        overrides.append(f"seed={args.seed}")
    cfg = load_config(args.config, overrides)
    check_results_out(args.out)
    return cfg


def _simulate(cfg, wl, desc: str):
    from fmplex_sim.run import simulate

    bar, update = _progress_bar(cfg.duration_s + cfg.drain_s, desc)
    try:
        return simulate(cfg, wl, progress=update if not bar.disable else None)
    finally:
        bar.close()


def cmd_run(args) -> int:
    from fmplex_sim.results import results_dir
    from fmplex_sim.run import prepare, write_run

    cfg, wl, info = prepare(_load(args))
    out = _simulate(cfg, wl, cfg.system.name)
    with writing_results(args.out), results_dir(args.out) as tmp:
        write_run(tmp, cfg, out, args.argv, workload_info=info)
    s = out.summary
    lat = s["latency_ms"]
    print(
        f"{s['system']['name']}: {s['requests']['completed']}/{s['requests']['arrived']} completed, "
        f"mean {lat['mean']} ms, p99 {lat['p99']} ms, SLO attainment {s['slo_attainment']}, "
        f"{s['cluster']['gpus_used']} device(s), {s['cluster']['memory_gib']} GiB"
    )
    print(f"results: {args.out}")
    return 0


def system_names(arg: str | None, default, cfg) -> list[str]:
    """The systems ``--systems`` names (comma-separated), else ``default``; every name is
    validated against ``cfg`` before any work."""
    names = [s.strip() for s in (",".join(default) if arg is None else arg).split(",") if s.strip()]
    if not names:
        raise InputError("--systems", "", "name at least one system")
    if len(set(names)) != len(names):
        raise InputError("--systems", arg or "", "a system is named twice")
    for n in names:
        cfg.with_system(n)
    return names


def cmd_compare(args) -> int:
    from fmplex_sim.compare import comparison_row, plot_comparison, write_comparison_csv
    from fmplex_sim.results import results_dir, write_json
    from fmplex_sim.run import prepare, write_run

    cfg = _load(args)
    names = system_names(args.systems, cfg.systems or ("spatial", "colocate", "fmplex"), cfg)
    cfg, wl, info = prepare(cfg)  # one identical request stream for every system
    configs = [cfg.with_system(n) for n in names]
    rows = []
    with writing_results(args.out), results_dir(args.out) as tmp:
        for c in configs:
            out = _simulate(c, wl, c.system.name)
            write_run(tmp / c.system.name, c, out, args.argv, workload_info=info)
            rows.append(comparison_row(out.summary))
        write_comparison_csv(tmp / "comparison.csv", rows)
        write_json(tmp / "comparison.json", rows)
        plot_comparison(
            tmp / "comparison.png", rows,
            title=f"{Path(args.config).name}: {len(cfg.tasks)} tasks, {len(wl)} requests, "
            f"{cfg.cluster.gpus} x {cfg.cluster.device}",
        )
    _print_table(rows)
    print(f"table: {Path(args.out) / 'comparison.csv'}")
    print(f"figure: {Path(args.out) / 'comparison.png'}")
    return 0


def _print_table(rows) -> None:
    cols = [("system", "system"), ("latency_mean_ms", "mean ms"), ("latency_p50_ms", "p50 ms"),
            ("latency_p99_ms", "p99 ms"), ("slo_attainment", "SLO"), ("throughput_rps", "rps"),
            ("gpus_used", "devices"), ("memory_gib", "GiB"), ("tasks_unplaced", "unplaced")]
    cells = [[h for _, h in cols]] + [["" if r[k] is None else str(r[k]) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def cmd_catalog(args) -> int:
    from fmplex_sim.catalog import catalog_rows, device_rows

    backbones, devices = catalog_rows(), device_rows()
    if args.json:
        print(json.dumps({"backbones": backbones, "devices": devices}, indent=2))
        return 0
    print(f"{'backbone':<18}{'family':<10}{'modality':<12}{'parameters':>14}{'bytes (fp16)':>16}")
    for b in backbones:
        print(f"{b['name']:<18}{b['family']:<10}{b['modality']:<12}{b['params']:>14,}{b['bytes']:>16,}")
    print()
    print(f"{'device':<14}{'kind':<6}{'memory GiB':>11}{'TFLOP/s':>10}{'GB/s':>8}")
    for d in devices:
        print(f"{d['name']:<14}{d['kind']:<6}{d['memory_gib']:>11g}{d['peak_tflops']:>10g}{d['mem_bw_gbps']:>8g}")
    return 0


def common(sp) -> None:
    """The arguments of a command that reads one config: CONFIG, --out, --seed, --set."""
    sp.add_argument("config", help="YAML run configuration")
    sp.add_argument("--out", required=True, help="results folder: new, empty, or an earlier results folder (replaced atomically)")
    sp.add_argument("--seed", type=int, help="override the config's seed")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key, e.g. cluster.gpus=4 or tasks[0].weight=2")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Simulate serving many tasks on shared foundation-model backbones.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    r = sub.add_parser("run", help="simulate one config")
    common(r)
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare", help="simulate the same request stream under several systems")
    common(c)
    c.add_argument("--systems", default=None,
                   help="comma-separated systems: presets or PLACEMENT-SCHEDULER (default: the "
                   "config's `systems`, else spatial,colocate,fmplex)")
    c.set_defaults(func=cmd_compare)
    k = sub.add_parser("catalog", help="list backbones and devices")
    k.add_argument("--json", action="store_true", help="machine-readable output")
    k.set_defaults(func=cmd_catalog)
    from fmplex_sim import cli_isolation, cli_sweep, cli_trace

    cli_trace.add_parsers(sub, OneLineParser)
    cli_sweep.add_parsers(sub, OneLineParser)
    cli_isolation.add_parsers(sub, OneLineParser)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: the process's arguments); returns the exit status."""
    return run_cli(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())

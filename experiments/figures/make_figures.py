"""Run every simulation behind the paper's figures, then draw them: ``make figures``.

Usage: python experiments/figures/make_figures.py --out results/figures [--workers 2]
       [--only fig1_load,fig5_capacity] [--plots-only] [--traces ../shared/traces]
       [--validation DIR] [--harness-memory DIR]

Two phases:

1. Simulations, through the ``fmplex-sim`` command line (``sweep`` with ``--workers``; ``compare``
   and ``capacity`` jobs, ``--workers`` of them at a time), each into its own folder under
   ``OUT/<figure>/``, its output in ``OUT/logs/``. Nothing here runs torch: figure 8 reads a
   validation folder written by ``fmplex-exec validate``, and figure 6 reads harness replays
   only when ``--harness-memory`` names them.
2. Figures: ``experiments/figures/<figure>/plot.py --results OUT/<figure> --out OUT`` for each,
   which reads those folders (never runs an engine) and writes ``OUT/<figure>.png`` and
   ``.pdf`` and its entry of ``OUT/headlines.json``. A figure whose inputs are missing (public
   traces, validation results) or whose simulation failed is recorded there as skipped, with
   the reason.

``OUT/make_figures.json`` records the wall time of every step (``--plots-only`` updates only the
plots' times). Exit status 0 when every
figure was drawn or skipped for a documented reason, 1 when a simulation or plot failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIGURES = ("fig1_load", "fig2_cdf", "fig3_sched", "fig4_noisy", "fig5_capacity", "fig6_memory",
           "fig7_traces", "fig8_validation")
SIM = [sys.executable, "-m", "fmplex_sim.cli"]


@dataclass
class Job:
    """One fmplex-sim command of one figure."""

    figure: str  # the figure it feeds
    name: str  # log file name
    args: list[str]  # fmplex-sim arguments
    sweep: bool = False  # sweeps run one at a time (they use --workers processes themselves)


@dataclass
class Plan:
    """What to run for the selected figures."""

    jobs: list[Job] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # figure -> reason (nothing to run)
    plot_args: dict[str, list[str]] = field(default_factory=dict)  # figure -> extra plot.py args


def plan(args, out: Path) -> Plan:
    p = Plan()
    sel = set(args.only.split(",")) if args.only else set(FIGURES)
    rel = lambda *parts: str(HERE.joinpath(*parts).relative_to(ROOT))  # noqa: E731
    w = ["--workers", str(args.workers)]
    if "fig1_load" in sel:
        p.jobs.append(Job("fig1_load", "fig1_load", ["sweep", rel("fig1_load", "sweep.yaml"),
                                                      "--out", str(out / "fig1_load"), *w], sweep=True))
    if "fig2_cdf" in sel:
        p.jobs.append(Job("fig2_cdf", "fig2_cdf", ["compare", rel("fig2_cdf", "config.yaml"),
                                                    "--out", str(out / "fig2_cdf")]))
    if "fig3_sched" in sel:
        for sc in ("overload", "hot"):
            p.jobs.append(Job("fig3_sched", f"fig3_sched_{sc}", ["sweep", rel("fig3_sched", f"sweep_{sc}.yaml"),
                                                                  "--out", str(out / "fig3_sched" / sc), *w], sweep=True))
    if "fig4_noisy" in sel:
        p.jobs.append(Job("fig4_noisy", "fig4_noisy", ["compare", rel("fig4_noisy", "config.yaml"),
                                                        "--out", str(out / "fig4_noisy")]))
    if "fig5_capacity" in sel:
        pool = _module(HERE / "fig5_capacity" / "pool.py")  # reuses experiments/bench/bench.py's pool
        spec = pool.load_spec()
        pool_cfg = pool.write_pool(out / "fig5_capacity" / "pool.yaml", spec)
        for s in spec["systems"]:
            for g in spec["gpus"]:
                p.jobs.append(Job("fig5_capacity", f"fig5_capacity_{s}_g{g}", [
                    "capacity", str(pool_cfg), "--system", s, "--set", f"cluster.gpus={g}",
                    "--slo-attainment", str(spec["slo_attainment"]),
                    "--out", str(out / "fig5_capacity" / f"{s}-g{g:02d}")]))
    if "fig6_memory" in sel:
        p.jobs.append(Job("fig6_memory", "fig6_memory", ["sweep", rel("fig6_memory", "sweep.yaml"),
                                                          "--out", str(out / "fig6_memory" / "sim"), *w], sweep=True))
        if args.harness_memory:
            p.plot_args["fig6_memory"] = ["--harness-memory", args.harness_memory]
    if "fig7_traces" in sel:
        spec = yaml.safe_load((HERE / "fig7_traces" / "traces.yaml").read_text())
        traces = Path(args.traces)
        missing = [str(traces / t["trace"]) for t in spec.values() if not (traces / t["trace"]).exists()]
        if missing:
            p.skipped["fig7_traces"] = (f"public traces not found: {', '.join(missing)} (put them under "
                                        f"{traces} or pass --traces DIR; see traces/README.md)")
        else:
            for key, t in spec.items():
                cfg = HERE / "fig7_traces" / t["config"]
                sets = [f"workload.trace.path={traces / t['trace']}", *t.get("set", [])]
                p.jobs.append(Job("fig7_traces", f"fig7_traces_{key}", [
                    "compare", str(cfg.resolve().relative_to(ROOT)), "--out", str(out / "fig7_traces" / key),
                    *[a for s in sets for a in ("--set", s)]]))
    if "fig8_validation" in sel:
        default = ROOT / "results" / "validation" / "minilm_medium"
        committed = ROOT / "experiments" / "validation" / "measured" / "minilm_medium"  # in the repository
        found = [d for d in (default, committed) if (d / "validation.json").is_file()]
        folder = args.validation or (str(found[0]) if found else None)
        if folder is None:
            p.skipped["fig8_validation"] = (
                f"no validation results: {default.relative_to(ROOT)}/validation.json not found and no "
                "--validation DIR given (fmplex-exec validate experiments/validation/minilm_medium.yaml "
                "--out results/validation/minilm_medium writes one; this script never runs torch)")
        else:
            p.plot_args["fig8_validation"] = ["--validation", folder]
    p.plot_args = {f: p.plot_args.get(f, []) for f in FIGURES if f in sel}
    return p


def _module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"fmplex_figures_{path.parent.name}_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run_job(job: Job, logs: Path) -> tuple[Job, int, float]:
    t0 = time.perf_counter()
    with open(logs / f"{job.name}.log", "w") as log:
        log.write("$ fmplex-sim " + " ".join(job.args) + "\n")
        log.flush()
        rc = subprocess.call([*SIM, *job.args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    print(f"  {'ok' if rc == 0 else f'FAILED ({rc})'}  {job.name}  {dt:.1f} s", flush=True)
    return job, rc, dt


def run_plot(figure: str, out: Path, extra: list[str], logs: Path) -> tuple[str, int, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, str(HERE / figure / "plot.py"), "--results", str(out / figure), "--out", str(out), *extra]
    with open(logs / f"plot_{figure}.log", "w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    line = (logs / f"plot_{figure}.log").read_text().strip().splitlines()
    print(f"  {'ok' if rc == 0 else f'FAILED ({rc})'}  {figure}  {dt:.1f} s  {line[-1] if line else ''}", flush=True)
    return figure, rc, dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/figures", help="results and figures folder (default results/figures)")
    ap.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    ap.add_argument("--only", help=f"comma-separated figures (default all: {','.join(FIGURES)})")
    ap.add_argument("--plots-only", action="store_true", help="redraw from existing results; run no simulation")
    ap.add_argument("--traces", default=str(ROOT.parent / "shared" / "traces"),
                    help="folder of the public traces (default ../shared/traces)")
    ap.add_argument("--validation", metavar="DIR", help="validation results folder for figure 8 "
                    "(default results/validation/minilm_medium when it exists)")
    ap.add_argument("--harness-memory", metavar="DIR", help="fmplex-exec replay results for figure 6")
    args = ap.parse_args(argv)
    if args.only:
        bad = sorted(set(args.only.split(",")) - set(FIGURES))
        if bad:
            ap.error(f"unknown figure {bad[0]} (known: {', '.join(FIGURES)})")
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    out = Path(args.out)
    if not out.is_absolute():
        out = (Path.cwd() / out).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    todo = plan(args, out)
    timings: dict = {"jobs": {}, "plots": {}}
    failed: dict[str, str] = {}
    if not args.plots_only and todo.jobs:
        sweeps = [j for j in todo.jobs if j.sweep]
        others = [j for j in todo.jobs if not j.sweep]
        print(f"simulations: {len(sweeps)} sweeps (--workers {args.workers}), then {len(others)} compare/capacity "
              f"jobs, {args.workers} at a time; logs in {logs}", flush=True)
        results = [run_job(j, logs) for j in sweeps]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            results += list(pool.map(lambda j: run_job(j, logs), others))
        for job, rc, dt in results:
            timings["jobs"][job.name] = round(dt, 1)
            if rc != 0:
                failed.setdefault(job.figure, f"simulation failed: see {logs / (job.name + '.log')}")
    timings["simulations_s"] = round(time.perf_counter() - t_all, 1)
    print("figures:", flush=True)
    t_plots = time.perf_counter()
    extra = {}
    for fig, plot_extra in todo.plot_args.items():
        reason = failed.get(fig) or todo.skipped.get(fig)
        extra[fig] = ["--skipped", reason] if reason else plot_extra
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        plots = list(pool.map(lambda f: run_plot(f, out, extra[f], logs), extra))
    for fig, rc, dt in plots:
        timings["plots"][fig] = round(dt, 1)
        if rc != 0:
            failed.setdefault(fig, f"plot failed: see {logs / ('plot_' + fig + '.log')}")
    timings["plots_s"] = round(time.perf_counter() - t_plots, 1)
    timings["total_s"] = total = round(time.perf_counter() - t_all, 1)
    timings["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    timings["cpus"] = os.cpu_count()
    record = out / "make_figures.json"
    if args.plots_only and record.is_file():  # keep the simulations' times of the run that made the results
        kept = json.loads(record.read_text())
        kept.update(plots=timings["plots"], plots_s=timings["plots_s"], redrawn_by=timings["command"])
        timings = kept
    record.write_text(json.dumps(timings, indent=2) + "\n")
    headlines = out / "headlines.json"
    skipped = {k: v["reason"] for k, v in (json.loads(headlines.read_text()) if headlines.is_file() else {}).items()
               if isinstance(v, dict) and v.get("skipped") and k in extra}
    for fig, why in skipped.items():
        print(f"skipped {fig}: {why}")
    print(f"done in {total:.0f} s: figures and headlines.json in {out}")
    for fig, why in failed.items():
        print(f"FAILED {fig}: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``fmplex-exec``: run FMplex policies on real models.

- ``replay CONFIG --out DIR [--device cpu|cuda] [--set key=value]``: replay a config's workload
  open loop on real models, writing the simulator's results schema;
- ``profile --backbone NAME --device cpu|cuda --out FILE.csv``: measure a latency profile that
  ``fmplex-sim`` reads as ``latency_model: {profile: FILE.csv}``;
- ``validate CONFIG --out DIR [--device cpu|cuda] [--profile FILE] [--rounds N] [--extra-rounds K]``:
  replay and simulate one request stream for each system and report the simulator's errors
  (validate.py);
- ``isolation CONFIG --noisy TASK --out DIR [--device cpu|cuda] [--systems ...]``: what one noisy
  task does to the others on real models: the stream shared, each other task alone on its own
  requests, and without the noisy task (fmplex_sim.isolation, the simulator's report);
- ``env``: report the execution stack (torch, transformers, peft) and devices.

Exit status 0 on success, 2 on invalid input (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from fmplex_exec import __version__
from fmplex_sim.clitools import OneLineParser, check_file_out, check_results_out, run_cli, writing_results
from fmplex_sim.errors import InputError

PROG = "fmplex-exec"


def cmd_env(args) -> int:
    info: dict = {"fmplex_exec": __version__, "python": sys.version.split()[0], "packages": {}}
    for name in ("torch", "transformers", "peft"):
        try:
            mod = importlib.import_module(name)
            info["packages"][name] = getattr(mod, "__version__", "unknown")
        except ImportError:
            info["packages"][name] = None
    torch = sys.modules.get("torch")
    if torch is not None:
        info["cuda"] = bool(torch.cuda.is_available())
        info["devices"] = ["cpu"] + [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
        info["cpu_threads"] = torch.get_num_threads()
    missing = [k for k, v in info["packages"].items() if v is None]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
        if missing:
            print(f"missing: {', '.join(missing)} (install with: pip install -e '.[exec]')")
    return 0


def cmd_replay(args) -> int:
    from fmplex_exec.executors import make_executor
    from fmplex_exec.runtime import Runtime, RuntimeOptions
    from fmplex_sim.config import load_config
    from fmplex_sim.results import results_dir, write_json
    from fmplex_sim.run import prepare

    check_cuda(args.device)
    cfg = as_run(load_config(args.config, list(args.set or [])), args.device)
    check_results_out(args.out)  # before any model is built
    cfg, wl, info = prepare(cfg)
    check_runnable(cfg, wl, args.config)
    opts = RuntimeOptions(device=args.device, dtype=args.dtype, seed=cfg.seed)
    runtime = Runtime(cfg, wl, make_executor, opts)
    records, summary = runtime.run()
    with writing_results(args.out), results_dir(args.out) as tmp:
        _write_replay(tmp, cfg, records, summary, info, args)
        if runtime.events:  # tasks started, ended or updated mid-run (fmplex_exec/lifecycle.py)
            write_json(tmp / "lifecycle.json", runtime.events)
    lat = summary["latency_ms"]
    print(f"{summary['system']['name']} on {args.device}: {summary['requests']['completed']}/"
          f"{summary['requests']['arrived']} completed, mean {lat['mean']} ms, p99 {lat['p99']} ms")
    print(f"results: {args.out}")
    return 0


def as_run(cfg, device: str):
    """``cfg`` as the harness runs it on torch ``device``, for its scheduler's estimates, the
    config it records and the simulation it is compared with. On CUDA a spatial slice is a
    process of its own on the whole GPU, which the driver time-slices (no MIG or MPS:
    ``slicing: processes``), and each instance's serving thread runs one batch at a time to its
    end (``pipeline_depth: 1``). On CPU the config is as written."""
    from dataclasses import replace

    if device.split(":")[0] != "cuda":
        return cfg
    return replace(cfg, system=replace(cfg.system, slicing="processes", pipeline_depth=1))


#: Extension kinds the harness runs (fmplex_exec.vfm); the simulator also models ``prefix``.
RUNNABLE_EXTENSIONS = ("lora", "head", "encoder")


def check_runnable(cfg, wl, src: str) -> None:
    """Refuse in one line a config (read from ``src``; ``wl`` its request stream) that asks for
    what the harness does not run, before any model is built: an extension other than
    :data:`RUNNABLE_EXTENSIONS`, or generated tokens (the harness runs one forward pass per
    request; the simulator also models decoding)."""
    # The key path as the config writes it (tasks made from a trace's templates: by name).
    as_written = not cfg.templates or tuple(cfg.templates) == tuple(cfg.tasks)
    for i, t in enumerate(cfg.tasks):
        where = f"tasks[{i}]" if as_written else f"task {t.name!r}"
        for j, e in enumerate(t.extensions):
            if e.kind not in RUNNABLE_EXTENSIONS:
                raise InputError(src, f"{where}.extensions[{j}].kind", f"{e.kind!r} (task {t.name!r}) runs "
                                 f"in the simulator only; fmplex-exec runs {', '.join(RUNNABLE_EXTENSIONS)}")
        if t.output_len:
            raise InputError(src, f"{where}.output_len", f"{t.output_len} generated tokens (task "
                             f"{t.name!r}): fmplex-exec runs one forward pass per request; use output_len 0")
    if wl.output_len.shape[0] and int(wl.output_len.max()) > 0:
        k = int(wl.task[int(wl.output_len.argmax())])
        raise InputError(src, "workload.trace", f"the trace asks task {wl.tasks[k]!r} for generated tokens; "
                         "fmplex-exec runs one forward pass per request")


def check_cuda(device: str) -> None:
    """Refuse --device cuda where torch sees no CUDA device (before any model is built)."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device", "cuda", "no CUDA device is available here")


def _write_replay(folder: Path, cfg, records, summary, info: dict, args) -> None:
    """One replay's results folder: the simulator's schema plus the engine in provenance."""
    from fmplex_sim.metrics import write_requests_csv
    from fmplex_sim.results import provenance, write_json, write_yaml

    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / "config.yaml", cfg.to_dict())
    prov = provenance(cfg.seed, summary["latency_model"], args.argv)
    prov["engine"] = {"name": "fmplex_exec", "device": args.device, "dtype": args.dtype}
    write_json(folder / "provenance.json", prov)
    write_json(folder / "workload.json", info)
    write_requests_csv(folder / "requests.csv", records)
    write_json(folder / "summary.json", summary)


def cmd_isolation(args) -> int:
    from fmplex_exec.executors import make_executor
    from fmplex_exec.runtime import Runtime, RuntimeOptions
    from fmplex_sim.cli import system_names
    from fmplex_sim.config import load_config
    from fmplex_sim.isolation import check_noisy, print_reports, run_isolation
    from fmplex_sim.results import provenance, results_dir, write_json
    from fmplex_sim.run import prepare

    cfg = load_config(args.config, list(args.set or []))
    names = system_names(args.systems, (cfg.system.name,), cfg)
    check_cuda(args.device)
    check_results_out(args.out)  # before any model is built
    cfg, wl, info = prepare(cfg)
    check_runnable(cfg, wl, args.config)
    check_noisy(cfg, args.noisy)
    opts = RuntimeOptions(device=args.device, dtype=args.dtype, seed=cfg.seed)
    tty = sys.stderr.isatty()
    with writing_results(args.out), results_dir(args.out) as tmp:
        def run_one(label, c, w):
            if tty:
                print(f"{label}: replaying {len(w)} requests ({c.duration_s:g} s)", file=sys.stderr, flush=True)
            runtime = Runtime(c, w, make_executor, opts)
            records, summary = runtime.run()
            _write_replay(tmp / label, c, records, summary, info, args)
            return summary, runtime.placement.to_dict()

        reports = run_isolation(cfg, wl, args.noisy, names, run_one)
        write_json(tmp / "isolation.json", {"engine": "fmplex_exec", "device": args.device,
                                            "noisy": args.noisy, "systems": reports})
        prov = provenance(cfg.seed, {"kind": cfg.latency_model.kind}, args.argv)
        prov["engine"] = {"name": "fmplex_exec isolation", "device": args.device, "dtype": args.dtype}
        write_json(tmp / "provenance.json", prov)
    print_reports(reports, Path(args.out), f" on {args.device}")
    return 0


def _check_profile_args(args) -> None:
    """Refuse bad options before torch is imported and minutes of measuring start."""
    from fmplex_sim.catalog import BACKBONES, DEVICES

    if args.backbone not in BACKBONES:
        raise InputError("--backbone", args.backbone, "unknown backbone (see `fmplex-sim catalog`)")
    if args.sim_device is not None and args.sim_device not in DEVICES:
        raise InputError("--sim-device", args.sim_device, f"unknown device (known: {', '.join(DEVICES)})")
    if args.threads < 0:
        raise InputError("--threads", str(args.threads), "must be >= 0 (0: all cores)")
    check_file_out(args.out, "CSV file")
    check_cuda(args.device)


def cmd_validate(args) -> int:
    from fmplex_exec.validate import cmd_validate as run

    return run(args)


def cmd_profile(args) -> int:
    _check_profile_args(args)
    from fmplex_exec.profiler import main_profile

    return main_profile(args)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description="Run FMplex policies on real models.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    r = sub.add_parser("replay", help="replay a config's workload on real models")
    r.add_argument("config")
    r.add_argument("--out", required=True)
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    r.add_argument("--set", action="append", metavar="KEY=VALUE")
    r.set_defaults(func=cmd_replay)
    f = sub.add_parser("profile", help="measure a latency profile for the simulator")
    f.add_argument("--backbone", required=True)
    f.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    f.add_argument("--out", required=True)
    f.add_argument("--dtype", default="float32",
                   choices=("float32", "fp32", "float16", "fp16", "bfloat16", "bf16"))
    f.add_argument("--sim-device", default=None, help="catalog device the profile describes (default: CPU for cpu)")
    f.add_argument("--quick", action="store_true", help="tiny grid (for tests)")
    f.add_argument("--threads", type=int, default=0)
    f.set_defaults(func=cmd_profile)
    v = sub.add_parser("validate", help="replay and simulate one request stream; compare them")
    v.add_argument("config")
    v.add_argument("--out", required=True, help="results folder (written atomically)")
    v.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    v.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    v.add_argument("--profile", help="profile CSV of this device (default: measure one first)")
    v.add_argument("--rounds", type=int, default=2,
                   help="replay every system this many times, interleaved, and pool them; without "
                   "--profile a profile is measured before each round and the rounds' profiles "
                   "merged (default 2; 1 for a quick run)")
    v.add_argument("--extra-rounds", type=int, default=1,
                   help="with two or more rounds: run up to this many more, one at a time, while the "
                   "rounds disagree (their profiles' forward rows more than 20%% apart, or one "
                   "system's replays more than 10%% apart in mean latency); 0: never (default 1)")
    v.add_argument("--systems", help="comma-separated systems (default: the config's `systems`, "
                   "else spatial,colocate,fmplex)")
    v.add_argument("--set", action="append", metavar="KEY=VALUE")
    v.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    v.set_defaults(func=cmd_validate)
    i = sub.add_parser("isolation", help="measure what one noisy task does to the others on real models")
    i.add_argument("config")
    i.add_argument("--noisy", required=True, help="the task whose load is judged (e.g. one offered 10x its share)")
    i.add_argument("--out", required=True, help="results folder (written atomically)")
    i.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    i.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    i.add_argument("--systems", help="comma-separated systems (default: the config's system)")
    i.add_argument("--set", action="append", metavar="KEY=VALUE")
    i.set_defaults(func=cmd_isolation)
    e = sub.add_parser("env", help="report the execution stack and devices")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_env)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return run_cli(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())

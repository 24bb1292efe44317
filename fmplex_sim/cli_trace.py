"""``fmplex-sim trace info|convert``: inspect a trace file, or shape it into the native CSV."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from fmplex_sim.clitools import check_file_out
from fmplex_sim.errors import InputError
from fmplex_sim.results import make_parents, remove_empty

FORMAT_HELP = "azure-llm-2023 (azure), alibaba-genai-2026 (alibaba), mooncake, servegen, native"


def _format(name: str) -> str:
    from fmplex_sim.config import TRACE_FORMAT_ALIASES

    if name not in TRACE_FORMAT_ALIASES:
        raise InputError("--format", name, f"unknown trace format (known: {FORMAT_HELP})")
    return TRACE_FORMAT_ALIASES[name]


def _window(args) -> tuple[float, float | None] | None:
    if args.window_start is None and args.window_duration is None:
        return None
    start = args.window_start or 0.0
    if not (math.isfinite(start) and start >= 0):
        raise InputError("--window-start", str(start), "must be a finite number >= 0")
    if args.window_duration is not None and not (math.isfinite(args.window_duration) and args.window_duration > 0):
        raise InputError("--window-duration", str(args.window_duration), "must be a finite number > 0")
    return (start, args.window_duration)


def _check_common(args, fmt: str) -> None:
    """Options of both commands that the loaders would otherwise report against the trace file."""
    from fmplex_sim.config import MAX_INT

    if not 0 <= args.seed <= MAX_INT:
        raise InputError("--seed", str(args.seed), "must be from 0 to 2**53 (as a config's seed)")
    if args.input_len is not None and fmt != "servegen":
        raise InputError("--input-len", str(args.input_len),
                         f"only for servegen; {fmt} traces carry their own lengths")
    if args.input_len is not None and args.input_len < 1:
        raise InputError("--input-len", str(args.input_len), "must be >= 1")


def _read(args):
    from fmplex_sim.traces import load_trace

    _check_common(args, _format(args.format))
    if not Path(args.path).exists():
        raise InputError(args.path, "", "no such file or folder")
    return load_trace(_format(args.format), args.path, seed=args.seed, window=_window(args),
                      input_len=args.input_len)


GENERATE_LIMIT = 5_000_000  # servegen: above this many recorded requests, report the records


def cmd_info(args) -> int:
    from fmplex_sim.traces import shaping

    fmt = _format(args.format)
    if fmt == "servegen":
        from fmplex_sim.traces.formats.servegen import statistics

        _check_common(args, fmt)
        if not Path(args.path).exists():
            raise InputError(args.path, "", "no such file or folder")
        recorded = statistics(args.path, _window(args), args.input_len or 256)
        if recorded["requests"] > GENERATE_LIMIT:
            return _print_info({"path": args.path, "format": fmt, **recorded}, args)
    trace = _read(args)
    win = _window(args)
    if win is not None:
        try:
            trace = shaping.window(trace, win[0], win[1])
        except ValueError as e:
            raise InputError(args.path, "--window-start", str(e)) from None
    return _print_info({"path": args.path, "format": trace.format, **trace.stats()}, args)


def _print_info(stats: dict, args) -> int:
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{args.path} ({stats['format']})")
    if stats.get("generated") is False:
        print("  (statistics as recorded; the arrivals are generated only for a window)")
    print(f"  requests          {stats['requests']:,}")
    print(f"  duration          {stats['duration_s']:,.1f} s")
    print(f"  mean rate         {stats['mean_rate_rps']} requests/s")
    note = f" ({stats['interarrival_cv_note']})" if "interarrival_cv_note" in stats else ""
    print(f"  inter-arrival CV  {stats['interarrival_cv']}{note}")
    print(f"  tasks             {stats['tasks'] if stats['tasks'] is not None else 'none in the trace'}")
    if "backbones" in stats:
        print(f"  base models       {stats['backbones']}")
    if "input_len" in stats:
        il = stats["input_len"]
        print(f"  input length      mean {il['mean']}, p50 {il['p50']:g}, p90 {il['p90']:g}, "
              f"p99 {il['p99']:g}, max {il['max']}")
    if "output_len_mean" in stats:
        print(f"  output length     mean {stats['output_len_mean']}")
    for t in stats.get("top_tasks", [])[:5]:
        print(f"  top task          {t['task']}: {100 * t['share']:.1f}%")
    return 0


#: shape_trace's steps -> the convert options that set them (named in errors)
CONVERT_OPTIONS = {"window": "--window-start", "tasks.popularity": "--zipf", "tasks": "--tasks",
                   "burstiness_scale": "--burstiness-scale", "rate_scale": "--rate-scale",
                   "max_requests": "--max-requests"}


def cmd_convert(args) -> int:
    from fmplex_sim.traces import shape_trace
    from fmplex_sim.traces.formats.native import write_native

    from fmplex_sim.config import MAX_CV, MAX_RATE_SCALE, MAX_TASKS

    for opt, x, hi in (("--rate-scale", args.rate_scale, MAX_RATE_SCALE),
                       ("--burstiness-scale", args.burstiness_scale, MAX_CV)):
        if not (math.isfinite(x) and 1 / hi <= x <= hi):
            raise InputError(opt, str(x), f"must be from {1 / hi:g} to {hi:g}")
    if args.zipf is not None and not (math.isfinite(args.zipf) and args.zipf >= 0):
        raise InputError("--zipf", str(args.zipf), "must be a finite number >= 0")
    if args.max_requests is not None and args.max_requests < 1:
        raise InputError("--max-requests", str(args.max_requests), "must be >= 1")
    if args.tasks is not None and not 1 <= args.tasks <= MAX_TASKS:
        raise InputError("--tasks", str(args.tasks), f"must be from 1 to {MAX_TASKS}")
    check_file_out(args.out)
    out = Path(args.out)
    src = Path(args.path)
    if out.exists() and (src.is_dir() and src.resolve() in out.resolve().parents
                         or src.exists() and os.path.samefile(out, src)):
        raise InputError("--out", args.out, "is the trace being converted; name another file")
    trace = _read(args)
    had_ids = trace.task is not None
    n_tasks = args.tasks or (len(trace.task_names) if had_ids else 1)
    rng = np.random.default_rng([args.seed, 0x7ACE])
    shaped = shape_trace(trace, n_tasks=n_tasks, rng=rng, zipf=args.zipf, window=_window(args),
                         burstiness_scale=args.burstiness_scale, rate_scale=args.rate_scale,
                         max_requests=args.max_requests, where=CONVERT_OPTIONS)
    names = shaped.task_names if had_ids else tuple(f"task-{k}" for k in range(n_tasks))
    if len(shaped.arrival_s) == 0:
        span = (f" (it spans {trace.arrival_s[0]:g} to {trace.arrival_s[-1]:g} s)"
                if len(trace.arrival_s) else "")
        raise InputError(args.path, "--window-start", f"the window holds no requests of the trace{span}")
    made: list[Path] = []
    try:
        made = make_parents(out)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    except OSError as e:
        remove_empty(made)
        raise InputError("--out", args.out, f"cannot write here: {e.strerror or e}") from None
    os.close(fd)
    try:
        write_native(tmp, shaped.arrival_s, np.asarray(names, dtype=object)[shaped.task],
                     shaped.input_len, shaped.output_len)
        os.replace(tmp, out)
    except InputError as e:  # what the native format cannot hold (a name with a comma): the input's
        Path(tmp).unlink(missing_ok=True)
        remove_empty(made)
        raise InputError(args.path, e.where, f"{e.problem} (the native format cannot hold it)") from None
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        remove_empty(made)
        raise InputError("--out", args.out, f"cannot write: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        remove_empty(made)
        raise
    s = shaped.stats()
    print(f"{s['requests']:,} requests over {s['duration_s']:,.1f} s "
          f"({s['mean_rate_rps']} requests/s, {s['tasks']} tasks) -> {args.out}")
    return 0


def add_parsers(sub, parser_class) -> None:
    """Register ``trace info`` and ``trace convert`` under ``sub``."""
    t = sub.add_parser("trace", help="inspect or convert a public trace")
    tsub = t.add_subparsers(dest="trace_command", required=True, parser_class=parser_class)

    def common(p):
        p.add_argument("path", help="trace file (a folder for servegen)")
        p.add_argument("--format", required=True, help=FORMAT_HELP)
        p.add_argument("--seed", type=int, default=0, help="seed for generated arrivals and task assignment")
        p.add_argument("--input-len", type=int, help="servegen: tokens per request")
        p.add_argument("--window-start", type=float, help="keep the trace from this second on")
        p.add_argument("--window-duration", type=float, help="keep this many seconds")

    i = tsub.add_parser("info", help="request count, duration, rate, CV, tasks, input lengths")
    common(i)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    c = tsub.add_parser("convert", help="shape a trace and write the native CSV")
    common(c)
    c.add_argument("--out", required=True, help="native CSV to write (replaced atomically)")
    c.add_argument("--rate-scale", type=float, default=1.0, help="2.0 = same requests in half the time")
    c.add_argument("--burstiness-scale", type=float, default=1.0, help="multiply the inter-arrival CV")
    c.add_argument("--max-requests", type=int, help="keep the first N requests")
    c.add_argument("--tasks", type=int, help="tasks: top N of the trace's, or N assigned ones")
    c.add_argument("--zipf", type=float, help="popularity of assigned tasks (default uniform)")
    c.set_defaults(func=cmd_convert)

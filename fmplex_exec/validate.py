"""``fmplex-exec validate``: does the simulator predict what the real harness measures?

One request stream (identical arrivals, task assignment and input sizes) is replayed on real
models by :class:`~fmplex_exec.runtime.Runtime` and simulated by :mod:`fmplex_sim` with a
profile of the same device, for each system. The profile is either given (``--profile``) or
measured in the same command, on exactly the shapes the config needs. Nothing is fitted to the
replays: the simulator sees only the profile and the config.

Rounds (``--rounds N``, default 2). A shared host's speed drifts over minutes, so a profile
taken once and replays taken one system after another would each sample a different spell of
it. The command therefore runs N rounds. Each round measures a profile (unless one is given),
then replays every system once, a different system first each round. The simulator reads the
rounds' profiles merged (each row's median across them), and the measured side pools every
round's requests: both sample the same minutes. ``round_spread`` reports how far one system's
replays lie apart, the host's own noise, which no simulator can be expected to beat.

Extra rounds (``--extra-rounds K``, default 1). When the rounds disagree, the rounds' profiles
lying more than ``PROFILES_APART`` apart on their forward rows or one system's replays more than
``REPLAYS_APART`` apart in mean latency, one spell of the host weighs as much as everything
else measured. The command then runs another round, up to K, and checks again: of three
profiles the median outvotes one measured in a spell, and three replays pool more of the host's
minutes. ``validation.json``'s ``extra_rounds`` says how many ran and why.

Results folder::

    profile.csv                  the profile the simulator used (measured here, merged over the
                                 rounds, or copied); profile-round<k>.csv each round's
    validation.json              per system, overall and per task: real (rounds pooled) and
                                 simulated latency, SLO attainment, throughput, their errors
                                 (*_rel_err fractions); rounds, round_spread; host_speed
    validation.png / .pdf        latency CDFs (real solid, simulated dashed), per-task p50/p99
    provenance.json, config.yaml
    <system>/real/, <system>/real-<k>/   the replays of round 1 and round k: results folders of
                                         the harness (requests.csv, summary.json, ...)
    <system>/sim/                the simulation: a results folder of fmplex-sim

Host speed. A shared host runs at another speed in one spell than in the next (on the 2-core
machine, spells of seconds 25-45% slower: ``experiments/validation/host_spells.py``), and a
replay run in slower spells than its profile is slower everywhere, which no latency model can
predict. Before and after each replay, :class:`~fmplex_exec.profiler.HostProbe` times a few
forwards of each backbone at one shape of the profile's grid (the replay's ``provenance.json``:
``host_speed``); ``validation.json`` gives, per system and backbone, their median over the
profile's row (``host_speed.<backbone>.ratio``: 1.2 means the probes ran 20% slower than the
row), and the command notes a ratio past ``HOST_SPEED_APART``. A probe takes about a second, so
it says which spell it met rather than how fast the whole replay ran: a diagnostic for reading
the errors, by which nothing is scaled.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fmplex_sim.clitools import check_results_out, writing_results
from fmplex_sim.config import LatencyConfig, RunConfig
from fmplex_sim.errors import InputError
from fmplex_sim.workload import Workload

DEFAULT_SYSTEMS = ("spatial", "colocate", "fmplex")
#: The profile as a system's results folders (``<system>/real``, ``<system>/sim``) name it.
SYSTEM_PROFILE = "../../profile.csv"


def profile_grid(cfg: RunConfig, backbone: str, wl: Workload | None = None) -> dict:
    """The profile grid a config needs on one backbone: its batch sizes, input lengths,
    adapter counts, ranks and head widths (keyword arguments of ``profile_backbone``).

    Input lengths are those of ``wl``'s requests on the backbone's tasks when given (a trace
    sets each request's own, up to the backbone's positions), else the tasks' ``input_len``:
    the smallest, the largest and about every third distinct value between them, so the grid
    spans every length a batch can be padded to and the simulator never extrapolates in length.
    """
    tasks = [t for t in cfg.tasks if t.backbone == backbone]
    max_batch = min(cfg.system.max_batch, 32)
    batches = sorted({1, 2, 4, 8, 16, 32} & set(range(1, max_batch + 1)) | {max_batch})
    lens = sorted({t.input_len for t in tasks})
    if wl is not None and len(wl):
        mine = np.isin(wl.task, [k for k, name in enumerate(wl.tasks) if name in {t.name for t in tasks}])
        lens = sorted(set(wl.input_len[mine].tolist())) or lens
    seq_lens = sorted({min(lens), max(lens)} | set(lens[:: max(1, len(lens) // 3)]))
    if len(seq_lens) == 1:
        seq_lens = sorted({max(1, seq_lens[0] // 2), seq_lens[0]})
    loras = [e for t in tasks for e in t.extensions if e.kind == "lora"]
    ranks = sorted({min(e.rank for e in loras), max(e.rank for e in loras)}) if loras else [8]
    n_lora = max(len(loras), 1)
    adapters = sorted({1, (n_lora + 1) // 2, n_lora})
    outputs = sorted({e.outputs for t in tasks for e in t.extensions if e.kind == "head"}) or [2]
    mid = seq_lens[len(seq_lens) // 2]
    return dict(batches=tuple(batches), seq_lens=tuple(seq_lens), adapters=tuple(adapters),
                ranks=tuple(ranks), outputs=tuple(outputs),
                lora_points=((1, min(seq_lens)), (1, mid), (4, mid), (max(batches) // 2 or 1, max(seq_lens))),
                overhead_batches=tuple(b for b in (1, 2, 4, 8, 16) if b <= max(batches)) or (1,),
                contention_shape=(4, mid), wake_shape=(1, mid),
                throttle_shapes=((1, min(seq_lens)), (1, max(seq_lens)), (4, max(seq_lens))), extension_sizes=((8, 2),), repeats=6, max_point_s=1.0)


def _measure_profile(cfg: RunConfig, wl: Workload, device: str, dtype: str, sim_device: str,
                     say) -> tuple[list[dict], list[str]]:
    """``(rows, comments)`` of a profile of every backbone of ``cfg`` on its grid for ``wl``."""
    from fmplex_exec.profiler import profile_backbone

    rows, comments = [], []
    for bb in sorted({t.backbone for t in cfg.tasks}):
        say(f"profiling {bb} on {device} (the shapes this config needs)")
        r, c = profile_backbone(bb, device=device, dtype=dtype, sim_device=sim_device,
                                command=f"fmplex-exec validate (profile of {bb})", log=say,
                                **profile_grid(cfg, bb, wl))
        rows += r
        comments += c + [""]
    return rows, comments


def _check_profile(path: str, cfg: RunConfig, sim_device: str) -> None:
    from fmplex_sim.catalog import get_backbone, get_device
    from fmplex_sim.latency.profile import ProfileModel

    p = Path(path)
    if not p.is_file():
        why = ("is a folder, not a profile CSV" if p.is_dir() else
               "is not a regular file (a device, pipe or socket?)" if p.exists() else "no such file")
        raise InputError("--profile", path, why)
    try:
        pm = ProfileModel(path)
        dev = get_device(sim_device)
        for bb in {t.backbone for t in cfg.tasks}:
            pm.backbone_s(get_backbone(bb), dev, 1, 1)
    except UnicodeDecodeError as e:
        raise InputError("--profile", path, f"not a UTF-8 text file (byte {e.start}); is it binary?") from None
    except (ValueError, KeyError) as e:
        msg = str(e).strip("'\"")
        if msg.startswith(f"{path}:"):  # the reader names the file and line itself
            raise InputError("--profile", "", msg) from None
        raise InputError("--profile", path, msg) from None


def _load_avg() -> float | None:
    """The host's 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _disagreement(measured: list[list[dict]], real: dict[str, list]) -> str | None:
    """Why the rounds so far disagree, or None: their profiles' forward rows lie more than
    ``PROFILES_APART`` apart, or one system's replays more than ``REPLAYS_APART`` apart in
    mean latency."""
    from fmplex_exec.profiler import PROFILES_APART, forward_apart
    from fmplex_sim.validation import REPLAYS_APART, replays_apart

    why = []
    apart = forward_apart(measured)
    if apart > PROFILES_APART:
        why.append(f"the profiles lie {apart:.0%} apart on their forward rows (limit {PROFILES_APART:.0%})")
    spread = {name: replays_apart(recs) for name, recs in real.items()}
    worst = max(spread, key=spread.get) if spread else None
    if worst is not None and spread[worst] > REPLAYS_APART:
        why.append(f"{worst}'s replays lie {spread[worst]:.0%} apart in mean latency (limit {REPLAYS_APART:.0%})")
    return "; ".join(why) or None


def _summary_line(name: str, entry: dict) -> str:
    o = entry["overall"]
    r, s = o["real"], o["sim"]

    def pct(x):
        return "  n/a " if x is None else f"{x * 100:+6.1f}%"

    line = (f"{name:>10}  real p50 {r['p50_ms'] or 0:8.1f} ms  sim {s['p50_ms'] or 0:8.1f} ms ({pct(o['p50_rel_err'])})"
            f"  real p99 {r['p99_ms'] or 0:8.1f} ms  sim {s['p99_ms'] or 0:8.1f} ms ({pct(o['p99_rel_err'])})"
            f"  SLO {r['slo_attainment']} vs {s['slo_attainment']}")
    spread = entry.get("round_spread")
    if spread:
        line += f"  (replays apart: p50 {pct(spread['p50'])}, p99 {pct(spread['p99'])})"
    return line


def cmd_validate(args) -> int:
    """The ``fmplex-exec validate`` command (arguments: see :mod:`fmplex_exec.cli`)."""
    from fmplex_exec.cli import as_run, check_cuda, check_runnable
    from fmplex_exec.executors import make_executor
    from fmplex_exec.profiler import (HOST_SPEED_APART, PROFILES_APART, HostProbe, default_sim_device,
                                      forward_apart, host_speed, merge_rows, read_rows)
    from fmplex_exec.runtime import Runtime, RuntimeOptions
    from fmplex_sim.cli import system_names
    from fmplex_sim.config import load_config
    from fmplex_sim.latency.profile import ProfileModel, write_profile
    from fmplex_sim.metrics import write_requests_csv
    from fmplex_sim.results import provenance, results_dir, write_json, write_yaml
    from fmplex_sim.run import prepare, simulate, write_run
    from fmplex_sim.validation import (REPLAYS_APART, TARGETS, compare_runs, plot_validation, rank_line,
                                       rank_report, within_targets)

    cfg = load_config(args.config, list(args.set or []))
    names = system_names(args.systems, cfg.systems or DEFAULT_SYSTEMS, cfg)
    check_cuda(args.device)
    sim_device = default_sim_device(args.device)
    if cfg.cluster.device != sim_device or cfg.cluster.gpus != 1:
        # The replay runs on this machine's one device; the simulation must describe the same.
        cfg = replace(cfg, cluster=replace(cfg.cluster, device=sim_device, gpus=1))
    cfg = as_run(cfg, args.device)
    if args.rounds < 1:
        raise InputError("--rounds", str(args.rounds), "must be at least 1")
    if args.extra_rounds < 0:
        raise InputError("--extra-rounds", str(args.extra_rounds), "must be 0 or more")
    if args.profile is not None and not args.profile.strip():
        raise InputError("--profile", "", "name a profile CSV (or leave --profile out to measure one)")
    check_results_out(args.out)  # before minutes of profiling
    if args.profile:
        _check_profile(args.profile, cfg, sim_device)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else (lambda msg: None)
    cfg, wl, info = prepare(cfg)
    check_runnable(cfg, wl, args.config)
    out = Path(args.out)
    rounds = args.rounds
    t_start = time.perf_counter()
    with writing_results(args.out), results_dir(out) as tmp:
        prof = tmp / "profile.csv"
        if args.profile:
            shutil.copyfile(args.profile, prof)
        # The folder's config names its profile relative to itself (configs resolve a relative
        # profile beside them), so the folder can be moved or committed and read again.
        write_yaml(tmp / "config.yaml", replace(cfg, latency_model=LatencyConfig(kind="profile",
                                                                                 path="profile.csv")).to_dict())
        # Each system's real/ and sim/ record the profile two folders up, as a config beside
        # them resolves it: the folder stays readable wherever it is moved.
        cfg = replace(cfg, latency_model=LatencyConfig(kind="profile", path=SYSTEM_PROFILE))
        lm = {"kind": "profile", "source": "profile.csv"}
        opts = RuntimeOptions(device=args.device, dtype=args.dtype, seed=cfg.seed)
        measured: list[list[dict]] = []
        comments: list[str] = []
        real: dict[str, list] = {name: [] for name in names}
        most = rounds + args.extra_rounds if rounds > 1 else 1  # one round has nothing to disagree with
        extra_why: list[str] = []
        probe: HostProbe | None = None  # built once the first profile is at hand
        probes: dict[str, list[dict]] = {name: [] for name in names}
        r = 0
        while True:
            tag = (f"round {r + 1}/{rounds}: " if r < rounds else f"round {r + 1} (extra): ") if rounds > 1 else ""
            if not args.profile:
                say(f"{tag}measuring the profile")
                rows, comments = _measure_profile(cfg, wl, args.device, args.dtype, sim_device, say)
                measured.append(rows)
                if rounds > 1:
                    write_profile(tmp / f"profile-round{r + 1}.csv", rows, comments)
                    comments = comments + [f"merged: the median of each row over the {len(measured)} "
                                           f"profile(s) measured so far, one before each round's replays "
                                           f"(profile-round*.csv)"]
                write_profile(prof, merge_rows(measured), comments)
            # The replays' schedulers see the best profile so far: the merge of the rounds' profiles.
            latency = ProfileModel(prof, name=SYSTEM_PROFILE)  # where it will be, from <system>/real
            if probe is None:
                probe = HostProbe({t.backbone for t in cfg.tasks}, read_rows(prof), device=args.device,
                                  dtype=args.dtype, seed=cfg.seed)
            order = names[r % len(names):] + names[:r % len(names)]  # each system a turn first
            for name in order:
                c = cfg.with_system(name)
                say(f"{tag}{name}: replaying {len(wl)} requests on real models ({c.duration_s:g} s of trace)")
                load_before = _load_avg()
                if load_before is not None and load_before > (os.cpu_count() or 1) + 0.5:
                    say(f"{tag}note: the host's load average is {load_before:g} on {os.cpu_count()} cores "
                        "before this replay: other work may slow it (provenance.json records it)")
                speed_before = probe.measure()
                runtime = Runtime(c, wl, make_executor, opts, latency=latency)
                records, summary = runtime.run()
                speed = {"before": speed_before, "after": probe.measure(),
                         "repeats": probe.repeats, "threads": os.cpu_count()}
                probes[name].append(speed)
                real_dir = tmp / name / ("real" if r == 0 else f"real-{r + 1}")
                real_dir.mkdir(parents=True)
                write_yaml(real_dir / "config.yaml", c.to_dict())
                prov = provenance(c.seed, lm, args.argv)
                prov["engine"] = {"name": "fmplex_exec", "device": args.device, "dtype": args.dtype,
                                  "round": r + 1, "rounds": rounds, "extra": r >= rounds}
                # Other work on the host slows a replay and nothing else records it: the load
                # average (runnable threads, this replay's own included) before and after.
                prov["host_load"] = {"cpus": os.cpu_count(), "loadavg_1m_before": load_before,
                                     "loadavg_1m_after": _load_avg()}
                # The host's speed around the replay: forwards at one of the profile's shapes.
                prov["host_speed"] = speed
                write_json(real_dir / "provenance.json", prov)
                if runtime.events:  # tasks started, ended or updated mid-run, as replay writes them
                    write_json(real_dir / "lifecycle.json", runtime.events)
                write_requests_csv(real_dir / "requests.csv", records)
                write_json(real_dir / "summary.json", summary)
                real[name].append(records)
            r += 1
            if r < rounds:
                continue
            why = _disagreement(measured, real) if r < most else None
            if not why:
                break
            say(f"round {r} done: {why}; one more round")
            extra_why.append(why)
        rounds = r
        profiles: dict | None = None
        if len(measured) > 1:
            # Two rounds merge by their mean: a profile measured in a slow spell of the host moves
            # the simulation by half the spell. Say so, and keep how far apart they lay.
            apart = forward_apart(measured)
            profiles = {"measured": len(measured), "forward_apart": round(apart, 4),
                        "apart_limit": PROFILES_APART}
            if apart > PROFILES_APART:
                say(f"note: the rounds' profiles lie {apart:.0%} apart on their forward rows (more than "
                    f"{PROFILES_APART:.0%}): the host's speed changed between them, and the simulation "
                    f"reads their median{' (of two, the mean)' if len(measured) == 2 else ''}; "
                    "profile-round*.csv hold each")
        # ``latency`` now holds the final profile: the last round read it after its merge.
        report: dict = {"config": str(args.config), "device": args.device, "sim_device": sim_device,
                        "profile": "profile.csv", "profile_measured": not args.profile,
                        "rounds": rounds, "requests": len(wl), "tasks": len(cfg.tasks),
                        "duration_s": cfg.duration_s, "targets": TARGETS, "systems": {}}
        if profiles is not None:
            report["profiles"] = profiles
        if most > 1:
            report["extra_rounds"] = {"allowed": args.extra_rounds, "run": len(extra_why), "why": extra_why,
                                      "profiles_apart_limit": PROFILES_APART, "replays_apart_limit": REPLAYS_APART}
        runs = {}
        final_rows = read_rows(prof)
        for name in names:
            c = cfg.with_system(name)
            sim = simulate(c, wl, latency=latency)
            write_run(tmp / name / "sim", c, sim, args.argv, workload_info=info)
            entry = compare_runs(real[name], sim.records, c.tasks, c.duration_s)
            entry["meets_targets"] = within_targets(entry["overall"])
            entry["host_speed"] = host_speed(probes[name], final_rows)
            for bb, h in entry["host_speed"].items():
                if h["ratio"] and max(h["ratio"], 1.0 / h["ratio"]) > 1.0 + HOST_SPEED_APART:
                    say(f"note: around {name}'s replays {bb}'s probe forwards ({h['batch']} x {h['seq_len']}) "
                        f"took {h['ratio']:.2f}x the profile's row: the host met "
                        f"{'slower' if h['ratio'] > 1 else 'faster'} spells there than when profiled "
                        "(each probe samples about a second; validation.json: host_speed)")
            report["systems"][name] = entry
            runs[name] = (real[name], sim.records)
        report["ranking"] = rank_report(report["systems"])
        report["wall_s"] = round(time.perf_counter() - t_start, 1)
        write_json(tmp / "validation.json", report)
        prov = provenance(cfg.seed, lm, args.argv)
        prov["engine"] = {"name": "fmplex_exec validate", "device": args.device, "dtype": args.dtype,
                          "cpu_count": os.cpu_count()}
        write_json(tmp / "provenance.json", prov)
        plot_validation(tmp / "validation.png", runs, report,
                        title=f"{Path(args.config).name}: {len(cfg.tasks)} tasks, {len(wl)} requests, "
                        f"{cfg.duration_s:g} s; measured (solid) vs simulated (dashed)",
                        caption=f"device {args.device} ({sim_device}), latency model: profile "
                        f"{'measured in this run' if not args.profile else args.profile}"
                        + (f"; {rounds} rounds of replays pooled" if rounds > 1 else ""))
    for name in names:
        print(_summary_line(name, report["systems"][name]))
    print(rank_line(report["ranking"]))
    print(f"report: {out / 'validation.json'}")
    return 0

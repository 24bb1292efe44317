"""Simulator against reality: compare two runs of one request stream, write the report.

:func:`compare_runs` takes the records and summaries of the same workload replayed on real
models (``fmplex-exec``) and simulated (``fmplex-sim``) and returns, overall and per task,
both sides' mean/p50/p95/p99 latency, SLO attainment and throughput with their errors:
``*_rel_err`` are relative errors of the simulation as fractions (``(sim - real) / real``,
signed: positive when the simulator predicts slower), ``slo_attainment_abs_err`` the absolute
difference. :func:`plot_validation` draws the figure. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fmplex_sim.metrics import Records
from fmplex_sim.plotting import user_text_as_is
from fmplex_sim.specs import TaskSpec

#: Targets of the validation suite (README): |relative error| of p50 and p99, absolute error of
#: SLO attainment, below saturation.
TARGETS = {"p50_rel_err": 0.10, "p99_rel_err": 0.20, "slo_attainment_abs_err": 0.03}
STATS = ("mean", "p50", "p95", "p99")
#: ``fmplex-exec validate`` runs another round (up to ``--extra-rounds``) while one system's
#: replays lie further apart than this in mean latency (:func:`replays_apart`). In the suite at
#: 5d45c32 on the 2-core machine every system's lay at most 8.5% apart in four scenarios; the
#: worst system's 12-17% in the mixed one and in the two held-out runs.
REPLAYS_APART = 0.10


def _side(recs: Sequence[Records], idx: np.ndarray, slo_ms: np.ndarray, duration_s: float) -> dict:
    """One side's statistics over the requests ``idx``, pooled over ``recs`` (replays of one
    stream): latency percentiles over every replay's completed requests, ``arrived`` and
    ``completed`` summed, SLO attainment over all of them, throughput the replays' mean."""
    lats, met, completed, in_window = [], 0, 0, 0
    for rec in recs:
        done = rec.status()[idx] == 0
        lat = (rec.finish_s - rec.arrival_s)[idx] * 1000.0
        lats.append(lat[done])
        met += int((done & (lat <= slo_ms[idx] + 1e-9)).sum())
        completed += int(done.sum())
        in_window += int((done & (rec.finish_s[idx] <= duration_s)).sum())
    lat = np.concatenate(lats)
    arrived = int(idx.shape[0]) * len(recs)
    out: dict = {"arrived": arrived, "completed": completed}
    if lat.shape[0]:
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        out.update(mean_ms=float(lat.mean()), p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99))
    else:
        out.update(mean_ms=None, p50_ms=None, p95_ms=None, p99_ms=None)
    out["slo_attainment"] = met / arrived if arrived else None
    out["throughput_rps"] = in_window / (duration_s * len(recs))
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def _errors(real: dict, sim: dict) -> dict:
    err: dict = {}
    for k in STATS:
        r, s = real[f"{k}_ms"], sim[f"{k}_ms"]
        err[f"{k}_rel_err"] = round((s - r) / r, 6) if r and s is not None else None
    r, s = real["throughput_rps"], sim["throughput_rps"]
    err["throughput_rel_err"] = round((s - r) / r, 6) if r else None
    r, s = real["slo_attainment"], sim["slo_attainment"]
    err["slo_attainment_abs_err"] = round(abs(s - r), 6) if r is not None and s is not None else None
    return err


def compare_runs(real: Records | Sequence[Records], sim: Records | Sequence[Records],
                 tasks: Sequence[TaskSpec], duration_s: float) -> dict:
    """``{"overall": {...}, "tasks": {name: {...}}}``, each with ``real``, ``sim`` and errors.

    ``real`` is one replay of the simulated request stream, or several (rounds): their requests
    are pooled. With two or more, ``rounds`` lists each replay's overall statistics and
    ``round_spread`` how far they lie apart (``max / min - 1`` of mean, p50 and p99): the
    host's own replay-to-replay variation, the floor under any simulator's error there.
    ``sim`` is one simulation, or several of the same stream (say one per round's profile),
    pooled the same way.
    """
    rounds = [real] if isinstance(real, Records) else list(real)
    sims = [sim] if isinstance(sim, Records) else list(sim)
    if not rounds or not sims:
        raise ValueError("no real replay to compare" if not rounds else "no simulation to compare")
    first = sims[0]
    for rec in rounds + sims[1:]:
        if rec.task.shape != first.task.shape or not np.array_equal(rec.task, first.task):
            raise ValueError("real and simulated runs do not share one request stream")
    spec = {t.name: t for t in tasks}
    slo = np.array([spec[n].slo_ms for n in first.tasks])[first.task] if len(first.task) else np.empty(0)
    everything = np.arange(first.task.shape[0])
    overall_r, overall_s = _side(rounds, everything, slo, duration_s), _side(sims, everything, slo, duration_s)
    out = {"overall": {"real": overall_r, "sim": overall_s, **_errors(overall_r, overall_s)}, "tasks": {}}
    for k, name in enumerate(first.tasks):
        idx = np.flatnonzero(first.task == k)
        r, s = _side(rounds, idx, slo, duration_s), _side(sims, idx, slo, duration_s)
        out["tasks"][name] = {"real": r, "sim": s, **_errors(r, s)}
    if len(rounds) > 1:
        each = [_side([rec], everything, slo, duration_s) for rec in rounds]
        out["rounds"] = each
        out["round_spread"] = {stat: _apart([e[f"{stat}_ms"] for e in each]) for stat in ("mean", "p50", "p99")}
    return out


def _apart(values: Sequence[float | None]) -> float | None:
    """``max / min - 1`` of the values that are not None (None without a positive minimum)."""
    v = [x for x in values if x is not None]
    return round(max(v) / min(v) - 1.0, 6) if v and min(v) > 0 else None


def replays_apart(rounds: Sequence[Records]) -> float:
    """How far replays of one stream lie apart: ``max / min - 1`` of their mean latency over
    completed requests, as ``round_spread["mean"]`` of :func:`compare_runs` (0 with fewer than
    two replays, or none that completed a request)."""
    means = []
    for rec in rounds:
        done = rec.status() == 0
        means.append(float(((rec.finish_s - rec.arrival_s)[done] * 1000.0).mean()) if done.any() else None)
    return (_apart(means) or 0.0) if len(rounds) > 1 else 0.0


def within_targets(entry: Mapping, targets: Mapping[str, float] = TARGETS) -> dict[str, bool]:
    """For each target key, whether ``entry`` (an ``overall`` or task entry) meets it."""
    return {k: entry.get(k) is not None and abs(entry[k]) <= lim for k, lim in targets.items()}


#: a system that leaves more than this fraction of its requests unserved (rejected, unplaced or
#: unfinished) ranks after every system that serves the rest, whatever its latency
RANK_UNSERVED = 0.01


def ranking(by_system: Mapping[str, Mapping], side: str, stat: str = "mean_ms") -> list[str]:
    """Systems ordered best first by ``stat`` of their overall ``side`` (``real`` or ``sim``).

    ``stat`` is over completed requests only, so a system that dropped most of its requests
    (an unplaced task, timeouts) would look fast: systems that leave more than
    :data:`RANK_UNSERVED` of their requests unserved rank after the others."""
    def key(n: str):
        side_ = by_system[n]["overall"][side]
        arrived = side_.get("arrived") or 0
        unserved = arrived - side_.get("completed", arrived)
        return (unserved > RANK_UNSERVED * arrived + 1e-9, side_[stat] if side_[stat] is not None else float("inf"), n)

    return sorted(by_system, key=key)


def rank_report(by_system: Mapping[str, Mapping], stat: str = "mean_ms") -> dict:
    """The ranking report ``validation.json`` carries: both sides' orders and where they agree.

    ``same`` compares the two orders whole. With two or more rounds of replays (each system's
    entry has ``rounds``), ``real_rounds`` ranks each round's replays alone, and ``unsettled``
    lists the pairs of systems the rounds put in different orders: the host's own variation is
    larger than their difference, so the measurement does not order them. ``same_settled`` is
    whether the simulation orders every other pair as the pooled replays do; with one round
    every pair counts as settled and it equals ``same``."""
    real, sim = ranking(by_system, "real", stat), ranking(by_system, "sim", stat)
    out: dict = {"by": "mean latency" if stat == "mean_ms" else stat, "real": real, "sim": sim,
                 "same": real == sim}
    counts = {len(e.get("rounds") or ()) for e in by_system.values()}
    n = min(counts) if counts else 0
    orders = []
    if n > 1:
        for r in range(n):
            one = {k: {"overall": {"real": e["rounds"][r]}} for k, e in by_system.items()}
            orders.append(ranking(one, "real", stat))
        out["real_rounds"] = orders
    unsettled, agree = [], True
    for i, a in enumerate(real):
        for b in real[i + 1:]:
            if len({o.index(a) < o.index(b) for o in orders}) > 1:
                unsettled.append([a, b])
            elif sim.index(a) > sim.index(b):
                agree = False
    out["unsettled"] = unsettled
    out["same_settled"] = agree
    return out


def rank_line(report: Mapping) -> str:
    """One line for a :func:`rank_report`: both orders, and whether they agree."""
    verdict = "same" if report["same"] else "DIFFERENT"
    if not report["same"] and report.get("unsettled"):
        pairs = "; ".join(" and ".join(p) for p in report["unsettled"])
        verdict += (f"; the replays' rounds order {pairs} differently, and every other pair is "
                    + ("the same" if report["same_settled"] else "NOT the same either"))
    return (f"ranking by {report['by']}: real {', '.join(report['real'])}; "
            f"sim {', '.join(report['sim'])} ({verdict})")


def _cdf(ax, recs: Records | Sequence[Records], color, style: str, label: str) -> None:
    recs = [recs] if isinstance(recs, Records) else recs
    lat = np.sort(np.concatenate([(r.finish_s - r.arrival_s)[r.status() == 0] * 1000.0 for r in recs]))
    if lat.shape[0]:
        ax.plot(lat, np.arange(1, lat.shape[0] + 1) / lat.shape[0], style, color=color, label=label)


@user_text_as_is()
def log_scale(axis) -> None:
    """Put a matplotlib axis on a log scale with plain decade labels ("10", "100"), no minor
    labels. Matplotlib's default labels are math markup, which figures drawn with user text
    as is (:func:`~fmplex_sim.plotting.user_text_as_is`) would print raw."""
    import matplotlib

    axis.axes.set(**{f"{axis.axis_name}scale": "log"})
    axis.set_major_formatter(matplotlib.ticker.LogFormatter())
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def plot_validation(path: Path, runs: Mapping[str, tuple[Records | Sequence[Records], Records]],
                    report: Mapping, title: str, caption: str) -> None:
    """Latency CDFs (real solid, its replays pooled; simulated dashed) per system, and predicted
    against measured per-task p50 and p99; PNG (and PDF next to it when ``path`` ends in .png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name, color in zip(axes, names, colors):
        real, sim = runs[name]
        _cdf(ax, real, color, "-", "measured")
        _cdf(ax, sim, color, "--", "simulated")
        o = report["systems"][name]["overall"]
        ax.set_title(f"{name}: p50 err {_pct(o['p50_rel_err'])}, p99 err {_pct(o['p99_rel_err'])}",
                     fontsize=9)
        log_scale(ax.xaxis)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[-1]
    lo, hi = float("inf"), 0.0
    for name, color in zip(names, colors):
        for stat, marker in (("p50", "o"), ("p99", "^")):
            pts = [(t[ "real"][f"{stat}_ms"], t["sim"][f"{stat}_ms"])
                   for t in report["systems"][name]["tasks"].values()
                   if t["real"][f"{stat}_ms"] and t["sim"][f"{stat}_ms"]]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, marker=marker, color=color, s=18, label=f"{name} {stat}")
                lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="exact")
        ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="grey", alpha=0.15,
                        label="±20%")
        log_scale(ax.xaxis)
        log_scale(ax.yaxis)
    ax.set_title("per task: predicted vs measured", fontsize=9)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("simulated latency (ms)")
    ax.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.01, caption, ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=120)
    if str(path).endswith(".png"):
        fig.savefig(str(path)[:-4] + ".pdf")
    plt.close(fig)


def _pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"

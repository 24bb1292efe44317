"""Noisy-neighbour report: what one task's load does to the others that share its backbone.

One request stream is run three ways per system: every task together (``shared``), each
other task by itself on its own requests (``alone``), and every task but the noisy one
(``without``). The report compares them, per task:

* **Service against the weighted max-min fair share.** Tasks compete where a scheduler
  arbitrates: on one instance (a physical FM), or on several when a task is spread over them
  (such instances form one group). A task that left more than ``UNSERVED_FRACTION`` of its
  requests unserved (rejected, or still queued when arrivals stop) was *backlogged*: the
  scheduler, not its demand, set its service. Its fair share is what the non-backlogged tasks
  of its group leave of the group's backbone time, split by weight among the backlogged ones.
  A non-backlogged task gets what it takes, which is fair only while that is at most its
  weighted share of all the group's time (``share_of_all_ratio``).

Every run stops at the end of the arrival window (``drain_s`` 0): during a drain only the
backlogged tasks run, and that time would count toward their shares. A light task still has
about ``rate x latency`` requests in flight when arrivals stop, so the window must be long
against its latency (``UNSERVED_FRACTION`` of 5% allows a latency of 1/20 of the window).
* **p99 against alone and against the run without the noisy task**, judged for the tasks that
  were not backlogged (a backlogged task's p99 is set by its own queue bound).

The analysis reads only summaries and the placement, which both engines write alike, so the
harness reuses it (``fmplex-exec isolation``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from fmplex_sim.config import RunConfig
from fmplex_sim.errors import InputError
from fmplex_sim.workload import Workload

#: a task that leaves more than this fraction of its requests unserved counts as backlogged
UNSERVED_FRACTION = 0.05
#: a backlogged task's service within this fraction of its fair share meets the target
SHARE_TOLERANCE = 0.10
#: a non-backlogged task's p99 within this many times its p99 alone meets the target
P99_TARGET = 1.5
#: a non-backlogged task taking more than this many times its weighted share of all is flagged
LIGHT_SHARE_LIMIT = 1.1


def check_noisy(cfg: RunConfig, noisy: str) -> None:
    """Raise InputError unless ``noisy`` names a task of ``cfg`` and another task exists."""
    names = [t.name for t in cfg.tasks]
    if noisy not in names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise InputError("--noisy", noisy, f"no such task in {cfg.source} (tasks: {shown})")
    if len(names) < 2:
        raise InputError("--noisy", noisy, f"{cfg.source} has no other task to protect")


def only_tasks(cfg: RunConfig, wl: Workload, keep: Iterable[str]) -> tuple[RunConfig, Workload]:
    """``cfg`` and ``wl`` restricted to the tasks ``keep``: the same requests, times and sizes
    for those tasks (request ids are renumbered)."""
    keep = set(keep)
    tasks = tuple(t for t in cfg.tasks if t.name in keep)
    names = tuple(t.name for t in tasks)
    old = {n: i for i, n in enumerate(wl.tasks)}
    remap = np.full(len(wl.tasks), -1, dtype=np.int32)
    for i, n in enumerate(names):
        if n in old:
            remap[old[n]] = i
    new_index = remap[wl.task] if len(wl) else np.empty(0, np.int32)
    rows = new_index >= 0
    sub = Workload(
        tasks=names,
        arrival_s=wl.arrival_s[rows],
        task=new_index[rows].astype(np.int32),
        input_len=wl.input_len[rows],
        output_len=wl.output_len[rows],
    )
    return replace(cfg, tasks=tasks, templates=()), sub


def task_groups(placement: Mapping, tasks: Iterable[str]) -> list[list[str]]:
    """Tasks that compete for one scheduler: tasks of one instance, merged over instances that
    share a task. Tasks placed nowhere form groups of their own. In ``tasks`` order."""
    order = list(tasks)
    parent = {t: t for t in order}

    def root(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for inst in placement.get("instances", ()):
        members = [t for t in inst.get("tasks", ()) if t in parent]
        for t in members[1:]:
            a, b = root(members[0]), root(t)
            if a != b:
                parent[b] = a
    groups: dict[str, list[str]] = {}
    for t in order:
        groups.setdefault(root(t), []).append(t)
    return list(groups.values())


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 4)


def _p99(summary: Mapping | None, task: str) -> float | None:
    if summary is None or task not in summary["per_task"]:
        return None
    return summary["per_task"][task]["latency_ms"]["p99"]


def report(
    noisy: str,
    shared: Mapping,
    placement: Mapping,
    alone: Mapping[str, Mapping],
    without: Mapping | None,
) -> dict:
    """The isolation report of one system from its runs' summaries (see the module docstring).

    ``alone`` maps each other task to the summary of its run by itself; ``without`` is the run
    of every task but ``noisy`` (None to leave that comparison out)."""
    pt = shared["per_task"]
    tasks: dict[str, dict] = {}
    for group in task_groups(placement, pt):
        weight = {t: float(pt[t]["weight"]) for t in group}
        service = {t: float(pt[t]["service_s"]) for t in group}
        unserved = {t: pt[t]["arrived"] - pt[t]["completed"] for t in group}
        back = [t for t in group if unserved[t] > UNSERVED_FRACTION * pt[t]["arrived"]]
        total = sum(service.values())
        rest = total - sum(service[t] for t in group if t not in back)
        wsum_back = sum(weight[t] for t in back)
        wsum = sum(weight.values())
        for t in group:
            fair = None
            if len(group) > 1 and t in back:
                fair = rest * weight[t] / wsum_back
            share_all = total * weight[t] / wsum if len(group) > 1 else None
            p = pt[t]
            row = {
                "group": group[0],
                "weight": weight[t],
                "noisy": t == noisy,
                "backlogged": t in back,
                "unserved_fraction": round(unserved[t] / p["arrived"], 4) if p["arrived"] else 0.0,
                "arrived": p["arrived"],
                "completed": p["completed"],
                "rejected": p["rejected"],
                "service_s": round(service[t], 4),
                "fair_share_s": None if fair is None else round(fair, 4),
                "share_ratio": _ratio(service[t], fair),
                "share_of_all_ratio": _ratio(service[t], share_all),
                "p99_ms": p["latency_ms"]["p99"],
            }
            if t != noisy:
                row["p99_alone_ms"] = _p99(alone.get(t), t)
                row["p99_vs_alone"] = _ratio(row["p99_ms"], row["p99_alone_ms"])
                if without is not None:
                    row["p99_without_noisy_ms"] = _p99(without, t)
                    row["p99_vs_without_noisy"] = _ratio(row["p99_ms"], row["p99_without_noisy_ms"])
            tasks[t] = row
    return {"system": shared["system"], "noisy": noisy, "tasks": tasks, "targets": targets(tasks)}


def _target(values: dict[str, float | None], ok, worst) -> dict:
    judged = {t: v for t, v in values.items() if v is not None}
    return {
        "met": all(ok(v) for v in judged.values()) if judged else None,  # None: no task to judge
        "judged": sorted(judged),
        "failing": sorted(t for t, v in judged.items() if not ok(v)),
        "worst": worst(judged.values()) if judged else None,
    }


def targets(tasks: Mapping[str, Mapping]) -> dict:
    """The three checks over the other tasks' rows (``noisy`` excluded):

    * ``share_within_10pct``: every backlogged task with a fair share gets 0.9-1.1x of it;
    * ``p99_within_1_5x_alone``: every non-backlogged task's p99 is at most 1.5x alone;
    * ``light_within_weighted_share``: no non-backlogged task takes more than 1.1x its
      weighted share of all its group's time (else its latency was bought with others' time).
    """
    others = {t: r for t, r in tasks.items() if not r["noisy"]}
    share = {t: r["share_ratio"] for t, r in others.items() if r["backlogged"]}
    p99 = {t: r.get("p99_vs_alone") for t, r in others.items() if not r["backlogged"]}
    light = {t: r["share_of_all_ratio"] for t, r in others.items() if not r["backlogged"]}
    return {
        "share_within_10pct": _target(
            share, lambda v: abs(v - 1.0) <= SHARE_TOLERANCE + 1e-9,
            lambda vs: max(vs, key=lambda v: abs(v - 1.0))),
        "p99_within_1_5x_alone": _target(p99, lambda v: v <= P99_TARGET + 1e-9, max),
        "light_within_weighted_share": _target(light, lambda v: v <= LIGHT_SHARE_LIMIT + 1e-9, max),
    }


def run_isolation(cfg: RunConfig, wl: Workload, noisy: str, systems: list[str], run_one) -> dict:
    """Run every system's shared, alone and without-noisy runs on ``wl``, in either engine.

    ``run_one(label, cfg, wl)`` runs one (``label``: ``<system>/shared``,
    ``<system>/alone/<task>`` or ``<system>/without-noisy``), writes its results folder, and
    returns ``(summary, placement dict)``. Returns ``{system: report}``.
    """
    out = {}
    others = [t.name for t in cfg.tasks if t.name != noisy]
    cfg = replace(cfg, drain_s=0.0)  # the shares are over the arrival window (module docstring)
    for name in systems:
        c = cfg.with_system(name)
        shared, placement = run_one(f"{name}/shared", c, wl)
        alone = {}
        for t in others:
            ca, wa = only_tasks(c, wl, [t])
            alone[t] = run_one(f"{name}/alone/{t}", ca, wa)[0]
        cw, ww = only_tasks(c, wl, others)
        without = run_one(f"{name}/without-noisy", cw, ww)[0]
        out[name] = report(noisy, shared, placement, alone, without)
    return out


def format_report(rep: Mapping) -> list[str]:
    """Lines of a plain-text table of one system's report."""
    cols = ["task", "weight", "backlogged", "service/fair", "share of all", "p99 ms", "alone ms",
            "vs alone", "vs without noisy"]
    rows = [cols]

    def f(v, fmt):
        return "" if v is None else fmt.format(v)

    for t, r in rep["tasks"].items():
        rows.append([
            t + (" (noisy)" if r["noisy"] else ""), f(r["weight"], "{:g}"),
            "yes" if r["backlogged"] else "no", f(r["share_ratio"], "{:.3f}"),
            f(r["share_of_all_ratio"], "{:.2f}"), f(r["p99_ms"], "{:.4g}"), f(r.get("p99_alone_ms"), "{:.4g}"),
            f(r.get("p99_vs_alone"), "{:.2f}x"), f(r.get("p99_vs_without_noisy"), "{:.2f}x"),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    tg = rep["targets"]
    verdict = []
    for key, label in (("share_within_10pct", "backlogged service within 10% of fair share"),
                       ("p99_within_1_5x_alone", "light p99 within 1.5x alone"),
                       ("light_within_weighted_share", "light tasks within 1.1x their weighted share")):
        t = tg[key]
        if not t["judged"]:
            verdict.append(f"{label}: no task to judge (none {'backlogged' if key.startswith('share') else 'within its share'})")
        else:
            worst = "" if t["worst"] is None else f" (worst {t['worst']:.3g})"
            verdict.append(f"{label}: {'met' if t['met'] else 'NOT met'}{worst}")
    return lines + ["; ".join(verdict)]


def print_reports(reports: Mapping[str, Mapping], out, where: str = "") -> None:
    """Print every system's table and verdict, then where the report is (``out``)."""
    for name, rep in reports.items():
        print(f"{name}{where} (noisy: {rep['noisy']})")
        for line in format_report(rep):
            print("  " + line)
    print(f"report: {out / 'isolation.json'}")

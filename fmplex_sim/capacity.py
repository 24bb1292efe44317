"""Capacity search: how many of a config's tasks one cluster hosts within their SLOs.

The task pool is the config's tasks after template expansion (``RunConfig.tasks``), in config
order: probe k simulates the first k tasks on the config's cluster under one system. The
request stream is generated once for the whole pool and each probe keeps the requests of its k
tasks; a task's arrivals depend only on the seed and its index, so a probe sees exactly what a
run of those k tasks alone would (for a trace, the pool's shaped trace restricted to them).

A probe is *feasible* when no task is unplaced and every task's SLO attainment
(``summary.json`` ``per_task.<name>.slo_attainment``, rounded to 4 decimals) is at least the
target; a task that received no requests does not count against it.

Search: probe ``min_tasks``; then double k until a probe fails or ``max_tasks`` is reached;
then bisect between the largest feasible and the smallest infeasible k. Feasibility is
assumed monotone in k; every probe is recorded so that the assumption can be checked. The
answer is the largest feasible k found, or ``min_tasks - 1`` when ``min_tasks`` already fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from fmplex_sim.config import RunConfig
from fmplex_sim.errors import InputError
from fmplex_sim.workload import Workload


@dataclass(frozen=True)
class Probe:
    """One simulation of the first ``tasks`` tasks of the pool."""

    tasks: int  # k: how many tasks of the pool ran
    feasible: bool  # nothing unplaced and every task's attainment >= target
    min_task_slo_attainment: float | None  # lowest per-task attainment (None: no requests)
    slo_attainment: float | None  # over all requests of the probe
    unplaced: int  # tasks the placement could not host

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def first_tasks(cfg: RunConfig, wl: Workload, k: int) -> tuple[RunConfig, Workload]:
    """``cfg`` and ``wl`` restricted to the first ``k`` tasks of ``cfg.tasks``."""
    keep = wl.task < k
    sub = Workload(wl.tasks[:k], wl.arrival_s[keep], wl.task[keep], wl.input_len[keep], wl.output_len[keep])
    return replace(cfg, tasks=cfg.tasks[:k]), sub


def probe(cfg: RunConfig, wl: Workload, k: int, target: float) -> tuple[Probe, dict]:
    """Simulate the first ``k`` tasks of ``cfg`` (resolved by run.prepare) on ``wl``; the probe
    and the run's summary."""
    from fmplex_sim.run import simulate

    s = simulate(*first_tasks(cfg, wl, k)).summary
    per_task = [t["slo_attainment"] for t in s["per_task"].values() if t["slo_attainment"] is not None]
    lowest = min(per_task) if per_task else None
    unplaced = s["cluster"]["tasks_unplaced"]
    ok = unplaced == 0 and (lowest is None or lowest >= target)
    return Probe(k, ok, lowest, s["slo_attainment"], unplaced), s


def search(feasible: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest k in [lo, hi] with ``feasible(k)`` (galloping, then bisection), assuming
    feasibility is monotone; ``lo - 1`` when ``feasible(lo)`` is false."""
    if not feasible(lo):
        return lo - 1
    good, bad = lo, None
    while good < hi:
        k = min(hi, 2 * good)
        if feasible(k):
            good = k
        else:
            bad = k
            break
    if bad is None:
        return good
    while bad - good > 1:
        mid = (good + bad) // 2
        if feasible(mid):
            good = mid
        else:
            bad = mid
    return good


def capacity(
    cfg: RunConfig,
    system: str,
    target: float,
    min_tasks: int | None = None,
    max_tasks: int | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> tuple[RunConfig, dict]:
    """Search the largest number of tasks ``cfg``'s cluster hosts under ``system`` with every
    task's SLO attainment >= ``target``. Returns the resolved config (under ``system``) and
    the content of ``capacity.json``. Raises InputError for a bad system, target or bound."""
    from fmplex_sim.run import prepare

    if not (isinstance(target, (int, float)) and math.isfinite(target) and 0 < target <= 1):
        raise InputError("--slo-attainment", str(target), "must be in (0, 1]")
    try:
        cfg = cfg.with_system(system)
    except InputError as e:
        raise InputError("--system", system, e.problem) from None
    cfg, wl, _ = prepare(cfg)
    pool = len(cfg.tasks)
    lo = 1 if min_tasks is None else min_tasks
    hi = pool if max_tasks is None else max_tasks
    if not 1 <= lo <= pool:
        raise InputError("--min-tasks", str(lo), f"must be between 1 and the pool's {pool} tasks")
    if not lo <= hi <= pool:
        raise InputError("--max-tasks", str(hi), f"must be between --min-tasks ({lo}) and the pool's {pool} tasks")
    probes: dict[int, Probe] = {}  # in the order they ran
    latency: dict = {}

    def feasible(k: int) -> bool:
        if k not in probes:
            probes[k], summary = probe(cfg, wl, k, target)
            latency.update(summary["latency_model"])
            if on_probe is not None:
                on_probe(probes[k])
        return probes[k].feasible

    best = search(feasible, lo, hi)
    return cfg, {
        "system": cfg.system.name,
        "slo_attainment_target": target,
        "tasks_hosted_max": best,
        "pool_size": pool,
        "gpus": cfg.cluster.gpus,
        "device": cfg.cluster.device,
        "seed": cfg.seed,
        "latency_model": latency,
        "min_tasks": lo,
        "max_tasks": hi,
        "search": [p.to_dict() for p in probes.values()],
        "order": [t.name for t in cfg.tasks],
    }

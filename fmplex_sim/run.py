"""Library entry points: simulate one config, write its results folder, compare systems."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fmplex_sim import workload as wl_mod
from fmplex_sim.config import RunConfig
from fmplex_sim.engine import Engine, RunResult
from fmplex_sim.latency.base import LatencyModel
from fmplex_sim.metrics import (
    Records,
    check_accounting,
    check_nothing_lost,
    expire_at_horizon,
    summarize,
    write_requests_csv,
)
from fmplex_sim.results import provenance, write_json, write_yaml
from fmplex_sim.workload import Workload


@dataclass(frozen=True)
class RunOutput:
    """A finished simulation: raw result, records and summary."""

    result: RunResult
    records: Records
    summary: dict


def prepare(cfg: RunConfig) -> tuple[RunConfig, Workload, dict]:
    """Resolve ``cfg`` against its workload: the request stream, the config with its tasks and
    duration final (a trace sets both), and a description of the workload for the results.

    The stream depends only on the tasks, duration, workload section and seed, so every system
    compared on one config sees the identical requests.
    """
    if cfg.workload.trace is not None:
        from fmplex_sim.traces import trace_workload

        return trace_workload(cfg)
    wl = wl_mod.synthetic(cfg.tasks, cfg.duration_s, cfg.seed)
    return cfg, wl, {"synthetic": True, "requests": len(wl), "tasks": len(cfg.tasks)}


def build_workload(cfg: RunConfig) -> Workload:
    """The request stream of ``cfg`` (see :func:`prepare`)."""
    return prepare(cfg)[1]


def simulate(
    cfg: RunConfig,
    workload: Workload | None = None,
    progress: Callable[[float], None] | None = None,
    latency: LatencyModel | None = None,
) -> RunOutput:
    """Run ``cfg`` on ``workload`` (built from the config when None) and summarize it.

    ``latency`` replaces the model the config names (for tests and calibration studies).
    """
    if workload is None:
        cfg, wl, _ = prepare(cfg)
    else:
        wl = workload
    if cfg.duration_s is None:
        raise ValueError("resolve a trace config with prepare() before passing its workload")
    res = Engine(cfg, wl, progress, latency).run()
    rec = Records(
        tasks=wl.tasks,
        task=wl.task,
        arrival_s=wl.arrival_s,
        start_s=res.start_s,
        finish_s=res.finish_s,
        batch_id=res.batch_id,
        instances=tuple(res.instances),
        instance=res.instance,
        reason=res.reason,
    )
    check_nothing_lost(rec, res.held)
    expire_at_horizon(rec, {t.name: t.queue_limit_ms / 1000.0 for t in cfg.tasks}, cfg.duration_s + cfg.drain_s)
    sysc = cfg.system
    summary = summarize(
        rec,
        cfg.tasks,
        system={"name": sysc.name, "placement": sysc.placement, "scheduler": sysc.scheduler},
        latency_model={"kind": res.latency.kind, "source": res.latency.source},
        seed=cfg.seed,
        duration_s=cfg.duration_s,
        horizon_s=cfg.duration_s + cfg.drain_s,
        cluster={
            "device": cfg.cluster.device,
            "gpus": cfg.cluster.gpus,
            "gpus_used": res.peak_gpus,
            "tasks_hosted": len(res.hosted),
            "tasks_unplaced": len(res.unplaced),
            "memory_gib": round(res.peak_memory_gib, 4),
            "instances": len(res.instances),
            "batches": res.batches,
            "mean_batch_size": round(
                float(np.count_nonzero(res.batch_id >= 0)) / res.batches, 4
            ) if res.batches else None,
        },
        service_s=res.service_s,
        wall_s=res.wall_s,
    )
    check_accounting(summary)
    return RunOutput(res, rec, summary)


def write_run(
    folder: Path,
    cfg: RunConfig,
    out: RunOutput,
    argv: list[str] | None = None,
    workload_info: dict | None = None,
) -> None:
    """Write config, provenance, placement, workload description, per-request records and
    summary into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if workload_info is not None:
        write_json(folder / "workload.json", workload_info)
    write_yaml(folder / "config.yaml", cfg.to_dict())
    write_json(folder / "provenance.json", provenance(cfg.seed, out.summary["latency_model"], argv))
    placement = out.result.placement.to_dict()
    placement["unplaced_during_run"] = [{"task": t, "reason": r} for t, r in out.result.unplaced.items()]
    placement["updated_during_run"] = [{"task": t, "swapped_s": round(v, 6)} for t, v in out.result.updated.items()]
    write_json(folder / "placement.json", placement)
    write_requests_csv(folder / "requests.csv", out.records)
    write_json(folder / "summary.json", out.summary)

"""Per-request records -> ``requests.csv`` and ``summary.json``, for both engines.

A request is ``completed`` when it has a finish time, ``rejected`` when it carries a reason,
and ``unfinished`` otherwise (still queued or running when the run ended). Latency statistics
are over completed requests; SLO attainment counts every arrived request, so rejected and
unfinished requests count as misses.

Fairness: a task is *backlogged* when it had requests waiting to start for at least half of
its active time (its deployment span within the arrival window). ``jain`` is Jain's index over
``service_s / weight`` among backlogged tasks (null with fewer than two);
``max_normalized_lag_s`` is the largest gap between one backlogged task's ``service_s/weight``
and their mean.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from fmplex_sim.records import COMPLETED, RECORD_COLUMNS, REJECTED, UNFINISHED
from fmplex_sim.specs import TaskSpec

BACKLOGGED_FRACTION = 0.5  # share of its active time a task must have waited to count as backlogged


@dataclass(frozen=True)
class Records:
    """Columnar per-request records; row i is request id i."""

    tasks: tuple[str, ...]  # task names; ``task`` indexes this
    task: np.ndarray  # int index into tasks
    arrival_s: np.ndarray  # float
    start_s: np.ndarray  # float, nan if it never ran
    finish_s: np.ndarray  # float, nan if it never finished
    batch_id: np.ndarray  # int, -1 if it never ran
    instances: tuple[str, ...]  # instance names; ``instance`` indexes this
    instance: np.ndarray  # int, -1 if none
    reason: Sequence[str]  # non-empty for rejected requests

    def status(self) -> np.ndarray:
        """Per-request status code: 0 completed, 1 rejected, 2 unfinished."""
        st = np.full(self.task.shape[0], 2, dtype=np.int8)
        st[np.asarray([bool(r) for r in self.reason], dtype=bool)] = 1
        st[np.isfinite(self.finish_s)] = 0
        return st


def expire_at_horizon(rec: Records, limit_s: Mapping[str, float], horizon_s: float) -> None:
    """Mark as rejected (``queue_timeout``) every request that never started and, at the
    horizon, had waited past its task's limit (``arrival_s + limit < horizon``).

    Engines drop expired requests when they pick a batch; a batch still running at the horizon
    would otherwise leave such requests ``unfinished`` although they could not start in time.
    Both engines call this on their records before summarizing. ``limit_s``: task -> seconds."""
    if not rec.task.shape[0]:
        return
    lim = np.array([limit_s.get(t, np.inf) for t in rec.tasks])[rec.task]
    late = np.isnan(rec.start_s) & ~np.isfinite(rec.finish_s) & (rec.arrival_s + lim < horizon_s)
    reason = rec.reason
    for i in np.flatnonzero(late).tolist():
        if not reason[i]:
            reason[i] = "queue_timeout"


_STATUS = (COMPLETED, REJECTED, UNFINISHED)


def write_requests_csv(path, rec: Records) -> None:
    """Write one row per request with the columns of :data:`RECORD_COLUMNS`."""
    st = rec.status()
    lat = (rec.finish_s - rec.arrival_s) * 1000.0
    with open(path, "w", newline="") as fh:
        _write_rows(csv.writer(fh, lineterminator="\n"), rec, st, lat)


def read_requests_csv(path, tasks: Sequence[str] = ()) -> Records:
    """The records a ``requests.csv`` holds (:func:`write_requests_csv` read back), times in
    seconds (nan where empty). Task indices follow ``tasks`` (a workload's names), then first
    appearance; instances follow first appearance."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    tasks = {name: k for k, name in enumerate(tasks)}
    insts: dict[str, int] = {}
    n = len(rows)
    task, batch, inst = (np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64),
                         np.full(n, -1, dtype=np.int64))
    times = np.full((3, n), np.nan)
    reason = [""] * n
    for row in rows:
        i = int(row["request_id"])
        task[i] = tasks.setdefault(row["task"], len(tasks))
        for j, col in enumerate(("arrival_s", "start_s", "finish_s")):
            if row[col]:
                times[j, i] = float(row[col])
        if row["batch_id"]:
            batch[i] = int(row["batch_id"])
        if row["instance"]:
            inst[i] = insts.setdefault(row["instance"], len(insts))
        reason[i] = row["reason"]
    return Records(tasks=tuple(tasks), task=task, arrival_s=times[0], start_s=times[1],
                   finish_s=times[2], batch_id=batch, instances=tuple(insts), instance=inst,
                   reason=reason)


def _write_rows(w, rec: Records, st: np.ndarray, lat: np.ndarray) -> None:
    w.writerow(RECORD_COLUMNS)
    tasks, insts = rec.tasks, rec.instances
    for i, (k, a, s, f, l, b, n, c) in enumerate(
        zip(
            rec.task.tolist(), rec.arrival_s.tolist(), rec.start_s.tolist(), rec.finish_s.tolist(),
            lat.tolist(), rec.batch_id.tolist(), rec.instance.tolist(), st.tolist(),
        )
    ):
        w.writerow((
            i, tasks[k], f"{a:.6f}",
            "" if s != s else f"{s:.6f}",
            "" if f != f else f"{f:.6f}",
            "" if l != l else f"{l:.3f}",
            "" if b < 0 else b,
            "" if n < 0 else insts[n],
            _STATUS[c],
            rec.reason[i],
        ))


def _stats(x: np.ndarray) -> dict:
    if x.shape[0] == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return {"mean": _r(x.mean()), "p50": _r(p50), "p95": _r(p95), "p99": _r(p99)}


def _r(x: float) -> float:
    return round(float(x), 4)


def backlogged_s(arrival: np.ndarray, began: np.ndarray) -> float:
    """Length of the union of waiting intervals ``[arrival, began)``."""
    if arrival.shape[0] == 0:
        return 0.0
    order = np.argsort(arrival, kind="stable")
    a, e = arrival[order], np.maximum(began[order], arrival[order])
    prev_end = np.concatenate(([-np.inf], np.maximum.accumulate(e)[:-1]))
    return float(np.clip(e - np.maximum(a, prev_end), 0.0, None).sum())


def summarize(
    rec: Records,
    tasks: Sequence[TaskSpec],
    *,
    system: dict,
    latency_model: dict,
    seed: int,
    duration_s: float,
    horizon_s: float,
    cluster: dict,
    service_s: dict[str, float],
    wall_s: float,
) -> dict:
    """The ``summary.json`` of one run."""
    st = rec.status()
    n = st.shape[0]
    done = st == 0
    lat = (rec.finish_s - rec.arrival_s) * 1000.0
    slo = np.array([t.slo_ms for t in tasks])[rec.task] if n else np.empty(0)
    met = done & (lat <= slo + 1e-9)
    began = np.where(np.isfinite(rec.start_s), rec.start_s, np.where(st == 1, rec.arrival_s, horizon_s))
    per_task: dict[str, dict] = {}
    order = np.argsort(rec.task, kind="stable")
    bounds = np.searchsorted(rec.task[order], np.arange(len(rec.tasks) + 1))
    spec = {t.name: t for t in tasks}
    norm: dict[str, float] = {}
    for k, name in enumerate(rec.tasks):
        idx = order[bounds[k] : bounds[k + 1]]
        t = spec[name]
        s = st[idx]
        arrived = int(idx.shape[0])
        per_task[name] = {
            "arrived": arrived,
            "completed": int((s == 0).sum()),
            "rejected": int((s == 1).sum()),
            "unfinished": int((s == 2).sum()),
            "weight": t.weight,
            "slo_ms": t.slo_ms,
            "latency_ms": _stats(lat[idx][s == 0]),
            "slo_attainment": _r(met[idx].mean()) if arrived else None,
            "service_s": _r(service_s.get(name, 0.0)),
        }
        end = duration_s if t.end_s is None else min(t.end_s, duration_s)
        active = end - t.start_s
        if arrived and active > 0:
            waited = backlogged_s(rec.arrival_s[idx], began[idx])
            per_task[name]["backlogged_s"] = _r(waited)
            if waited >= BACKLOGGED_FRACTION * active:
                norm[name] = service_s.get(name, 0.0) / t.weight
    x = np.array(list(norm.values()))
    jain = _r(x.sum() ** 2 / (x.shape[0] * (x**2).sum())) if x.shape[0] >= 2 and (x**2).sum() > 0 else None
    lag = _r(np.abs(x - x.mean()).max()) if x.shape[0] >= 2 else None
    finished_in_window = int((done & (rec.finish_s <= duration_s)).sum())
    return {
        "system": system,
        "latency_model": latency_model,
        "seed": seed,
        "duration_s": duration_s,
        "requests": {
            "arrived": n,
            "completed": int(done.sum()),
            "rejected": int((st == 1).sum()),
            "unfinished": int((st == 2).sum()),
        },
        "latency_ms": _stats(lat[done]),
        "slo_attainment": _r(met.mean()) if n else None,
        "throughput_rps": _r(finished_in_window / duration_s),
        "fairness": {"jain": jain, "max_normalized_lag_s": lag, "backlogged_tasks": sorted(norm)},
        "cluster": cluster,
        "per_task": per_task,
        "run": {"wall_s": _r(wall_s), "sim_requests_per_s": _r(n / wall_s) if wall_s > 0 else None},
    }


def check_nothing_lost(rec: Records, held, exact: bool = True) -> None:
    """Raise AssertionError unless the requests the records leave open (no finish, no reason)
    are the ones the engine still holds at the horizon: ``held``, the ids queued, in a running
    batch, or waiting for their task to load. The summary's ``arrived == completed + rejected +
    unfinished`` holds by construction (every row has one status); this is the check that a
    request an engine dropped without a reason, or settled twice, fails. ``exact=False`` (an
    engine whose threads may settle requests after the records were taken): only the open ones
    the engine does not hold are an error."""
    done = np.isfinite(rec.finish_s)
    rejected = {i for i, r in enumerate(rec.reason) if r}
    both = sorted(i for i in rejected if done[i])
    if both:
        raise AssertionError(f"request accounting broken: {len(both)} request(s) both finished and rejected "
                             f"(ids {both[:5]})")
    open_ = set(np.flatnonzero(~done).tolist()) - rejected
    held = set(held)
    lost = sorted(open_ - held)
    if lost:
        raise AssertionError(f"request accounting broken: {len(lost)} request(s) neither finished, rejected nor "
                             f"held by the engine at the horizon (ids {lost[:5]})")
    twice = sorted(held - open_) if exact else []
    if twice:
        raise AssertionError(f"request accounting broken: {len(twice)} request(s) held by the engine at the "
                             f"horizon are also finished or rejected (ids {twice[:5]})")


def check_accounting(summary: dict) -> None:
    """Raise AssertionError unless arrived == completed + rejected + unfinished everywhere."""
    parts = [("overall", summary["requests"])] + list(summary["per_task"].items())
    for name, r in parts:
        if r["arrived"] != r["completed"] + r["rejected"] + r["unfinished"]:
            raise AssertionError(f"request accounting broken for {name}: {r}")

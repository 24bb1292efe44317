"""Workloads: a stream of requests for named tasks, as arrays sorted by arrival time.

A :class:`Workload` is columnar (numpy arrays) so that a million requests cost megabytes, not
a million Python objects; engines turn rows into :class:`~fmplex_sim.records.Request` objects
as they arrive. Every random stream comes from a generator seeded from ``(seed, task index)``,
so a task's arrivals do not change when another task is added or removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fmplex_sim.specs import ArrivalSpec, TaskSpec


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: row i is request id i."""

    tasks: tuple[str, ...]  # task names; ``task`` holds indices into this tuple
    arrival_s: np.ndarray  # float64, non-decreasing
    task: np.ndarray  # int32 index into ``tasks``
    input_len: np.ndarray  # int32 tokens per request
    output_len: np.ndarray  # int32 generated tokens per request

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def counts(self) -> dict[str, int]:
        """Requests per task."""
        n = np.bincount(self.task, minlength=len(self.tasks))
        return {name: int(c) for name, c in zip(self.tasks, n)}


def interarrivals(spec: ArrivalSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` inter-arrival gaps (seconds) of the process ``spec``."""
    mean = 1.0 / spec.rate_rps
    if spec.process == "poisson":
        return rng.exponential(mean, n)
    if spec.process == "gamma":
        shape = 1.0 / (spec.cv * spec.cv)
        return rng.gamma(shape, mean / shape, n)
    raise ValueError(f"unknown arrival process {spec.process!r}")


def arrival_times(
    spec: ArrivalSpec, start_s: float, end_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Arrival times of ``spec`` in ``[start_s, end_s)``."""
    span = end_s - start_s
    if span <= 0 or spec.rate_rps <= 0:
        return np.empty(0)
    expected = spec.rate_rps * span
    out: list[np.ndarray] = []
    t = start_s
    while True:
        # Draw in chunks sized to overshoot the window with high probability (at most a few
        # times the expected count: a bursty process may need more chunks, never a huge one).
        n = int(min(expected + 6.0 * np.sqrt(expected) * max(1.0, spec.cv), 4.0 * expected + 1e5)) + 16
        times = t + np.cumsum(interarrivals(spec, n, rng))
        inside = times[times < end_s]
        out.append(inside)
        if inside.shape[0] < n:
            break
        t = float(times[-1])
    return np.concatenate(out)


def process_times(
    spec: ArrivalSpec, start_s: float, end_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Arrival times of any configured process (Poisson, Gamma, on/off, diurnal)."""
    if spec.process in ("poisson", "gamma"):
        return arrival_times(spec, start_s, end_s, rng)
    from fmplex_sim import arrivals

    if spec.process == "onoff":
        return arrivals.onoff(spec.rate_rps, spec.on_s, spec.off_s, start_s, end_s, rng, cv=spec.cv)
    if spec.process == "diurnal":
        return arrivals.diurnal(
            spec.rate_rps, spec.amplitude, spec.period_s, start_s, end_s, rng, phase_s=spec.phase_s
        )
    raise ValueError(f"unknown arrival process {spec.process!r}")


def synthetic(tasks: Sequence[TaskSpec], duration_s: float, seed: int) -> Workload:
    """Per-task synthetic arrivals over each task's lifetime within ``[0, duration_s)``."""
    times, idx, lens, outs = [], [], [], []
    for k, task in enumerate(tasks):
        rng = np.random.default_rng([seed, k])
        end = duration_s if task.end_s is None else min(task.end_s, duration_s)
        t = process_times(task.arrival, task.start_s, end, rng)
        times.append(t)
        idx.append(np.full(t.shape[0], k, dtype=np.int32))
        lens.append(np.full(t.shape[0], task.input_len, dtype=np.int32))
        outs.append(np.full(t.shape[0], task.output_len, dtype=np.int32))
    return from_arrays(
        tuple(t.name for t in tasks),
        np.concatenate(times) if times else np.empty(0),
        np.concatenate(idx) if idx else np.empty(0, np.int32),
        np.concatenate(lens) if lens else np.empty(0, np.int32),
        np.concatenate(outs) if outs else np.empty(0, np.int32),
    )


def from_arrays(
    tasks: tuple[str, ...],
    arrival_s: np.ndarray,
    task: np.ndarray,
    input_len: np.ndarray,
    output_len: np.ndarray,
) -> Workload:
    """Build a workload, sorting rows by (arrival time, task index) with a stable sort."""
    order = np.lexsort((task, arrival_s))
    return Workload(
        tasks=tasks,
        arrival_s=np.ascontiguousarray(arrival_s[order], dtype=np.float64),
        task=np.ascontiguousarray(task[order], dtype=np.int32),
        input_len=np.ascontiguousarray(input_len[order], dtype=np.int32),
        output_len=np.ascontiguousarray(output_len[order], dtype=np.int32),
    )

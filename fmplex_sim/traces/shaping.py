"""Shaping: pure functions ``Trace -> Trace`` that cut, re-time and re-label a trace.

None of them changes its input (traces are frozen and arrays are never written in place) and
none keeps state; those that need randomness take a :class:`numpy.random.Generator`, so the
same generator state gives the same result. Invalid arguments raise :class:`ValueError` with
a one-line message; the caller turns it into an :class:`~fmplex_sim.errors.InputError`.

Applying them in a different order gives a different workload. The intended order, which
the caller is responsible for, is::

    window -> task selection / assignment -> burstiness -> rate scale -> max requests
    (window)  (top_tasks | rank_tasks | assign_tasks)  (scale_burstiness)  (scale_rate)
                                                                           (max_requests)

- cut the time window first, so that task popularity and burstiness are measured on the
  requests that will be replayed;
- select (or assign) tasks next, so that burstiness is rescaled per final task stream;
- rescale burstiness before the rate, since it measures and keeps each stream's span;
- compress or stretch time (:func:`scale_rate`), then cap the request count.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from fmplex_sim.arrivals import zipf_weights
from fmplex_sim.traces.base import Trace

__all__ = [
    "window",
    "scale_rate",
    "scale_burstiness",
    "max_requests",
    "top_tasks",
    "assign_tasks",
    "rank_tasks",
]

MIN_STREAM = 3  # streams with fewer requests keep their arrival times in scale_burstiness


# ---------------------------------------------------------------------------------------------
# validation helpers


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _count(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def _require_tasks(trace: Trace, what: str) -> np.ndarray:
    if trace.task is None:
        raise ValueError(f"{what} needs a trace with task ids; {trace.source!r} has none")
    return trace.task


# ---------------------------------------------------------------------------------------------
# time


def window(trace: Trace, start_s: float, duration_s: float | None = None) -> Trace:
    """The requests with ``start_s <= arrival_s < start_s + duration_s``, shifted to start at 0.

    ``duration_s=None`` keeps everything from ``start_s`` to the end. New arrival times are
    ``arrival_s - start_s``; ``span_s`` becomes ``duration_s`` (which may reach past the last
    request) or, for ``None``, ``trace.duration_s - start_s``. Task and backbone ids and names
    are kept as they are (a task may end up with no request).

    Raises ``ValueError`` unless ``0 <= start_s < trace.duration_s`` (an empty trace has no
    window) and ``duration_s`` is ``None`` or a finite number ``> 0``.
    """
    start = float(start_s)
    if not math.isfinite(start) or start < 0 or start >= trace.duration_s:
        raise ValueError(
            f"window start {start_s!r} s is outside the trace, which spans "
            f"[0, {trace.duration_s!r}) s"
        )
    if duration_s is None:
        span = trace.duration_s - start
        mask = trace.arrival_s >= start
    else:
        span = _positive("window duration_s", duration_s)
        mask = (trace.arrival_s >= start) & (trace.arrival_s < start + span)
    out = trace.take(mask, span_s=span)
    return replace(out, arrival_s=out.arrival_s - start)


def scale_rate(trace: Trace, factor: float) -> Trace:
    """The same requests ``factor`` times as fast: ``arrival_s / factor``, ``span_s / factor``.

    ``factor`` must be a finite number ``> 0``; 2.0 replays the trace in half the time (twice
    the rate), 0.5 in twice the time. Order, lengths and ids are unchanged.
    """
    f = _positive("rate factor", factor)
    return replace(trace, arrival_s=trace.arrival_s / f, span_s=trace.span_s / f)


def max_requests(trace: Trace, n: int) -> Trace:
    """The first ``n`` requests (all of them if the trace has ``<= n``).

    When requests are dropped, ``span_s`` becomes the arrival time of the first dropped one
    (request ``n``, 0-based): the kept requests are what the trace sends before it, so their
    rate ``n / span_s`` is the trace's rate up to that point. Requires integer ``n >= 1``.
    """
    n = _count("max requests", n)
    if n >= len(trace):
        return trace
    return trace.take(np.arange(n), span_s=float(trace.arrival_s[n]))


# ---------------------------------------------------------------------------------------------
# burstiness


def _stream_cv(times: np.ndarray) -> tuple[float, float]:
    """Mean gap (span / gaps) and CV (population std / mean) of the gaps of sorted ``times``."""
    gaps = np.diff(times)
    mean = float(times[-1] - times[0]) / gaps.shape[0]
    if mean <= 0:
        return 0.0, 0.0
    return mean, float(gaps.std()) / mean


def _reshape_stream(times: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """New arrival times for one sorted stream: same count, first and last, gap CV scaled.

    Streams shorter than :data:`MIN_STREAM`, with a zero span or with equal gaps (CV 0) are
    returned as they are, and so is the stream if the drawn gaps sum to 0 (possible only for
    very large target CVs, whose Gamma draws underflow).
    """
    n = times.shape[0]
    if n < MIN_STREAM:
        return times
    mean, cv = _stream_cv(times)
    if cv <= 0:
        return times
    target = factor * cv
    shape = 1.0 / (target * target)
    gaps = rng.gamma(shape, mean / shape, n - 1)
    total = float(gaps.sum())
    if not (total > 0 and math.isfinite(total)):
        return times
    span = float(times[-1] - times[0])
    out = times[0] + np.concatenate(([0.0], np.cumsum(gaps * (span / total))))
    out[-1] = times[-1]
    return np.minimum(out, times[-1])  # rounding must not push a time past the last one


def _streams(trace: Trace) -> list[np.ndarray]:
    """Row indices (increasing) of each stream: one per task id present, or the whole trace."""
    if trace.task is None:
        return [np.arange(len(trace))]
    order = np.argsort(trace.task, kind="stable")
    cuts = np.flatnonzero(np.diff(trace.task[order])) + 1
    return np.split(order, cuts)


def scale_burstiness(trace: Trace, factor: float, rng: np.random.Generator) -> Trace:
    """Rescale the coefficient of variation (CV) of inter-arrival gaps by ``factor``.

    As AlpaServe does for its Gamma-process workloads. The trace is split into streams: one per
    task when it has task ids, else the whole trace is one stream. For every stream, in
    increasing task index order, with its ``n`` requests at sorted times ``t_0 .. t_(n-1)``:

    1. measure its gaps ``g = diff(t)``: mean ``m = (t_(n-1) - t_0) / (n - 1)`` and CV
       ``c = std(g) / m`` (population std, as :meth:`Trace.stats`);
    2. draw ``n - 1`` gaps from a Gamma distribution with CV ``factor * c`` and mean ``m``
       (shape ``k = 1 / (factor * c) ** 2``, scale ``m / k``) with ``rng``;
    3. rescale the drawn gaps so they sum to ``t_(n-1) - t_0`` exactly and lay them from
       ``t_0``: the count, first arrival and last arrival of the stream are kept exactly
       (so is ``span_s``), and the CV of the result is the sample CV of the draws.

    Streams with fewer than 3 requests, a zero span or a zero CV are left unchanged (and draw
    nothing from ``rng``). The i-th request of a stream keeps its input and output lengths (and
    backbone) and gets the stream's i-th new time. Streams are then merged by a stable sort on
    the new times (ties keep the original row order). ``factor == 1`` returns ``trace`` itself.
    ``factor`` must be a finite number ``> 0``; ``< 1`` makes arrivals more regular.
    """
    f = _positive("burstiness factor", factor)
    if f == 1.0 or len(trace) == 0:
        return trace
    times = trace.arrival_s.astype(np.float64, copy=True)
    for rows in _streams(trace):
        times[rows] = _reshape_stream(trace.arrival_s[rows], f, rng)
    order = np.argsort(times, kind="stable")
    return replace(trace, arrival_s=times).take(order)


# ---------------------------------------------------------------------------------------------
# tasks


def _popularity_order(task: np.ndarray, n_names: int) -> tuple[np.ndarray, np.ndarray]:
    """Task indices from most to least requested, and the request count per task index.

    Ties are broken by first appearance (earliest row first); tasks that never appear come last,
    in index order.
    """
    counts = np.bincount(task, minlength=n_names)[:n_names]
    first = np.full(n_names, task.shape[0], dtype=np.int64)
    idx, pos = np.unique(task, return_index=True)
    first[idx] = pos
    return np.lexsort((np.arange(n_names), first, -counts)), counts


def _reindex(trace: Trace, keep_order: np.ndarray) -> Trace:
    """Keep the rows whose task is in ``keep_order``; task ``keep_order[j]`` becomes index j."""
    task = _require_tasks(trace, "re-indexing tasks")
    new_index = np.full(len(trace.task_names), -1, dtype=np.int32)
    new_index[keep_order] = np.arange(keep_order.shape[0], dtype=np.int32)
    mapped = new_index[task]
    out = trace.take(mapped >= 0, task_names=tuple(trace.task_names[i] for i in keep_order))
    return replace(out, task=mapped[mapped >= 0].astype(np.int32))


def top_tasks(trace: Trace, n: int) -> Trace:
    """Only the requests of the ``n`` most requested tasks, re-indexed most popular first.

    Popularity is the request count; ties go to the task that appears first. Tasks with no
    request are never kept, so fewer than ``n`` tasks remain if fewer appear. ``task_names``
    becomes the kept names in popularity order and ``task`` is remapped to match; backbone
    ids and names are kept as they are; ``span_s`` is unchanged. Requires task ids and integer
    ``n >= 1``.
    """
    n = _count("top tasks", n)
    task = _require_tasks(trace, "top_tasks")
    order, counts = _popularity_order(task, len(trace.task_names))
    keep = order[:n]
    return _reindex(trace, keep[counts[keep] > 0])


def rank_tasks(trace: Trace) -> Trace:
    """The same requests with tasks re-indexed by popularity: index 0 is the most requested.

    Ranking is by request count, ties by first appearance; names of tasks with no request
    stay, last, in their old order. Only ``task`` and ``task_names`` change. Requires task ids.
    """
    task = _require_tasks(trace, "rank_tasks")
    order, _ = _popularity_order(task, len(trace.task_names))
    return _reindex(trace, order)


def assign_tasks(
    trace: Trace, n_tasks: int, rng: np.random.Generator, zipf: float | None = None
) -> Trace:
    """Give every request of a trace without task ids a task drawn i.i.d. from ``n_tasks``.

    Request i gets task ``k`` in ``0 .. n_tasks - 1`` with probability
    ``zipf_weights(n_tasks, s)[k]``, proportional to ``1 / (k + 1) ** s`` with ``s = zipf``
    (``None`` or 0: uniform), drawn with a single ``rng.choice(n_tasks, size=len(trace),
    p=...)`` call (same generator state, same assignment). Task 0 is the most popular in
    expectation. ``task_names`` becomes ``("0", "1", ..., str(n_tasks - 1))`` (all of them,
    even those that drew no request). Times, lengths and backbones are unchanged.

    Requires a trace without task ids (use :func:`top_tasks` or :func:`rank_tasks` on one
    that has them), integer ``n_tasks >= 1`` and ``zipf`` ``None`` or finite ``>= 0``.
    """
    if trace.task is not None:
        raise ValueError(
            f"assign_tasks needs a trace without task ids; {trace.source!r} has "
            f"{len(trace.task_names)} (use top_tasks or rank_tasks instead)"
        )
    n_tasks = _count("number of tasks", n_tasks)
    s = 0.0 if zipf is None else float(zipf)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"zipf exponent must be a finite number >= 0, got {zipf!r}")
    task = rng.choice(n_tasks, size=len(trace), p=zipf_weights(n_tasks, s)).astype(np.int32)
    return replace(trace, task=task, task_names=tuple(str(k) for k in range(n_tasks)))

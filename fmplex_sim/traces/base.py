"""A trace: requests in the trace's own time, as columns, before any shaping.

Loaders (one module per format, registered in :data:`TRACE_FORMATS`) turn a public trace file
into a :class:`Trace`; shaping (window, rate and burstiness scaling, task selection) turns a
trace into another trace; :func:`fmplex_sim.traces.to_workload` binds its tasks to task specs.
Every loader error is an :class:`~fmplex_sim.errors.InputError` naming the file, the line (the
header, if any, is line 1) and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from fmplex_sim.registry import Registry

# format name -> load(path: str, *, seed: int, window: tuple[float, float] | None) -> Trace
TRACE_FORMATS: Registry[Callable[..., "Trace"]] = Registry("trace format")


@dataclass(frozen=True)
class Trace:
    """Requests sorted by arrival. Times are seconds from the trace's first timestamp (``native``:
    as written, seconds from the run's start)."""

    source: str  # file (or folder) it was read from
    format: str  # loader name
    arrival_s: np.ndarray  # float64, non-decreasing
    input_len: np.ndarray  # int32 tokens (or prompt length) per request
    output_len: np.ndarray  # int32 generated tokens per request (0 where the trace has none)
    task: np.ndarray | None = None  # int32 index into task_names; None: the trace has no task ids
    task_names: tuple[str, ...] = ()  # task (tenant, client) ids as they appear in the trace
    backbone: np.ndarray | None = None  # int32 index into backbone_names (base model per request)
    backbone_names: tuple[str, ...] = ()  # base-model ids as they appear in the trace
    span_s: float = 0.0  # length of the trace's time span (>= last arrival)

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the time span the trace covers."""
        last = float(self.arrival_s[-1]) if len(self) else 0.0
        return max(self.span_s, last)

    def take(self, mask_or_index: np.ndarray, **changes) -> "Trace":
        """A trace of the selected rows (boolean mask or sorted index), other fields kept."""
        sel = mask_or_index
        return replace(
            self,
            arrival_s=self.arrival_s[sel],
            input_len=self.input_len[sel],
            output_len=self.output_len[sel],
            task=None if self.task is None else self.task[sel],
            backbone=None if self.backbone is None else self.backbone[sel],
            **changes,
        )

    def stats(self) -> dict:
        """Request count, span, mean rate, inter-arrival CV, tasks and input-length percentiles."""
        n = len(self)
        gaps = np.diff(self.arrival_s)
        cv = float(gaps.std() / gaps.mean()) if gaps.shape[0] > 1 and gaps.mean() > 0 else None
        out = {
            "requests": n,
            "duration_s": round(self.duration_s, 3),
            "mean_rate_rps": round(n / self.duration_s, 4) if self.duration_s > 0 else None,
            "interarrival_cv": None if cv is None else round(cv, 4),
            "tasks": len(self.task_names) if self.task is not None else None,
        }
        if n:
            p = np.percentile(self.input_len, [50, 90, 99])
            out["input_len"] = {"mean": round(float(self.input_len.mean()), 2),
                                "p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2]),
                                "max": int(self.input_len.max())}
            if self.output_len.any():
                out["output_len_mean"] = round(float(self.output_len.mean()), 2)
        if self.task is not None and n:
            counts = np.bincount(self.task, minlength=len(self.task_names))
            order = np.argsort(-counts, kind="stable")[:10]
            out["top_tasks"] = [
                {"task": self.task_names[i], "share": round(float(counts[i]) / n, 4)} for i in order
            ]
        if self.backbone is not None and n:
            out["backbones"] = len(self.backbone_names)
        return out

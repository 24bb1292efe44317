"""Weighted fair queueing at batch granularity."""

from __future__ import annotations

from fmplex_sim.policies.scheduling.base import (
    SCHEDULERS,
    Decision,
    InstanceView,
    Scheduler,
    charge_shares,
)
from fmplex_sim.records import Batch, Request


@SCHEDULERS.register("wfq")
class WfqScheduler(Scheduler):
    """Weighted fair queueing where the "packet" is the batch a task would get next.

    State: per-task finish tag ``F[t]`` (virtual seconds: backbone seconds / weight) and a
    system virtual time ``V``.

    * Becoming backlogged (start tag): ``F[t] = max(F[t], V)`` when other tasks are
      backlogged; when the instance was idle, ``F[t] = max(F[t], max over tasks of F)``
      (the finish tag of the busy period that just ended, as in start-time fair queueing).
      A continuously backlogged task's next start tag is its last finish ``F[t]``. This is
      the rule "start = max(system virtual time, task's last finish)" with the virtual time
      read when the task's queue became non-empty, so an idle task cannot bank credit and a
      backlogged one does not lose its place.
    * ``schedule``: for every backlogged task compute the batch it would get (its queue,
      FIFO, up to the cap) and ``cost = view.estimate(rows, seq_len, 1)``; serve the task
      with the smallest finish tag ``F[t] + cost / weight[t]`` (ties: task add order), and
      set ``V = max(V, F[leader])`` (the start tag of the batch in service).
    * ``on_batch_done``: ``F[t] += share / weight[t]`` with the measured ``service_s`` split
      by :func:`charge_shares` (the whole of it for a one-task batch).

    One task per batch by default. With ``cross_task=True`` the rows left free are filled from
    the other backlogged tasks in increasing finish-tag order (each FIFO, up to the cap); they
    are charged their token share of the service. The engine must report every batch with
    ``on_batch_done`` before asking for the next one.
    """

    name = "wfq"
    cross_task_default = False

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0) -> None:
        super().__init__(cross_task=cross_task, max_wait_s=max_wait_s)
        self._finish: dict[str, float] = {}  # F[t]
        self._vtime = 0.0  # V

    @property
    def finish_tags(self) -> dict[str, float]:
        """Copy of the per-task finish tags (for tests and metrics)."""
        return dict(self._finish)

    @property
    def virtual_time(self) -> float:
        return self._vtime

    def add_task(self, task: str, weight: float = 1.0, slo_s: float = 0.1) -> None:
        if weight <= 0:
            raise ValueError(f"task {task!r}: weight must be positive, got {weight}")
        super().add_task(task, weight, slo_s)
        self._finish.setdefault(task, self._vtime)  # fresh (no credit from a previous life)

    def remove_task(self, task: str) -> list[Request]:
        self._finish.pop(task, None)
        return super().remove_task(task)

    def _on_backlogged(self, task: str, now: float) -> None:
        others = any(t != task for t in self.queues.backlogged())
        if others:
            floor = self._vtime
        else:
            floor = max(self._vtime, max(self._finish.values()))
        self._finish[task] = max(self._finish[task], floor)

    def schedule(self, now: float, view: InstanceView) -> Decision:
        backlogged = self.queues.backlogged()
        if not backlogged:
            return None
        tagged: list[tuple[float, int, str]] = []
        for i, t in enumerate(backlogged):
            n, seq_len = self.fit_count(t, view)
            cost = view.estimate(n, seq_len, 1)
            tagged.append((self._finish[t] + cost / self.weights[t], i, t))
        tagged.sort()
        leader = tagged[0][2]
        self._vtime = max(self._vtime, self._finish[leader])
        rows: list[Request] = []
        seq_len = 0
        for _, _, t in tagged if self.cross_task else tagged[:1]:
            if len(rows) >= view.max_batch:
                break
            n, seq_len = self.fit_count(t, view, len(rows), seq_len)
            rows.extend(self.queues.pop(t, n))
        return Batch(tuple(rows), leader=leader)

    def on_batch_done(self, batch: Batch, service_s: float, now: float) -> None:
        for t, share in charge_shares(batch, service_s).items():
            if t in self._finish:
                self._finish[t] += share / self.weights[t]

"""Virtual Token Counter (Sheng et al., "Fairness in Serving Large Language Models", OSDI'24)."""

from __future__ import annotations

import heapq

from fmplex_sim.policies.scheduling.base import (
    SCHEDULERS,
    Decision,
    FairCounters,
    InstanceView,
    Scheduler,
)
from fmplex_sim.records import Batch, Request


@SCHEDULERS.register("vtc")
class VtcScheduler(Scheduler):
    """Serve the backlogged task with the lowest virtual token counter.

    * Counter ``c[t]`` grows by ``(input_len + output_len) / weight[t]`` for every request
      of ``t`` at the moment it is picked into a batch (``on_batch_done`` charges nothing).
    * Lift (:class:`FairCounters`): when ``t`` goes from idle to backlogged,
      ``c[t] = max(c[t], min of c over the other backlogged tasks)``; if no other task is
      backlogged, ``c[t] = max(c[t], c of the task that went idle last)`` (VTC's Algorithm 2).
      An added or re-added task starts at that same floor. So no task banks credit while idle.
    * ``cross_task=True`` (default): the batch is filled row by row, each row being the FIFO
      head of the backlogged task with the lowest counter at that moment (ties: task add
      order), charging as it goes. A task whose head does not fit the cap at the grown padded
      length is skipped for the rest of this batch (keeping its low counter, so it leads the
      next one). ``leader`` is the task of the first row.
    * ``cross_task=False``: the lowest-counter task is served alone, its queue FIFO up to the
      cap, each row charged.
    """

    name = "vtc"
    cross_task_default = True

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0) -> None:
        super().__init__(cross_task=cross_task, max_wait_s=max_wait_s)
        self._c = FairCounters()

    @property
    def counters(self) -> dict[str, float]:
        """Copy of the per-task virtual token counters (for tests and metrics)."""
        return dict(self._c.value)

    def add_task(self, task: str, weight: float = 1.0, slo_s: float = 0.1) -> None:
        if weight <= 0:
            raise ValueError(f"task {task!r}: weight must be positive, got {weight}")
        super().add_task(task, weight, slo_s)
        self._c.add(task, self.queues.backlogged())

    def remove_task(self, task: str) -> list[Request]:
        self._c.remove(task)
        return super().remove_task(task)

    def _on_backlogged(self, task: str, now: float) -> None:
        self._c.lift(task, [t for t in self.queues.backlogged_set() if t != task])

    def _on_dropped(self, task: str, dropped: list[Request]) -> None:
        if not self.queues[task]:
            self._c.went_idle(task)  # dropped requests are not charged

    def _take(self, task: str, n: int) -> list[Request]:
        rows = self.queues.pop(task, n)
        w = self.weights[task]
        for r in rows:
            self._c.charge(task, (r.input_len + r.output_len) / w)
        if not self.queues[task]:
            self._c.went_idle(task)
        return rows

    def schedule(self, now: float, view: InstanceView) -> Decision:
        backlogged = self.queues.backlogged()
        if not backlogged:
            return None
        c = self._c.value
        if not self.cross_task:
            leader = min(backlogged, key=lambda t: c[t])  # first minimum: add order
            n, _ = self.fit_count(leader, view)
            return Batch(tuple(self._take(leader, n)), leader=leader)
        heap = [(c[t], i, t) for i, t in enumerate(backlogged)]
        heapq.heapify(heap)
        rows: list[Request] = []
        seq_len = 0
        while heap and len(rows) < view.max_batch:
            _, i, t = heapq.heappop(heap)
            r = self.queues[t][0]
            new_len = max(seq_len, r.input_len)
            if len(rows) + 1 > self.batch_cap(view, new_len):
                continue  # t's head does not fit: skip t for this batch
            rows.extend(self._take(t, 1))
            seq_len = new_len
            if self.queues[t]:
                heapq.heappush(heap, (c[t], i, t))
        return Batch(tuple(rows), leader=rows[0].task)

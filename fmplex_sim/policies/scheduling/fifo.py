"""First come, first served across all tasks of an instance."""

from __future__ import annotations

import heapq

from fmplex_sim.policies.scheduling.base import SCHEDULERS, Decision, InstanceView, Scheduler
from fmplex_sim.records import Batch, Request


@SCHEDULERS.register("fifo")
class FifoScheduler(Scheduler):
    """Global arrival order (``arrival_s``, then request id) over all tasks.

    A heap holds the head request of every backlogged task, so the oldest queued request is
    found in O(log tasks).

    * ``cross_task=True`` (default): rows are taken in global arrival order, whatever their
      task, while the next one fits the cap at the grown padded length; the batch stops at the
      first request that does not fit (no request overtakes an older one). ``leader`` is None.
    * ``cross_task=False``: the oldest request's task is served alone; the batch is that task's
      queue in FIFO order up to the cap. ``leader`` is that task.
    """

    name = "fifo"
    cross_task_default = True

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0) -> None:
        super().__init__(cross_task=cross_task, max_wait_s=max_wait_s)
        self._heads: list[tuple[float, int, str]] = []  # (arrival_s, id, task) of queue heads

    def remove_task(self, task: str) -> list[Request]:
        out = super().remove_task(task)
        self._heads = [e for e in self._heads if e[2] != task]
        heapq.heapify(self._heads)
        return out

    def _on_backlogged(self, task: str, now: float) -> None:
        self._push_head(task)

    def _on_dropped(self, task: str, dropped: list[Request]) -> None:
        self._push_head(task)  # its new head, if any (the dropped one's entry is now stale)

    def _push_head(self, task: str) -> None:
        r = self.queues.head(task)
        if r is not None:
            heapq.heappush(self._heads, (r.arrival_s, r.id, task))

    def _oldest(self) -> Request | None:
        """Oldest queued request (dropping stale heap entries), or None."""
        while self._heads:
            _, rid, task = self._heads[0]
            r = self.queues.head(task)
            if r is not None and r.id == rid:
                return r
            heapq.heappop(self._heads)
        return None

    def schedule(self, now: float, view: InstanceView) -> Decision:
        first = self._oldest()
        if first is None:
            return None
        if not self.cross_task:
            task = first.task
            heapq.heappop(self._heads)
            n, _ = self.fit_count(task, view)
            rows = self.queues.pop(task, n)
            self._push_head(task)
            return Batch(tuple(rows), leader=task)
        rows: list[Request] = []
        seq_len = 0
        while len(rows) < view.max_batch:
            r = self._oldest()
            if r is None:
                break
            new_len = max(seq_len, r.input_len)
            if len(rows) + 1 > self.batch_cap(view, new_len):
                break
            heapq.heappop(self._heads)
            self.queues.pop(r.task, 1)
            rows.append(r)
            seq_len = new_len
            self._push_head(r.task)
        return Batch(tuple(rows), leader=None)

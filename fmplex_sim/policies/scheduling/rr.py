"""Per-task round robin."""

from __future__ import annotations

from fmplex_sim.policies.scheduling.base import SCHEDULERS, Decision, InstanceView, Scheduler
from fmplex_sim.records import Batch, Request


@SCHEDULERS.register("rr")
class RoundRobinScheduler(Scheduler):
    """Round robin over backlogged tasks in task add order, one task's turn per batch.

    A pointer names the next task to consider. ``schedule`` serves the first backlogged task
    at or after the pointer (cyclically, in add order), taking its queue in FIFO order up to
    the cap, then moves the pointer just past the served task. Idle tasks are skipped without
    losing anything; removing a task keeps the pointer on the task that would have followed.

    With ``cross_task=True`` (not the default) rows left free after the served task are filled
    from the other backlogged tasks in the same cyclic order (each FIFO, up to the cap); the
    pointer still advances past the served task only.
    """

    name = "rr"
    cross_task_default = False

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0) -> None:
        super().__init__(cross_task=cross_task, max_wait_s=max_wait_s)
        self._next = 0  # index, in queues.tasks() order, of the next task to consider

    def remove_task(self, task: str) -> list[Request]:
        if task in self.queues:
            i = self.queues.tasks().index(task)
            if i < self._next:
                self._next -= 1
        return super().remove_task(task)

    def schedule(self, now: float, view: InstanceView) -> Decision:
        if not len(self.queues):
            return None
        tasks = self.queues.tasks()
        n_tasks = len(tasks)
        start = self._next % n_tasks
        cyclic = [tasks[(start + k) % n_tasks] for k in range(n_tasks)]
        backlogged = [t for t in cyclic if self.queues[t]]
        leader = backlogged[0]
        self._next = tasks.index(leader) + 1
        rows: list[Request] = []
        seq_len = 0
        for t in backlogged if self.cross_task else [leader]:
            if len(rows) >= view.max_batch:
                break
            n, seq_len = self.fit_count(t, view, len(rows), seq_len)
            rows.extend(self.queues.pop(t, n))
        return Batch(tuple(rows), leader=leader)

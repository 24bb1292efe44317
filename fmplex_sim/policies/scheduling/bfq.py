"""Batch-aware weighted fair queueing (ours)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from fmplex_sim.policies.scheduling.base import (
    SCHEDULERS,
    Decision,
    FairCounters,
    InstanceView,
    Scheduler,
    charge_shares,
)
from fmplex_sim.records import Batch, Request, Wait


@SCHEDULERS.register("bfq")
class BfqScheduler(Scheduler):
    """Batch-aware weighted fair queueing: fair in backbone seconds, SLO-aware batch size.

    * Virtual service ``v[t]``: backbone seconds charged to ``t`` divided by its weight.
      ``on_batch_done`` splits the measured ``service_s`` over the batch's tasks by token
      share (:func:`charge_shares`) and adds ``share / weight[t]``. Becoming backlogged lifts
      ``v[t]`` exactly as vtc does (:class:`FairCounters`): to at least the lowest ``v`` of the
      other backlogged tasks, or, with none, to the ``v`` of the task that went idle last;
      added/re-added tasks start there. No credit is banked while idle.
    * Leader: the backlogged task with the lowest ``v`` (ties: task add order).
    * Fill: the leader's queue first (FIFO), then, with ``cross_task=True`` (default), the
      other backlogged tasks in increasing ``v`` (ties: add order), each FIFO; a task whose
      next request does not fit is left for the next batch and filling goes on with the next
      task. A row fits when, at the grown padded length ``L``, row count ``b`` and distinct
      tasks ``k``: ``b <= batch_cap(view, L)`` and ``view.estimate(b, L, k) <= slack``, where
      ``slack = head.arrival_s + slo_s[leader] - now`` for the leader's head request. The
      leader's head is always taken (at least one row). If the head cannot meet its SLO even
      alone (``slack < view.estimate(1, head.input_len, 1)``, which includes negative slack),
      the SLO is already lost and only the plain cap applies, to maximise throughput.
    * Bounded wait (``max_wait_s > 0``): if the batch has fewer rows than
      ``cap = batch_cap(view, L)`` and ``now + max_wait_s + view.estimate(cap, L, k)`` is
      still within the head's deadline, return ``Wait(now + max_wait_s)`` instead, at most
      once per head request (so the next call serves and progress is guaranteed).
    """

    name = "bfq"
    cross_task_default = True

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0) -> None:
        super().__init__(cross_task=cross_task, max_wait_s=max_wait_s)
        self._v = FairCounters()
        self._waited: set[int] = set()  # ids of head requests we already waited for

    @property
    def virtual_service(self) -> Mapping[str, float]:
        """Read-only view of the per-task weighted virtual service ``v``."""
        return MappingProxyType(self._v.value)

    def add_task(self, task: str, weight: float = 1.0, slo_s: float = 0.1) -> None:
        if weight <= 0:
            raise ValueError(f"task {task!r}: weight must be positive, got {weight}")
        super().add_task(task, weight, slo_s)
        self._v.add(task, self.queues.backlogged())

    def remove_task(self, task: str) -> list[Request]:
        self._v.remove(task)
        out = super().remove_task(task)
        for r in out:
            self._waited.discard(r.id)
        return out

    def _on_dropped(self, task: str, dropped: list[Request]) -> None:
        if self._waited:
            for r in dropped:
                self._waited.discard(r.id)
        if not self.queues[task]:
            self._v.went_idle(task)

    def _on_backlogged(self, task: str, now: float) -> None:
        busy = self.queues.backlogged_set()
        if len(busy) == 1:  # only this task: lift to the last idle counter (FairCounters.floor)
            v = self._v
            value = v.value
            last = v._last_idle
            f = value[last] if last is not None and last in value else v._last_idle_value
            if f > value[task]:
                value[task] = f
        else:
            self._v.lift(task, [t for t in busy if t != task])

    def schedule(self, now: float, view: InstanceView) -> Decision:
        queues = self.queues
        if queues.total == 1 and not self.max_wait_s:
            # One request queued in all: it is the batch (the leader's head is always taken).
            req = queues.pop_only()
            self._v._last_idle = req.task  # FairCounters.went_idle, inlined
            return Batch((req,), req.task)
        backlogged = queues.backlogged()
        if not backlogged:
            return None
        # Stable sort: ties in virtual service keep task add order.
        ranked = backlogged if len(backlogged) == 1 else sorted(backlogged, key=self._v.value.__getitem__)
        leader = ranked[0]
        head = queues[leader][0]
        deadline = head.arrival_s + self.slo_s[leader]
        slack = deadline - now
        est = view.estimate
        max_batch = view.max_batch
        max_tokens = view.max_batch_tokens
        candidates = ranked if self.cross_task else ranked[:1]
        slo_bound = slack >= est(1, head.input_len, 1)
        if slo_bound:
            # The estimate grows with rows, length and tasks: if the largest batch these queues
            # could form meets the slack, no row needs checking against it.
            longest = max(r.input_len for t in candidates for r in queues[t])
            if est(max_batch, longest, len(candidates)) <= slack:
                slo_bound = False

        take: list[tuple[str, int]] = []  # (task, rows taken from it), in fill order
        rows = 0
        seq_len = 0
        for t in candidates:
            if rows >= max_batch:
                break
            n = 0
            k = len(take) + 1  # t joins take only after its rows are counted
            for r in queues[t]:
                new_len = seq_len if seq_len >= r.input_len else r.input_len
                b = rows + 1
                if rows:
                    cap = max_tokens // new_len
                    if cap > max_batch:
                        cap = max_batch
                    if b > cap or (slo_bound and est(b, new_len, k) > slack):
                        break
                n += 1
                rows = b
                seq_len = new_len
            if n:
                take.append((t, n))

        if self.max_wait_s > 0 and head.id not in self._waited:
            cap = self.batch_cap(view, seq_len)
            if rows < cap and now + self.max_wait_s + view.estimate(
                cap, seq_len, len(take)
            ) <= deadline:
                self._waited.add(head.id)
                return Wait(until_s=now + self.max_wait_s)

        out: list[Request] = []
        for t, n in take:
            out.extend(self.queues.pop(t, n))
            if not self.queues[t]:
                self._v.went_idle(t)
        if self._waited:
            for r in out:
                self._waited.discard(r.id)
        return Batch(tuple(out), leader=leader)

    def on_batch_done(self, batch: Batch, service_s: float, now: float) -> None:
        reqs = batch.requests
        if len(reqs) == 1:
            t = reqs[0].task
            w = self.weights.get(t)
            if w is not None:
                self._v.value[t] += service_s / w
            return
        for t, share in charge_shares(batch, service_s).items():
            if t in self.weights:
                self._v.charge(t, share / self.weights[t])

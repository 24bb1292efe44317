"""Batch-aware weighted fair queueing (ours)."""

from __future__ import annotations

import heapq
import math
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
    * Fill, with ``cross_task=True`` (default): row by row. Each row is the FIFO head of the
      backlogged task with the lowest *projected* ``v``: its ``v`` plus, for every row already
      taken from it for this batch, that row's share of a full batch at its length
      (``estimate(cap, len, 1) / cap``) divided by its weight (ties: add order). So the leader
      takes the first row, and a task less than a batch behind it gets rows of this batch
      instead of waiting for the next: a light task lifted to the flood's ``v`` rides the next
      batch, where a leader-first fill gave the flood the whole batch (and vtc's row-by-row
      fill already did this). Charging is unchanged. A task whose next request does not fit
      leaves this batch and filling goes on with the others. With ``cross_task=False``: the
      leader's queue only. A row fits when, at the grown padded length ``L``, row count ``b``
      and distinct tasks ``k``: ``b <= batch_cap(view, L)`` and ``view.estimate(b, L, k) <=
      slack``, where
      ``slack = head.arrival_s + slo_s[leader] - now`` for the leader's head request. The
      leader's head is always taken (at least one row). If the head cannot meet its SLO even
      alone (``slack < view.estimate(1, head.input_len, 1)``, which includes negative slack),
      the SLO is already lost and only the plain cap applies, to maximise throughput.
    * Light first (``light_first=True``): tasks are ranked by a virtual deadline instead of
      ``v``: ``v`` plus the estimated time of the batch the task's own queue would fill,
      divided by its weight (EEVDF's request size: at equal ``v``, a short queue is due first);
      the row fill projects from that deadline instead of ``v``.
      A leader that went idle -> backlogged during the previous batch gets a short batch: the
      rows of such tasks (increasing deadline), then other rows only while the batch stays
      within ``SHORT_STRETCH`` times what those rows alone take. Charging is unchanged, so a
      task can run ahead of another by at most one batch of virtual service before it ranks
      behind; what changes is that a light task no longer waits for, and rides in, the full
      batches of the backlogged ones.
    * Bounded wait (``max_wait_s > 0``): if the batch has fewer rows than
      ``cap = batch_cap(view, L)`` and ``now + max_wait_s + view.estimate(cap, L, k)`` is
      still within the head's deadline, return ``Wait(now + max_wait_s)`` instead, at most
      once per head request (so the next call serves and progress is guaranteed).
    """

    name = "bfq"
    cross_task_default = True
    #: light_first: a short batch takes at most this many times its newcomers' rows alone
    SHORT_STRETCH = 2.0

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0,
                 light_first: bool = False) -> None:
        super().__init__(cross_task=cross_task, max_wait_s=max_wait_s)
        self._v = FairCounters()
        self._waited: set[int] = set()  # ids of head requests we already waited for
        self.light_first = light_first
        # light_first: tasks that went idle -> backlogged since the last batch was picked
        self._fresh: set[str] = set()

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
        self._fresh.discard(task)
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
        if self.light_first:
            self._fresh.add(task)
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
            if self._fresh:
                self._fresh.clear()
            return Batch((req,), req.task)
        backlogged = queues.backlogged()
        if not backlogged:
            return None
        # Stable sort: ties keep task add order.
        if self.light_first and len(backlogged) > 1:
            key = self._deadline_key(view)
            keys: Mapping[str, float] = {t: key(t) for t in backlogged}
        else:
            keys = self._v.value
        ranked = backlogged if len(backlogged) == 1 else sorted(backlogged, key=keys.__getitem__)
        leader = ranked[0]
        head = queues[leader][0]
        deadline = head.arrival_s + self.slo_s[leader]
        if self.light_first and self.cross_task and leader in self._fresh:
            take, rows, seq_len = self._short_fill(now, view, [t for t in ranked if t in self._fresh], ranked)
        elif self.cross_task and len(ranked) > 1:
            take, rows, seq_len = self._fill(now, view, ranked, by_row=keys)
        else:
            take, rows, seq_len = self._fill(now, view, ranked[:1])

        if self.max_wait_s > 0 and head.id not in self._waited:
            cap = self.batch_cap(view, seq_len)
            if rows < cap and now + self.max_wait_s + view.estimate(
                cap, seq_len, len(take)
            ) <= deadline:
                self._waited.add(head.id)
                return Wait(until_s=now + self.max_wait_s)

        if self._fresh:
            self._fresh.clear()  # a batch starts: who was backlogged had its turn at the pick
        out: list[Request] = []
        for t, n in take:
            out.extend(self.queues.pop(t, n))
            if not self.queues[t]:
                self._v.went_idle(t)
        if self._waited:
            for r in out:
                self._waited.discard(r.id)
        return Batch(tuple(out), leader=leader)

    def _deadline_key(self, view: InstanceView):
        """light_first's rank: ``v`` plus the estimated time of the batch the task's queue would
        fill alone, by weight."""
        value, queues, weights, est, max_batch = self._v.value, self.queues, self.weights, view.estimate, view.max_batch

        def key(t: str) -> float:
            q = queues[t]
            n = min(len(q), max_batch)
            longest = max(q[i].input_len for i in range(n))
            return value[t] + est(n, longest, 1) / weights[t]
        return key

    def _short_fill(self, now: float, view: InstanceView, first: list[str],
                    ranked: list[str]) -> tuple[list[tuple[str, int]], int, int]:
        """light_first's short batch for ``first`` (newly backlogged tasks, in rank order): their
        rows, then rows of the other ``ranked`` tasks while the batch stays within
        ``SHORT_STRETCH`` times what their rows alone would take (their rows always fit: the
        estimate grows with rows and the budget is at least theirs)."""
        take, rows, seq_len = self._fill(now, view, first)
        budget = self.SHORT_STRETCH * view.estimate(rows, seq_len, len(take))
        chosen = [t for t, _ in take]
        return self._fill(now, view, chosen + [t for t in ranked if t not in chosen], budget)

    def _fill(self, now: float, view: InstanceView, candidates: list[str],
              budget: float = math.inf, by_row: Mapping[str, float] | None = None,
              ) -> tuple[list[tuple[str, int]], int, int]:
        """Rows to take from ``candidates`` (the leader first) as ``(task, rows)`` in fill order,
        with the batch's rows and padded length (class docstring: "Fill"): row by row, ranked
        by the keys ``by_row`` gives (:meth:`_fill_rows`), else each candidate's queue in turn.
        With a ``budget`` (seconds), no row is added that would take the batch's estimate past
        it."""
        queues = self.queues
        leader = candidates[0]
        head = queues[leader][0]
        slack = head.arrival_s + self.slo_s[leader] - now
        est = view.estimate
        max_batch = view.max_batch
        slo_bound = slack >= est(1, head.input_len, 1)
        if slo_bound:
            # The estimate grows with rows, length and tasks: if the largest batch these queues
            # could form meets the slack, no row needs checking against it.
            longest = max(r.input_len for t in candidates for r in queues[t])
            if est(max_batch, longest, len(candidates)) <= slack:
                slo_bound = False
        limit = slack if slo_bound else math.inf
        if budget < limit:
            limit = budget
        row_limit = limit if limit < math.inf else None  # None: only the caps bound the batch

        if by_row is not None:
            return self._fill_rows(view, candidates, by_row, row_limit)
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
                if rows and not _fits(b, new_len, k, view, row_limit):
                    break
                n += 1
                rows = b
                seq_len = new_len
            if n:
                take.append((t, n))
        return take, rows, seq_len

    def _fill_rows(self, view: InstanceView, candidates: list[str], keys: Mapping[str, float],
                   limit: float | None) -> tuple[list[tuple[str, int]], int, int]:
        """Row by row: each row from the candidate with the lowest projected key (its key, ``v``
        or light_first's deadline, plus, per row already taken, that row's share of a full
        batch at its length, by weight; ties: ``candidates`` order); a candidate whose next row
        does not fit leaves this batch. ``candidates`` are sorted by ``keys``."""
        queues, weights = self.queues, self.weights
        est, max_batch, max_tokens = view.estimate, view.max_batch, view.max_batch_tokens
        unit: dict[int, float] = {}
        heap = [(keys[t], i, t) for i, t in enumerate(candidates)]  # sorted: a heap already
        counts: dict[str, int] = {}
        rows = 0
        seq_len = 0
        while heap and rows < max_batch:
            key, i, t = heap[0]
            n = counts.get(t, 0)
            r = queues[t][n]
            new_len = seq_len if seq_len >= r.input_len else r.input_len
            b = rows + 1
            if rows and not _fits(b, new_len, len(counts) + (n == 0), view, limit):
                heapq.heappop(heap)
                continue
            counts[t] = n + 1
            rows = b
            seq_len = new_len
            if n + 1 < len(queues[t]):
                u = unit.get(r.input_len)
                if u is None:
                    full = max(1, min(max_batch, max_tokens // max(1, r.input_len)))
                    u = unit[r.input_len] = est(full, r.input_len, 1) / full
                heapq.heapreplace(heap, (key + u / weights[t], i, t))
            else:
                heapq.heappop(heap)
        return list(counts.items()), rows, seq_len

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


def _fits(rows: int, seq_len: int, tasks: int, view: InstanceView, limit: float | None) -> bool:
    """Whether a batch of ``rows`` rows padded to ``seq_len`` from ``tasks`` distinct tasks is
    within the instance's caps (``max_batch``, activation tokens) and, with a ``limit``, has an
    estimated time within it (seconds)."""
    cap = view.max_batch_tokens // seq_len
    if cap > view.max_batch:
        cap = view.max_batch
    return rows <= cap and (limit is None or view.estimate(rows, seq_len, tasks) <= limit)

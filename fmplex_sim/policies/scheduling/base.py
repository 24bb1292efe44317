"""The decision-only interface between a scheduler and the engine that runs it.

A scheduler owns the per-task queues of one physical FM instance and decides, each time the
backbone is free, which requests run together. It never sleeps, never reads a clock and never
imports an engine: the engine hands it the current clock value and an :class:`InstanceView`,
and tells it afterwards how long the batch really took (``on_batch_done``). The same object
therefore drives a simpy process in ``fmplex_sim`` and a real GPU loop in ``fmplex_exec``.

Protocol, as the engine uses it::

    sched.add_task("sst2", weight=1.0, slo_s=0.1)
    sched.enqueue(request, now)                  # for every arrival routed here
    decision = sched.schedule(now, view)         # Batch, Wait(until_s) or None (nothing queued)
    ...run the batch...
    sched.on_batch_done(batch, service_s, now)   # measured or simulated service time

Before asking for a batch, an engine that bounds queueing calls
``sched.drop_expired(now, limits)`` and rejects what it returns, so a request that has waited
longer than its task's limit is never put in a batch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, ClassVar

from fmplex_sim.records import Batch, Request, Wait
from fmplex_sim.registry import Registry

SCHEDULERS: Registry[type["Scheduler"]] = Registry("scheduler")

# estimate(rows, seq_len, n_adapters) -> seconds one backbone pass of that shape takes.
Estimator = Callable[[int, int, int], float]


@dataclass(frozen=True)
class InstanceView:
    """What a scheduler may know about the instance it schedules for."""

    max_batch: int  # most rows in one batch
    max_batch_tokens: int  # most rows x padded tokens one batch may hold (activation memory)
    estimate: Estimator  # latency model's prediction of one batch's service time


Decision = Batch | Wait | None


class TaskQueues:
    """Per-task FIFO queues of one instance, plus which tasks are backlogged (non-empty)."""

    def __init__(self) -> None:
        self._q: dict[str, deque[Request]] = {}
        self._rank: dict[str, int] = {}  # task -> order it was added in (tie-breaks)
        self._added = 0  # tasks ever added, for _rank
        self._busy: set[str] = set()  # backlogged tasks, kept as queues fill and drain
        self.total = 0  # requests queued over all tasks
        # No queued request expires before this clock value (see drop_expired): the engine's
        # check per decision is one comparison. -inf: unknown, scan at the next call.
        self.expiry_lb = -math.inf
        self._min_limit: float | None = None  # smallest limit of the tasks here (drop_expired)

    def add_task(self, task: str) -> None:
        if task not in self._q:
            self._q[task] = deque()
            self._rank[task] = self._added
            self._added += 1
            self.expiry_lb, self._min_limit = -math.inf, None

    def remove_task(self, task: str) -> list[Request]:
        """Forget ``task``; return the requests that were still queued for it."""
        self._min_limit = None
        q = self._q.pop(task, None)
        self._rank.pop(task, None)
        self._busy.discard(task)
        if not q:
            return []
        self.total -= len(q)
        return list(q)

    def push(self, req: Request) -> bool:
        """Append ``req``; return True if its task was empty before (became backlogged)."""
        q = self._q[req.task]
        q.append(req)
        self.total += 1
        if len(q) == 1:
            self._busy.add(req.task)
            return True
        return False

    def pop(self, task: str, n: int) -> list[Request]:
        """Remove and return up to ``n`` requests of ``task`` in arrival order."""
        q = self._q[task]
        n = min(n, len(q))
        self.total -= n
        out = [q.popleft()] if n == 1 else [q.popleft() for _ in range(n)]
        if not q:
            self._busy.discard(task)
        return out

    def pop_only(self) -> Request:
        """Remove and return the one queued request (valid only when ``total == 1``)."""
        task = next(iter(self._busy))
        req = self._q[task].popleft()
        self._busy.clear()
        self.total = 0
        return req

    def drop_expired(self, now: float, limits: Mapping[str, float]) -> list[Request]:
        """Remove and return the queued requests that have waited too long, in task add order.

        A request of task ``t`` has expired when ``arrival_s + limits[t] < now`` (seconds; a task
        missing from ``limits`` waits unbounded). Queues are FIFO, so only heads are looked at.
        Cheap when nothing can have expired: ``expiry_lb`` bounds the earliest expiry from
        below, over the queued heads and over requests still to come (they arrive at ``now`` or
        later, so they expire no earlier than ``now`` plus the smallest limit); a call before it
        returns at once. A task's limit must not change while it is queued here, and whoever
        queues a request that arrived before the previous call's ``now`` (a request held while
        its task was loading) sets ``expiry_lb = -inf``.
        """
        if now <= self.expiry_lb or not self.total:
            return []
        if self._min_limit is None:
            self._min_limit = min((limits.get(t, math.inf) for t in self._q), default=math.inf)
        dropped: list[Request] = []
        lb = now + self._min_limit
        for task in self.backlogged():
            limit = limits.get(task)
            if limit is None:
                continue
            q = self._q[task]
            while q and q[0].arrival_s + limit < now:
                dropped.append(q.popleft())
            if q:
                expiry = q[0].arrival_s + limit
                if expiry < lb:
                    lb = expiry
            else:
                self._busy.discard(task)
        self.total -= len(dropped)
        self.expiry_lb = lb
        return dropped

    def head(self, task: str) -> Request | None:
        q = self._q.get(task)
        return q[0] if q else None

    def __getitem__(self, task: str) -> deque[Request]:
        return self._q[task]

    def __contains__(self, task: object) -> bool:
        return task in self._q

    def backlogged(self) -> list[str]:
        """Tasks with queued requests, in the order they were added."""
        busy = self._busy
        if len(busy) <= 1:
            return list(busy)
        return sorted(busy, key=self._rank.__getitem__)

    def backlogged_set(self) -> frozenset[str] | set[str]:
        """Backlogged tasks, unordered (cheaper than :meth:`backlogged`); do not modify."""
        return self._busy

    def tasks(self) -> list[str]:
        return list(self._q)

    def __len__(self) -> int:
        return self.total


class Scheduler(ABC):
    """Base class: queues, task registry and the batch-size cap shared by all schedulers.

    Subclasses implement :meth:`schedule` and, if they keep fairness state,
    :meth:`_on_backlogged` and :meth:`on_batch_done`.
    """

    name: ClassVar[str] = ""
    cross_task_default: ClassVar[bool] = False  # whether one batch may mix tasks by default

    def __init__(self, *, cross_task: bool | None = None, max_wait_s: float = 0.0) -> None:
        self.queues = TaskQueues()
        self.weights: dict[str, float] = {}  # task -> weight
        self.slo_s: dict[str, float] = {}  # task -> latency objective in seconds
        self.cross_task = self.cross_task_default if cross_task is None else cross_task
        self.max_wait_s = max_wait_s  # longest bounded wait to grow a batch (bfq)

    # -- task lifecycle -------------------------------------------------------------------
    def add_task(self, task: str, weight: float = 1.0, slo_s: float = 0.1) -> None:
        """Make ``task`` schedulable here (a vFM became resident on this instance)."""
        self.queues.add_task(task)
        self.weights[task] = weight
        self.slo_s[task] = slo_s

    def remove_task(self, task: str) -> list[Request]:
        """Stop scheduling ``task``; return its queued requests for the engine to settle."""
        self.weights.pop(task, None)
        self.slo_s.pop(task, None)
        return self.queues.remove_task(task)

    # -- arrivals -------------------------------------------------------------------------
    def enqueue(self, req: Request, now: float) -> None:
        """Queue an arrived request."""
        queues = self.queues
        q = queues._q[req.task]  # TaskQueues.push, inlined: this runs once per request
        q.append(req)
        queues.total += 1
        if len(q) == 1:
            queues._busy.add(req.task)
            self._on_backlogged(req.task, now)

    def _on_backlogged(self, task: str, now: float) -> None:
        """Hook: ``task`` went from idle to backlogged at ``now``."""

    def drop_expired(self, now: float, limits: Mapping[str, float]) -> list[Request]:
        """Remove and return queued requests that waited longer than their task's limit.

        ``limits``: task -> longest wait in seconds (see :meth:`TaskQueues.drop_expired`). The
        engine calls this before :meth:`schedule` and settles what it returns (rejects them);
        fairness state is not charged for them. Subclasses that track queue heads or idle
        tasks react in :meth:`_on_dropped`.
        """
        dropped = self.queues.drop_expired(now, limits)
        if dropped:
            for task in dict.fromkeys(r.task for r in dropped):  # task add order: deterministic
                self._on_dropped(task, dropped)
        return dropped

    def _on_dropped(self, task: str, dropped: list[Request]) -> None:
        """Hook: requests of ``task`` (among ``dropped``) left its queue without being served;
        the queue may now be empty."""

    # -- decisions ------------------------------------------------------------------------
    @abstractmethod
    def schedule(self, now: float, view: InstanceView) -> Decision:
        """Pick the next batch (or a bounded wait), or None when nothing is queued."""

    def on_batch_done(self, batch: Batch, service_s: float, now: float) -> None:
        """Hook: ``batch`` finished at ``now`` after ``service_s`` seconds of backbone time."""

    # -- helpers for subclasses -------------------------------------------------------------
    def batch_cap(self, view: InstanceView, seq_len: int) -> int:
        """Most rows a batch of padded length ``seq_len`` may hold on this instance."""
        by_tokens = max(1, view.max_batch_tokens // max(1, seq_len))
        return max(1, min(view.max_batch, by_tokens))

    def fit_count(
        self, task: str, view: InstanceView, rows: int = 0, seq_len: int = 0
    ) -> tuple[int, int]:
        """How many of ``task``'s queued requests, taken in FIFO order, can join a batch that
        already holds ``rows`` rows of padded length ``seq_len``.

        Returns ``(count, new padded length)``. Every added row re-checks the cap at the new
        padded length, so ``rows * max_len <= max_batch_tokens`` and ``rows <= max_batch``
        hold for the grown batch; it stops at the first request that does not fit (requests of
        one task never overtake each other). An empty batch always accepts one request.
        """
        n = 0
        for r in self.queues[task]:
            new_len = max(seq_len, r.input_len)
            if rows + n + 1 > self.batch_cap(view, new_len):
                break
            n += 1
            seq_len = new_len
        return n, seq_len

    def __len__(self) -> int:
        return len(self.queues)


class FairCounters:
    """Per-task normalized-service counters with the VTC lift; shared by ``vtc`` and ``bfq``.

    ``value[t]`` is the service task ``t`` has received divided by its weight (tokens for vtc,
    backbone seconds for bfq). Counters only grow. When a task goes from idle to backlogged it
    is lifted (:meth:`lift`) to at least :meth:`floor`: the lowest counter of the *other*
    backlogged tasks, or, when no other task is backlogged, the counter of the task that went
    idle last (Sheng et al., OSDI'24, Algorithm 2). So a task that stayed idle cannot bank
    credit and return to monopolise the backbone. A task added (or re-added) starts at the
    floor too.
    """

    def __init__(self) -> None:
        self.value: dict[str, float] = {}
        self._last_idle: str | None = None  # task that went idle most recently
        self._last_idle_value = 0.0  # its counter, kept when that task is removed

    def floor(self, others) -> float:
        """Lowest counter among ``others`` (backlogged tasks), else the last-idle counter."""
        value = self.value
        vals = [value[t] for t in others if t in value]
        if vals:
            return min(vals)
        if self._last_idle is not None and self._last_idle in self.value:
            return self.value[self._last_idle]
        return self._last_idle_value

    def add(self, task: str, backlogged: list[str]) -> None:
        """Start ``task`` at the floor; a task already known keeps its counter (no reset)."""
        if task not in self.value:
            self.value[task] = self.floor([t for t in backlogged if t != task])

    def remove(self, task: str) -> None:
        if task == self._last_idle:
            self._last_idle_value = self.value.get(task, self._last_idle_value)
            self._last_idle = None
        self.value.pop(task, None)

    def lift(self, task: str, others) -> None:
        """``task`` became backlogged while ``others`` are: no credit from its idle time."""
        f = self.floor(others)
        if f > self.value[task]:
            self.value[task] = f

    def went_idle(self, task: str) -> None:
        """``task``'s queue just became empty."""
        self._last_idle = task

    def charge(self, task: str, amount: float) -> None:
        if task in self.value:
            self.value[task] += amount


def charge_shares(batch: Batch, service_s: float) -> dict[str, float]:
    """Split ``service_s`` over the batch's tasks in proportion to the tokens each caused."""
    reqs = batch.requests
    if len(reqs) == 1:
        return {reqs[0].task: service_s}
    work = batch.task_work()
    total = sum(work.values())
    return {t: service_s * w / total for t, w in work.items()}

"""CPU devices: cores shared by the batches running on them (processor sharing).

A GPU runs one batch at a time per process and switches between processes (the engine's
``_Device``). A CPU host is different, and the simulator follows what the execution harness
does on it:

* ``fmplex`` runs one serving thread per physical FM: one batch at a time on all cores.
* ``colocate`` runs one thread per replica in one process; batches of different replicas run
  at once and share the cores. Each of ``k`` concurrent batches progresses at ``1/slowdown(k)``
  of its solo speed, ``slowdown`` coming from the latency model for the batch's shape
  (``contention_for``: measured ``contention`` rows scaled by what the shape gains from more
  cores, else ``k``). A process holding several replicas also makes each of their
  batches longer even when it runs alone (every replica's thread pool stays throttled, see
  ``fmplex_exec.threads``): the engine adds the latency model's ``pool_throttle_s`` (by the
  batch's tokens) when ``members > 1``, and reads its wake-up after an idle gap from the rows
  measured beside other pools (``wake_s(..., beside=True)``); a process holding one instance
  does neither. A wake-up outlasts its batch: the engine carries the instance's coldness to its
  next batch (``LatencyModel.woken`` and ``ran``: ``warmup_s``, or ``rewarm_s`` for format 1.6
  profiles; every instance, slices too).
* ``spatial`` runs one process per slice, pinned to the cores :func:`slice_cores` gives it
  (as many threads as cores). Slices pinned to the same cores time-share them the same way
  (the operating system's fair scheduler; ``k`` processes on one core each get ``1/k``).

:class:`SharedCores` is that processor-sharing server on a simpy environment: work is in
seconds of solo service; a finished job calls its callback.
"""

from __future__ import annotations

from typing import Callable

from simpy.events import Timeout

_EPS = 1e-12


def slice_cores(first: int, width: int, slices: int, cores: int) -> tuple[int, ...]:
    """Cores a spatial slice occupies: slices ``first .. first+width-1`` of ``slices`` on a
    host of ``cores`` cores. With no more slices than cores each slice owns ``cores //
    slices`` cores in order; with more, slices go round robin over the cores (slice ``s`` on
    core ``s % cores``), so neighbouring slices land on different cores."""
    if cores < 1 or slices < 1 or width < 1:
        raise ValueError(f"need cores, slices and width >= 1, got {cores}, {slices}, {width}")
    per = max(1, cores // slices)
    return tuple(sorted({(s * per + j) % cores for s in range(first, first + width) for j in range(per)}))


class SharedCores:
    """Cores shared by the jobs on them: with ``k`` jobs, each one's remaining solo work
    drains at ``1/slowdown(k)`` per second, or at ``1/own(k)`` for a job started with its own
    slowdown (its shape's, :meth:`~fmplex_sim.latency.base.LatencyModel.contention_for`). One
    pending simpy timeout at a time (for the next job to finish); a change in the job set
    replaces it.

    ``members``: how many instances run on these cores (the engine keeps it up to date)."""

    __slots__ = ("env", "slowdown", "jobs", "last", "gen", "members", "_slow")

    def __init__(self, env, slowdown: Callable[[int], float]) -> None:
        self.env = env
        self.slowdown = slowdown
        # job id -> [remaining solo seconds, callback, own slowdown or None, k, factor at k]
        self.jobs: dict[int, list] = {}
        self.last = 0.0  # when remaining work was last brought up to date
        self.gen = 0  # id of the newest job and of the only timeout that counts
        self.members = 0  # instances on these cores
        self._slow: dict[int, float] = {}

    def _factor(self, job: list, k: int) -> float:
        if k <= 1:
            return 1.0
        if job[3] == k:
            return job[4]
        own = job[2]
        if own is None:
            f = self._slow.get(k)
            if f is None:
                f = self._slow[k] = max(1.0, float(self.slowdown(k)))
        else:
            f = max(1.0, float(own(k)))
        job[3], job[4] = k, f
        return f

    def _advance(self, now: float) -> None:
        k = len(self.jobs)
        if k and now > self.last:
            dt = now - self.last
            for job in self.jobs.values():
                job[0] -= dt / self._factor(job, k)
        self.last = now

    def _arm(self, now: float) -> None:
        self.gen += 1
        if self.jobs:
            k = len(self.jobs)
            left = min(max(0.0, job[0]) * self._factor(job, k) for job in self.jobs.values())
            gen = self.gen
            Timeout(self.env, left).callbacks.append(lambda _ev: self._fire(gen))

    def add(self, work_s: float, callback: Callable[[], None],
            slowdown: Callable[[int], float] | None = None) -> None:
        """Start a job of ``work_s`` solo seconds now; ``callback()`` when it finishes.
        ``slowdown``: this job's own ``k -> factor`` (default: the cores' ``slowdown``)."""
        now = self.env.now
        self._advance(now)
        self.jobs[self.gen] = [work_s, callback, slowdown, 0, 1.0]
        self._arm(now)

    def _fire(self, gen: int) -> None:
        if gen != self.gen:
            return  # the job set changed since this timeout was set
        now = self.env.now
        self._advance(now)
        k = len(self.jobs)
        left = {j: job[0] * self._factor(job, k) for j, job in self.jobs.items()}  # seconds to go
        least = min(left.values())
        done = [j for j, t in left.items() if t <= least + _EPS]
        callbacks = [self.jobs.pop(j)[1] for j in done]
        self._arm(now)
        for cb in callbacks:
            cb()

    def __len__(self) -> int:
        return len(self.jobs)

"""Task lifecycle in the wall-clock runtime: deploy (``start_s``), end (``end_s``) and update
(``update_s``) mid-run, with the simulator's semantics (``fmplex_sim.engine``).

One thread plays the config's events at their times, in the simulator's order (by time, then
deploy before end before update, then task order); a deploy or an update runs in a thread of
its own, so a slow load never delays a later event.

- **Deploy**: the placement policy adds the task online (``Placement.add``). A new instance
  (backbone copy or replica) is built off the serving path; on an instance that exists, the
  task's extensions are built by ``prepare`` while that instance keeps serving and installed
  between two of its batches. Requests that arrive before the task serves are held and queued
  when it does, their latency counting from their arrival (the simulator holds them too);
  a task that fits nowhere rejects them (``unplaced``).
- **End**: later arrivals are rejected (``task_ended``), held ones too. Queued requests are
  served (``system.on_task_end: drain``) or rejected (``reject``, reason ``task_ended``); a
  batch already running finishes. The placement drops the task; once its queues are empty,
  its extensions are removed from the model (an instance the placement retired just stops).
- **Update**: the next version (:meth:`TaskSpec.next_version`: same spec, new weights) is
  built on this thread while the old version keeps serving, then swapped in under the
  instance's run lock, between two batches. Nothing else pauses. ``Runtime.events`` records
  how long the build took and how long the swap held the lock.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from fmplex_sim.specs import DEPLOY, RETIRE, TaskSpec, lifecycle_events

if TYPE_CHECKING:
    from fmplex_exec.runtime import Runtime

DRAIN_POLL_S = 0.01  # how often a drained task's queues are checked before its extensions go


class Lifecycle:
    """Plays the lifecycle events of ``rt``'s config on ``rt`` (a :class:`Runtime`)."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt
        self.events = lifecycle_events(rt.cfg.tasks, rt.cfg.duration_s + rt.cfg.drain_s)
        # task deployed mid-run -> set once its deploy is over (serving, unplaced or ended)
        self.ready = {t.name: threading.Event() for t in rt.cfg.tasks if t.start_s > 0}
        self._thread = threading.Thread(target=self._play, daemon=True)
        self._children: list[threading.Thread] = []

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for every event and the deploys, updates and removals it started."""
        end = time.perf_counter() + timeout
        self._thread.join(max(0.0, end - time.perf_counter()))
        for th in list(self._children):
            th.join(max(0.0, end - time.perf_counter()))

    def busy(self) -> bool:
        """Whether an event, or a deploy, update or removal it started, is still running."""
        return any(th.is_alive() for th in [self._thread, *self._children])

    # ------------------------------------------------------------------ events
    def _play(self) -> None:
        rt = self.rt
        for when, kind, k in self.events:
            delay = when - rt._now()
            if delay > 0:
                time.sleep(delay)
            task = rt.cfg.tasks[k]
            if kind == RETIRE:
                self._end(task)
            else:
                self._spawn(self._deploy if kind == DEPLOY else self._update, task)

    def _spawn(self, fn, task: TaskSpec) -> None:
        th = threading.Thread(target=fn, args=(task,), daemon=True)
        self._children.append(th)
        th.start()

    def _log(self, task: str, event: str, **extra) -> None:
        rt = self.rt
        with rt._lock:
            rt.events.append({"t_s": round(rt._now(), 6), "task": task, "event": event, **extra})

    def _deploy(self, task: TaskSpec) -> None:
        rt = self.rt
        from fmplex_exec.runtime import LOADING, UNPLACED

        self._log(task.name, "deploy")
        try:
            with rt.life:
                rt.state[task.name] = LOADING
                placement = rt.policy.add(rt.placement, task, rt.cost)
                rt.adopt(placement)
                ids = placement.routes().get(task.name, [])
                if not ids:
                    rt.state[task.name] = UNPLACED
                    for req in rt.pending.pop(task.name, []):
                        rt.reason[req.id] = "unplaced"
                    return
                new = [p for p in placement.instances if p.id in ids and p.id not in rt.by_id]
                old = [rt.by_id[i] for i in ids if i in rt.by_id]
            for plan in new:  # loads a backbone copy (or a replica) with the task, and warms it up
                w = rt.new_worker(plan)
                if w is None:  # built after the run ended, and closed: it never serves, and its
                    return  # requests stay as the horizon left them
                rt.start_worker(w)
                w.warm.wait(rt.WARMUP_WAIT_S)
            for w in old:
                prep = w.execute.prepare(task)  # while the instance keeps serving
                with w.exclusive():
                    if not w.closed:  # the run ended while it was built: make_ready refuses below
                        w.execute.add(prep)
            if not rt.make_ready(task):  # ended while loading: the simulator never serves it either
                for w in old:
                    with w.exclusive():
                        if not w.closed:
                            w.execute.remove(task.name)
                return
            self._log(task.name, "ready")
        finally:
            self.ready[task.name].set()

    def _end(self, task: TaskSpec) -> None:
        rt = self.rt
        from fmplex_exec.runtime import ENDED, LOADING, READY

        self._log(task.name, "end")
        name = task.name
        with rt.life:
            prev = rt.state.get(name)
            rt.state[name] = ENDED
            for req in rt.pending.pop(name, []):
                rt.reason[req.id] = "task_ended"
            if prev not in (READY, LOADING):
                return
            ws = rt.routes.pop(name, [])
            if rt.cfg.system.on_task_end == "reject":
                for w in ws:
                    with w.cond:
                        dropped = w.sched.remove_task(name)
                    with rt._lock:
                        for r in dropped:
                            rt.reason[r.id] = "task_ended"
            rt.adopt(rt.policy.remove(rt.placement, task, rt.cost))
        if prev == READY:
            self._spawn(lambda _t: self._unload(name, ws), task)

    def _unload(self, name: str, ws) -> None:
        """Once ``name``'s queues are empty, drop it from its schedulers and models."""
        for w in ws:
            while True:  # nothing queued, and not in the batch picked or running
                with w.cond:
                    busy = (name in w.sched.queues and len(w.sched.queues[name])) or (
                        w.running is not None and any(r.task == name for r in w.running.requests))
                if not busy:
                    break
                time.sleep(DRAIN_POLL_S)
            with w.exclusive():
                with w.cond:
                    w.sched.remove_task(name)
                    w.cost.remove_task(name)
                if not (w.retired or w.closed):
                    w.execute.remove(name)
        self._log(name, "removed")

    def _update(self, task: TaskSpec) -> None:
        rt = self.rt
        from fmplex_exec.runtime import READY

        name = task.name
        if name in self.ready:  # deployed mid-run (before update_s): wait until it serves
            self.ready[name].wait()
        with rt.life:
            if rt.state.get(name) != READY:
                return
            ws = list(rt.routes[name])
            new = rt.tasks[name].next_version()
        self._log(name, "update")
        t0 = time.perf_counter()
        preps = [w.execute.prepare(new) for w in ws]  # the old version keeps serving meanwhile
        build_s = time.perf_counter() - t0
        waits, holds = [], []
        for w, prep in zip(ws, preps):
            t1 = time.perf_counter()
            with w.exclusive():  # between two batches of this instance
                t2 = time.perf_counter()
                with rt.life:
                    live = rt.state.get(name) == READY and not w.closed
                if live:
                    w.execute.update(prep)
                t3 = time.perf_counter()
            waits.append(t2 - t1)
            holds.append(t3 - t2)
            if not live:
                return
        with rt.life:
            rt.tasks[name] = new
            for w in ws:
                with w.cond:
                    w.cost.add_task(new)
        self._log(name, "swapped", build_s=round(build_s, 6), lock_wait_s=round(max(waits), 6),
                  swap_s=round(max(holds), 6))

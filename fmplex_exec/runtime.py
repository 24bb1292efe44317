"""The wall-clock engine: the simulator's placement and scheduler objects on real models.

Arrivals are replayed open loop: a feeder thread releases each request at its trace time and
never waits for completions. Each instance (a physical FM under ``fmplex``, a dedicated
replica under the baselines) has a worker thread that, whenever its backbone is free, asks
its scheduler for the next batch with the current clock value, runs it, and reports the
measured service time back (``on_batch_done``): the very same scheduler classes as
``fmplex_sim``, no second implementation. Records have the simulator's schema, so
``fmplex_sim.metrics`` summarizes both engines.

Systems on one device: ``fmplex`` shares one backbone per (backbone, device) among many vFMs;
``colocate`` runs a dedicated replica per task, all threads sharing the device without
coordination; ``spatial`` gives each replica its own share of the device (on CPU: a worker
process pinned to its own cores, torch limited to that many threads; see executors.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fmplex_sim.catalog import get_backbone, get_device
from fmplex_sim.cluster import ClusterCost
from fmplex_sim.config import RunConfig
from fmplex_sim.latency import make_latency_model
from fmplex_sim.latency.base import InstanceCost
from fmplex_sim.metrics import Records, check_accounting, summarize
from fmplex_sim.policies.placement import InstancePlan, make_placement
from fmplex_sim.policies.scheduling import InstanceView, make_scheduler
from fmplex_sim.policies.scheduling.base import charge_shares
from fmplex_sim.records import Batch, Request, Wait
from fmplex_sim.workload import Workload

# executor(batch) -> per request: "" if it completed, else the reason it failed
Executor = Callable[[Batch], list[str]]
ExecutorFactory = Callable[[InstancePlan, dict, "RuntimeOptions"], Executor]


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run: device, dtype, threads."""

    device: str = "cpu"  # torch device
    dtype: str = "float32"
    threads: int = 0  # torch intra-op threads per process (0: all cores)
    seed: int = 0  # weights of random-weight backbones and adapters


@dataclass
class _Worker:
    plan: InstancePlan
    idx: int
    sched: object
    view: InstanceView
    execute: Executor
    cond: threading.Condition = field(default_factory=threading.Condition)


class Runtime:
    """Replays ``workload`` under ``cfg``'s system on real models. Build, call :meth:`run` once."""

    def __init__(self, cfg: RunConfig, workload: Workload, make_executor: ExecutorFactory,
                 options: RuntimeOptions = RuntimeOptions()) -> None:
        self.cfg = cfg
        self.wl = workload
        self.opts = options
        self.make_executor = make_executor
        self.tasks = {t.name: t for t in cfg.tasks}
        n = len(workload)
        self.start = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.batch_of = np.full(n, -1, dtype=np.int64)
        self.inst_of = np.full(n, -1, dtype=np.int64)
        self.reason = [""] * n
        self.service = {t: 0.0 for t in self.tasks}
        self._lock = threading.Lock()  # guards batch ids, service and records
        self._batches = 0
        self._t0 = 0.0
        self._done = threading.Event()

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    # ------------------------------------------------------------------ setup
    def _workers(self) -> tuple[list[_Worker], dict[str, list[_Worker]], list[tuple[str, str]]]:
        cfg = self.cfg
        dev = get_device(cfg.cluster.device)
        latency = make_latency_model(cfg.latency_model)
        sysc = cfg.system
        cost = ClusterCost(dev, cfg.cluster.gpus, latency, sysc.max_batch)
        policy = make_placement(sysc.placement, slices_per_gpu=sysc.slices_per_gpu,
                                target_util=sysc.target_util, spread_idle=sysc.spread_idle)
        placement = policy.plan(list(cfg.tasks), cost)
        self.placement = placement
        workers = []
        for i, plan in enumerate(placement.instances):
            ic = InstanceCost(latency, get_backbone(plan.backbone), dev, plan.share,
                              [self.tasks[t] for t in plan.tasks])
            seq = max(self.tasks[t].input_len for t in plan.tasks)
            view = InstanceView(sysc.max_batch, sysc.max_batch * seq, ic.estimate)
            sched = make_scheduler(sysc.scheduler, cross_task=sysc.cross_task,
                                   max_wait_s=sysc.max_wait_ms / 1000.0)
            for t in plan.tasks:
                task = self.tasks[t]
                sched.add_task(t, task.weight, task.slo_ms / 1000.0)
            workers.append(_Worker(plan, i, sched, view, self.make_executor(plan, self.tasks, self.opts)))
        routes: dict[str, list[_Worker]] = {}
        for w in workers:
            for t in w.plan.tasks:
                routes.setdefault(t, []).append(w)
        return workers, routes, list(placement.unplaced)

    # ------------------------------------------------------------------ threads
    def _serve(self, w: _Worker) -> None:
        sched = w.sched
        while True:
            with w.cond:
                while True:
                    if self._done.is_set() and not len(sched):
                        return
                    if len(sched):
                        decision = sched.schedule(self._now(), w.view)
                        if decision is not None and decision.__class__ is not Wait:
                            break
                        if decision.__class__ is Wait:
                            w.cond.wait(max(0.0, decision.until_s - self._now()))
                            continue
                    w.cond.wait(0.05)
            t0 = self._now()
            errors = w.execute(decision)
            t1 = self._now()
            service = t1 - t0
            with self._lock:
                bid = self._batches
                self._batches += 1
                for r, err in zip(decision.requests, errors):
                    self.start[r.id] = t0
                    if err:
                        self.reason[r.id] = err
                    else:
                        self.finish[r.id] = t1
                        self.batch_of[r.id] = bid
                for t, share in charge_shares(decision, service).items():
                    self.service[t] += share
            with w.cond:
                sched.on_batch_done(decision, service, t1)

    @staticmethod
    def _memory(workers: list[_Worker]) -> dict:
        """Real parameter bytes per instance, their total in GiB, and this process's peak RSS."""
        import resource

        per = {}
        for w in workers:
            probe = getattr(w.execute, "memory", None)
            if probe is not None:
                per[w.plan.id] = probe()
        total = sum(m["backbone_bytes"] + sum(m["extension_bytes"].values()) for m in per.values())
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"instances": per, "weights_gib": round(total / 2**30, 4),
                "peak_rss_gib": round(peak_kib / 2**20, 4),
                "note": "peak RSS of the runtime process; spatial replicas' processes not included"}

    def run(self) -> tuple[Records, dict]:
        """Replay the workload; return records and the summary (simulator schema)."""
        workers, routes, unplaced = self._workers()
        unplaced_tasks = {t for t, _ in unplaced}
        threads = [threading.Thread(target=self._serve, args=(w,), daemon=True) for w in workers]
        wall0 = time.perf_counter()
        self._t0 = time.perf_counter()
        for th in threads:
            th.start()
        wl = self.wl
        names = wl.tasks
        horizon = self.cfg.duration_s + self.cfg.drain_s
        for i, (t, k, n_in, n_out) in enumerate(zip(wl.arrival_s.tolist(), wl.task.tolist(),
                                                    wl.input_len.tolist(), wl.output_len.tolist())):
            delay = t - self._now()
            if delay > 0:
                time.sleep(delay)
            name = names[k]
            if name in unplaced_tasks or name not in routes:
                self.reason[i] = "unplaced"
                continue
            cands = routes[name]
            w = cands[0] if len(cands) == 1 else min(cands, key=lambda x: len(x.sched))
            self.inst_of[i] = w.idx
            with w.cond:  # the request carries its trace time: latency counts from there
                w.sched.enqueue(Request(i, name, t, n_in, n_out), self._now())
                w.cond.notify()
        self._done.set()
        deadline = time.perf_counter() + max(0.0, horizon - self._now())
        for th in threads:
            th.join(max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - wall0
        for w in workers:
            close = getattr(w.execute, "close", None)
            if close is not None:
                close()
        with self._lock:
            rec = Records(tasks=wl.tasks, task=wl.task, arrival_s=wl.arrival_s,
                          start_s=self.start.copy(), finish_s=self.finish.copy(),
                          batch_id=self.batch_of.copy(), instances=tuple(w.plan.id for w in workers),
                          instance=self.inst_of.copy(), reason=list(self.reason))
            service = dict(self.service)
        memory = self._memory(workers)
        sysc = self.cfg.system
        latency = make_latency_model(self.cfg.latency_model)
        summary = summarize(
            rec, self.cfg.tasks,
            system={"name": sysc.name, "placement": sysc.placement, "scheduler": sysc.scheduler},
            latency_model={"kind": latency.kind, "source": latency.source},
            seed=self.cfg.seed, duration_s=self.cfg.duration_s,
            horizon_s=self.cfg.duration_s + self.cfg.drain_s,
            cluster={"device": self.cfg.cluster.device, "gpus": self.cfg.cluster.gpus,
                     "gpus_used": self.placement.gpus_used(),
                     "tasks_hosted": len(self.tasks) - len(unplaced_tasks),
                     "tasks_unplaced": len(unplaced_tasks),
                     "memory_gib": round(self.placement.memory_gib(), 4),
                     "instances": len(workers), "batches": self._batches,
                     "engine": "fmplex_exec", "torch_device": self.opts.device,
                     "memory_measured": memory},
            service_s=service, wall_s=wall,
        )
        check_accounting(summary)
        return rec, summary

"""The wall-clock engine: the simulator's placement and scheduler objects on real models.

Arrivals are replayed open loop: a feeder thread releases each request at its trace time and
never waits for completions. Each instance (a physical FM under ``fmplex``, a dedicated
replica under the baselines) has a worker thread that, whenever its backbone is free, asks
its scheduler for the next batch with the current clock value, runs it, and reports the
measured service time back (``on_batch_done``): the very same scheduler classes as
``fmplex_sim``, no second implementation. Records have the simulator's schema, so
``fmplex_sim.metrics`` summarizes both engines. A request that waited longer than its task's
``max_queue_ms`` (default 10 x ``slo_ms``) without starting is rejected with reason
``queue_timeout``, exactly as the simulator does, so queues stay bounded under overload.

Tasks may start, end and be updated mid-run (``start_s``, ``end_s``, ``update_s``) with the
simulator's semantics; :mod:`fmplex_exec.lifecycle` plays those events.

Systems on one device: ``fmplex`` shares one backbone per (backbone, device) among many vFMs;
``colocate`` runs a dedicated replica per task, all threads sharing the device without
coordination; ``spatial`` gives each replica its own share of the device (on CPU: a worker
process pinned to its own cores, torch limited to that many threads; see executors.py).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np

from fmplex_exec.threads import off_main
from fmplex_sim.catalog import get_backbone, get_device
from fmplex_sim.cluster import ClusterCost
from fmplex_sim.config import RunConfig
from fmplex_sim.latency import make_latency_model
from fmplex_sim.latency.base import InstanceCost, LatencyModel
from fmplex_sim.metrics import Records, check_accounting, check_nothing_lost, expire_at_horizon, summarize
from fmplex_sim.policies.placement import InstancePlan, make_placement
from fmplex_sim.policies.scheduling import InstanceView, make_scheduler
from fmplex_sim.policies.scheduling.base import charge_shares
from fmplex_sim.records import Batch, Request, Wait
from fmplex_sim.specs import TaskSpec
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
    slices_per_gpu: int = 0  # spatial: slices per device (set by the runtime from the config)


# Task states (as the simulator's engine has them).
WAITING, LOADING, READY, ENDED, UNPLACED = range(5)


@dataclass
class _Worker:
    plan: InstancePlan
    idx: int
    sched: object
    view: InstanceView
    execute: Executor
    cost: InstanceCost | None = None  # the scheduler's estimates; tasks join it when deployed
    cond: threading.Condition = field(default_factory=threading.Condition)  # guards sched
    # held while a batch runs: a lifecycle change to the model (add, swap, remove) takes it
    run_lock: threading.Lock = field(default_factory=threading.Lock)
    retired: bool = False  # no longer in the placement: serves what it holds, then stops
    closed: bool = False  # the run is over and its executor closed (set under run_lock): no more changes
    running: Batch | None = None  # the batch picked and not yet reported done (under cond)
    ops_waiting: int = 0  # lifecycle changes waiting for run_lock (under cond): no new batch starts
    warm: threading.Event = field(default_factory=threading.Event)  # warmed up: may take requests
    warmup_s: float = 0.0  # how long the warm-up batches took

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold ``run_lock`` for a change to the model, between two batches. The serving thread
        picks no new batch while a change waits, so a busy instance cannot starve it (a plain
        lock handed back and forth let an update wait seconds at overload)."""
        with self.cond:
            self.ops_waiting += 1
        try:
            with self.run_lock:
                yield
        finally:
            with self.cond:
                self.ops_waiting -= 1
                self.cond.notify_all()


class Runtime:
    """Replays ``workload`` under ``cfg``'s system on real models. Build, call :meth:`run` once."""

    #: after the horizon, how long run() waits for each instance's running batch to end
    FINISH_BATCH_S = 30.0
    #: longest the clock (or a task deployed mid-run) waits for an instance's warm-up; an
    #: instance that hangs there leaves its requests queued, and the run still ends
    WARMUP_WAIT_S = 300.0
    #: longest an idle serving thread sleeps before it looks at its queues again unwoken. Every
    #: change that gives it something to do (a request routed to it, a lifecycle change done,
    #: the run's end or the instance's retirement) notifies it, so this only bounds a missed
    #: wake-up. It must not poll: on the 2-core machine, a thread that woke every 50 ms while
    #: idle ran its next MiniLM 1 x 64 batch 8-10 ms slower after 0.3-0.6 s idle than one that
    #: slept through (28.3-28.4 ms against 18.8-19.3, ``idle_wait.py``), a wake-up that the
    #: profiler's ``wake`` rows, measured on a thread asleep, never saw (README, "An idle
    #: serving thread must sleep")
    IDLE_WAIT_S = 5.0
    #: after the run, how long it waits for a deploy still loading (a task added mid-run whose
    #: instance was not ready by the horizon): the instance is closed as soon as it is built,
    #: so no process or load outlives run() into what the caller does next (another replay)
    LATE_DEPLOY_WAIT_S = 300.0

    def __init__(self, cfg: RunConfig, workload: Workload, make_executor: ExecutorFactory,
                 options: RuntimeOptions = RuntimeOptions(), latency: LatencyModel | None = None) -> None:
        self.cfg = cfg
        # placement and scheduler estimates; the config's model unless one is given
        self.latency = make_latency_model(cfg.latency_model) if latency is None else latency
        self.wl = workload
        self.opts = replace(options, slices_per_gpu=cfg.system.slices_per_gpu)
        self.make_executor = make_executor
        self.tasks = {t.name: t for t in cfg.tasks}
        # longest a request may wait before it starts (max_queue_ms, default 10 x slo_ms)
        self.queue_limit_s = {t.name: t.queue_limit_ms / 1000.0 for t in cfg.tasks}
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
        # arrivals are over (the horizon, or the lifecycle done): serve what is queued, then stop;
        # an instance still loading is closed (new_worker), a task still deploying never serves (make_ready)
        self._done = threading.Event()
        self._stop = threading.Event()  # the horizon: start no batch
        # Lifecycle: guards state, routes, pending, placement and workers (taken before a
        # worker's cond, never while waiting for a run_lock).
        self.life = threading.Lock()
        self.state: dict[str, int] = {}
        self.routes: dict[str, list[_Worker]] = {}
        self.pending: dict[str, list[Request]] = {}  # arrived before their task serves
        self.workers: list[_Worker] = []
        self.by_id: dict[str, _Worker] = {}
        self.hosted: set[str] = set()
        self.unplaced: dict[str, str] = {}
        self.events: list[dict] = []  # lifecycle events with their wall-clock times (lifecycle.py)
        self.peak_memory_gib = 0.0
        self.peak_gpus = 0

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        """Place the tasks present at time 0 and build their instances (warm, as the simulator)."""
        cfg = self.cfg
        sysc = cfg.system
        self.device = get_device(cfg.cluster.device)
        self.cost = ClusterCost(self.device, cfg.cluster.gpus, self.latency, sysc.max_batch)
        self.policy = make_placement(sysc.placement, slices_per_gpu=sysc.slices_per_gpu,
                                     target_util=sysc.target_util, spread_idle=sysc.spread_idle)
        initial = [t for t in cfg.tasks if t.start_s <= 0]
        placement = self.policy.plan(initial, self.cost)
        self.placement = placement
        for plan in placement.instances:
            self.new_worker(plan)
        self.adopt(placement)
        for t in initial:
            if t.name in self.unplaced:
                continue
            self.make_ready(t)

    def new_worker(self, plan: InstancePlan) -> _Worker | None:
        """Build an instance's executor (loads its backbone and tasks: slow) and its scheduler;
        not yet serving (see :meth:`start_worker`). None when the run ended while it loaded:
        the executor is then closed at once and nothing serves from it."""
        sysc = self.cfg.system
        # a slice of a GPU time-sliced by processes runs at the whole GPU's speed (SystemConfig.slicing)
        share = 1.0 if self.device.kind != "cpu" and sysc.slicing == "processes" else plan.share
        ic = InstanceCost(self.latency, get_backbone(plan.backbone), self.device, share,
                          [self.tasks[t] for t in plan.tasks])
        seq = max(self.tasks[t].input_len for t in plan.tasks)
        view = InstanceView(sysc.max_batch, sysc.max_batch * seq, ic.estimate)
        sched = make_scheduler(sysc.scheduler, **sysc.scheduler_options())
        # built on a short-lived thread: the process's main thread never holds an OpenMP
        # pool (fmplex_exec.threads); the instance then serves from a thread of its own
        execute = off_main(self.make_executor, plan, self.tasks, self.opts)
        with self.life:
            if self._done.is_set():
                close = getattr(execute, "close", None)
                if close is not None:
                    close()
                return None
            w = _Worker(plan, len(self.workers), sched, view, execute, ic)
            self.workers.append(w)
            if any(p.id == plan.id for p in self.placement.instances):
                self.by_id[plan.id] = w
            else:  # its task ended while it loaded
                w.retired = True
        return w

    def _close(self, w: _Worker, wait_s: float) -> None:
        """Close ``w``'s executor once the run is over, between two changes to its model: a
        lifecycle change still under way past the horizon (a deploy onto it, an update, a
        removal) holds ``run_lock`` while it changes the model, and one that takes it later
        finds ``closed`` and leaves the model alone (a slice's process has exited by then: its
        pipe would raise). A batch that never ends holds the lock: then it closes after
        ``wait_s`` anyway."""
        got = w.run_lock.acquire(timeout=wait_s)
        try:
            w.closed = True
            close = getattr(w.execute, "close", None)
            if close is not None:
                close()
        finally:
            if got:
                w.run_lock.release()

    def start_worker(self, w: _Worker) -> None:
        th = threading.Thread(target=self._serve, args=(w,), daemon=True)
        self._threads.append(th)
        th.start()

    def adopt(self, placement) -> None:
        """Make ``placement`` current: retire instances it no longer has, note unplaced tasks
        and peak memory. Call with ``life`` held or before serving starts."""
        live = {plan.id for plan in placement.instances}
        for inst_id in [i for i in self.by_id if i not in live]:
            w = self.by_id.pop(inst_id)
            with w.cond:
                w.retired = True
                w.cond.notify()
        self.placement = placement
        self.peak_memory_gib = max(self.peak_memory_gib, placement.memory_gib())
        self.peak_gpus = max(self.peak_gpus, placement.gpus_used())
        for t, why in placement.unplaced:
            if self.state.get(t) not in (READY, LOADING, ENDED):
                self.state[t] = UNPLACED
                self.unplaced[t] = why

    def make_ready(self, task: TaskSpec) -> bool:
        """``task`` serves from now on: its instances' schedulers take it, held requests go in.
        False (and nothing done) when it ended meanwhile, or when the run did: a deploy whose
        instance was built before the horizon and warmed up past it never serves (its held
        requests stay unfinished, as in the simulator, which never serves past the horizon)."""
        with self.life:
            if self._done.is_set() or self.state.get(task.name) not in (None, WAITING, LOADING):
                return False
            ids = self.placement.routes().get(task.name, [])
            ws = [self.by_id[i] for i in ids if i in self.by_id]
            for w in ws:
                with w.cond:
                    if task.name not in w.sched.weights:
                        w.sched.add_task(task.name, task.weight, task.slo_ms / 1000.0)
                        w.cost.add_task(task)
            self.routes[task.name] = ws
            self.state[task.name] = READY
            self.hosted.add(task.name)
            now = self._now()
            for req in self.pending.pop(task.name, []):
                self._route(req, now, held=True)
        return True

    def _route(self, req: Request, now: float, held: bool = False) -> None:
        """Queue ``req`` on the least-loaded instance of its task (``life`` held)."""
        cands = self.routes[req.task]
        w = cands[0] if len(cands) == 1 else min(cands, key=lambda x: len(x.sched))
        self.inst_of[req.id] = w.idx
        with w.cond:  # the request carries its arrival time: latency counts from there
            if held:  # it arrived before now: the next decision must look for expired requests
                w.sched.queues.expiry_lb = -math.inf
            w.sched.enqueue(req, now)
            w.cond.notify()

    # ------------------------------------------------------------------ threads
    def _warm_up(self, w: _Worker) -> None:
        """Run ``w``'s warm-up batches on its serving thread, before it takes requests: one
        single-row batch per hosted task at its input length (its adapter and head), then one
        row of each together. A serving thread's first batch pays for starting its thread pool
        and first-call allocations (on the 2-core machine, MiniLM-L6: about 210 ms against
        27 ms); servers warm up before taking traffic, and the simulator's instances are warm.
        Errors are left to the first real batch (a broken task is quarantined there, as always)."""
        t0 = time.perf_counter()
        if self._done.is_set():  # started as the run ended: its executor may be closed already
            w.warm.set()
            return
        specs = [self.tasks[t] for t in w.plan.tasks if t in self.tasks]
        rows = [Request(-1, t.name, 0.0, t.input_len, 0) for t in specs]
        batches = [Batch((r,)) for r in rows]
        if len(rows) > 1:
            batches.append(Batch(tuple(rows[: self.cfg.system.max_batch])))
        try:
            with w.run_lock:
                for b in batches:
                    w.execute(b)
        finally:
            w.warmup_s = time.perf_counter() - t0
            w.warm.set()

    def _serve(self, w: _Worker) -> None:
        self._warm_up(w)
        sched = w.sched
        while True:
            with w.cond:
                while True:
                    if self._stop.is_set() or ((w.retired or self._done.is_set()) and not len(sched)):
                        return  # the horizon, or nothing left to serve
                    if w.ops_waiting:  # a lifecycle change goes first (_Worker.exclusive)
                        w.cond.wait(0.05)
                        continue
                    if len(sched):
                        now = self._now()
                        dropped = sched.drop_expired(now, self.queue_limit_s)
                        if dropped:
                            with self._lock:
                                for r in dropped:
                                    self.reason[r.id] = "queue_timeout"
                            if not len(sched):
                                continue
                        decision = sched.schedule(now, w.view)
                        if decision is not None and decision.__class__ is not Wait:
                            w.running = decision
                            break
                        if decision.__class__ is Wait:
                            w.cond.wait(max(0.0, decision.until_s - self._now()))
                            continue
                    w.cond.wait(self.IDLE_WAIT_S)  # idle: asleep until notified (IDLE_WAIT_S)
            with w.run_lock:
                t0 = self._now()
                # The pick may have waited for run_lock (a task's update or removal holds it):
                # what has now waited past its limit is rejected, as at the pick, not run late.
                decision = self._start(w, decision, t0)
                if decision is None:
                    continue
                errors = w.execute(decision)
                t1 = self._now()
            service = t1 - t0
            with self._lock:
                bid = self._batches
                self._batches += 1
                for r, err in zip(decision.requests, errors):
                    if err:
                        self.reason[r.id] = err
                    else:
                        self.finish[r.id] = t1
                        self.batch_of[r.id] = bid
                for t, share in charge_shares(decision, service).items():
                    self.service[t] += share
            with w.cond:
                sched.on_batch_done(decision, service, t1)
                w.running = None

    def _held(self) -> list[int]:
        """Ids of the requests still queued, in a running batch, or held for a loading task."""
        with self.life:
            ids = [r.id for reqs in self.pending.values() for r in reqs]
            workers = list(self.workers)
        for w in workers:
            with w.cond:
                q = w.sched.queues
                ids += [r.id for t in q.tasks() for r in q[t]]
                if w.running is not None:
                    ids += [r.id for r in w.running.requests]
        return ids

    def _start(self, w: _Worker, batch: Batch, t0: float) -> Batch | None:
        """Record ``batch``'s start at ``t0``, leaving out (rejected, ``queue_timeout``) the
        requests that waited past their task's limit by then; None if none is left."""
        limit = self.queue_limit_s
        keep = []
        with self._lock:
            for r in batch.requests:
                if r.arrival_s + limit.get(r.task, math.inf) >= t0:
                    self.start[r.id] = t0
                    keep.append(r)
                else:
                    self.reason[r.id] = "queue_timeout"
        if len(keep) == len(batch.requests):
            return batch
        if not keep:
            with w.cond:
                w.running = None
            return None
        leader = batch.leader if any(r.task == batch.leader for r in keep) else keep[0].task
        batch = Batch(tuple(keep), leader=leader)
        with w.cond:
            w.running = batch
        return batch

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
        from fmplex_exec.lifecycle import Lifecycle

        self._threads: list[threading.Thread] = []
        self._setup()
        life = self.lifecycle = Lifecycle(self)
        wall0 = time.perf_counter()
        for w in list(self.workers):
            self.start_worker(w)
        for w in list(self.workers):  # the clock starts once every instance is warm
            w.warm.wait(self.WARMUP_WAIT_S)
        self._t0 = time.perf_counter()
        life.start()
        wl = self.wl
        names = wl.tasks
        horizon = self.cfg.duration_s + self.cfg.drain_s
        for i, (t, k, n_in, n_out) in enumerate(zip(wl.arrival_s.tolist(), wl.task.tolist(),
                                                    wl.input_len.tolist(), wl.output_len.tolist())):
            delay = t - self._now()
            if delay > 0:
                time.sleep(delay)
            name = names[k]
            with self.life:
                s = self.state.get(name, WAITING)
                if s == READY:
                    self._route(Request(i, name, t, n_in, n_out), self._now())
                elif s == UNPLACED:
                    self.reason[i] = "unplaced"
                elif s == ENDED:
                    self.reason[i] = "task_ended"
                else:  # not deployed yet or loading: held until it serves (as the simulator)
                    self.pending.setdefault(name, []).append(Request(i, name, t, n_in, n_out))
        deadline = time.perf_counter() + max(0.0, horizon - self._now())
        life.join(max(0.0, deadline - time.perf_counter()))  # its deploys and updates too
        self._done.set()
        for w in list(self.workers):
            with w.cond:
                w.cond.notify()
        for th in list(self._threads):
            th.join(max(0.0, deadline - time.perf_counter()))
        wall = time.perf_counter() - wall0
        workers = list(self.workers)
        # The horizon: what has not finished is unfinished, as in the simulator (a batch still
        # running is neither completed nor charged).
        with self._lock:
            rec = Records(tasks=wl.tasks, task=wl.task, arrival_s=wl.arrival_s,
                          start_s=self.start.copy(), finish_s=self.finish.copy(),
                          batch_id=self.batch_of.copy(), instances=tuple(w.plan.id for w in workers),
                          instance=self.inst_of.copy(), reason=list(self.reason))
            service = dict(self.service)
        as_taken = replace(rec, reason=list(rec.reason))  # for check_nothing_lost, below
        expire_at_horizon(rec, self.queue_limit_s, horizon)
        # Past it no batch starts (_serve); the one running is waited for, so that no forward
        # outlives run() and slows what the process does next (another replay, its exit).
        self._stop.set()
        for w in workers:
            with w.cond:
                w.cond.notify()
        for th in list(self._threads):
            th.join(self.FINISH_BATCH_S)
        # Every request the records leave open must still be held: queued, in a batch still
        # running, or waiting for its task to load (threads may have settled more since).
        held = self._held()
        with self._lock:  # settled after the records were taken: not lost either
            held += np.flatnonzero(np.isfinite(self.finish)).tolist()
            held += [i for i, r in enumerate(self.reason) if r]
        check_nothing_lost(as_taken, held, exact=False)
        close_by = time.perf_counter() + self.FINISH_BATCH_S
        for w in workers:
            self._close(w, max(0.0, close_by - time.perf_counter()))
        life.join(self.LATE_DEPLOY_WAIT_S)  # a deploy still loading closes what it built (new_worker)
        memory = self._memory(workers)
        sysc = self.cfg.system
        latency = self.latency
        summary = summarize(
            rec, self.cfg.tasks,
            system={"name": sysc.name, "placement": sysc.placement, "scheduler": sysc.scheduler},
            latency_model={"kind": latency.kind, "source": latency.source},
            seed=self.cfg.seed, duration_s=self.cfg.duration_s,
            horizon_s=self.cfg.duration_s + self.cfg.drain_s,
            cluster={"device": self.cfg.cluster.device, "gpus": self.cfg.cluster.gpus,
                     "gpus_used": self.peak_gpus,
                     "tasks_hosted": len(self.hosted),
                     "tasks_unplaced": len(self.unplaced),
                     "memory_gib": round(self.peak_memory_gib, 4),
                     "instances": len(workers), "batches": self._batches,
                     "engine": "fmplex_exec", "torch_device": self.opts.device,
                     "memory_measured": memory,
                     "warmup_ms": {w.plan.id: round(w.warmup_s * 1000.0, 3) for w in workers}},
            service_s=service, wall_s=wall,
        )
        check_accounting(summary)
        return rec, summary

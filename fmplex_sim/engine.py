"""The discrete-event engine: a simpy clock driving placement and scheduling policies.

One process replays the workload's arrivals and routes each request to an instance that
hosts its task; one process per instance asks its scheduler for the next batch whenever the
backbone is free and holds it busy for the latency model's service time; an idle instance picks
its batch the model's ``dispatch_s`` after the arrival that wakes it, so requests that arrive
together (or within that delay) run together. Instances that share
a device (``colocate``, several backbones under ``fmplex``) take turns on it; a turn that
changes the serving process pays the device's context switch. A lifecycle process deploys and
retires tasks at their ``start_s``/``end_s``: the placement policy reacts online and the task
serves once its extensions (and, if new, its backbone copy) are loaded. At a task's ``update_s``
its new extension version loads while the old one keeps serving, then replaces it (no pause for
the task or its neighbours; both versions count in memory meanwhile). Queues stay bounded under
overload: before each batch decision, requests that have waited longer than their task's
``max_queue_ms`` (default 10 x ``slo_ms``) are rejected with reason ``queue_timeout``.

The engine owns every counter of a run (batch ids, request records); nothing survives the run.
"""

from __future__ import annotations

import gc
import math
import time
from functools import partial
from dataclasses import dataclass, field

import numpy as np
import simpy
from simpy.events import Timeout

from fmplex_sim import costs
from fmplex_sim.catalog import BACKBONES, get_device
from fmplex_sim.cluster import ClusterCost
from fmplex_sim.config import RunConfig
from fmplex_sim.latency import make_latency_model
from fmplex_sim.latency.base import BESIDE_RUNNING, SETTLED, InstanceCost, LatencyModel
from fmplex_sim.policies.placement import InstancePlan, Placement, make_placement
from fmplex_sim.policies.placement.spatial import first_slice
from fmplex_sim.policies.scheduling import InstanceView, make_scheduler
from fmplex_sim.policies.scheduling.base import charge_shares
from fmplex_sim.records import Request, Wait
from fmplex_sim.sharing import SharedCores, slice_cores
from fmplex_sim.specs import DEPLOY, GIB, RETIRE, TaskSpec, lifecycle_events
from fmplex_sim.workload import Workload

# Task states.
_WAITING, _LOADING, _READY, _ENDED, _UNPLACED = range(5)


@dataclass
class RunResult:
    """Raw outcome of one run, turned into records and a summary by :mod:`fmplex_sim.metrics`."""

    config: RunConfig
    workload: Workload
    latency: LatencyModel
    placement: Placement  # placement at the start of the run
    instances: list[str]  # instance ids, indexed by ``instance``
    start_s: np.ndarray  # per request; nan if it never ran
    finish_s: np.ndarray  # per request; nan if it never finished
    batch_id: np.ndarray  # per request; -1 if it never ran
    instance: np.ndarray  # per request; index into ``instances``, -1 if none
    reason: list[str]  # per request; non-empty for rejected requests
    service_s: dict[str, float]  # backbone seconds charged to each task
    batches: int  # batches run
    peak_memory_gib: float  # largest memory footprint over the run
    peak_gpus: int  # most devices in use at once
    hosted: set[str] = field(default_factory=set)  # tasks that were placed at some point
    unplaced: dict[str, str] = field(default_factory=dict)  # task -> reason it fit nowhere
    updated: dict[str, float] = field(default_factory=dict)  # task -> when its new version took over
    wall_s: float = 0.0  # wall-clock seconds the simulation took
    held: list[int] = field(default_factory=list)  # ids queued, running or waiting to load at the horizon


class _Clock(simpy.Environment):
    """A simpy environment that interleaves a sorted stream of arrivals with its events.

    It relies on two attributes of simpy 4's Environment: ``_queue`` (the event heap) and
    ``_now`` (the clock), so the per-request path costs no extra calls.
    """

    def advance(self, t: float) -> None:
        """Set the clock to ``t``; only valid when no pending event is due before ``t``."""
        self._now = t

    def feed(self, times: list[float], horizon: float, arrive) -> None:
        """Call ``arrive(i)`` at each ``times[i]`` (sorted) up to ``horizon``, running every
        event due before it first (arrivals go first on ties), then run events to ``horizon``."""
        queue = self._queue
        step = self.step
        for i, t in enumerate(times):
            if t > horizon:
                break
            while queue and queue[0][0] < t:
                step()
            self._now = t
            arrive(i)
        while queue and queue[0][0] <= horizon:
            step()
        self._now = horizon


class _Device:
    """A device (or slice) that runs one batch at a time, first come first served.

    Served analytically: a batch whose host work ends at ``t`` starts on the device at
    ``max(t, free_at)`` (plus a context switch when another process ran last) and holds it
    for its device time, so no simpy resource or extra process is needed.
    """

    __slots__ = ("free_at", "last", "switch_s", "users")

    def __init__(self, switch_s: float) -> None:
        self.users = 0  # instances placed on it; with one, its timeline is computed ahead
        self.free_at = 0.0  # when the device finishes the work already given to it
        self.last: str | None = None  # process that ran the previous batch
        self.switch_s = switch_s  # cost of handing the device to another process


class _Instance:
    __slots__ = ("plan", "idx", "sched", "cost", "view", "device", "outstanding",
                 "inflight", "last_host", "jit_timer", "wait_timer", "cores", "idle_since",
                 "slice_threads", "running", "dispatch_timer", "warmth", "beside", "busy_since")

    def __init__(self, plan, idx, sched, cost, view, device, cores=None) -> None:
        self.cores: SharedCores | None = cores  # CPU devices: the cores it runs on, shared
        self.plan: InstancePlan = plan
        self.idx: int = idx
        self.sched = sched
        self.cost: InstanceCost = cost
        self.view: InstanceView = view
        self.device: _Device = device
        self.outstanding = 0  # queued plus running requests, for routing
        self.inflight = 0  # batches picked and not yet finished
        self.last_host = 0.0  # host time of the previous batch: how early to prepare the next
        self.idle_since = 0.0  # CPU devices: when its serving thread last finished a batch
        self.warmth = SETTLED  # CPU devices: how cold its last batch left it (LatencyModel.woken)
        self.beside = 0  # CPU devices: its running batch beside other instances (1; 2: BESIDE_RUNNING)
        self.busy_since = 0.0  # CPU devices: when the running batch started
        self.slice_threads = 0  # CPU devices: a spatial slice's threads; 0: a thread of a shared process
        self.jit_timer = False  # a wake-up is set for when the device is nearly free
        self.wait_timer = False  # a wake-up is set for the end of a scheduler's bounded wait
        self.dispatch_timer = False  # idle, and a request arrived: its serving thread is waking up
        self.running: list = []  # batches picked and not yet finished


class Engine:
    """Simulates one config on one workload. Build, call :meth:`run` once."""

    def __init__(
        self,
        cfg: RunConfig,
        workload: Workload,
        progress=None,
        latency: LatencyModel | None = None,
    ) -> None:
        self.cfg = cfg
        self.wl = workload
        self.progress = progress  # callable(sim_time_s) or None
        self.device = get_device(cfg.cluster.device)
        # The config names the model; tests may inject one directly.
        self.latency = make_latency_model(cfg.latency_model) if latency is None else latency
        sysc = cfg.system
        self.cost = ClusterCost(self.device, cfg.cluster.gpus, self.latency, sysc.max_batch)
        self.policy = make_placement(
            sysc.placement,
            slices_per_gpu=sysc.slices_per_gpu,
            target_util=sysc.target_util,
            spread_idle=sysc.spread_idle,
        )
        self.switch_s = (
            self.device.context_switch_ms if sysc.context_switch_ms is None else sysc.context_switch_ms
        ) / 1000.0
        self.tasks: dict[str, TaskSpec] = {t.name: t for t in cfg.tasks}
        # Longest wait to start, per task, in seconds: past it a queued request is rejected.
        self.queue_limit_s = {t.name: t.queue_limit_ms / 1000.0 for t in cfg.tasks}
        # Batches in flight per instance. On a CPU the host is the device: a serving thread
        # prepares and runs one batch at a time (as the execution harness does).
        self.cpu = self.device.kind == "cpu"
        self.depth = 1 if self.cpu else sysc.pipeline_depth
        # An idle instance picks its next batch this long after the arrival that wakes it (its
        # serving thread woken, as the harness's is); requests arriving meanwhile, those at the
        # same instant included, join that batch.
        self.dispatch_s = self.latency.dispatch_s(self.device)
        self.shared: dict[tuple, SharedCores] = {}  # CPU devices: cores shared by instances
        # CPU devices: each batch's service time varies around the model's median as measured
        # (lognormal, the profile's spread), drawn in event order from the run's own generator.
        self.jitter = np.random.default_rng([cfg.seed, 0x51D]) if self.cpu else None
        self.env = _Clock()
        n = len(workload)
        self.start = [float("nan")] * n
        self.finish = [float("nan")] * n
        self.batch_of = [-1] * n
        self.inst_of = [-1] * n
        self.reason = [""] * n
        self.service = {t: 0.0 for t in self.tasks}
        self.batches = 0
        self.instances: list[_Instance] = []
        self.by_id: dict[str, _Instance] = {}
        self.devices: dict[int, _Device] = {}
        self.routes: dict[str, list[_Instance]] = {}
        self.state: dict[str, int] = {}
        self.pending: dict[str, list[Request]] = {}
        self.ready_ev: dict[str, simpy.Event] = {}  # task deployed mid-run -> succeeds when it serves
        self.updated: dict[str, float] = {}
        self.hosted: set[str] = set()
        self.unplaced: dict[str, str] = {}
        self.placement = Placement(self.policy.name)
        self.peak_mem = 0.0
        self.peak_gpus = 0

    # ------------------------------------------------------------------ placement
    def _apply(self, placement: Placement, now: float) -> float:
        """Adopt ``placement``: create new instances and routes. Returns the load delay of new copies."""
        delay = 0.0
        live = {plan.id for plan in placement.instances}
        for inst_id in [i for i in self.by_id if i not in live]:
            # Retired: it finishes what it holds (callbacks keep a reference), takes no new
            # work, and a later instance with the same id is a fresh load.
            gone = self.by_id.pop(inst_id)
            gone.device.users -= 1
            if gone.cores is not None:
                gone.cores.members -= 1
        for plan in placement.instances:
            if plan.id in self.by_id:
                inst = self.by_id[plan.id]
                inst.plan = plan
                continue
            bb = BACKBONES[plan.backbone]
            cores = None
            share = plan.share
            # A GPU's slices made by time-slicing processes (no MIG): each runs at the whole
            # GPU's speed, taking turns with the others on it, as co-located replicas do.
            turns = placement.time_shared or (not self.cpu and self.cfg.system.slicing == "processes")
            if self.cpu:
                cores, share = self._cores(plan, placement.time_shared)
                cores.members += 1
            elif turns:
                share = 1.0
            cost = InstanceCost(self.latency, bb, self.device, share)
            seq = max(self.tasks[t].input_len for t in plan.tasks)
            seq += max((self.tasks[t].prefix_tokens for t in plan.tasks), default=0)
            view = InstanceView(
                max_batch=self.cfg.system.max_batch,
                max_batch_tokens=self.cfg.system.max_batch * seq,
                estimate=cost.estimate,
            )
            sysc = self.cfg.system
            sched = make_scheduler(sysc.scheduler, **sysc.scheduler_options())
            if turns:
                dev = self.devices.setdefault(plan.gpu, _Device(self.switch_s))
            else:
                dev = _Device(self.switch_s)  # a slice of its own
            dev.users += 1
            inst = _Instance(plan, len(self.instances), sched, cost, view, dev, cores)
            # A spatial slice serves on its own single-purpose process's main thread, measured
            # with its thread count; a time-shared instance on a thread of a shared process.
            if cores is not None and not placement.time_shared:
                inst.slice_threads = max(1, round(share * max(1, self.device.cores)))
            self.instances.append(inst)
            self.by_id[plan.id] = inst
            if now > 0:
                delay = max(delay, self.latency.load_s(bb.weight_bytes(self.device.dtype_bytes), self.device))
        self.placement = placement
        self.peak_mem = max(self.peak_mem, placement.memory_gib())
        self.peak_gpus = max(self.peak_gpus, placement.gpus_used())
        routes = placement.routes()
        self.routes = {t: [self.by_id[i] for i in ids] for t, ids in routes.items()}
        for t, why in placement.unplaced:
            if self.state.get(t) not in (_READY, _LOADING, _ENDED):
                self.state[t] = _UNPLACED
                self.unplaced[t] = why
        return delay

    def _cores(self, plan: InstancePlan, time_shared: bool) -> tuple[SharedCores, float]:
        """CPU devices: the shared cores ``plan`` runs on and the share its speed is read at.

        A time-shared instance runs on all cores of its device (share 1); a spatial slice on
        :func:`~fmplex_sim.sharing.slice_cores` (share = its cores over the device's)."""
        ncores = max(1, self.device.cores)
        if time_shared:
            key, share = (plan.gpu,), 1.0
        else:
            slices = self.cfg.system.slices_per_gpu
            first = first_slice(plan)
            width = max(1, round(plan.share * slices))
            cores = slice_cores(first, width, slices, ncores)
            key, share = (plan.gpu, *cores), len(cores) / ncores
        shared = self.shared.get(key)
        if shared is None:
            # Threads of one process (co-located replicas) contend as measured; pinned
            # single-purpose processes get the scheduler's fair share (k of them: 1/k each).
            slowdown = partial(self.latency.contention, self.device) if time_shared else float
            shared = self.shared[key] = SharedCores(self.env, slowdown)
        return shared, share

    def _make_ready(self, task: TaskSpec, now: float) -> None:
        for inst in self.routes.get(task.name, ()):
            if task.name not in inst.sched.weights:
                inst.cost.add_task(task)
                inst.sched.add_task(task.name, task.weight, task.slo_ms / 1000.0)
        self.state[task.name] = _READY
        self.hosted.add(task.name)
        self._release(task.name)
        for req in self.pending.pop(task.name, []):
            # Held while the task loaded, it arrived before now: the next decision must look
            # for expired requests whatever the queues' bound says (TaskQueues.drop_expired).
            for inst in self.routes[task.name]:
                inst.sched.queues.expiry_lb = -math.inf
            self._route(req, now)

    # ------------------------------------------------------------------ serving
    # The serving path is event callbacks, not simpy processes: an arrival or a finished
    # batch calls _kick, which asks the scheduler for batches while the instance's pipeline
    # has room; each batch costs one timeout (two on a device shared by several instances).
    def _route(self, req: Request, now: float, alone: bool = False) -> None:
        """Queue ``req`` on the least-loaded instance of its task. ``alone``: no other request
        arrives at this instant, so with no dispatch delay an idle instance may pick at once."""
        insts = self.routes[req.task]
        inst = insts[0] if len(insts) == 1 else min(insts, key=_load_key)
        inst.outstanding += 1
        self.inst_of[req.id] = inst.idx
        inst.sched.enqueue(req, now)
        if inst.inflight:
            if not inst.jit_timer and inst.inflight < self.depth:
                self._kick(inst)
        elif alone and not self.dispatch_s and not inst.dispatch_timer:
            self._kick(inst)  # nothing can join: skip the event
        elif not inst.dispatch_timer:
            self._wake_up(inst)

    def _arrive(self, i: int, t: float, k: int, n_in: int, n_out: int) -> None:
        """Request ``i`` of the workload arrives now."""
        name = self.wl.tasks[k]
        req = Request(i, name, t, n_in, n_out)
        s = self.state.get(name, _WAITING)
        if s == _READY:
            self._route(req, t)
        elif s == _UNPLACED:
            self.reason[i] = "unplaced"
        elif s == _ENDED:
            self.reason[i] = "task_ended"
        else:
            self.pending.setdefault(name, []).append(req)

    def _loop(self, horizon: float) -> None:
        """Run the simpy clock to ``horizon``, feeding arrivals from the workload's arrays.

        Arrivals are not simpy events: before each event, every arrival due no later than it
        is handled with the clock advanced to its time (arrivals first on ties), which saves
        one heap operation per request. All other activity is ordinary simpy events.
        """
        wl = self.wl
        times = wl.arrival_s.tolist()
        tasks, lens, outs = wl.task.tolist(), wl.input_len.tolist(), wl.output_len.tolist()
        names, state, route, kick, wake_up = wl.tasks, self.state, self._route, self._kick, self._wake_up
        inst_of, depth = self.inst_of, self.depth
        instant = not self.dispatch_s  # an idle instance picks at the arrival, after any ties
        last = len(times) - 1

        def arrive(i: int) -> None:
            name = names[tasks[i]]
            if state.get(name) == _READY:
                t = times[i]
                # With no dispatch delay, only a request arriving at this same instant could
                # join the batch: without one, pick now and save the wake-up event. (Every
                # request of a tie waits for it, so the tied instances pick in arrival order.)
                alone = instant and (i == last or times[i + 1] > t) and (i == 0 or times[i - 1] < t)
                insts = self.routes[name]  # re-read: placements change while events run
                if len(insts) == 1:  # _route, inlined for the common single-copy case
                    inst = insts[0]
                    inst.outstanding += 1
                    inst_of[i] = inst.idx
                    inst.sched.enqueue(Request(i, name, t, lens[i], outs[i]), t)
                    if inst.inflight:
                        if not inst.jit_timer and inst.inflight < depth:
                            kick(inst)
                    elif not inst.dispatch_timer:
                        if alone:
                            kick(inst)
                        else:
                            wake_up(inst)
                else:
                    route(Request(i, name, t, lens[i], outs[i]), t, alone)
            else:
                self._arrive(i, times[i], tasks[i], lens[i], outs[i])

        self.env.feed(times, horizon, arrive)

    def _kick(self, inst: _Instance) -> None:
        """Start batches on ``inst`` while its pipeline has room and work is queued.

        Host work (runtime overhead, kernel launches) runs in the instance's own process; the
        device runs one batch at a time, first come first served. Up to ``pipeline_depth``
        batches are in flight, and the next one is picked just in time: when the device is due
        to be free within one batch's host time, so later arrivals can still join it.
        """
        env = self.env
        sched = inst.sched
        queues = sched.queues
        dev = inst.device
        depth = self.depth
        while inst.inflight < depth and queues.total:
            now = env.now
            if inst.inflight:
                ready_at = dev.free_at - inst.last_host
                if ready_at > now:
                    inst.jit_timer = True
                    Timeout(env, ready_at - now).callbacks.append(partial(self._on_jit, inst))
                    return
            if now > queues.expiry_lb:  # a queued request may have waited past its task's limit
                self._drop_expired(inst, now)
                if not queues.total:
                    return
            decision = sched.schedule(now, inst.view)
            if decision is None:
                return
            if decision.__class__ is Wait:
                if not inst.wait_timer:
                    inst.wait_timer = True
                    Timeout(env, max(0.0, decision.until_s - now)).callbacks.append(
                        partial(self._on_wait, inst)
                    )
                return
            service_s, host = inst.cost.times(decision)
            inst.inflight += 1
            inst.last_host = host
            inst.running.append(decision)
            start = self.start
            for r in decision.requests:  # started: picked in time (a batch running at the horizon too)
                start[r.id] = now
            if inst.cores is not None:
                # CPU: the whole batch is work on cores shared with whatever else runs there,
                # plus the wake-up of its serving thread if that was idle (each replica's own),
                # plus the throttled thread pools of a process holding several instances.
                sigma = self.latency.jitter_sigma(inst.cost.bb, self.device)
                if sigma > 0:
                    service_s *= math.exp(sigma * self.jitter.standard_normal())
                # A slice's wake-up is its own process's (rows measured with its threads); a
                # thread's beside other instances' pools is the one measured so (when it was).
                seq = max(r.input_len for r in decision.requests)
                beside = not inst.slice_threads and inst.cores.members > 1
                work = service_s
                if beside:
                    work += self.latency.pool_throttle_s(inst.cost.bb, self.device, decision.size, seq)
                work += self._wake(inst, now - inst.idle_since, work, decision.size * seq, beside)
                own = None  # this batch's slowdown beside others (default: the cores')
                if not inst.slice_threads:  # a thread of a shared process
                    # beside other threads' batches, as much slower as its shape loses with fewer cores
                    own = partial(self.latency.contention_for, inst.cost.bb, self.device,
                                  rows=decision.size, seq_len=seq)
                inst.cores.add(work, partial(self._cpu_done, inst, decision, service_s), own)
            elif dev.users == 1:
                # Nobody else uses this device: its timeline is known now.
                t = now + host
                free = dev.free_at
                end = (free if free > t else t) + service_s - host
                dev.free_at = end
                Timeout(env, end - now).callbacks.append(
                    partial(self._complete, inst, decision, service_s)
                )
            else:
                Timeout(env, host).callbacks.append(
                    partial(self._host_done, inst, decision, service_s, host)
                )

    def _wake(self, inst: _Instance, idle_s: float, hot_s: float, tokens: int, beside: int) -> float:
        """What this batch (``hot_s`` once settled) pays for its serving thread having been idle
        ``idle_s`` (``LatencyModel.woken``); the warmth it leaves stays on ``inst`` until the
        batch ends, when the wall time it ran (contention included) warms it (``ran``). A thread
        beside other instances whose batch starts while one of theirs runs on its cores reads
        the wake-up measured so (``BESIDE_RUNNING``)."""
        lat, cost = self.latency, inst.cost
        if beside and inst.cores.jobs:
            beside = BESIDE_RUNNING
        extra, inst.warmth = lat.woken(self.device, inst.warmth, idle_s, hot_s, cost.has_lora, inst.slice_threads,
                                       bb=cost.bb, tokens=tokens, beside=beside)
        inst.beside = beside
        inst.busy_since = self.env.now
        return extra

    def _cpu_done(self, inst: _Instance, batch, service_s: float) -> None:
        now = inst.idle_since = self.env.now
        if inst.warmth.cold > 0:
            inst.warmth = self.latency.ran(self.device, inst.warmth, now - inst.busy_since, inst.cost.has_lora,
                                           inst.slice_threads, bb=inst.cost.bb, beside=inst.beside)
        self._complete(inst, batch, service_s, None)

    def _drop_expired(self, inst: _Instance, now: float) -> None:
        """Reject the requests queued on ``inst`` that waited longer than their task's
        ``max_queue_ms`` without starting (reason ``queue_timeout``), before a batch is picked."""
        dropped = inst.sched.drop_expired(now, self.queue_limit_s)
        reason = self.reason
        for r in dropped:
            reason[r.id] = "queue_timeout"
        inst.outstanding -= len(dropped)

    def _wake_up(self, inst: _Instance) -> None:
        """A request was queued on idle ``inst``: pick a batch after ``dispatch_s``."""
        inst.dispatch_timer = True
        Timeout(self.env, self.dispatch_s).callbacks.append(partial(self._on_dispatch, inst))

    def _on_dispatch(self, inst: _Instance, _event) -> None:
        inst.dispatch_timer = False
        if not inst.jit_timer:
            self._kick(inst)

    def _on_jit(self, inst: _Instance, _event) -> None:
        inst.jit_timer = False
        self._kick(inst)

    def _on_wait(self, inst: _Instance, _event) -> None:
        inst.wait_timer = False
        if not inst.jit_timer:
            self._kick(inst)

    def _host_done(self, inst: _Instance, batch, service_s: float, host: float, _event) -> None:
        """Host work of ``batch`` is done: queue its device work on the shared device."""
        now = self.env.now
        dev = inst.device
        begin = dev.free_at if dev.free_at > now else now
        if dev.last is not None and dev.last != inst.plan.process:
            service_s += dev.switch_s
        dev.last = inst.plan.process
        dev.free_at = begin + service_s - host
        Timeout(self.env, dev.free_at - now).callbacks.append(
            partial(self._complete, inst, batch, service_s)
        )

    def _complete(self, inst: _Instance, batch, service_s: float, _event) -> None:
        """``batch`` is done (its requests' start was recorded when :meth:`_kick` picked it)."""
        t1 = self.env.now
        bid = self.batches
        self.batches = bid + 1
        reqs = batch.requests
        if len(reqs) == 1:
            r = reqs[0]
            i = r.id
            self.finish[i] = t1
            self.batch_of[i] = bid
            inst.outstanding -= 1
            self.service[r.task] += service_s
        else:
            finish, batch_of, service = self.finish, self.batch_of, self.service
            for r in reqs:
                i = r.id
                finish[i] = t1
                batch_of[i] = bid
            inst.outstanding -= len(reqs)
            for task, share in charge_shares(batch, service_s).items():
                service[task] += share
        inst.sched.on_batch_done(batch, service_s, t1)
        inst.running.remove(batch)
        inst.inflight -= 1
        if not inst.jit_timer and inst.sched.queues.total:
            self._kick(inst)

    def _lifecycle(self):
        env = self.env
        for when, kind, k in lifecycle_events(self.cfg.tasks, self.cfg.duration_s + self.cfg.drain_s):
            if when > env.now:
                yield env.timeout(when - env.now)
            task = self.cfg.tasks[k]
            if kind == RETIRE:
                self._retire(task)
            else:  # loads run side by side: a later event never waits for them
                env.process(self._deploy(task) if kind == DEPLOY else self._update(task))

    def _deploy(self, task: TaskSpec):
        now = self.env.now
        self.state[task.name] = _LOADING
        self.ready_ev[task.name] = self.env.event()
        delay = self._apply(self.policy.add(self.placement, task, self.cost), now)
        if task.name not in self.routes:
            self.state[task.name] = _UNPLACED
            for req in self.pending.pop(task.name, []):
                self.reason[req.id] = "unplaced"
            self._release(task.name)
            return
        bb = BACKBONES[task.backbone]
        nbytes = sum(costs.extension_bytes(e, bb, self.device.dtype_bytes) for e in task.extensions)
        delay += self.latency.extension_load_s(nbytes, self.device)
        if delay > 0:
            yield self.env.timeout(delay)
        if self.state.get(task.name) == _LOADING:
            self._make_ready(task, self.env.now)
        else:  # ended while loading: a waiting update sees it and gives up
            self._release(task.name)

    def _release(self, name: str) -> None:
        """Wake whatever waits for ``name`` to finish loading."""
        ev = self.ready_ev.pop(name, None)
        if ev is not None:
            ev.succeed()

    def _update(self, task: TaskSpec):
        """Replace ``task``'s extensions by their next version (:meth:`TaskSpec.next_version`):
        the new version loads on every copy serving the task (``extension_load_s``) while the
        old one keeps serving, then takes over. Nothing pauses; both versions count in memory
        while the new one loads. An update due while the task still loads waits until it
        serves; a task that ended, or was never placed, is not updated."""
        name = task.name
        if self.state.get(name) == _LOADING:
            yield self.ready_ev[name]
        if self.state.get(name) != _READY:
            return
        new = self.tasks[name].next_version()
        bb = BACKBONES[task.backbone]
        nbytes = sum(costs.extension_bytes(e, bb, self.device.dtype_bytes) for e in new.extensions)
        copies = len(self.routes.get(name, ()))
        self.peak_mem = max(self.peak_mem, self.placement.memory_gib() + copies * nbytes / GIB)
        delay = self.latency.extension_load_s(nbytes, self.device)
        if delay > 0:
            yield self.env.timeout(delay)
        if self.state.get(name) != _READY:
            return
        self.tasks[name] = new
        for inst in self.routes.get(name, ()):
            inst.cost.add_task(new)
        self.updated[name] = self.env.now

    def _retire(self, task: TaskSpec) -> None:
        name = task.name
        prev = self.state.get(name)
        self.state[name] = _ENDED
        for req in self.pending.pop(name, []):
            self.reason[req.id] = "task_ended"
        if prev not in (_READY, _LOADING):
            return
        if self.cfg.system.on_task_end == "reject":
            for inst in self.routes.get(name, ()):
                for req in inst.sched.remove_task(name):
                    self.reason[req.id] = "task_ended"
                    inst.outstanding -= 1
        self._apply(self.policy.remove(self.placement, task, self.cost), self.env.now)

    def _ticker(self, horizon: float, step: float):
        while self.env.now < horizon:
            yield self.env.timeout(step)
            self.progress(min(self.env.now, horizon))

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        t_wall = time.perf_counter()
        cfg = self.cfg
        initial = [t for t in cfg.tasks if t.start_s <= 0]
        self._apply(self.policy.plan(initial, self.cost), 0.0)
        first = self.placement
        for t in initial:
            if t.name in self.routes:
                self._make_ready(t, 0.0)
        horizon = cfg.duration_s + cfg.drain_s
        self.env.process(self._lifecycle())
        if self.progress is not None:
            self.env.process(self._ticker(horizon, horizon / 100.0))
        # The serving path frees everything by reference counting; the cyclic collector would
        # only re-scan the million-element record lists again and again (about 20% of the run).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._loop(horizon)
        finally:
            if gc_was_enabled:
                gc.enable()
        return RunResult(
            config=cfg,
            workload=self.wl,
            latency=self.latency,
            placement=first,
            instances=[i.plan.id for i in self.instances],
            start_s=np.asarray(self.start, dtype=np.float64),
            finish_s=np.asarray(self.finish, dtype=np.float64),
            batch_id=np.asarray(self.batch_of, dtype=np.int64),
            instance=np.asarray(self.inst_of, dtype=np.int64),
            reason=self.reason,
            service_s=self.service,
            batches=self.batches,
            peak_memory_gib=self.peak_mem,
            peak_gpus=self.peak_gpus,
            hosted=self.hosted,
            unplaced=self.unplaced,
            updated=self.updated,
            wall_s=time.perf_counter() - t_wall,
            held=self._held(),
        )

    def _held(self) -> list[int]:
        """Ids of the requests the engine still holds: queued, in a running batch, or waiting
        for their task to load (:func:`fmplex_sim.metrics.check_nothing_lost`)."""
        ids = [r.id for reqs in self.pending.values() for r in reqs]
        for inst in self.instances:
            q = inst.sched.queues
            ids += [r.id for t in q.tasks() for r in q[t]]
            ids += [r.id for b in inst.running for r in b.requests]
        return ids


def _load_key(inst: _Instance) -> tuple[int, int]:
    return (inst.outstanding, inst.idx)

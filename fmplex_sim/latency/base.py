"""Latency models: how long does this batch take on this device?

A :class:`LatencyModel` answers in seconds for the parts of one backbone pass: the shared
backbone forward, the heterogeneous-LoRA cost of the distinct adapters in the batch, each
task's head/encoder, autoregressive decode steps, and per-batch runtime overhead; plus load
times for a backbone and an extension. :meth:`LatencyModel.batch_s` composes them.

``share`` is the fraction of the device an instance owns (1.0 for a whole device, 1/7 for one
MIG-like slice): compute and bandwidth terms scale by ``1/share``, fixed launch and runtime
overheads do not.

:class:`InstanceCost` binds a model to one instance (backbone, device, share, resident tasks)
and caches answers per batch shape for the life of one run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Iterable, NamedTuple, Sequence

from fmplex_sim.records import Batch
from fmplex_sim.registry import Registry
from fmplex_sim.specs import BackboneSpec, DeviceSpec, ExtensionSpec, TaskSpec

LATENCY_MODELS: Registry[type["LatencyModel"]] = Registry("latency model")


_COLD_S = 3600.0  # an idle gap past every measured one: wake_s answers a full wake-up


class Warmth(NamedTuple):
    """How cold a CPU instance is between its batches (the engine keeps one per instance;
    :meth:`LatencyModel.woken` and :meth:`LatencyModel.ran` move it)."""

    cold: float = 0.0  # what is left of its wake-ups, as a share of a full one (0: settled)
    left_s: float = 0.0  # ``warmup_s`` models: seconds of running it still needs to settle


SETTLED = Warmth()

#: ``beside`` of a thread whose batch starts while another instance's batch runs in its process
#: (``wake``/``warmup`` rows with ``running``: on the 2-core machine a MiniLM 1 x 64 batch beside
#: another replica's back-to-back batches paid +2.6 to +6.0 ms after 20-200 ms idle, where
#: beside an idle pool it paid +0.9 ms after 20 ms and +13.1 to +13.5 ms after 200 ms).
#: ``beside`` is otherwise a flag: 1 beside other instances' idle pools, 0 alone.
BESIDE_RUNNING = 2


class LatencyModel(ABC):
    """Predicts service times of backbone passes. Subclasses say what they are built from."""

    kind: str = ""  # "roofline" or "profile"

    @property
    @abstractmethod
    def source(self) -> str:
        """Where the numbers come from (``analytic`` or the profile file), for results."""

    # -- parts ------------------------------------------------------------------------------
    @abstractmethod
    def backbone_s(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, seq_len: int, share: float = 1.0
    ) -> float:
        """One forward (encode or prefill) of ``rows`` inputs padded to ``seq_len``."""

    @abstractmethod
    def decode_step_s(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, ctx_len: int, share: float = 1.0
    ) -> float:
        """One autoregressive step for ``rows`` sequences with ``ctx_len`` tokens of context."""

    @abstractmethod
    def adapters_s(
        self,
        bb: BackboneSpec,
        dev: DeviceSpec,
        rows: int,
        seq_len: int,
        n_adapters: int,
        rank: int,
        share: float = 1.0,
    ) -> float:
        """Extra cost of ``n_adapters`` distinct LoRA adapters of ``rank`` over ``rows`` rows."""

    @abstractmethod
    def extension_s(
        self,
        ext: ExtensionSpec,
        bb: BackboneSpec,
        dev: DeviceSpec,
        rows: int,
        seq_len: int,
        share: float = 1.0,
    ) -> float:
        """Cost of a head or input encoder of one task over its ``rows`` rows in the batch."""

    @abstractmethod
    def batch_overhead_s(self, dev: DeviceSpec, rows: int = 1) -> float:
        """Runtime cost of one batch of ``rows`` requests outside the backbone (Python,
        framework, making and padding inputs, copies)."""

    def jitter_sigma(self, bb: BackboneSpec, dev: DeviceSpec) -> float:
        """Spread of one batch's service time around the model's (median) value: the sigma of
        a lognormal factor with median 1. Default: 0 (deterministic)."""
        return 0.0

    def wake_s(self, dev: DeviceSpec, idle_s: float, lora: bool = False, threads: int = 0,
               bb: BackboneSpec | None = None, tokens: int = 0, beside: bool = False) -> float:
        """Extra time of a batch of ``tokens`` of ``bb`` on a CPU whose serving thread was idle
        for ``idle_s`` (worker threads gone to sleep, cold caches); ``threads > 0``: on a
        spatial slice of that many threads, in its own process; ``beside``: on a thread of a
        process holding other instances too (every pool throttled). Default: 0."""
        return 0.0

    def rewarm_s(self, dev: DeviceSpec, lora: bool = False, threads: int = 0,
                 bb: BackboneSpec | None = None, beside: bool = False) -> float:
        """Seconds of running over which what is left of a woken instance's wake-up falls by a
        factor e (arguments as :meth:`wake_s`). Default 0: an instance settles within any
        batch, and each batch pays ``wake_s`` of its own idle gap only."""
        return 0.0

    def warmup_s(self, dev: DeviceSpec, lora: bool = False, threads: int = 0,
                 bb: BackboneSpec | None = None, beside: bool = False) -> float:
        """Seconds a woken instance runs before it has settled, idle time meanwhile pushing that
        back (arguments as :meth:`wake_s`). Default 0: no such delay (:meth:`rewarm_s` or
        nothing decides)."""
        return 0.0

    def woken(self, dev: DeviceSpec, warmth: Warmth, idle_s: float, hot_s: float, lora: bool = False,
              threads: int = 0, bb: BackboneSpec | None = None, tokens: int = 0,
              beside: bool = False) -> tuple[float, Warmth]:
        """``(extra seconds, warmth)`` of a batch of ``hot_s`` (settled) starting after ``idle_s``
        on an instance left ``warmth`` by its last batch. A gap makes a settled instance as cold
        as :meth:`wake_s` gives for it, as a share of a full wake-up (``wake_s`` past every gap).

        * With :meth:`warmup_s` ``W``: an instance already cold keeps its coldness (the larger of
          the two) and the idle time adds to the running it still needs (at most ``W``); a
          settled one needs ``W``. The batch pays coldness x a full wake-up, times the share of
          it that runs before it settles (the running still needed over ``W`` or over the woken
          batch's time, whichever is shorter: the ``wake`` rows measured that batch whole), and
          never less than a settled instance pays for the gap.
        * Else with :meth:`rewarm_s`: the gap takes away the share of its warmth that
          ``wake_s`` gives for it, and the batch pays coldness x a full wake-up.
        * Else the instance settles within any batch, and this is ``wake_s(idle_s)``."""
        lost = self.wake_s(dev, idle_s, lora, threads, bb=bb, tokens=tokens, beside=beside)
        settle = self.warmup_s(dev, lora, threads, bb=bb, beside=beside)
        if settle <= 0 and self.rewarm_s(dev, lora, threads, bb=bb, beside=beside) <= 0:
            return lost, SETTLED
        full = self.wake_s(dev, _COLD_S, lora, threads, bb=bb, tokens=tokens, beside=beside)
        if full <= 0:
            return lost, SETTLED
        share = min(1.0, lost / full)
        if settle <= 0:
            cold = 1.0 - (1.0 - warmth.cold) * (1.0 - share)
            return cold * full, Warmth(cold, 0.0)
        cold = max(warmth.cold, share)
        left = settle if warmth.cold <= 0 else min(settle, warmth.left_s + idle_s)
        return max(lost, cold * full * min(1.0, left / min(settle, hot_s + full))), Warmth(cold, left)

    def ran(self, dev: DeviceSpec, warmth: Warmth, wall_s: float, lora: bool = False, threads: int = 0,
            bb: BackboneSpec | None = None, beside: bool = False) -> Warmth:
        """``warmth`` after a batch ran ``wall_s`` of wall time (contention included: the
        instance's threads were awake throughout): with :meth:`warmup_s`, that much less
        running still needed, settled once none is; with :meth:`rewarm_s`, coldness x
        ``exp(-wall_s / rewarm_s)``."""
        if warmth.cold <= 0:
            return SETTLED
        if self.warmup_s(dev, lora, threads, bb=bb, beside=beside) > 0:
            left = warmth.left_s - wall_s
            return Warmth(warmth.cold, left) if left > 0 else SETTLED
        tau = self.rewarm_s(dev, lora, threads, bb=bb, beside=beside)
        return Warmth(warmth.cold * math.exp(-wall_s / tau), 0.0) if tau > 0 else SETTLED

    def dispatch_s(self, dev: DeviceSpec) -> float:
        """From a request's arrival at an idle instance to its serving thread picking a batch
        (the thread woken, the scheduler asked). Default: 0."""
        return 0.0

    def contention(self, dev: DeviceSpec, k: int) -> float:
        """How many times longer each of ``k`` batches takes when they run at once on one
        CPU device (threads of one process sharing its cores). Default: ``k`` (the cores
        shared evenly, nothing lost)."""
        return float(max(k, 1))

    def contention_for(self, bb: BackboneSpec, dev: DeviceSpec, k: int, rows: int, seq_len: int) -> float:
        """:meth:`contention` for one batch of ``rows`` x ``seq_len`` of ``bb`` among the ``k``.
        Default: the same for every shape."""
        return self.contention(dev, k)

    def pool_throttle_s(self, bb: BackboneSpec, dev: DeviceSpec, rows: int, seq_len: int) -> float:
        """Extra time of a batch of ``rows`` x ``seq_len`` of an instance on a CPU device whose
        process holds several instances (their thread pools throttled:
        ``fmplex_exec.threads``), against one alone in its process. Default: 0."""
        return 0.0

    @abstractmethod
    def load_s(self, nbytes: int, dev: DeviceSpec) -> float:
        """Time to load a backbone of ``nbytes`` onto the device."""

    @abstractmethod
    def extension_load_s(self, nbytes: int, dev: DeviceSpec) -> float:
        """Time to load one extension of ``nbytes`` onto the device."""

    def kernel_launch_s(self, dev: DeviceSpec) -> float:
        """Host time to dispatch one kernel."""
        return dev.kernel_launch_us * 1e-6

    #: How a batch with several LoRA adapters runs: ``segmented`` launches one kernel per
    #: adapted projection per layer for all adapters together (Punica/S-LoRA style);
    #: ``loop`` launches one per adapter (peft's mixed-adapter inference); ``auto`` picks
    #: ``loop`` on CPU devices (what the harness runs) and ``segmented`` on GPUs.
    lora_kernel: str = "auto"

    def lora_launches(self, bb: BackboneSpec, dev: DeviceSpec, n_adapters: int, n_targets: int) -> int:
        """Kernel launches of the LoRA part of a batch with ``n_adapters`` distinct adapters."""
        if n_adapters <= 0:
            return 0
        kernel = self.lora_kernel
        if kernel == "auto":
            kernel = "loop" if dev.kind == "cpu" else "segmented"
        per_layer = n_targets * (n_adapters if kernel == "loop" else 1)
        return bb.layers * per_layer

    # -- composition ------------------------------------------------------------------------
    def host_s(
        self,
        bb: BackboneSpec,
        dev: DeviceSpec,
        groups: Sequence[tuple[TaskSpec, int]],
        output_len: int = 0,
    ) -> float:
        """The part of :meth:`batch_s` spent on the host: runtime overhead and kernel launches.

        It runs in the serving process and does not occupy the device, so processes that
        time-share one device overlap it; only the rest of the batch is serialized there.
        """
        launches = bb.layers * dev.kernels_per_layer
        n_adapters, n_targets = 0, 0
        for task, _ in groups:
            for ext in task.extensions:
                if ext.kind == "lora":
                    n_adapters += 1
                    n_targets = max(n_targets, len(ext.targets))
                elif ext.kind == "head":
                    launches += 1
                elif ext.kind == "encoder":
                    launches += dev.kernels_per_layer
        launches += self.lora_launches(bb, dev, n_adapters, n_targets)
        if output_len and bb.decoder:
            launches += output_len * bb.layers * dev.kernels_per_layer
        rows = sum(r for _, r in groups)
        return self.batch_overhead_s(dev, rows) + launches * self.kernel_launch_s(dev)

    def batch_s(
        self,
        bb: BackboneSpec,
        dev: DeviceSpec,
        groups: Sequence[tuple[TaskSpec, int]],
        seq_len: int,
        output_len: int = 0,
        share: float = 1.0,
    ) -> float:
        """Service time of one batch: ``groups`` lists (task, rows of that task)."""
        prefix = max((t.prefix_tokens for t, _ in groups), default=0)
        length = seq_len + prefix
        rows = sum(r for _, r in groups)
        total = self.batch_overhead_s(dev, rows) + self.backbone_s(bb, dev, rows, length, share)
        n_adapters, lora_rows, rank = 0, 0, 0
        for task, r in groups:
            for ext in task.extensions:
                if ext.kind == "lora":
                    n_adapters += 1
                    lora_rows += r
                    rank = max(rank, ext.rank)
                elif ext.kind in ("head", "encoder"):
                    total += self.extension_s(ext, bb, dev, r, length, share)
        if n_adapters:
            total += self.adapters_s(bb, dev, lora_rows, length, n_adapters, rank, share)
        if output_len and bb.decoder:
            ctx = length + output_len // 2
            total += output_len * self.decode_step_s(bb, dev, rows, ctx, share)
        return total


class InstanceCost:
    """A latency model bound to one instance; caches per batch shape for one run.

    Not shared between runs: each engine builds its own, so nothing leaks across runs.
    """

    def __init__(
        self,
        model: LatencyModel,
        bb: BackboneSpec,
        dev: DeviceSpec,
        share: float,
        tasks: Iterable[TaskSpec] = (),
    ) -> None:
        self.model = model
        self.bb = bb
        self.dev = dev
        self.share = share
        self.tasks: dict[str, TaskSpec] = {t.name: t for t in tasks}
        self._cache: dict[tuple, float] = {}
        # A typical adapter rank on this instance, for shape-only estimates.
        self._rank = 8
        # The harness applies LoRA with batched hooks on every adapted layer, which run over
        # every row of an instance holding any adapter (rows of tasks without one multiply by
        # zeros): such an instance pays one adapter's cost on every batch. So on a CPU host,
        # and wherever the latencies are a profile measured through the harness (on CUDA a
        # batch is bound by the host's kernel launches, the hooks' included: the MiniLM H100
        # runs' tasks without adapters ran at 8.4-8.9 ms on the shared backbone, 5.9-6.5 ms
        # simulated without this). The roofline model of a GPU stands for a production
        # runtime's segmented kernels, which skip rows without an adapter.
        self.lora_always = dev.kind == "cpu" or getattr(model, "kind", "") == "profile"
        self._resident_changed()

    def _resident_changed(self) -> None:
        self._cache.clear()
        ranks = [e.rank for t in self.tasks.values() for e in t.extensions if e.kind == "lora"]
        self.lora_rank = min(ranks) if ranks else None  # smallest resident LoRA rank, if any

    @property
    def has_lora(self) -> bool:
        """Whether any resident task carries a LoRA adapter."""
        return self.lora_rank is not None

    def add_task(self, task: TaskSpec) -> None:
        replaced = task.name in self.tasks
        self.tasks[task.name] = task
        if replaced:
            self._resident_changed()
            return
        # A new task can only lower the smallest rank: no rescan (placing 100k tasks one by one
        # must not be quadratic).
        self._cache.clear()
        ranks = [e.rank for e in task.extensions if e.kind == "lora"]
        if ranks:
            low = min(ranks)
            self.lora_rank = low if self.lora_rank is None else min(self.lora_rank, low)

    def remove_task(self, name: str) -> None:
        self.tasks.pop(name, None)
        self._resident_changed()

    def times(self, batch: Batch) -> tuple[float, float]:
        """``(service_s, host_s)`` of ``batch`` on this instance; host_s <= service_s."""
        reqs = batch.requests
        if len(reqs) == 1:
            r = reqs[0]
            key = (r.task, 1, r.input_len, r.output_len)
        else:
            rows: dict[str, int] = {}
            seq = out = 0
            for r in reqs:
                rows[r.task] = rows.get(r.task, 0) + 1
                if r.input_len > seq:
                    seq = r.input_len
                if r.output_len > out:
                    out = r.output_len
            key = (tuple(rows.items()), seq, out)
        t = self._cache.get(key)
        if t is None:
            rows = batch.task_rows()
            groups = [(self.tasks[name], n) for name, n in rows.items()]
            total = self.model.batch_s(
                self.bb, self.dev, groups, batch.seq_len, batch.output_len, self.share
            )
            if (self.lora_always and self.lora_rank is not None
                    and not any(e.kind == "lora" for t, _ in groups for e in t.extensions)):
                total += self.model.adapters_s(self.bb, self.dev, batch.size, batch.seq_len, 1,
                                               self.lora_rank, self.share)
            host = min(total, self.model.host_s(self.bb, self.dev, groups, batch.output_len))
            t = (total, host)
            if len(self._cache) < 200_000:
                self._cache[key] = t
        return t

    def estimate(self, rows: int, seq_len: int, n_adapters: int) -> float:
        """Shape-only estimate for schedulers: backbone plus ``n_adapters`` LoRA adapters."""
        key = (rows, seq_len, n_adapters)
        t = self._cache.get(key)
        if t is None:
            m = self.model
            t = m.batch_overhead_s(self.dev, rows) + m.backbone_s(
                self.bb, self.dev, rows, seq_len, self.share
            )
            if n_adapters:
                t += m.adapters_s(
                    self.bb, self.dev, rows, seq_len, n_adapters, self._rank, self.share
                )
            self._cache[key] = t
        return t

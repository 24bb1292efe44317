"""Typed, frozen specifications: what a backbone, extension, task, device and cluster are.

Specs are plain data. They never reference an engine, a clock or a random generator, so the
simulator, the real harness and the policies can all share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Modality = Literal["language", "vision", "timeseries", "multimodal"]
ExtensionKind = Literal["lora", "prefix", "head", "encoder"]

GIB = 1024**3
DEFAULT_QUEUE_SLOS = 10.0  # a task without max_queue_ms rejects requests queued longer than this x slo_ms


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture numbers of one foundation-model variant, from its public configuration."""

    name: str  # catalog key, e.g. "bert-base"
    family: str  # e.g. "bert", "llama", "vit"
    modality: Modality  # what the backbone consumes
    params: int  # published parameter count (all weights that are loaded)
    layers: int  # transformer blocks on the compute path of one request
    hidden: int  # model width (d_model)
    intermediate: int  # MLP width (d_ff)
    heads: int  # attention heads
    kv_heads: int  # key/value heads (== heads unless grouped-query attention)
    vocab: int  # embedding rows (0 for patch-embedding inputs)
    max_positions: int  # longest input the backbone accepts, in tokens or patches
    gated_mlp: bool = False  # SwiGLU/GeGLU MLP with three matrices instead of two
    decoder: bool = False  # autoregressive decoder: output tokens cost one step each
    default_input_len: int = 128  # typical tokens/patches per request for this modality
    hf_config: str = ""  # public configuration the numbers come from
    note: str = ""  # anything a user should know (towers, what is modelled)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def weight_bytes(self, dtype_bytes: int) -> int:
        """Bytes of all backbone weights at the given element size."""
        return self.params * dtype_bytes


@dataclass(frozen=True)
class ExtensionSpec:
    """One task-specific extension attached to a shared backbone.

    kind: ``lora`` (rank, target modules), ``prefix`` (virtual tokens), ``head`` (outputs),
    ``encoder`` (params: an input encoder run before the backbone).
    """

    kind: ExtensionKind  # which extension
    rank: int = 8  # lora: adapter rank
    targets: tuple[str, ...] = ("q", "v")  # lora: projections adapted in every layer
    alpha: float = 16.0  # lora: scaling numerator (alpha / rank)
    virtual_tokens: int = 0  # prefix: tokens prepended to every input
    outputs: int = 2  # head: output units of the classification/regression head
    params: int = 0  # encoder: parameters of the input encoder
    version: int = 1  # bumped when the task redeploys a new version of this extension

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind}
        if self.kind == "lora":
            d.update(rank=self.rank, targets=list(self.targets), alpha=self.alpha)
        elif self.kind == "prefix":
            d.update(virtual_tokens=self.virtual_tokens)
        elif self.kind == "head":
            d.update(outputs=self.outputs)
        elif self.kind == "encoder":
            d.update(params=self.params)
        if self.version != 1:
            d["version"] = self.version
        return d


@dataclass(frozen=True)
class ArrivalSpec:
    """Synthetic arrival process of one task.

    ``poisson``; ``gamma`` (``cv``); ``onoff`` bursts (``on_s`` seconds on, ``off_s`` off, Poisson
    or Gamma within bursts, long-run mean ``rate_rps``); ``diurnal`` (rate
    ``rate_rps * (1 + amplitude * sin(2 pi (t - phase_s) / period_s))``).
    """

    process: Literal["poisson", "gamma", "onoff", "diurnal"] = "poisson"  # distribution
    rate_rps: float = 1.0  # long-run mean requests per second
    cv: float = 1.0  # coefficient of variation of inter-arrival times (gamma, onoff)
    on_s: float = 10.0  # onoff: length of a burst
    off_s: float = 10.0  # onoff: length of a silence
    amplitude: float = 0.5  # diurnal: relative swing of the rate, in [0, 1]
    period_s: float = 86400.0  # diurnal: length of one cycle
    phase_s: float = 0.0  # diurnal: time of the mean-rate upswing

    def to_dict(self) -> dict:
        d: dict = {"process": self.process, "rate_rps": self.rate_rps}
        if self.process in ("gamma", "onoff") and (self.process == "gamma" or self.cv != 1.0):
            d["cv"] = self.cv
        if self.process == "onoff":
            d.update(on_s=self.on_s, off_s=self.off_s)
        if self.process == "diurnal":
            d.update(amplitude=self.amplitude, period_s=self.period_s, phase_s=self.phase_s)
        return d


def prefix_tokens(extensions) -> int:
    """Virtual tokens a prefix extension among ``extensions`` prepends to every input (0: none)."""
    return max((e.virtual_tokens for e in extensions if e.kind == "prefix"), default=0)


@dataclass(frozen=True)
class TaskSpec:
    """A vFM: one downstream task, its extensions, its weight and SLO."""

    name: str  # unique task name
    backbone: str  # catalog key of the shared backbone
    extensions: tuple[ExtensionSpec, ...] = ()  # adapter, head, encoder, prefix
    weight: float = 1.0  # share of the backbone under weighted fair schedulers
    slo_ms: float = 100.0  # latency objective of one request
    input_len: int = 128  # tokens (or patches) per request
    output_len: int = 0  # generated tokens per request (decoder backbones only)
    arrival: ArrivalSpec = field(default_factory=ArrivalSpec)  # load
    start_s: float = 0.0  # when the task is deployed
    end_s: float | None = None  # when it is removed (None: never)
    update_s: float | None = None  # when its extensions are replaced by a new version (None: never)
    max_queue_ms: float | None = None  # longest wait to start before rejection (None: 10 x slo_ms)

    @property
    def queue_limit_ms(self) -> float:
        """Longest a request may wait in its queue without starting; past it the engine rejects it
        (reason ``queue_timeout``). ``max_queue_ms``, or ``DEFAULT_QUEUE_SLOS`` x ``slo_ms``."""
        return self.max_queue_ms if self.max_queue_ms is not None else DEFAULT_QUEUE_SLOS * self.slo_ms

    @property
    def prefix_tokens(self) -> int:
        """Virtual tokens its prefix extension prepends to every input (0: none)."""
        return prefix_tokens(self.extensions)

    def next_version(self) -> "TaskSpec":
        """The task after its update: the same spec with every extension's ``version`` bumped
        (same architecture, new weights), and no further update pending."""
        exts = tuple(replace(e, version=e.version + 1) for e in self.extensions)
        return replace(self, extensions=exts, update_s=None)

    def extension(self, kind: ExtensionKind) -> ExtensionSpec | None:
        for e in self.extensions:
            if e.kind == kind:
                return e
        return None

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "backbone": self.backbone,
            "extensions": [e.to_dict() for e in self.extensions],
            "weight": self.weight,
            "slo_ms": self.slo_ms,
            "input_len": self.input_len,
            "arrival": self.arrival.to_dict(),
            "start_s": self.start_s,
        }
        if self.output_len:
            d["output_len"] = self.output_len
        if self.end_s is not None:
            d["end_s"] = self.end_s
        if self.update_s is not None:
            d["update_s"] = self.update_s
        if self.max_queue_ms is not None:
            d["max_queue_ms"] = self.max_queue_ms
        return d


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator model (or a CPU host) with the numbers a roofline needs."""

    name: str  # catalog key, e.g. "H100-80GB"
    kind: Literal["gpu", "cpu"]  # gpu or cpu
    memory_gib: float  # device memory
    peak_tflops: float  # dense 16-bit (GPU) or fp32 (CPU) matrix throughput
    mem_bw_gbps: float  # device memory bandwidth, GB/s
    h2d_gbps: float  # host-to-device copy bandwidth for loading weights, GB/s
    dtype_bytes: int = 2  # element size models are served in on this device
    compute_eff: float = 0.6  # achievable fraction of peak compute for GEMMs
    memory_eff: float = 0.75  # achievable fraction of peak bandwidth
    kernel_launch_us: float = 6.0  # fixed cost of one kernel launch
    kernels_per_layer: int = 12  # kernels launched per transformer block
    batch_overhead_ms: float = 0.5  # per-batch runtime cost (Python, tokenizer, copies)
    load_fixed_ms: float = 50.0  # fixed cost of loading a backbone (allocation, init)
    extension_load_fixed_ms: float = 5.0  # fixed cost of loading one extension
    context_switch_ms: float = 0.3  # cost of switching between processes sharing the device
    process_memory_gib: float = 0.5  # memory one serving process reserves (CUDA context)
    max_slices: int = 7  # most partitions one device can be cut into (MIG-like)
    cores: int = 0  # CPU devices: cores the host serves with (0 for GPUs)
    note: str = ""


@dataclass(frozen=True)
class ClusterSpec:
    """A homogeneous pool of devices."""

    device: str  # catalog key of the device model
    gpus: int  # number of devices


#: Kinds of lifecycle event, in the order they are applied at one instant.
DEPLOY, RETIRE, UPDATE = 0, 1, 2


def lifecycle_events(tasks: tuple[TaskSpec, ...] | list[TaskSpec], horizon_s: float) -> list[tuple[float, int, int]]:
    """``(time_s, kind, task index)`` of every mid-run deploy (``start_s > 0``), retirement and
    update before ``horizon_s``, sorted: the one schedule both engines play."""
    events = []
    for k, t in enumerate(tasks):
        if t.start_s > 0:
            events.append((t.start_s, DEPLOY, k))
        if t.end_s is not None and t.end_s < horizon_s:
            events.append((t.end_s, RETIRE, k))
        if t.update_s is not None and t.update_s < horizon_s:
            events.append((t.update_s, UPDATE, k))
    return sorted(events)

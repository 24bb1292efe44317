"""Analytic roofline latency model.

Each part is ``max(compute_s, memory_s) + launch_s`` where

* ``compute_s = flops / (peak_tflops*1e12 * compute_eff * share)``
* ``memory_s  = bytes / (mem_bw_gbps*1e9 * memory_eff * share)``
* ``launch_s``: fixed kernel-launch cost, not scaled by ``share``.

A backbone forward reads its weights once per pass, so at small batch it is memory bound and
batching is nearly free; at large batch the FLOPs dominate and time grows linearly with rows.
Heterogeneous LoRA (Punica/S-LoRA style segmented kernels) pays the adapter FLOPs and each
distinct adapter's weights under the roofline, plus ``layers*len(targets)*kernel_launch_us``
per distinct adapter. FLOPs and bytes come from :mod:`fmplex_sim.costs`.

Device numbers come from the :class:`DeviceSpec`; any of its efficiency/overhead fields can be
overridden for every device via constructor keywords (recalibration from measurements).
"""

from __future__ import annotations

from dataclasses import dataclass

from fmplex_sim import costs
from fmplex_sim.latency.base import LATENCY_MODELS, LatencyModel
from fmplex_sim.specs import BackboneSpec, DeviceSpec, ExtensionSpec

OVERRIDABLE = (
    "compute_eff",
    "memory_eff",
    "kernel_launch_us",
    "kernels_per_layer",
    "batch_overhead_ms",
    "load_fixed_ms",
    "extension_load_fixed_ms",
)


@dataclass(frozen=True)
class RooflineTerms:
    """The three terms of one roofline estimate, in seconds."""

    compute_s: float  # FLOPs at achievable compute throughput
    memory_s: float  # bytes at achievable bandwidth
    launch_s: float  # fixed launch cost (not scaled by share)

    @property
    def total_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.launch_s

    @property
    def memory_bound(self) -> bool:
        return self.memory_s >= self.compute_s


def _check_share(share: float) -> None:
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")


@LATENCY_MODELS.register("roofline")
class RooflineModel(LatencyModel):
    """Roofline latency model from device datasheet numbers and efficiency factors.

    ``RooflineModel(compute_eff=0.5, kernel_launch_us=4.0, ...)`` overrides those
    ``DeviceSpec`` fields (names in ``OVERRIDABLE``) for every device; ``lora_targets`` are
    the projections LoRA adapters are assumed to adapt in ``adapters_s`` (whose signature
    carries no targets).
    """

    kind = "roofline"

    def __init__(
        self,
        lora_targets: tuple[str, ...] = ("q", "v"),
        lora_kernel: str = "auto",
        **overrides: float,
    ) -> None:
        if lora_kernel not in ("auto", "segmented", "loop"):
            raise ValueError(f"lora_kernel must be auto, segmented or loop, got {lora_kernel!r}")
        self.lora_kernel = lora_kernel
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise TypeError(
                f"unknown roofline override(s) {unknown} (allowed: {', '.join(OVERRIDABLE)})"
            )
        for k, v in overrides.items():
            if k in ("compute_eff", "memory_eff") and not 0.0 < v <= 1.0:
                raise ValueError(f"override {k} must be in (0, 1], got {v}")
            if not v >= 0:
                raise ValueError(f"override {k} must be >= 0, got {v}")
        self.lora_targets = tuple(lora_targets)
        self.overrides = dict(overrides)

    @property
    def source(self) -> str:
        return "analytic"

    # -- helpers ---------------------------------------------------------------------------
    def param(self, dev: DeviceSpec, name: str) -> float:
        """Device field ``name`` after this model's overrides."""
        return self.overrides.get(name, getattr(dev, name))

    def kernel_launch_s(self, dev: DeviceSpec) -> float:
        return self.param(dev, "kernel_launch_us") * 1e-6

    def terms(
        self, dev: DeviceSpec, flops: float, nbytes: float, launches: float, share: float
    ) -> RooflineTerms:
        """Roofline terms of ``flops`` and ``nbytes`` plus ``launches`` kernel launches."""
        _check_share(share)
        compute = flops / (dev.peak_tflops * 1e12 * self.param(dev, "compute_eff") * share)
        memory = nbytes / (dev.mem_bw_gbps * 1e9 * self.param(dev, "memory_eff") * share)
        launch = launches * self.param(dev, "kernel_launch_us") * 1e-6
        return RooflineTerms(compute, memory, launch)

    def _layer_launches(self, bb: BackboneSpec, dev: DeviceSpec) -> float:
        return bb.layers * self.param(dev, "kernels_per_layer")

    def backbone_terms(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, seq_len: int, share: float = 1.0
    ) -> RooflineTerms:
        """Terms of one backbone forward (see :meth:`backbone_s`)."""
        return self.terms(
            dev,
            costs.forward_flops(bb, rows, seq_len),
            costs.forward_bytes(bb, dev.dtype_bytes, rows, seq_len),
            self._layer_launches(bb, dev),
            share,
        )

    def decode_terms(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, ctx_len: int, share: float = 1.0
    ) -> RooflineTerms:
        """Terms of one decode step (see :meth:`decode_step_s`)."""
        return self.terms(
            dev,
            costs.decode_step_flops(bb, rows, ctx_len),
            costs.decode_step_bytes(bb, dev.dtype_bytes, rows, ctx_len),
            self._layer_launches(bb, dev),
            share,
        )

    # -- LatencyModel ----------------------------------------------------------------------
    def backbone_s(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, seq_len: int, share: float = 1.0
    ) -> float:
        """max(FLOP time, byte time) of one forward + layers*kernels_per_layer launches."""
        if rows <= 0:
            return 0.0
        return self.backbone_terms(bb, dev, rows, seq_len, share).total_s

    def decode_step_s(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, ctx_len: int, share: float = 1.0
    ) -> float:
        """max(FLOP time, byte time incl. KV cache) of one step + per-layer launches."""
        if rows <= 0:
            return 0.0
        return self.decode_terms(bb, dev, rows, ctx_len, share).total_s

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
        """LoRA FLOPs over all rows plus each distinct adapter's weights and the re-read of
        inputs/outputs of adapted projections under the roofline, plus
        :meth:`lora_launches` launches (per adapter with ``loop`` kernels, once with
        ``segmented``). 0 when ``n_adapters`` is 0."""
        if n_adapters <= 0 or rows <= 0:
            return 0.0
        tokens = rows * seq_len
        targets = self.lora_targets
        db = dev.dtype_bytes
        flops = costs.lora_flops(bb, rank, tokens, targets)
        weights = n_adapters * costs.lora_params(bb, rank, targets) * db
        io_widths = sum(sum(costs.lora_shape(bb, t)) for t in targets) + 2 * rank * len(targets)
        acts = tokens * io_widths * bb.layers * db
        launches = self.lora_launches(bb, dev, n_adapters, len(targets))
        return self.terms(dev, flops, weights + acts, launches, share).total_s

    def extension_s(
        self,
        ext: ExtensionSpec,
        bb: BackboneSpec,
        dev: DeviceSpec,
        rows: int,
        seq_len: int,
        share: float = 1.0,
    ) -> float:
        """head: a GEMM on ``rows`` pooled rows + one launch; encoder: ``2*params*tokens``
        FLOPs and its weights once + ``kernels_per_layer`` launches. lora and prefix: 0 (their
        cost is in ``adapters_s`` and in the longer ``seq_len``)."""
        if rows <= 0:
            return 0.0
        db = dev.dtype_bytes
        if ext.kind == "head":
            flops = costs.head_flops(bb, ext.outputs, rows)
            nbytes = (costs.extension_params(ext, bb) + rows * (bb.hidden + ext.outputs)) * db
            return self.terms(dev, flops, nbytes, 1, share).total_s
        if ext.kind == "encoder":
            tokens = rows * seq_len
            flops = costs.encoder_flops(ext.params, rows, seq_len)
            nbytes = (ext.params + costs.ACT_TRAFFIC_WIDTHS * tokens * bb.hidden) * db
            launches = self.param(dev, "kernels_per_layer")
            return self.terms(dev, flops, nbytes, launches, share).total_s
        return 0.0

    def batch_overhead_s(self, dev: DeviceSpec, rows: int = 1) -> float:
        """``batch_overhead_ms`` of the device, in seconds."""
        return self.param(dev, "batch_overhead_ms") / 1000.0

    def load_s(self, nbytes: int, dev: DeviceSpec) -> float:
        """``load_fixed_ms`` + ``nbytes`` over the host-to-device link."""
        return self.param(dev, "load_fixed_ms") / 1000.0 + nbytes / (dev.h2d_gbps * 1e9)

    def extension_load_s(self, nbytes: int, dev: DeviceSpec) -> float:
        """``extension_load_fixed_ms`` + ``nbytes`` over the host-to-device link."""
        fixed = self.param(dev, "extension_load_fixed_ms") / 1000.0
        return fixed + nbytes / (dev.h2d_gbps * 1e9)

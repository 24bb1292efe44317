"""Catalog of devices (GPUs and a small CPU host) with the numbers a roofline needs.

Peak numbers are vendor datasheet values (dense, no sparsity). The efficiency and overhead
fields (``compute_eff``, ``memory_eff``, ``kernel_launch_us``, ``kernels_per_layer``,
``batch_overhead_ms``, ``load_fixed_ms``, ``context_switch_ms``, ``process_memory_gib``) are
plausible defaults, not measurements: recalibrate them from measured profiles
(``fmplex-exec profile``) before trusting absolute latencies.

GPU host costs assume a production serving runtime (graph-captured or fused kernels, a
compiled batching loop): about 2-3 us of host time per kernel and 0.1-0.15 ms per batch. An
eager PyTorch runtime is several times more host-bound (about 8 us per operator and 0.5 ms per
batch); simulate it with ``latency_model: {roofline: {kernel_launch_us: 8,
batch_overhead_ms: 0.5}}`` or, better, with a measured profile. The CPU entry models the eager
harness that FMplex measures on CPU. ``kernel_launch_us`` is the host-side cost of dispatching
one operator, which bounds small-batch latency on fast GPUs.

``context_switch_ms`` is the cost of handing a time-sliced GPU from one process to another.
GPU preemption studies report tens to hundreds of microseconds per switch, depending on how
much kernel state is saved; 0.1 ms is the central default.

``DEVICES`` is built once at import and is read-only (a ``MappingProxyType``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from fmplex_sim.specs import DeviceSpec

_CALIBRATE = (
    "Efficiencies and overheads are defaults to be recalibrated from measured profiles."
)

_ENTRIES: tuple[DeviceSpec, ...] = (
    DeviceSpec(
        name="H100-80GB", kind="gpu", memory_gib=80.0, peak_tflops=989.0, mem_bw_gbps=3350.0,
        h2d_gbps=50.0, dtype_bytes=2, compute_eff=0.55, memory_eff=0.80, kernel_launch_us=2.0,
        kernels_per_layer=12, batch_overhead_ms=0.1, load_fixed_ms=50.0,
        extension_load_fixed_ms=5.0, context_switch_ms=0.1, process_memory_gib=0.5,
        max_slices=7,
        note="H100 SXM5: 989 TFLOPS dense bf16, 3.35 TB/s HBM3, PCIe Gen5 host link "
             "(~50 GB/s achieved), MIG up to 7 slices. " + _CALIBRATE,
    ),
    DeviceSpec(
        name="H200-141GB", kind="gpu", memory_gib=140.0, peak_tflops=989.0, mem_bw_gbps=4800.0,
        h2d_gbps=50.0, dtype_bytes=2, compute_eff=0.55, memory_eff=0.80, kernel_launch_us=2.0,
        kernels_per_layer=12, batch_overhead_ms=0.1, load_fixed_ms=50.0,
        extension_load_fixed_ms=5.0, context_switch_ms=0.1, process_memory_gib=0.5,
        max_slices=7,
        note="H200 SXM: H100 compute with 141 GB HBM3e (~140 GiB visible) at 4.8 TB/s, "
             "MIG up to 7 slices. " + _CALIBRATE,
    ),
    DeviceSpec(
        name="A100-80GB", kind="gpu", memory_gib=80.0, peak_tflops=312.0, mem_bw_gbps=2039.0,
        h2d_gbps=25.0, dtype_bytes=2, compute_eff=0.65, memory_eff=0.80, kernel_launch_us=3.0,
        kernels_per_layer=12, batch_overhead_ms=0.15, load_fixed_ms=60.0,
        extension_load_fixed_ms=5.0, context_switch_ms=0.1, process_memory_gib=0.5,
        max_slices=7,
        note="A100 SXM4 80GB: 312 TFLOPS dense bf16, 2.04 TB/s HBM2e, PCIe Gen4 host link "
             "(~25 GB/s achieved), MIG up to 7 slices. " + _CALIBRATE,
    ),
    DeviceSpec(
        name="L4-24GB", kind="gpu", memory_gib=24.0, peak_tflops=121.0, mem_bw_gbps=300.0,
        h2d_gbps=25.0, dtype_bytes=2, compute_eff=0.50, memory_eff=0.75, kernel_launch_us=3.0,
        kernels_per_layer=12, batch_overhead_ms=0.15, load_fixed_ms=60.0,
        extension_load_fixed_ms=5.0, context_switch_ms=0.1, process_memory_gib=0.5,
        max_slices=7,
        note="L4: 121 TFLOPS dense fp16 (242 with sparsity), 300 GB/s GDDR6, 72 W so clocks "
             "throttle under sustained load (lower compute_eff). No MIG: spatial slices stand "
             "for MPS partitions (active-thread percentage plus a memory limit). "
             + _CALIBRATE,
    ),
    DeviceSpec(
        name="CPU", kind="cpu", memory_gib=24.0, peak_tflops=0.16, mem_bw_gbps=18.0,
        h2d_gbps=2.0, dtype_bytes=4, compute_eff=0.6, memory_eff=0.7, kernel_launch_us=15.0,
        kernels_per_layer=12, batch_overhead_ms=2.0, load_fixed_ms=200.0,
        extension_load_fixed_ms=10.0, context_switch_ms=0.05, process_memory_gib=0.3,
        max_slices=16, cores=2,
        note="2-core x86 server host serving fp32: 2 cores x ~2.5 GHz x 32 fp32 FLOP/cycle "
             "(AVX2/AVX-512 FMA) = 0.16 TFLOPS peak, ~18 GB/s memory bandwidth for two cores. "
             "h2d_gbps is the rate of reading weights from page cache/disk into process "
             "memory; kernel_launch_us is the per-operator dispatch cost of eager PyTorch. "
             "Cores are shared, not partitioned: a spatial slice is a process pinned to its "
             "cores (round(share x cores), at least one), and slices pinned to the same core "
             "time-share it, as do co-located replicas the whole host. " + _CALIBRATE,
    ),
)

DEVICES: Mapping[str, DeviceSpec] = MappingProxyType({d.name: d for d in _ENTRIES})


def get_device(name: str) -> DeviceSpec:
    """Return the catalog device called ``name``.

    Raises ``KeyError`` whose message lists every known device name.
    """
    try:
        return DEVICES[name]
    except KeyError:
        raise KeyError(f"unknown device {name!r} (known: {', '.join(sorted(DEVICES))})") from None

"""Catalogs of backbones and devices, plus flat rows for listing them (``fmplex-sim catalog``)."""

from __future__ import annotations

from fmplex_sim.catalog.backbones import BACKBONES, SECONDARY_TOWERS, get_backbone
from fmplex_sim.catalog.devices import DEVICES, get_device
from fmplex_sim.specs import GIB

__all__ = [
    "BACKBONES",
    "DEVICES",
    "SECONDARY_TOWERS",
    "get_backbone",
    "get_device",
    "catalog_rows",
    "device_rows",
]


def catalog_rows() -> list[dict]:
    """One dict per catalog backbone, sorted by (family, params).

    Keys: name, family, modality, params, bytes (weights at fp16: 2 bytes per parameter), gib,
    layers, hidden, heads, kv_heads, decoder, default_input_len, hf_config.
    """
    rows = []
    for bb in sorted(BACKBONES.values(), key=lambda b: (b.family, b.params)):
        nbytes = bb.weight_bytes(2)
        rows.append(
            {
                "name": bb.name,
                "family": bb.family,
                "modality": bb.modality,
                "params": bb.params,
                "bytes": nbytes,
                "gib": round(nbytes / GIB, 3),
                "layers": bb.layers,
                "hidden": bb.hidden,
                "heads": bb.heads,
                "kv_heads": bb.kv_heads,
                "decoder": bb.decoder,
                "default_input_len": bb.default_input_len,
                "hf_config": bb.hf_config,
            }
        )
    return rows


def device_rows() -> list[dict]:
    """One dict per catalog device, in catalog order.

    Keys: name, kind, memory_gib, peak_tflops, mem_bw_gbps, h2d_gbps, dtype_bytes,
    compute_eff, memory_eff, max_slices.
    """
    return [
        {
            "name": d.name,
            "kind": d.kind,
            "memory_gib": d.memory_gib,
            "peak_tflops": d.peak_tflops,
            "mem_bw_gbps": d.mem_bw_gbps,
            "h2d_gbps": d.h2d_gbps,
            "dtype_bytes": d.dtype_bytes,
            "compute_eff": d.compute_eff,
            "memory_eff": d.memory_eff,
            "max_slices": d.max_slices,
        }
        for d in DEVICES.values()
    ]

"""Backbone and device catalogs: required entries, coverage, consistency, read-only, lookups."""

from __future__ import annotations

import pytest

from fmplex_sim.catalog import (
    BACKBONES,
    DEVICES,
    SECONDARY_TOWERS,
    catalog_rows,
    device_rows,
    get_backbone,
    get_device,
)

REQUIRED = ["minilm-l6", "bert-base", "bert-large", "vit-base", "vit-large", "chronos-t5-small",
            "chronos-t5-base", "clip-vit-b16", "llama-3.2-1b"]


def test_required_backbones_exist():
    for name in REQUIRED:
        assert get_backbone(name).name == name


def test_minilm_numbers_match_its_public_config():
    bb = get_backbone("minilm-l6")
    assert (bb.layers, bb.hidden, bb.heads, bb.intermediate, bb.vocab) == (6, 384, 12, 1536, 30522)
    assert bb.params == 22_700_000
    assert bb.hf_config == "sentence-transformers/all-MiniLM-L6-v2"


def test_coverage_families_variants_modalities():
    families = {b.family for b in BACKBONES.values()}
    assert len(families) >= 7
    assert len(BACKBONES) >= 16
    assert {b.modality for b in BACKBONES.values()} == {"language", "vision", "timeseries",
                                                        "multimodal"}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_entries_are_consistent(name):
    bb = BACKBONES[name]
    assert bb.name == name
    assert bb.hf_config, "every entry names its public configuration"
    assert bb.params > 0 and bb.layers > 0 and bb.hidden > 0 and bb.intermediate > 0
    assert 1 <= bb.kv_heads <= bb.heads and bb.heads % bb.kv_heads == 0
    assert 0 < bb.default_input_len <= bb.max_positions
    if bb.modality in ("vision", "multimodal"):
        assert bb.vocab == 0  # patch-embedding inputs
    if bb.decoder:
        assert bb.modality == "language"


def test_architectural_details_of_selected_entries():
    llama = get_backbone("llama-3.2-1b")
    assert llama.decoder and llama.gated_mlp and llama.kv_heads == 8 and llama.kv_dim == 512
    assert get_backbone("bert-base").decoder is False
    assert [get_backbone(v).default_input_len for v in ("vit-base", "vit-large", "vit-huge")] == [
        197, 197, 257]
    chronos = get_backbone("chronos-t5-small")
    assert not chronos.decoder and "decoder" in chronos.note
    clip = get_backbone("clip-vit-b16")
    assert "vision tower" in clip.note and clip.name in SECONDARY_TOWERS


def test_catalogs_are_read_only():
    with pytest.raises(TypeError):
        BACKBONES["x"] = BACKBONES["bert-base"]  # type: ignore[index]
    with pytest.raises(TypeError):
        DEVICES["x"] = DEVICES["CPU"]  # type: ignore[index]


def test_unknown_names_raise_keyerror_listing_known_names():
    with pytest.raises(KeyError, match="bert-base"):
        get_backbone("bert-huge")
    with pytest.raises(KeyError, match="H100-80GB"):
        get_device("TPU")


def test_required_devices_and_their_numbers():
    h100 = get_device("H100-80GB")
    assert (h100.peak_tflops, h100.mem_bw_gbps, h100.memory_gib, h100.h2d_gbps) == (
        989.0, 3350.0, 80.0, 50.0)
    a100 = get_device("A100-80GB")
    assert (a100.peak_tflops, a100.mem_bw_gbps) == (312.0, 2039.0)
    l4 = get_device("L4-24GB")
    assert (l4.peak_tflops, l4.mem_bw_gbps, l4.memory_gib) == (121.0, 300.0, 24.0)
    h200 = get_device("H200-141GB")
    assert h200.mem_bw_gbps > h100.mem_bw_gbps and h200.memory_gib > h100.memory_gib
    cpu = get_device("CPU")
    assert cpu.kind == "cpu" and cpu.dtype_bytes == 4 and cpu.max_slices == 16 and cpu.cores == 2
    assert 0.1 <= cpu.peak_tflops <= 0.2 and 15 <= cpu.mem_bw_gbps <= 20
    assert cpu.memory_gib == 24 and cpu.batch_overhead_ms > h100.batch_overhead_ms
    assert cpu.process_memory_gib < h100.process_memory_gib


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_device_entries_are_sane(name):
    d = DEVICES[name]
    assert d.name == name
    assert 0 < d.compute_eff <= 1 and 0 < d.memory_eff <= 1
    assert d.kernel_launch_us > 0 and d.kernels_per_layer > 0 and d.max_slices >= 1
    assert "recalibrated" in d.note


def test_catalog_rows_and_device_rows():
    rows = catalog_rows()
    assert len(rows) == len(BACKBONES)
    by_name = {r["name"]: r for r in rows}
    bert = by_name["bert-base"]
    assert bert["bytes"] == 2 * bert["params"]
    assert {"name", "family", "modality", "params", "bytes", "layers", "hidden"} <= set(bert)
    devs = device_rows()
    assert [d["name"] for d in devs] == list(DEVICES)
    assert {"name", "kind", "memory_gib", "peak_tflops", "mem_bw_gbps"} <= set(devs[0])

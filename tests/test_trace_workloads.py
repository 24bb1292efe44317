"""Traces and synthetic generators as workloads: config, template expansion, shaping order,
trace-driven runs of all three systems, the trace CLI, and the samples in traces/samples."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_cfg
from fmplex_sim.cli import main
from fmplex_sim.config import parse_config
from fmplex_sim.errors import InputError
from fmplex_sim.run import prepare, simulate
from fmplex_sim.traces import load_trace

ROOT = Path(__file__).resolve().parents[1]
from conftest import PUBLIC_TRACES as TRACES  # noqa: E402
SAMPLES = ROOT / "traces" / "samples"
AZURE_CONV = TRACES / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
ALIBABA = TRACES / "alibaba-genai-2026" / "lora_request_trace.csv"


def trace_raw(base_raw, path, fmt="azure-llm-2023", **workload) -> dict:
    raw = copy.deepcopy(base_raw)
    raw.pop("duration_s")
    raw["workload"] = {"trace": {"format": fmt, "path": str(path)}, **workload}
    for t in raw["tasks"]:
        t.pop("arrival")
    return raw


# ----------------------------------------------------------------------------- config
def test_template_expansion_names_and_cycles_templates(base_raw, traces):
    cfg = make_cfg(trace_raw(base_raw, AZURE_CONV, tasks={"count": 5}))
    assert [t.name for t in cfg.tasks] == ["a-0", "b-1", "a-2", "b-3", "a-4"]
    assert [t.extensions for t in cfg.tasks[::2]] == [cfg.templates[0].extensions] * 3
    # The saved config keeps the templates, so it re-runs to the same tasks.
    again = parse_config(cfg.to_dict(), "saved.yaml")
    assert again.tasks == cfg.tasks


def test_total_rate_split_across_generated_tasks_by_zipf(base_raw):
    raw = copy.deepcopy(base_raw)
    raw["workload"] = {"tasks": {"count": 6, "popularity": {"zipf": 1.0}}, "total_rps": 120}
    cfg = make_cfg(raw)
    rates = [t.arrival.rate_rps for t in cfg.tasks]
    assert sum(rates) == pytest.approx(120)
    expected = 120 * np.array([1 / (k + 1) for k in range(6)]) / sum(1 / (k + 1) for k in range(6))
    assert rates == pytest.approx(list(expected))
    assert [t.arrival.process for t in cfg.tasks] == ["poisson", "gamma"] * 3  # from the templates


@pytest.mark.parametrize("workload,where", [
    ({"trace": {"format": "parquet", "path": "x"}}, "workload.trace.format"),
    ({"trace": {"format": "azure-llm-2023", "path": "no/such.csv"}}, "workload.trace.path"),
    ({"trace": {"format": "azure-llm-2023"}}, "workload.trace.path"),
    ({"rate_scale": 2.0}, "workload.rate_scale"),
    ({"window": {"start_s": 0}}, "workload.window"),
    ({"tasks": {"count": 0}}, "workload.tasks.count"),
    ({"tasks": {"popularity": {"zipf": -1}}}, "workload.tasks.popularity.zipf"),
    ({"tasks": {"popularity": "pareto"}}, "workload.tasks.popularity"),
    ({"tasks": {"map_backbones": True}}, "workload.tasks.map_backbones"),
    ({"total_rps": -5}, "workload.total_rps"),
    ({"burstiness": 2}, "workload.burstiness"),
])
def test_workload_section_errors_name_the_key(base_raw, workload, where):
    raw = copy.deepcopy(base_raw)
    raw["workload"] = workload
    with pytest.raises(InputError, match=f"test.yaml: {where}"):
        make_cfg(raw)


def test_trace_options_are_validated(base_raw, traces):
    for workload, where in [
        ({"rate_scale": 0}, "workload.rate_scale"),
        ({"burstiness_scale": -1}, "workload.burstiness_scale"),
        ({"window": {"start_s": 0, "duration_s": 0}}, "workload.window.duration_s"),
        ({"max_requests": 0}, "workload.max_requests"),
        ({"total_rps": 10}, "workload.total_rps"),
    ]:
        with pytest.raises(InputError, match=where):
            make_cfg(trace_raw(base_raw, AZURE_CONV, **workload))
    raw = trace_raw(base_raw, AZURE_CONV)
    raw["workload"]["trace"]["input_len"] = 100
    with pytest.raises(InputError, match="workload.trace.input_len: only for servegen"):
        make_cfg(raw)


def test_window_past_the_end_of_the_trace_is_one_line_error(base_raw, traces):
    cfg = make_cfg(trace_raw(base_raw, AZURE_CONV, window={"start_s": 99999, "duration_s": 10}))
    with pytest.raises(InputError, match="workload.window"):
        prepare(cfg)


# ----------------------------------------------------------------------------- semantics
def test_window_then_rate_scale_and_task_assignment(base_raw, traces):
    raw = trace_raw(base_raw, AZURE_CONV, tasks={"count": 8, "popularity": {"zipf": 1.1}},
                    rate_scale=2.0, window={"start_s": 600, "duration_s": 600})
    cfg, wl, info = prepare(make_cfg(raw))
    full = load_trace("azure", str(AZURE_CONV))
    inside = (full.arrival_s >= 600) & (full.arrival_s < 1200)
    assert len(wl) == int(inside.sum())  # the window selects in trace time...
    assert cfg.duration_s == pytest.approx(300.0)  # ...then rate_scale 2 halves it
    np.testing.assert_allclose(wl.arrival_s, np.sort((full.arrival_s[inside] - 600) / 2), atol=1e-9)
    counts = np.bincount(wl.task, minlength=8)
    assert counts[0] == counts.max()  # task 0 is the most popular under Zipf
    assert wl.tasks == tuple(t.name for t in cfg.tasks)
    # BERT's 512 positions truncate long conversation inputs; encoders generate nothing.
    assert wl.input_len.max() <= 512 and wl.output_len.max() == 0
    assert info["inputs_truncated"] == int((full.input_len[inside] > 512).sum())
    # Same seed, same stream; another seed assigns tasks differently.
    _, wl2, _ = prepare(make_cfg(raw))
    np.testing.assert_array_equal(wl.task, wl2.task)
    raw["seed"] = 99
    _, wl3, _ = prepare(make_cfg(raw))
    assert not np.array_equal(wl.task, wl3.task)


def test_burstiness_scale_raises_the_cv_and_keeps_the_count(base_raw, traces):
    raw = trace_raw(base_raw, AZURE_CONV, tasks={"count": 1}, window={"start_s": 0, "duration_s": 1800})
    _, calm, _ = prepare(make_cfg(raw))
    raw["workload"]["burstiness_scale"] = 3.0
    _, bursty, _ = prepare(make_cfg(raw))
    cv = lambda a: np.diff(a).std() / np.diff(a).mean()  # noqa: E731
    assert len(bursty) == len(calm)
    assert cv(bursty.arrival_s) == pytest.approx(3 * cv(calm.arrival_s), rel=0.15)


def test_alibaba_tenants_become_tasks_and_base_models_pick_backbones(base_raw, traces):
    raw = trace_raw(base_raw, ALIBABA, fmt="alibaba-genai-2026",
                    tasks={"count": 12, "map_backbones": True}, rate_scale=5000)
    raw["tasks"][1]["backbone"] = "vit-base"
    cfg, wl, info = prepare(make_cfg(raw))
    assert len(cfg.tasks) == 12
    full = load_trace("alibaba", str(ALIBABA))
    counts = np.bincount(full.task)
    top = np.sort(counts)[::-1][:12]
    np.testing.assert_array_equal(np.sort(np.bincount(wl.task, minlength=12))[::-1], top)
    assert {t.backbone for t in cfg.tasks} <= {"bert-base", "vit-base"}
    assert info["shaped"]["tasks"] == 12


def test_trace_driven_compare_runs_all_three_systems(tmp_path, base_raw, traces, capsys):
    import yaml

    raw = trace_raw(base_raw, AZURE_CONV, tasks={"count": 6, "popularity": {"zipf": 1.0}},
                    window={"start_s": 300, "duration_s": 120}, rate_scale=1.5)
    cfg_path = tmp_path / "trace.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "cmp"
    assert main(["compare", str(cfg_path), "--out", str(out)]) == 0
    rows = (out / "comparison.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["spatial", "colocate", "fmplex"]
    arrived = {json.loads((out / s / "summary.json").read_text())["requests"]["arrived"]
               for s in ("spatial", "colocate", "fmplex")}
    assert len(arrived) == 1  # the identical stream under every system
    info = json.loads((out / "fmplex" / "workload.json").read_text())
    assert info["shaped"]["requests"] == arrived.pop()
    assert info["duration_s"] == pytest.approx(80.0)


def test_synthetic_onoff_and_diurnal_processes_in_a_run(base_raw):
    raw = copy.deepcopy(base_raw)
    raw["tasks"][0]["arrival"] = {"process": "onoff", "rate_rps": 40, "on_s": 1, "off_s": 3}
    raw["tasks"][1]["arrival"] = {"process": "diurnal", "rate_rps": 30, "amplitude": 0.9, "period_s": 10}
    out = simulate(make_cfg(raw, duration_s=40))
    s = out.summary["per_task"]
    assert s["a"]["arrived"] == pytest.approx(40 * 40, rel=0.2)
    assert s["b"]["arrived"] == pytest.approx(30 * 40, rel=0.15)


# ----------------------------------------------------------------------------- CLI
def test_trace_info_reports_counts_and_rates(traces, capsys):
    assert main(["trace", "info", str(AZURE_CONV), "--format", "azure-llm-2023", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["requests"] == 19366
    assert s["mean_rate_rps"] == pytest.approx(19366 / 3501.72, rel=1e-3)
    assert s["tasks"] is None and s["input_len"]["max"] == 14050
    assert main(["trace", "info", str(ALIBABA), "--format", "alibaba", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["requests"], s["tasks"]) == (26823, 4247)
    assert s["top_tasks"][0]["task"] == "G0264"


def test_trace_convert_round_trips_through_native(tmp_path, traces, capsys):
    out = tmp_path / "conv.csv"
    args = ["trace", "convert", str(AZURE_CONV), "--format", "azure", "--out", str(out),
            "--window-start", "100", "--window-duration", "200", "--tasks", "4", "--zipf", "1.2",
            "--rate-scale", "4", "--seed", "3"]
    assert main(args) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(["trace", "info", str(out), "--format", "native", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    full = load_trace("azure", str(AZURE_CONV))
    assert s["requests"] == int(((full.arrival_s >= 100) & (full.arrival_s < 300)).sum())
    assert s["tasks"] == 4
    back = load_trace("native", str(out))
    assert back.arrival_s.max() < 50.0  # 200 s of trace at 4x
    out.write_text("stale")
    assert main(args) == 0  # converting again replaces the file, byte for byte the same
    assert out.read_bytes() == first


@pytest.mark.parametrize("args,needle", [
    (["--format", "csv"], "--format: csv: unknown trace format"),
    (["--format", "azure", "--rate-scale", "0"], "--rate-scale"),
    (["--format", "azure", "--tasks", "0"], "--tasks"),
    (["--format", "azure", "--zipf", "-1"], "--zipf"),  # the option is named, not the config key it feeds
    (["--format", "azure", "--window-start", "1e9"], "--window-start"),
])
def test_trace_convert_errors_exit_2_and_write_nothing(tmp_path, capsys, args, needle):
    src = SAMPLES / "azure_like.csv"
    out = tmp_path / "out.csv"
    assert main(["trace", "convert", str(src), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert list(tmp_path.iterdir()) == []


def test_malformed_trace_in_a_config_exits_2_naming_file_and_line(tmp_path, base_raw, capsys):
    import yaml

    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,12,3\n2023-11-16 18:15:47.00,abc,3\n")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(trace_raw(base_raw, bad)))
    assert main(["run", str(cfg_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv: line 3" in err[0] and "abc" in err[0]
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- samples
@pytest.mark.parametrize("name,fmt", [
    ("native_zipf_onoff.csv", "native"), ("azure_like.csv", "azure"),
    ("mooncake_like.jsonl", "mooncake"), ("alibaba_like.csv", "alibaba"), ("servegen_like", "servegen"),
])
def test_samples_load_and_stay_small(name, fmt):
    path = SAMPLES / name
    files = [path] if path.is_file() else sorted(path.iterdir())
    assert all(f.stat().st_size < 1_000_000 for f in files)
    tr = load_trace(fmt, str(path), seed=1)
    assert len(tr) > 0 and np.all(np.diff(tr.arrival_s) >= 0)


def test_servegen_info_reports_recorded_totals_without_generating(traces, capsys):
    folder = traces / "servegen-m-small"
    assert main(["trace", "info", str(folder), "--format", "servegen", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    expected = 0.0
    for f in folder.glob("chunk-*-trace.csv"):
        rows = np.loadtxt(f, delimiter=",", usecols=(0, 1), ndmin=2)
        expected += (rows[:, 1] * 600).sum()
    assert s["requests"] == round(expected) and s["generated"] is False
    assert (s["tasks"], s["duration_s"]) == (43, 1_209_600.0)
    assert s["mean_rate_rps"] == pytest.approx(expected / 1_209_600, rel=1e-6)
    # A short window is generated: its count is close to the recorded one.
    assert main(["trace", "info", str(folder), "--format", "servegen", "--json",
                 "--window-start", "36000", "--window-duration", "60"]) == 0
    w = json.loads(capsys.readouterr().out)
    assert "generated" not in w and w["tasks"] == 43 and w["requests"] > 0


def test_a_trace_run_over_its_own_span_keeps_its_last_request(tmp_path):
    """With duration_s left to the trace, the window is the trace's span, last request included
    (it was dropped: the window was half-open at the last arrival)."""
    from fmplex_sim.config import parse_config
    from fmplex_sim.run import prepare

    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,task,input_len\n0,a,3\n1,a,4\n2,a,4\n")
    raw = {"seed": 1, "workload": {"trace": {"format": "native", "path": str(trace)}},
           "tasks": [{"name": "a", "backbone": "bert-base"}]}
    cfg, wl, _ = prepare(parse_config(raw, "t.yaml"))
    assert len(wl) == 3 and cfg.duration_s == 2.0
    raw["duration_s"] = 2.0  # a window the user sets stays half-open
    assert len(prepare(parse_config(raw, "t.yaml"))[1]) == 2


def _native_names_cfg(tmp_path, rows: str, names=("a", "b")):
    (tmp_path / "t.csv").write_text("arrival_s,task,input_len\n" + rows)
    return parse_config({
        "seed": 1, "duration_s": 1, "drain_s": 1, "cluster": {"device": "L4-24GB", "gpus": 1},
        "workload": {"trace": {"format": "native", "path": str(tmp_path / "t.csv")}},
        "tasks": [{"name": names[0], "backbone": "bert-base", "slo_ms": 50},
                  {"name": names[1], "backbone": "vit-base", "slo_ms": 50}]}, "c.yaml")


def test_a_native_trace_naming_the_configs_tasks_is_matched_by_name(tmp_path):
    """Its rows used to go to config task k by popularity rank: the three 'b' rows ran as 'a'
    on a's backbone and the 'a' row as 'b'."""
    cfg, wl, info = prepare(_native_names_cfg(tmp_path, "0.1,b,16\n0.2,b,16\n0.3,a,16\n0.4,b,16\n"))
    assert [wl.tasks[k] for k in wl.task.tolist()] == ["b", "b", "a", "b"]
    assert info["tasks_matched_by"] == "name"
    # names the config does not have: popularity rank, as documented (most requested -> tasks[0])
    cfg, wl, info = prepare(_native_names_cfg(tmp_path, "0.1,y,16\n0.2,y,16\n0.3,x,16\n", names=("a", "b")))
    assert [wl.tasks[k] for k in wl.task.tolist()] == ["a", "a", "b"] and info["tasks_matched_by"] == "popularity"


def test_a_zipf_popularity_on_a_trace_with_task_ids_is_refused(tmp_path, capsys):
    """It was ignored without a word: such a trace keeps its own most requested tasks."""
    cfg = _native_names_cfg(tmp_path, "0.1,y,16\n0.2,y,16\n0.3,x,16\n")
    cfg = parse_config(dict(cfg.to_dict(), workload={**cfg.to_dict()["workload"], "tasks": {"popularity": {"zipf": 1.1}}}), "c.yaml")
    with pytest.raises(InputError, match="workload.tasks.popularity"):
        prepare(cfg)
    assert main(["trace", "convert", str(tmp_path / "t.csv"), "--format", "native", "--zipf", "1.1",
                 "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--zipf" in err[0] and not (tmp_path / "o.csv").exists()

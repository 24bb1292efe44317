"""The wall-clock runtime: replays on real models under all three systems write the
simulator's schema and accounting, and drive the simulator's own scheduler classes."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import yaml

pytest.importorskip("torch", reason="the execution harness needs the exec extra")

from fmplex_exec.cli import main  # noqa: E402
from fmplex_sim.records import RECORD_COLUMNS  # noqa: E402

CONFIG = {
    "seed": 2,
    "duration_s": 3,
    "drain_s": 60,  # generous: the replay ends as soon as its queues drain
    "cluster": {"device": "CPU", "gpus": 1},
    "latency_model": "roofline",
    "system": "fmplex",
    "tasks": [
        {"name": "sst2", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 32,
         "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
         "arrival": {"process": "poisson", "rate_rps": 6}},
        {"name": "intent", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 16,
         "extensions": [{"kind": "lora", "rank": 4}, {"kind": "head", "outputs": 10}],
         "arrival": {"process": "poisson", "rate_rps": 6}},
        {"name": "topic", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 24,
         "extensions": [{"kind": "head", "outputs": 5}],
         "arrival": {"process": "poisson", "rate_rps": 6}},
    ],
}


@pytest.mark.parametrize("system", ["fmplex", "colocate", "spatial"])
def test_replay_writes_the_simulators_schema(tmp_path, system, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(copy.deepcopy(CONFIG)))
    out = tmp_path / system
    assert main(["replay", str(cfg), "--out", str(out), "--set", f"system={system}"]) == 0
    for name in ("config.yaml", "provenance.json", "requests.csv", "summary.json", "workload.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "requests.csv")))
    assert tuple(rows[0]) == RECORD_COLUMNS
    s = json.loads((out / "summary.json").read_text())
    assert s["system"]["name"] == system and s["cluster"]["engine"] == "fmplex_exec"
    req = s["requests"]
    assert req["arrived"] == len(rows) == req["completed"] + req["rejected"] + req["unfinished"]
    assert req["completed"] == req["arrived"] > 0
    if system == "spatial":
        # Three processes pinned round robin to the host's cores (slices 0, 1, 2 of 16).
        assert s["cluster"]["tasks_unplaced"] == 0 and s["cluster"]["instances"] == 3
    done = [r for r in rows if r["status"] == "completed"]
    assert all(float(r["finish_s"]) >= float(r["start_s"]) >= float(r["arrival_s"]) - 1e-6 for r in done)
    if system == "fmplex":  # one shared backbone; batches may mix tasks
        assert {r["instance"] for r in done} == {"g0/minilm-l6"}
    else:  # dedicated replicas batch only their own task
        by_batch: dict[str, set] = {}
        for r in done:
            by_batch.setdefault(r["batch_id"], set()).add(r["task"])
        assert all(len(t) == 1 for t in by_batch.values())


def test_replay_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = copy.deepcopy(CONFIG)
    bad["tasks"][0]["backbone"] = "bert-huge"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    assert main(["replay", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tasks[0].backbone" in err[0]
    assert not (tmp_path / "r").exists()


def test_isolation_replays_the_shared_stream_alone_and_without_the_noisy_task(tmp_path, capsys):
    """fmplex-exec isolation: every run a results folder of the harness; each alone run replays
    exactly the shared run's requests of its task; the report is the simulator's."""
    import threading

    raw = copy.deepcopy(CONFIG)
    raw["duration_s"] = 1.5
    raw["tasks"][0]["arrival"]["rate_rps"] = 200.0  # sst2 floods the backbone
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "iso"
    before = threading.active_count()
    assert main(["isolation", str(cfg), "--noisy", "sst2", "--out", str(out)]) == 0
    # Past the horizon no batch starts and the running one is waited for: nothing outlives the runs.
    assert threading.active_count() == before
    rep = json.loads((out / "isolation.json").read_text())
    assert rep["engine"] == "fmplex_exec" and set(rep["systems"]["fmplex"]["tasks"]) == {"sst2", "intent", "topic"}

    def arrivals(run, task):
        return [r["arrival_s"] for r in csv.DictReader(open(out / "fmplex" / run / "requests.csv")) if r["task"] == task]

    for task in ("intent", "topic"):
        s = json.loads((out / "fmplex" / "alone" / task / "summary.json").read_text())
        assert s["cluster"]["engine"] == "fmplex_exec" and list(s["per_task"]) == [task]
        assert arrivals(f"alone/{task}", task) == arrivals("shared", task) != []
        assert rep["systems"]["fmplex"]["tasks"][task]["p99_alone_ms"] == s["per_task"][task]["latency_ms"]["p99"]
    assert arrivals("without-noisy", "sst2") == []
    shared = json.loads((out / "fmplex" / "shared" / "summary.json").read_text())
    assert shared["requests"]["unfinished"] > 0  # the flood's queue at the horizon: not served after it

"""``fmplex-sim isolation``: the noisy-neighbour report of any config.

The report's arithmetic is checked on hand-made summaries (fair shares, who counts as
backlogged, the three targets); the command end to end on a small CPU scenario: the alone runs
replay exactly the shared run's requests of their task, bfq meets the share target and fifo
breaks it, the report agrees with the results folders it wrote, and a rerun is byte-identical.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fmplex_sim.cli import main
from fmplex_sim.config import parse_config
from fmplex_sim.isolation import only_tasks, report, task_groups
from fmplex_sim.run import prepare

PROFILE = str(Path(__file__).resolve().parents[1] / "profiles" / "cpu-2core" / "minilm-l6.csv")


def summary(per_task: dict) -> dict:
    """A summary with the fields the report reads: (weight, service_s, unserved of 100 arrived,
    p99) per task."""
    return {
        "system": {"name": "x"},
        "per_task": {
            t: {"weight": w, "service_s": s, "arrived": 100, "completed": 100 - u, "rejected": u // 2,
                "latency_ms": {"p99": p}}
            for t, (w, s, u, p) in per_task.items()
        },
    }


def alone(task: str, p99: float) -> dict:
    return summary({task: (1.0, 0.1, 0, p99)})


ONE_INSTANCE = {"instances": [{"tasks": ["flood", "heavy", "light"]}]}


def test_fair_share_is_what_the_light_tasks_leave_split_by_weight():
    # 10 s of backbone time: light (5 of 100 unserved: not backlogged) took 1 s; flood (w 1)
    # and heavy (w 2, 6 of 100 unserved) were backlogged, so their fair shares are 9 s x 1/3 = 3 s and 9 s x 2/3 = 6 s.
    shared = summary({"flood": (1, 5.0, 80, 900.0), "heavy": (2, 4.0, 6, 800.0), "light": (1, 1.0, 5, 20.0)})
    rep = report("flood", shared, ONE_INSTANCE, {"heavy": alone("heavy", 30.0), "light": alone("light", 10.0)}, None)
    t = rep["tasks"]
    assert [t[n]["backlogged"] for n in ("flood", "heavy", "light")] == [True, True, False]
    assert t["flood"]["fair_share_s"] == 3.0 and t["heavy"]["fair_share_s"] == 6.0
    assert t["heavy"]["share_ratio"] == pytest.approx(4 / 6, abs=1e-4)
    assert t["light"]["fair_share_s"] is None
    assert t["light"]["share_of_all_ratio"] == pytest.approx(1.0 / (10 * 1 / 4))  # weight 1 of 4
    assert t["light"]["p99_vs_alone"] == 2.0
    tg = rep["targets"]
    # heavy gets 0.67x of its share (the flood, not judged, took 1.67x): not met
    assert not tg["share_within_10pct"]["met"] and tg["share_within_10pct"]["failing"] == ["heavy"]
    assert not tg["p99_within_1_5x_alone"]["met"] and tg["p99_within_1_5x_alone"]["worst"] == 2.0
    assert tg["light_within_weighted_share"]["met"]


def test_targets_are_met_when_shares_hold_and_light_p99_stays_close_to_alone():
    shared = summary({"flood": (1, 3.0, 80, 900.0), "heavy": (2, 6.05, 40, 800.0), "light": (1, 0.95, 1, 14.0)})
    rep = report("flood", shared, ONE_INSTANCE, {"heavy": alone("heavy", 30.0), "light": alone("light", 10.0)}, None)
    assert all(v["met"] for v in rep["targets"].values()), rep["targets"]
    assert rep["targets"]["share_within_10pct"]["judged"] == ["heavy"]  # the noisy task is not judged
    assert rep["targets"]["p99_within_1_5x_alone"]["judged"] == ["light"]  # nor a backlogged one's p99


def test_a_light_task_that_takes_more_than_its_weighted_share_is_flagged():
    shared = summary({"flood": (1, 4.0, 70, 900.0), "light": (1, 6.0, 0, 11.0)})
    rep = report("flood", shared, {"instances": [{"tasks": ["flood", "light"]}]}, {"light": alone("light", 10.0)}, None)
    assert rep["tasks"]["light"]["share_of_all_ratio"] == 1.2
    assert rep["targets"]["p99_within_1_5x_alone"]["met"]
    assert not rep["targets"]["light_within_weighted_share"]["met"]


def test_tasks_compete_only_within_their_instances():
    # a and c share no instance with d; b bridges a's and c's instances; e is placed nowhere
    placement = {"instances": [{"tasks": ["a", "b"]}, {"tasks": ["b", "c"]}, {"tasks": ["d"]}]}
    assert task_groups(placement, ["a", "b", "c", "d", "e"]) == [["a", "b", "c"], ["d"], ["e"]]
    shared = summary({"a": (1, 2.0, 50, 5.0), "b": (1, 2.0, 50, 5.0), "c": (1, 1.0, 0, 5.0),
                      "d": (1, 9.0, 50, 5.0), "e": (1, 0.0, 100, 0.0)})
    rep = report("a", shared, placement, {}, None)
    assert rep["tasks"]["b"]["fair_share_s"] == 2.0  # (5 - 1) / 2, not counting d's time
    assert rep["tasks"]["d"]["fair_share_s"] is None  # alone on its instance: nothing to share
    assert rep["tasks"]["e"]["group"] == "e"


SCENARIO = {
    "seed": 3, "duration_s": 3.0, "drain_s": 0,
    "cluster": {"device": "CPU", "gpus": 1}, "latency_model": {"profile": PROFILE},
    "system": {"placement": "fmplex", "scheduler": "bfq", "max_batch": 16},
    "tasks": [{"name": n, "backbone": "minilm-l6", "slo_ms": 1000, "input_len": 16,
               "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
               "arrival": {"process": "poisson", "rate_rps": r}}
              for n, r in (("flood", 560.0), ("heavy", 140.0), ("light", 17.0))],
}


def test_only_tasks_keeps_exactly_the_requests_of_the_kept_tasks():
    cfg, wl, _ = prepare(parse_config(SCENARIO, "s.yaml"))
    sub_cfg, sub = only_tasks(cfg, wl, ["light", "flood"])
    assert [t.name for t in sub_cfg.tasks] == ["flood", "light"] and sub.tasks == ("flood", "light")
    for k, name in enumerate(sub.tasks):
        theirs = wl.task == wl.tasks.index(name)
        np.testing.assert_array_equal(sub.arrival_s[sub.task == k], wl.arrival_s[theirs])
        np.testing.assert_array_equal(sub.input_len[sub.task == k], wl.input_len[theirs])
    assert len(sub) == int(np.sum(wl.task != wl.tasks.index("heavy")))


def _arrivals(folder: Path, task: str) -> list[str]:
    with open(folder / "requests.csv") as fh:
        return [r["arrival_s"] for r in csv.DictReader(fh) if r["task"] == task]


@pytest.fixture(scope="module")
def isolation_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("iso")
    cfg = d / "noisy.yaml"
    cfg.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    out = d / "res"
    rc = main(["isolation", str(cfg), "--noisy", "flood", "--out", str(out), "--systems", "fmplex,fmplex-fifo"])
    assert rc == 0
    return cfg, out, json.loads((out / "isolation.json").read_text())


def test_isolation_writes_every_run_and_the_report(isolation_run):
    _, out, rep = isolation_run
    assert set(rep["systems"]) == {"fmplex", "fmplex-fifo"} and rep["noisy"] == "flood"
    for system in rep["systems"]:
        for run in ("shared", "alone/heavy", "alone/light", "without-noisy"):
            assert (out / system / run / "summary.json").is_file(), run
        assert not (out / system / "alone" / "flood").exists()
    assert (out / "provenance.json").is_file()


def test_alone_runs_replay_the_shared_runs_requests_of_their_task(isolation_run):
    _, out, _ = isolation_run
    for task in ("heavy", "light"):
        mine = _arrivals(out / "fmplex" / "alone" / task, task)
        assert mine and mine == _arrivals(out / "fmplex" / "shared", task)
    assert _arrivals(out / "fmplex" / "without-noisy", "flood") == []


def test_report_agrees_with_the_results_folders(isolation_run):
    _, out, rep = isolation_run
    r = rep["systems"]["fmplex"]["tasks"]["light"]
    shared = json.loads((out / "fmplex" / "shared" / "summary.json").read_text())["per_task"]["light"]
    solo = json.loads((out / "fmplex" / "alone" / "light" / "summary.json").read_text())["per_task"]["light"]
    assert r["p99_ms"] == shared["latency_ms"]["p99"] and r["p99_alone_ms"] == solo["latency_ms"]["p99"]
    assert r["service_s"] == pytest.approx(shared["service_s"], abs=1e-4)


def test_bfq_keeps_the_share_fifo_gives_it_to_the_noisy_task(isolation_run):
    _, _, rep = isolation_run
    bfq, fifo = rep["systems"]["fmplex"], rep["systems"]["fmplex-fifo"]
    assert bfq["targets"]["share_within_10pct"]["met"] and bfq["targets"]["share_within_10pct"]["judged"] == ["heavy"]
    assert not bfq["tasks"]["light"]["backlogged"]
    assert fifo["tasks"]["flood"]["share_ratio"] > 1.3
    assert not fifo["targets"]["share_within_10pct"]["met"]


def test_isolation_is_deterministic(isolation_run, tmp_path):
    cfg, _, rep = isolation_run
    out = tmp_path / "again"
    assert main(["isolation", str(cfg), "--noisy", "flood", "--out", str(out), "--systems", "fmplex,fmplex-fifo"]) == 0
    assert json.loads((out / "isolation.json").read_text()) == rep


def test_a_config_with_one_task_has_nobody_to_protect(tmp_path, capsys):
    one = dict(SCENARIO, tasks=SCENARIO["tasks"][:1])
    cfg = tmp_path / "one.yaml"
    cfg.write_text(yaml.safe_dump(one))
    assert main(["isolation", str(cfg), "--noisy", "flood", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--noisy" in err and "no other task" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_target_with_no_task_to_judge_is_neither_met_nor_failed():
    """Under fifo at overload every neighbour is backlogged: the p99 target judged nobody and
    used to say met."""
    shared = summary({"flood": (1, 3.0, 80, 900.0), "heavy": (2, 6.05, 40, 800.0)})
    rep = report("flood", shared, ONE_INSTANCE, {"heavy": alone("heavy", 30.0)}, None)
    for key in ("p99_within_1_5x_alone", "light_within_weighted_share"):
        assert rep["targets"][key]["judged"] == [] and rep["targets"][key]["met"] is None
    assert rep["targets"]["share_within_10pct"]["met"] is True

"""``fmplex-sim capacity``: the search answer on cases that can be reasoned about, a search
record consistent with its answer, probes equal to runs of the same tasks, one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fmplex_sim.capacity import capacity, first_tasks, search
from fmplex_sim.cli import main
from fmplex_sim.config import load_config
from fmplex_sim.run import prepare, simulate

# Ten light tasks with a generous SLO: only placement limits how many fit.
POOL = "seed: 2\nduration_s: 2\ndrain_s: 1\ncluster: {device: H100-80GB, gpus: 1}\nsystem: fmplex\ntasks:\n" + "".join(
    f"  - {{name: t{i}, backbone: {bb}, slo_ms: 1000, arrival: {{rate_rps: 5}}}}\n"
    for i, bb in enumerate(["bert-base", "bert-base", "minilm-l6", "bert-base", "bert-base",
                            "minilm-l6", "bert-base", "bert-base", "bert-base", "vit-base"])
)
# Eight busy tasks on an L4 with a tight SLO: load limits how many fit.
LOADED = "seed: 1\nduration_s: 3\ndrain_s: 2\ncluster: {device: L4-24GB, gpus: 1}\nsystem: fmplex\ntasks:\n" + "".join(
    f"  - {{name: t{i}, backbone: bert-base, slo_ms: 30, input_len: 256, arrival: {{rate_rps: 150}}}}\n"
    for i in range(8)
)
FILES = {"capacity.json", "config.yaml", "provenance.json"}


@pytest.fixture
def pool(tmp_path) -> Path:
    p = tmp_path / "pool.yaml"
    p.write_text(POOL)
    return p


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def found(capsys, cfg_path: Path, out: Path, system: str, target: float = 0.99, *extra) -> dict:
    rc, stdout, err = cli(capsys, "capacity", cfg_path, "--system", system, "--slo-attainment", target,
                          "--out", out, *extra)
    assert (rc, err) == (0, "")
    assert {p.name for p in out.iterdir()} == FILES
    res = json.loads((out / "capacity.json").read_text())
    assert stdout.splitlines()[0].startswith(f"{res['system']}: ") and f"of {res['pool_size']} tasks" in stdout
    check_record(res)
    return res


def check_record(res: dict) -> None:
    """The search record agrees with its answer: every probe up to it feasible, every one past
    it infeasible, the answer probed (unless even min_tasks failed), the next one probed and
    infeasible unless the answer is max_tasks."""
    best, lo, hi = res["tasks_hosted_max"], res["min_tasks"], res["max_tasks"]
    probes = {p["tasks"]: p for p in res["search"]}
    assert len(probes) == len(res["search"]) and all(lo <= k <= hi for k in probes)
    for k, p in probes.items():
        assert p["feasible"] == (k <= best)
        meets = p["min_task_slo_attainment"] is None or p["min_task_slo_attainment"] >= res["slo_attainment_target"]
        assert p["feasible"] == (p["unplaced"] == 0 and meets)
    if best >= lo:
        assert probes[best]["feasible"]
    assert best == hi or not probes[best + 1]["feasible"]
    assert len(res["order"]) == res["pool_size"]


def test_spatial_capacity_is_the_slices_of_the_cluster(tmp_path, pool, capsys):
    # spatial gives each task one slice: 7 per H100 by default
    one = found(capsys, pool, tmp_path / "one", "spatial")
    assert (one["tasks_hosted_max"], one["pool_size"], one["gpus"], one["device"]) == (7, 10, 1, "H100-80GB")
    assert one["order"] == [f"t{i}" for i in range(10)] and one["system"] == "spatial"
    assert one["slo_attainment_target"] == 0.99 and one["latency_model"]["kind"] == "roofline"
    assert any(p["unplaced"] > 0 for p in one["search"])  # what made the larger probes fail
    assert found(capsys, pool, tmp_path / "two", "spatial", 0.99, "--set", "cluster.gpus=2")["tasks_hosted_max"] == 10
    three = found(capsys, pool, tmp_path / "three", "spatial", 0.99, "--set", "system.slices_per_gpu=3")
    assert three["tasks_hosted_max"] == 3
    saved = load_config(tmp_path / "three" / "config.yaml")  # the pool, under the system searched
    assert (saved.system.name, saved.system.slices_per_gpu, len(saved.tasks)) == ("spatial", 3, 10)
    prov = json.loads((tmp_path / "three" / "provenance.json").read_text())
    assert prov["seed"] == 2 and prov["command"].startswith("fmplex-sim capacity ")
    capped = found(capsys, pool, tmp_path / "capped", "spatial", 0.99, "--max-tasks", 5, "--min-tasks", 2)
    assert capped["tasks_hosted_max"] == 5 and min(p["tasks"] for p in capped["search"]) == 2


@pytest.mark.parametrize("system", ["colocate", "fmplex"])
def test_more_devices_never_lower_capacity_under_load(tmp_path, capsys, system):
    path = tmp_path / "loaded.yaml"
    path.write_text(LOADED)
    one = found(capsys, path, tmp_path / "one", system, 0.95)
    two = found(capsys, path, tmp_path / "two", system, 0.95, "--set", "cluster.gpus=2")
    assert 1 <= one["tasks_hosted_max"] <= two["tasks_hosted_max"] <= 8


def test_an_slo_nobody_meets_hosts_nothing(tmp_path, pool, capsys):
    res = found(capsys, pool, tmp_path / "none", "fmplex", 0.99, "--set", "tasks[0].slo_ms=0.001")
    assert res["tasks_hosted_max"] == 0 and [p["tasks"] for p in res["search"]] == [1]
    assert res["search"][0]["min_task_slo_attainment"] == 0.0
    res = found(capsys, pool, tmp_path / "below", "fmplex", 0.99, "--set", "tasks[2].slo_ms=0.001", "--min-tasks", 3)
    assert res["tasks_hosted_max"] == 2 and [p["tasks"] for p in res["search"]] == [3]
    rc, stdout, _ = cli(capsys, "capacity", pool, "--system", "fmplex", "--slo-attainment", 0.99, "--out",
                        tmp_path / "below", "--set", "tasks[2].slo_ms=0.001", "--min-tasks", 3)
    assert rc == 0 and stdout.startswith("fmplex: fewer than 3 of 10 tasks hosted")


def test_a_probe_is_a_run_of_the_first_k_tasks(pool):
    cfg, wl, _ = prepare(load_config(pool).with_system("colocate"))
    k = 4
    sub_cfg, sub_wl = first_tasks(cfg, wl, k)
    alone_cfg, alone_wl, _ = prepare(replace(cfg, tasks=cfg.tasks[:k]))
    assert sub_wl.tasks == alone_wl.tasks == tuple(f"t{i}" for i in range(k))
    for col in ("arrival_s", "task", "input_len", "output_len"):
        assert np.array_equal(getattr(sub_wl, col), getattr(alone_wl, col))
    _, res = capacity(load_config(pool), "colocate", 0.99, k, k)
    summary = simulate(alone_cfg, alone_wl).summary
    assert res["search"] == [{
        "tasks": k, "feasible": True, "unplaced": 0, "slo_attainment": summary["slo_attainment"],
        "min_task_slo_attainment": min(t["slo_attainment"] for t in summary["per_task"].values()),
    }]


def test_search_finds_the_last_feasible_k_with_few_probes():
    for answer in range(0, 21):
        probed: list[int] = []

        def feasible(k: int) -> bool:
            probed.append(k)
            return k <= answer

        assert search(feasible, 1, 20) == answer
        assert len(probed) == len(set(probed)) <= 10


@pytest.mark.parametrize(
    "args, where",
    [
        (["--system", "warp"], "--system: warp: unknown system"),
        (["--slo-attainment", "0"], "--slo-attainment: 0.0: must be in (0, 1]"),
        (["--slo-attainment", "1.5"], "--slo-attainment: 1.5: must be in (0, 1]"),
        (["--slo-attainment", "nan"], "--slo-attainment: nan: must be in (0, 1]"),
        (["--min-tasks", "0"], "--min-tasks: 0: must be between 1 and the pool's 10 tasks"),
        (["--max-tasks", "11"], "--max-tasks: 11: must be between"),
        (["--min-tasks", "5", "--max-tasks", "4"], "--max-tasks: 4: must be between --min-tasks (5)"),
        (["--set", "cluster.gpus=0"], "cluster.gpus: must be >= 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, pool, capsys, args, where):
    argv = {"--system": "fmplex", "--slo-attainment": "0.99"}
    extra = []
    for flag, value in zip(args[::2], args[1::2]):
        if flag in argv:
            argv[flag] = value
        else:
            extra += [flag, value]
    rc, stdout, err = cli(capsys, "capacity", pool, "--out", tmp_path / "out",
                          *[x for kv in argv.items() for x in kv], *extra)
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1 and where in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.yaml"]

"""``fmplex-sim sweep``: grid expansion and point ids, results per point, sweep.csv, resume,
determinism, interruption by SIGTERM, Ray, and one-line errors that write nothing."""

from __future__ import annotations

import csv
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmplex_sim.cli import main
from fmplex_sim.compare import COMPARISON_COLUMNS, comparison_row
from fmplex_sim.config import load_config
from fmplex_sim.sweep import load_sweep, point_id

BASE = """\
seed: 4
duration_s: 2
drain_s: 1
cluster: {device: H100-80GB, gpus: 2}
system: fmplex
tasks:
  - {name: a, backbone: bert-base, extensions: [{kind: lora, rank: 8}], slo_ms: 100, arrival: {rate_rps: 30}}
  - {name: b, backbone: minilm-l6, slo_ms: 50, arrival: {process: gamma, rate_rps: 20, cv: 2}}
"""
RUN_FILES = {"config.yaml", "placement.json", "provenance.json", "requests.csv", "summary.json", "workload.json"}
SAFE_ID = re.compile(r"[A-Za-z0-9._,=+-]+")


@pytest.fixture
def base(tmp_path) -> Path:
    p = tmp_path / "base.yaml"
    p.write_text(BASE)
    return p


def sweep_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def stats(folder: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file: unchanged means not rewritten."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def point_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "points").iterdir() if not p.name.startswith("."))


def hidden(out: Path) -> list[str]:
    return sorted(p.name for d in (out, out / "points") if d.is_dir() for p in d.iterdir() if p.name.startswith("."))


# -- the sweep file ---------------------------------------------------------------------------
def test_grid_expands_in_order_with_stable_safe_ids(tmp_path, base):
    path = sweep_file(tmp_path, """\
base: base.yaml
grid:
  system: [spatial, fmplex-wfq]
  cluster.gpus: [1, 3]
points:
  - {seed: 9, tasks.0.weight: 4}
  - {"tasks[1].slo_ms": 20}
  - {latency_model: {roofline: {compute_eff: 0.5}}}
  - {}
""")
    sw = load_sweep(path)
    ids = [p.id for p in sw.points]
    assert ids[:6] == [
        "system=spatial,cluster.gpus=1", "system=spatial,cluster.gpus=3",
        "system=fmplex-wfq,cluster.gpus=1", "system=fmplex-wfq,cluster.gpus=3",
        "seed=9,tasks.0.weight=4", "tasks.1.slo_ms=20",
    ]
    assert re.fullmatch(r"latency_model=_roofline_compute_eff_0\.5_-[0-9a-f]{8}", ids[6]) and ids[7] == "base"
    assert all(SAFE_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
    assert [p.id for p in load_sweep(path).points] == ids  # stable
    c = [p.config for p in sw.points]
    assert (c[0].system.name, c[0].system.placement, c[0].cluster.gpus) == ("spatial", "spatial", 1)
    assert (c[3].system.placement, c[3].system.scheduler, c[3].cluster.gpus) == ("fmplex", "wfq", 3)
    assert c[4].seed == 9 and c[4].tasks[0].weight == 4.0 and c[4].tasks[1].weight == 1.0
    assert c[5].tasks[1].slo_ms == 20.0 and dict(sw.points[5].overrides) == {"tasks[1].slo_ms": 20}
    assert dict(c[6].latency_model.options) == {"compute_eff": 0.5}
    assert c[7].to_dict() == load_config(base).to_dict()
    long = tuple((f"tasks[{i}].weight", 2) for i in range(30))
    assert SAFE_ID.fullmatch(point_id(long)) and len(point_id(long)) <= 105 and point_id(long) != point_id(long[1:])


# -- running ----------------------------------------------------------------------------------
def test_sweep_writes_every_point_a_table_and_resumes(tmp_path, base, capsys):
    path = sweep_file(tmp_path, "base: base.yaml\ngrid:\n  system: [spatial, fmplex]\n  seed: [1, 2]\n")
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert (rc, err) == (0, "") and "4 points (4 run, 0 already finished)" in stdout
    ids = ["system=spatial,seed=1", "system=spatial,seed=2", "system=fmplex,seed=1", "system=fmplex,seed=2"]
    assert point_dirs(out) == sorted(ids) and hidden(out) == []
    for i in ids:
        assert {p.name for p in (out / "points" / i).iterdir()} == RUN_FILES
    resolved = json.loads((out / "sweep.json").read_text())
    assert [p["point"] for p in resolved["points"]] == ids
    assert resolved["points"][1]["overrides"] == {"system": "spatial", "seed": 2}
    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    heads = [c for c in COMPARISON_COLUMNS if c != "system"]
    assert rows[0] == ["system", "seed", *heads, "point"]
    assert [r[-1] for r in rows[1:]] == ids  # sweep order
    for r in rows[1:]:
        summary = json.loads((out / "points" / r[-1] / "summary.json").read_text())
        want = comparison_row(summary)
        assert r[0] == want["system"] and int(r[1]) == summary["seed"]
        assert r[2:-1] == ["" if want[c] is None else str(want[c]) for c in heads]

    # a rerun skips every finished point and rewrites none of its files
    before = stats(out / "points")
    rc, stdout, _ = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert rc == 0 and "(0 run, 4 already finished)" in stdout and stats(out / "points") == before

    # leftovers of an interrupted sweep are removed; only the missing point runs
    gone = out / "points" / ids[1]
    for p in gone.iterdir():
        p.unlink()
    gone.rmdir()
    (out / "points" / f".{ids[1]}.tmp-abc123").mkdir()
    (out / "points" / f".{ids[1]}.tmp-abc123" / "requests.csv").write_text("half")
    (out / ".sweep.csv.tmp-99").write_text("half")
    rc, stdout, _ = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert rc == 0 and "(1 run, 3 already finished)" in stdout and hidden(out) == []
    after = stats(out / "points")
    assert {k: v for k, v in after.items() if not k.startswith(ids[1])} == \
           {k: v for k, v in before.items() if not k.startswith(ids[1])}
    assert {p.name for p in gone.iterdir()} == RUN_FILES

    # a changed base config makes the finished points stale: they run again
    base.write_text(BASE.replace("duration_s: 2", "duration_s: 1"))
    rc, stdout, _ = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert rc == 0 and "(4 run, 0 already finished)" in stdout
    assert json.loads((out / "points" / ids[0] / "summary.json").read_text())["duration_s"] == 1


def test_point_equals_run_alone_in_process_and_in_a_pool(tmp_path, base, capsys):
    path = sweep_file(tmp_path, "base: base.yaml\ngrid:\n  system: [colocate]\n  seed: [1, 2]\n  cluster.gpus: [1]\n")
    assert cli(capsys, "sweep", path, "--out", tmp_path / "one", "--workers", 1)[0] == 0
    assert cli(capsys, "sweep", path, "--out", tmp_path / "pool", "--workers", 2)[0] == 0
    rc, _, err = cli(capsys, "run", base, "--out", tmp_path / "alone", "--seed", 1,
                     "--set", "system=colocate", "--set", "cluster.gpus=1")
    assert (rc, err) == (0, "")
    s1, s2 = ("system=colocate,seed=1,cluster.gpus=1", "system=colocate,seed=2,cluster.gpus=1")
    alone = (tmp_path / "alone" / "requests.csv").read_bytes()
    assert (tmp_path / "one" / "points" / s1 / "requests.csv").read_bytes() == alone
    for p in (s1, s2):
        assert (tmp_path / "pool" / "points" / p / "requests.csv").read_bytes() == \
               (tmp_path / "one" / "points" / p / "requests.csv").read_bytes()
    assert (tmp_path / "one" / "points" / s2 / "requests.csv").read_bytes() != alone  # another seed


# -- interruption -----------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_keeps_finished_points_and_a_rerun_finishes_the_rest(tmp_path, capsys, workers):
    # heavier points (about 10,000 requests each) so that the sweep is still running when killed
    heavy = BASE.replace("duration_s: 2", "duration_s: 4").replace("rate_rps: 30", "rate_rps: 1500")
    (tmp_path / "base.yaml").write_text(heavy.replace("rate_rps: 20", "rate_rps: 1000"))
    path = sweep_file(tmp_path, "base: base.yaml\ngrid:\n  seed: [1, 2, 3, 4, 5, 6, 7, 8]\n")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmplex_sim.cli", "sweep", str(path), "--out", str(out), "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not ((out / "points").is_dir() and point_dirs(out)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the sweep ended or stalled before its first point: {proc.communicate()}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert len(stderr.splitlines()) == 1 and stderr.startswith("fmplex-sim: interrupted (SIGTERM): ")
    assert "rerun the same command" in stderr
    finished = point_dirs(out)
    assert 1 <= len(finished) < 8
    for p in finished:  # every folder is a complete run; anything in progress was temporary
        assert {f.name for f in (out / "points" / p).iterdir()} == RUN_FILES
    before = stats(out / "points")

    rc, stdout, err = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert (rc, err) == (0, "") and f"({8 - len(finished)} run, {len(finished)} already finished)" in stdout
    assert point_dirs(out) == sorted(f"seed={s}" for s in range(1, 9)) and hidden(out) == []
    after = stats(out / "points")
    assert {k: after[k] for k in before} == before  # finished points were not rewritten


# -- Ray --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_local_runs_the_same_points(tmp_path, base, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'fmplex[ray]')")
    path = sweep_file(tmp_path, "base: base.yaml\ngrid:\n  system: [spatial, fmplex]\n")
    # in a subprocess: Ray starts its own processes and should not outlive the command
    done = subprocess.run(
        [sys.executable, "-m", "fmplex_sim.cli", "sweep", str(path), "--out", str(tmp_path / "ray"),
         "--ray", "local", "--workers", "1"], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert cli(capsys, "sweep", path, "--out", tmp_path / "one", "--workers", 1)[0] == 0
    for p in ("system=spatial", "system=fmplex"):
        assert (tmp_path / "ray" / "points" / p / "requests.csv").read_bytes() == \
               (tmp_path / "one" / "points" / p / "requests.csv").read_bytes()
    assert (tmp_path / "ray" / "sweep.csv").read_text() == (tmp_path / "one" / "sweep.csv").read_text()


def test_without_ray_installed_the_error_says_how_to_get_it(tmp_path, base, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    path = sweep_file(tmp_path, "base: base.yaml\ngrid:\n  seed: [1]\n")
    rc, stdout, err = cli(capsys, "sweep", path, "--out", tmp_path / "out", "--ray", "local")
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1
    assert "pip install 'fmplex[ray]'" in err and not (tmp_path / "out").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, problem", [
    ("127.0.0.1:{port}", "cannot reach Ray"),   # nothing listens: Ray itself retried for minutes
    ("ray://127.0.0.1:{port}", "cannot reach Ray"),
    ("cluster-head", "expected host:port"),
    ("head:99999", "expected host:port"),
])
def test_an_unreachable_or_malformed_ray_address_fails_at_once(tmp_path, base, capsys, address, problem):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'fmplex[ray]')")
    path = sweep_file(tmp_path, "base: base.yaml\ngrid:\n  seed: [1]\n")
    address = address.format(port=free_port())
    rc, stdout, err = cli(capsys, "sweep", path, "--out", tmp_path / "out", "--ray", address)
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1, err
    assert f"--ray: {address}: {problem}" in err and not (tmp_path / "out").exists()


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, problem",
    [
        ("grid: {seed: [1]}\n", "base: missing"),
        ("base: nope.yaml\ngrid: {seed: [1]}\n", "nope.yaml: no such file"),
        ("base: base.yaml\nbogus: 1\n", "bogus: unknown key"),
        ("base: base.yaml\n", "no points"),
        ("base: base.yaml\ngrid: {seed: 1}\n", "grid.seed: must be a non-empty list"),
        ("base: base.yaml\ngrid: {seed: []}\n", "grid.seed: must be a non-empty list"),
        ("base: base.yaml\ngrid: {cluster.gpus: [1, 0]}\n", "grid cluster.gpus=0: cluster.gpus: must be >= 1"),
        ("base: base.yaml\ngrid: {system: [fmplex, warp]}\n", "grid system=warp: system: 'warp': unknown system"),
        ("base: base.yaml\npoints: [{cluster.gpu: 2}]\n", "points[0] cluster.gpu=2: cluster.gpu: unknown key"),
        ("base: base.yaml\npoints: [{tasks.5.weight: 2}]\n", "tasks[5].weight: no list element [5]"),
        ("base: base.yaml\npoints: [{tasks.0.weight: 2, 'tasks[0].weight': 3}]\n", "sets tasks[0].weight twice"),
        ("base: base.yaml\ngrid: {seed: [1, 2]}\npoints: [{seed: 2}]\n", "points[0] seed=2: repeats point 2"),
        ("base: base.yaml\npoints: [{seed: 2, cluster.gpus: 1}, {cluster.gpus: 1, seed: 2}]\n", "repeats point 1"),
        ("base: 3\ngrid: {seed: [1]}\n", "base: must be the path of the base run config, got 3"),
        ("base: base.yaml\npoints: [3]\n", "points[0]: must be a mapping"),
        ("base: base.yaml\ngrid: {seed: [1], seed: [2]}\n", "duplicate key 'seed'"),
        ("base: [\n", "invalid YAML"),
    ],
)
def test_a_bad_sweep_file_exits_2_with_one_line_and_writes_nothing(tmp_path, base, capsys, text, problem):
    path = sweep_file(tmp_path, text)
    rc, stdout, err = cli(capsys, "sweep", path, "--out", tmp_path / "out", "--workers", 1)
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1
    assert err.startswith(f"fmplex-sim: error: {path}: ") and problem in err, err
    assert not (tmp_path / "out").exists()


TRACE_BASE = """seed: 1
cluster: {device: H100-80GB, gpus: 1}
latency_model: roofline
system: fmplex
workload: {trace: {format: native, path: good.csv}}
tasks:
  - {name: t0, backbone: bert-base, slo_ms: 50, input_len: 64}
"""


@pytest.mark.parametrize("folder", ["absent", "empty"])
def test_a_bad_trace_row_in_any_point_is_found_before_any_point_runs(tmp_path, capsys, folder):
    # every trace file the points name is read once while the sweep is loaded: the good point
    # used to run and stay, with sweep.json, while the bad one failed
    rows = "arrival_s,task,input_len\n" + "".join(f"{i / 10},t0,32\n" for i in range(20))
    (tmp_path / "good.csv").write_text(rows)
    (tmp_path / "bad.csv").write_text(rows + "3.0,t0,abc\n")
    (tmp_path / "base.yaml").write_text(TRACE_BASE)
    out = tmp_path / "out"
    if folder == "empty":
        out.mkdir()
    path = sweep_file(tmp_path, "base: base.yaml\npoints: [{seed: 1}, {workload.trace.path: bad.csv}]\n")
    rc, stdout, err = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1, err
    assert "bad.csv: line 22: input_len 'abc' is not a number" in err
    assert (list(out.iterdir()) == []) if folder == "empty" else not out.exists()


@pytest.mark.parametrize("grid,point,problem", [
    ("{workload.window.start_s: [0, 100]}", "grid workload.window.start_s=100", "good.csv: workload.window: window start"),
    ("{tasks.0.update_s: [0.5, 5]}", "grid tasks.0.update_s=5", "base.yaml: tasks[0].update_s: must be before duration_s"),
])
@pytest.mark.parametrize("folder", ["absent", "empty"])
def test_a_point_its_trace_cannot_serve_is_found_before_any_point_runs(tmp_path, capsys, grid, point, problem, folder):
    # a window past the trace's end, or an update after the span the trace sets, used to be
    # found only when the point shaped its trace: the points before it ran and stayed
    rows = "arrival_s,task,input_len\n" + "".join(f"{i / 10},t0,32\n" for i in range(20))
    (tmp_path / "good.csv").write_text(rows)
    (tmp_path / "base.yaml").write_text(TRACE_BASE)
    out = tmp_path / "out"
    if folder == "empty":
        out.mkdir()
    path = sweep_file(tmp_path, f"base: base.yaml\ngrid: {grid}\n")
    rc, stdout, err = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1, err
    assert f"{path}: {point}: " in err and problem in err
    assert (list(out.iterdir()) == []) if folder == "empty" else not out.exists()


SERVEGEN = Path(__file__).resolve().parent.parent / "traces" / "samples" / "servegen_like"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("folder", ["absent", "empty"])
def test_a_point_failing_as_it_runs_keeps_the_finished_points(tmp_path, capsys, workers, folder):
    # a ServeGen folder is generated per point's window, so a window past its end is found
    # only when that point runs: every point failing leaves the folder as it was, and a point
    # that finished is a result worth resuming from: it stays
    (tmp_path / "base.yaml").write_text(TRACE_BASE.replace(
        "{format: native, path: good.csv}", f"{{format: servegen, path: '{SERVEGEN}'}}, window: {{start_s: 0, duration_s: 5}}"))
    out = tmp_path / "out"
    if folder == "empty":
        out.mkdir()
    path = sweep_file(tmp_path, "base: base.yaml\ngrid: {workload.window.start_s: [10000000], seed: [1, 2]}\n")
    rc, stdout, err = cli(capsys, "sweep", path, "--out", out, "--workers", workers)
    assert rc == 2 and stdout == "" and len(err.splitlines()) == 1, err
    assert "servegen_like: workload.window" in err
    assert (list(out.iterdir()) == []) if folder == "empty" else not out.exists()
    path = sweep_file(tmp_path, "base: base.yaml\npoints: [{seed: 1}, {workload.window.start_s: 10000000}]\n")
    rc, _, err = cli(capsys, "sweep", path, "--out", out, "--workers", 1)
    assert rc == 2 and "workload.window" in err
    assert point_dirs(out) == ["seed=1"] and (out / "sweep.json").is_file()


def test_bad_workers_or_out_exit_2_and_touch_nothing(tmp_path, base, capsys):
    path = sweep_file(tmp_path, "base: base.yaml\ngrid: {seed: [1]}\n")
    rc, _, err = cli(capsys, "sweep", path, "--out", tmp_path / "out", "--workers", 0)
    assert rc == 2 and err == "fmplex-sim: error: --workers: 0: must be >= 1\n" and not (tmp_path / "out").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, _, err = cli(capsys, "sweep", path, "--out", mine, "--workers", 1)
    assert rc == 2 and "is not a sweep folder" in err and len(err.splitlines()) == 1
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

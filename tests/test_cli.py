"""``fmplex-sim`` end to end: run, compare, catalog, exit codes, one-line errors, results folders."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fmplex_sim.cli import main
from fmplex_sim.compare import COMPARISON_COLUMNS
from fmplex_sim.config import load_config
from fmplex_sim.latency.profile import write_profile

TINY = """\
seed: 4
duration_s: 2
drain_s: 1
cluster: {device: H100-80GB, gpus: 2}
latency_model: roofline
system: fmplex
tasks:
  - name: a
    backbone: bert-base
    extensions: [{kind: lora, rank: 8}, {kind: head, outputs: 2}]
    slo_ms: 100
    arrival: {process: poisson, rate_rps: 30}
  - name: b
    backbone: minilm-l6
    extensions: [{kind: head, outputs: 3}]
    slo_ms: 50
    arrival: {process: gamma, rate_rps: 20, cv: 2}
  - name: c
    backbone: bert-base
    extensions: [{kind: lora, rank: 4}]
    arrival: {process: poisson, rate_rps: 10}
"""
RUN_FILES = {"config.yaml", "placement.json", "provenance.json", "requests.csv", "summary.json", "workload.json"}
BACKBONES = ["minilm-l6", "bert-base", "bert-large", "vit-base", "vit-large", "chronos-t5-small",
             "chronos-t5-base", "clip-vit-b16", "llama-3.2-1b"]
DEVICES = ["H100-80GB", "A100-80GB", "L4-24GB", "CPU"]
CONSOLE_SCRIPT = Path(sys.executable).with_name("fmplex-sim")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cfg_path(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def leftovers(folder: Path) -> list[str]:
    """Hidden temp or backup folders next to results (``.NAME.tmp-*``, ``.NAME.old-*``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_run_folder(folder: Path, seed: int, system: str) -> dict:
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["system"]["name"] == system and summary["seed"] == seed
    prov = json.loads((folder / "provenance.json").read_text())
    if (ROOT / ".git").exists():  # a git checkout: the commit and dirty flag are recorded
        assert re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"])
        assert isinstance(prov["git_dirty"], bool)
    else:
        assert "git_commit" in prov and "git_dirty" in prov
    assert {"numpy", "simpy", "PyYAML"} <= set(prov["packages"])
    assert prov["seed"] == seed
    assert prov["latency_model"] == summary["latency_model"]
    assert prov["latency_model"]["kind"] == "roofline"
    assert prov["command"].startswith("fmplex-sim ")
    rows = read_csv(folder / "requests.csv")
    assert len(rows) == summary["requests"]["arrived"] > 0
    assert {"task", "arrival_s", "latency_ms"} <= set(rows[0])
    saved = load_config(folder / "config.yaml")
    assert saved.seed == seed and saved.system.name == system
    return summary


# -- run --------------------------------------------------------------------------------------
def test_run_writes_a_complete_results_folder(cfg_path, tmp_path, capsys):
    out = tmp_path / "res"
    rc, stdout, stderr = cli(capsys, "run", cfg_path, "--out", out)
    assert (rc, stderr) == (0, "")
    assert f"results: {out}" in stdout and stdout.startswith("fmplex: ")
    summary = check_run_folder(out, seed=4, system="fmplex")
    assert summary["requests"]["completed"] > 0
    # the saved config is the resolved input: it reproduces the same config
    assert load_config(out / "config.yaml").to_dict() == load_config(cfg_path).to_dict()
    assert leftovers(tmp_path) == []


def test_run_applies_seed_and_set_overrides(cfg_path, tmp_path, capsys):
    out = tmp_path / "res"
    rc, _, err = cli(capsys, "run", cfg_path, "--out", out, "--seed", 11, "--set", "system=spatial",
                     "--set", "cluster.gpus=3", "--set", "tasks[0].weight=2")
    assert (rc, err) == (0, "")
    check_run_folder(out, seed=11, system="spatial")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["cluster"]["gpus"] == 3 and saved["tasks"][0]["weight"] == 2.0
    assert saved["system"]["placement"] == "spatial" and saved["system"]["scheduler"] == "fifo"
    assert json.loads((out / "placement.json").read_text())["policy"] == "spatial"
    # a knob on a preset string keeps the preset
    rc, _, err = cli(capsys, "run", cfg_path, "--out", out, "--set", "system.max_batch=8")
    assert (rc, err) == (0, "")
    saved = yaml.safe_load((out / "config.yaml").read_text())["system"]
    assert (saved["name"], saved["scheduler"], saved["max_batch"]) == ("fmplex", "bfq", 8)


def test_same_seed_reproduces_requests_and_another_seed_changes_them(cfg_path, tmp_path, capsys):
    for name, seed in (("r1", 5), ("r2", 5), ("r3", 6)):
        assert cli(capsys, "run", cfg_path, "--out", tmp_path / name, "--seed", seed)[0] == 0
    arrivals = {n: [r["arrival_s"] for r in read_csv(tmp_path / n / "requests.csv")] for n in ("r1", "r2", "r3")}
    assert arrivals["r1"] == arrivals["r2"] != arrivals["r3"]


def test_run_twice_into_the_same_out_replaces_the_folder(cfg_path, tmp_path, capsys):
    out = tmp_path / "res"
    assert cli(capsys, "run", cfg_path, "--out", out, "--seed", 1)[0] == 0
    (out / "stale.txt").write_text("from an earlier run")
    assert cli(capsys, "run", cfg_path, "--out", out, "--seed", 2)[0] == 0
    check_run_folder(out, seed=2, system="fmplex")  # exactly the run's files: stale.txt is gone
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "bad",
    [
        ["run", "--set", "tasks[0].weight=0"],
        ["run", "--set", "foo"],
        ["compare", "--systems", "spatial,warp"],
        ["compare", "--set", "cluster.device=TPU"],
    ],
)
def test_a_failing_run_leaves_the_existing_out_intact(cfg_path, tmp_path, capsys, bad):
    out = tmp_path / "res"
    assert cli(capsys, "run", cfg_path, "--out", out)[0] == 0
    before = snapshot(out)
    rc, stdout, stderr = cli(capsys, bad[0], cfg_path, "--out", out, *bad[1:])
    assert rc == 2 and stdout == "" and len(stderr.splitlines()) == 1
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_out_that_is_not_a_results_folder_is_refused_and_untouched(cfg_path, tmp_path, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, _, err = cli(capsys, "run", cfg_path, "--out", mine)
    assert rc == 2 and err == f"fmplex-sim: error: --out: {mine}: exists and is not a results folder " \
                              f"of fmplex-sim; refusing to replace it\n"
    assert snapshot(mine) == {"notes.txt": b"keep me"}
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = cli(capsys, "run", cfg_path, "--out", afile)
    assert rc == 2 and err.endswith("exists and is not a folder\n") and afile.read_text() == "x"
    real = tmp_path / "real"
    assert cli(capsys, "run", cfg_path, "--out", real)[0] == 0
    (tmp_path / "link").symlink_to(real)
    rc, _, err = cli(capsys, "run", cfg_path, "--out", tmp_path / "link")
    assert rc == 2 and err.endswith("is a symbolic link; name the folder itself\n")
    (tmp_path / "link").unlink()
    shutil.rmtree(real)
    monkeypatch.chdir(tmp_path)
    for here in (".", "..", str(tmp_path), ""):
        rc, _, err = cli(capsys, "run", "tiny.yaml", "--out", here)
        assert rc == 2 and len(err.splitlines()) == 1 and "--out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine", "tiny.yaml"]
    # an empty folder may be used
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "run", "tiny.yaml", "--out", "empty")[0] == 0
    check_run_folder(empty, seed=4, system="fmplex")


# -- compare ----------------------------------------------------------------------------------
def test_compare_writes_one_folder_per_system_a_table_and_a_figure(cfg_path, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc, stdout, stderr = cli(capsys, "compare", cfg_path, "--systems", "spatial,colocate,fmplex", "--out", out)
    assert (rc, stderr) == (0, "")
    assert {p.name for p in out.iterdir()} == {
        "spatial", "colocate", "fmplex", "comparison.csv", "comparison.json", "comparison.png"
    }
    rows = read_csv(out / "comparison.csv")
    with open(out / "comparison.csv", newline="") as fh:
        assert tuple(next(csv.reader(fh))) == COMPARISON_COLUMNS
    assert [r["system"] for r in rows] == ["spatial", "colocate", "fmplex"]
    assert [(r["placement"], r["scheduler"]) for r in rows] == [
        ("spatial", "fifo"), ("colocate", "fifo"), ("fmplex", "bfq")
    ]
    assert len({r["arrived"] for r in rows}) == 1 and int(rows[0]["arrived"]) > 0  # one identical stream
    for r in rows:
        summary = check_run_folder(out / r["system"], seed=4, system=r["system"])
        assert int(r["completed"]) == summary["requests"]["completed"]
        assert float(r["memory_gib"]) == summary["cluster"]["memory_gib"]
    # a and c share one bert-base copy under fmplex; colocate loads a replica per task
    mem = {r["system"]: float(r["memory_gib"]) for r in rows}
    assert mem["fmplex"] < mem["colocate"]
    assert [int(r["tasks_hosted"]) for r in rows] == [3, 3, 3]
    png = (out / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert json.loads((out / "comparison.json").read_text())[2]["system"] == "fmplex"
    for name in ("spatial", "colocate", "fmplex"):
        assert re.search(rf"^\s*{name}\s", stdout, re.M)
    assert f"table: {out / 'comparison.csv'}" in stdout
    assert leftovers(tmp_path) == []


def test_compare_accepts_placement_scheduler_combinations(cfg_path, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc, _, err = cli(capsys, "compare", cfg_path, "--systems", "fmplex-fifo, fmplex-wfq", "--out", out)
    assert (rc, err) == (0, "")
    assert [r["system"] for r in read_csv(out / "comparison.csv")] == ["fmplex-fifo", "fmplex-wfq"]
    assert [r["scheduler"] for r in read_csv(out / "comparison.csv")] == ["fifo", "wfq"]


# -- catalog ----------------------------------------------------------------------------------
def test_catalog_lists_backbones_and_devices(capsys):
    rc, out, err = cli(capsys, "catalog")
    assert (rc, err) == (0, "")
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.strip()}
    for name in BACKBONES:
        assert name in lines, name
    assert lines["bert-base"][1:] == ["bert", "language", "110,000,000", "220,000,000"]
    assert lines["vit-large"][1:3] == ["vit", "vision"]
    assert lines["chronos-t5-small"][1:3] == ["chronos", "timeseries"]
    assert lines["clip-vit-b16"][1:3] == ["clip", "multimodal"]
    for dev in DEVICES:
        assert dev in lines, dev
    assert lines["H100-80GB"][1:3] == ["gpu", "80"] and lines["CPU"][1] == "cpu"
    rc, out, _ = cli(capsys, "catalog", "--json")
    data = json.loads(out)
    names = {b["name"]: b for b in data["backbones"]}
    assert set(BACKBONES) <= set(names)
    assert {"name", "family", "modality", "params", "bytes"} <= set(names["llama-3.2-1b"])
    assert names["llama-3.2-1b"]["bytes"] == 2 * names["llama-3.2-1b"]["params"]
    assert set(DEVICES) <= {d["name"] for d in data["devices"]}


# -- invalid input: exit 2, one line, nothing written -----------------------------------------
def _profile(tmp_path: Path, bad: bool) -> Path:
    path = tmp_path / "prof.csv"
    rows = [{"kind": "forward", "backbone": bb, "device": "H100-80GB", "dtype": "bf16", "batch": b,
             "seq_len": s, "median_ms": 1.0 + b * s / 1e3, "repeats": 3}
            for bb in ("bert-base", "minilm-l6") for b in (1, 8) for s in (64, 128)]
    write_profile(path, rows)
    if bad:
        lines = path.read_text().splitlines()
        lines[3] = lines[3].replace(",1.", ",-1.")  # a negative latency on line 4
        path.write_text("\n".join(lines) + "\n")
    return path


MALFORMED = [
    # (id, file content (None: the tiny config), extra args, expected message parts)
    ("wrong-type", None, ["--set", "cluster.gpus=two"], ["tiny.yaml: cluster.gpus: must be an integer"]),
    ("no-tasks", "seed: 1\n", [], ["cfg.yaml: tasks: missing"]),
    ("task-without-backbone", None, ["--set", "tasks[1]={name: b}"], ["tiny.yaml: tasks[1].backbone: missing"]),
    ("negative-rate", None, ["--set", "tasks[0].arrival.rate_rps=-3"], ["tasks[0].arrival.rate_rps: must be >= 0"]),
    ("nan-rate", TINY.replace("rate_rps: 30", "rate_rps: .nan"), [],
     ["cfg.yaml: tasks[0].arrival.rate_rps: must be a finite number"]),
    ("unknown-backbone", None, ["--set", "tasks[0].backbone=gpt-9"], ["tasks[0].backbone: unknown backbone 'gpt-9'"]),
    ("unknown-device", None, ["--set", "cluster.device=B200"], ["cluster.device: unknown device 'B200'"]),
    ("unknown-system", None, ["--set", "system=turbo"], ["tiny.yaml: system: unknown system 'turbo'"]),
    ("unknown-placement", None, ["--set", "system={placement: mig}"], ["system.placement: unknown placement"]),
    ("unknown-scheduler", None, ["--set", "system.scheduler=edf"], ["system.scheduler: unknown scheduler 'edf'"]),
    ("unknown-extension", None, ["--set", "tasks[1].extensions[0].kind=adapter"],
     ["tasks[1].extensions[0].kind: unknown extension 'adapter'"]),
    ("duplicate-names", None, ["--set", "tasks[1].name=a"], ["tasks[1].name: duplicate task name 'a'"]),
    ("weight-zero", None, ["--set", "tasks[0].weight=0"], ["tasks[0].weight: must be > 0"]),
    ("slo-negative", None, ["--set", "tasks[1].slo_ms=-1"], ["tasks[1].slo_ms: must be > 0"]),
    ("zero-gpus", None, ["--set", "cluster.gpus=0"], ["cluster.gpus: must be >= 1"]),
    ("cv-zero", None, ["--set", "tasks[1].arrival.cv=0"], ["tasks[1].arrival.cv: must be > 0"]),
    ("end-before-start", None, ["--set", "tasks[0].start_s=1", "--set", "tasks[0].end_s=0.5"],
     ["tasks[0].end_s: must be after start_s"]),
    ("unknown-key", TINY.replace("drain_s: 1", "drian_s: 1"), [], ["cfg.yaml: drian_s: unknown key"]),
    ("nested-typo", None, ["--set", "tasks[0].arrival.rate=3"], ["tasks[0].arrival.rate: unknown key"]),
    ("yaml-syntax", "seed: 1\ntasks: [\n", [], ["cfg.yaml: line 3: invalid YAML"]),
    ("yaml-list", "- seed: 1\n", [], ["cfg.yaml: must be a mapping of keys, got a list"]),
    ("yaml-scalar", "3.5\n", [], ["cfg.yaml: must be a mapping of keys, got 3.5"]),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", [], ["cfg.yaml: not a UTF-8 text file"]),
    ("set-without-equals", None, ["--set", "foo"], ["--set: foo: expected key=value"]),
    ("set-out-of-range", None, ["--set", "tasks[9].weight=1"], ["--set: tasks[9].weight: no list element [9]"]),
    ("bad-systems", None, ["--systems", "spatial,hyper"], ["--systems: hyper: unknown system"]),
    ("empty-systems", None, ["--systems", ","], ["--systems: name at least one system"]),
    ("profile-missing", None, ["--set", "latency_model={profile: nowhere.csv}"],
     ["tiny.yaml: latency_model.profile: no such file 'nowhere.csv'"]),
    ("profile-malformed", TINY.replace("latency_model: roofline", "latency_model: {profile: prof.csv}"), [],
     ["cfg.yaml: latency_model.profile:", "prof.csv:4: negative latency median_ms=-1."]),
    ("profile-lacks-backbone", TINY.replace("latency_model: roofline", "latency_model: {profile: prof.csv}")
     .replace("backbone: minilm-l6", "backbone: bert-large"), [],
     ["tasks[1].backbone: profile", "no forward rows for bert-large on H100-80GB"]),
]


CASES = [
    pytest.param(command, content, extra, parts, id=f"{command}-{case}")
    for case, content, extra, parts in MALFORMED
    for command in (("compare",) if "--systems" in extra else ("run", "compare"))
]


@pytest.mark.parametrize("command, content, extra, parts", CASES)
def test_invalid_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path, cfg_path, capsys, command, content, extra, parts
):
    _profile(tmp_path, bad=any("negative latency" in part for part in parts))
    if content is None:
        path = cfg_path
    else:
        path = tmp_path / "cfg.yaml"
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "results"
    rc, stdout, stderr = cli(capsys, command, path, "--out", out, *extra)
    assert rc == 2
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), stderr
    assert lines[0].startswith("fmplex-sim: error: ")
    assert "Traceback" not in stderr
    for part in parts:
        assert part in lines[0], lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp folder, no partial results


def test_missing_config_file(tmp_path, capsys):
    rc, stdout, stderr = cli(capsys, "run", tmp_path / "nope.yaml", "--out", tmp_path / "r")
    assert (rc, stdout) == (2, "")
    assert stderr == f"fmplex-sim: error: {tmp_path / 'nope.yaml'}: no such file\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, code, message",
    [
        ([], 2, "the following arguments are required: command"),
        (["run", "x.yaml"], 2, "the following arguments are required: --out"),
        (["compare", "x.yaml", "--out", "o", "--seed", "abc"], 2, "invalid int value: 'abc'"),
        (["simulate"], 2, "invalid choice: 'simulate'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, code, message):
    rc, stdout, stderr = cli(capsys, *argv)
    assert rc == code and stdout == ""
    assert len(stderr.splitlines()) == 1 and message in stderr


def test_help_exits_0(capsys):
    rc, stdout, _ = cli(capsys, "--help")
    assert rc == 0 and "compare" in stdout and "catalog" in stdout


# -- as a real process: the console script and python -m ----------------------------------------
def test_console_script_exit_codes_and_output(cfg_path, tmp_path):
    assert CONSOLE_SCRIPT.exists(), CONSOLE_SCRIPT
    ok = subprocess.run([CONSOLE_SCRIPT, "run", cfg_path, "--out", tmp_path / "res", "--set", "system=colocate"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    check_run_folder(tmp_path / "res", seed=4, system="colocate")
    bad = subprocess.run([CONSOLE_SCRIPT, "run", cfg_path, "--out", tmp_path / "res2", "--set", "cluster.gpus=-1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == f"fmplex-sim: error: {cfg_path}: cluster.gpus: must be >= 1, got -1\n"
    assert not (tmp_path / "res2").exists()


def test_python_dash_m_exit_codes(tmp_path):
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(128, 256)) * 8)
    bad = subprocess.run([sys.executable, "-m", "fmplex_sim.cli", "compare", garbage, "--out", tmp_path / "c"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "garbage.yaml: not a UTF-8 text file" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.yaml"]
    ok = subprocess.run([sys.executable, "-m", "fmplex_sim.cli", "catalog"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0 and all(name in ok.stdout for name in BACKBONES + DEVICES)

"""Run configuration: parsing, defaults, round trips, overrides and every kind of malformed input."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_cfg
from fmplex_sim.config import (
    LatencyConfig,
    RunConfig,
    SystemConfig,
    apply_override,
    load_config,
    parse_config,
)
from fmplex_sim.errors import InputError
from fmplex_sim.latency.profile import write_profile
from fmplex_sim.specs import ArrivalSpec, ClusterSpec, ExtensionSpec, TaskSpec

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "experiments" / "demo" / "config.yaml"

ISSUE_EXAMPLE = """\
seed: 1
duration_s: 60
cluster: {device: H100-80GB, gpus: 2}
latency_model: roofline
system: fmplex
tasks:
  - name: sst2
    backbone: bert-base
    extensions: [{kind: lora, rank: 8}, {kind: head, outputs: 2}]
    weight: 1
    slo_ms: 100
    input_len: 128
    arrival: {process: poisson, rate_rps: 40}
    start_s: 0
    end_s: 60
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# -- valid configs ----------------------------------------------------------------------------
def test_issue_example_parses_with_resolved_values_and_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, ISSUE_EXAMPLE))
    assert cfg.seed == 1 and cfg.duration_s == 60.0
    assert cfg.drain_s == 30.0  # default
    assert cfg.cluster == ClusterSpec("H100-80GB", 2)
    assert cfg.latency_model == LatencyConfig("roofline")
    assert cfg.system == SystemConfig(name="fmplex", placement="fmplex", scheduler="bfq")
    assert (cfg.system.max_batch, cfg.system.target_util, cfg.system.slices_per_gpu) == (32, 0.7, 7)
    assert cfg.system.on_task_end == "drain" and cfg.system.cross_task is None
    assert cfg.tasks == (
        TaskSpec(
            name="sst2",
            backbone="bert-base",
            extensions=(
                ExtensionSpec("lora", rank=8, targets=("q", "v"), alpha=16.0),
                ExtensionSpec("head", outputs=2),
            ),
            weight=1.0,
            slo_ms=100.0,
            input_len=128,
            output_len=0,
            arrival=ArrivalSpec("poisson", 40.0, 1.0),
            start_s=0.0,
            end_s=60.0,
            max_queue_ms=None,
        ),
    )
    assert cfg.source.endswith("cfg.yaml")


def test_demo_config_parses():
    # The demo's numbers are tuned by others; check its shape and that values resolve.
    raw = yaml.safe_load(DEMO.read_text())
    cfg = load_config(DEMO)
    assert len(cfg.tasks) == len(raw["tasks"]) >= 3
    assert cfg.cluster == ClusterSpec(raw["cluster"]["device"], raw["cluster"]["gpus"])
    assert cfg.system.name == raw["system"]
    assert len({t.backbone for t in cfg.tasks}) >= 2
    for t, r in zip(cfg.tasks, raw["tasks"]):
        assert (t.name, t.backbone, t.arrival.rate_rps) == (r["name"], r["backbone"], r["arrival"]["rate_rps"])
        assert t.input_len == r.get("input_len", {"vit-base": 197}.get(t.backbone, t.input_len))
        assert [e.kind for e in t.extensions] == [e["kind"] for e in r.get("extensions", [])]


def test_minimal_config_gets_documented_defaults():
    cfg = parse_config({"tasks": [{"name": "t", "backbone": "bert-base"}]}, "min.yaml")
    assert (cfg.seed, cfg.duration_s, cfg.drain_s) == (0, 60.0, 30.0)
    assert cfg.cluster == ClusterSpec("H100-80GB", 1)
    assert cfg.system.name == "fmplex" and cfg.system.scheduler == "bfq"
    t = cfg.tasks[0]
    assert t.extensions == () and t.weight == 1.0 and t.slo_ms == 100.0 and t.input_len == 128
    assert t.arrival == ArrivalSpec("poisson", 1.0, 1.0) and t.end_s is None


def test_system_mapping_fills_from_preset_and_names_custom_combinations(base_raw):
    cfg = make_cfg(base_raw, system={"placement": "colocate"})
    assert (cfg.system.name, cfg.system.scheduler) == ("colocate", "fifo")
    cfg = make_cfg(base_raw, system={"placement": "fmplex", "scheduler": "wfq", "max_batch": 8})
    assert (cfg.system.name, cfg.system.placement, cfg.system.max_batch) == ("fmplex-wfq", "fmplex", 8)
    cfg = make_cfg(base_raw, system={"name": "spatial", "slices_per_gpu": 3})
    assert (cfg.system.placement, cfg.system.scheduler, cfg.system.slices_per_gpu) == ("spatial", "fifo", 3)


def test_slices_per_gpu_defaults_to_and_is_capped_by_the_device(base_raw):
    assert make_cfg(base_raw, system="spatial").system.slices_per_gpu == 7
    cpu = make_cfg(base_raw, system="spatial", cluster={"device": "CPU", "gpus": 1})
    assert cpu.system.slices_per_gpu == 16  # processes pinned to the host's cores
    with pytest.raises(InputError, match=r"system\.slices_per_gpu: CPU can be cut into at most 16"):
        make_cfg(base_raw, system={"placement": "spatial", "slices_per_gpu": 17},
                 cluster={"device": "CPU", "gpus": 1})
    with pytest.raises(InputError, match=r"system\.slices_per_gpu: L4-24GB can be cut into at most 7"):
        make_cfg(base_raw, system={"placement": "spatial", "slices_per_gpu": 8},
                 cluster={"device": "L4-24GB", "gpus": 1})


def test_with_system_switches_placement_and_scheduler_and_keeps_knobs(base_raw):
    cfg = make_cfg(base_raw, system={"placement": "fmplex", "max_batch": 8})
    s = cfg.with_system("spatial").system
    assert (s.name, s.placement, s.scheduler, s.max_batch) == ("spatial", "spatial", "fifo", 8)
    s = cfg.with_system("colocate-vtc").system
    assert (s.name, s.placement, s.scheduler) == ("colocate-vtc", "colocate", "vtc")
    for bad in ("bogus", "fmplex-", "spatial-lifo", "fifo-fmplex"):
        with pytest.raises(InputError, match=f"--systems: {bad}: unknown system"):
            cfg.with_system(bad)


def _roundtrip(cfg: RunConfig) -> RunConfig:
    # Through YAML text as well, exactly as config.yaml is saved next to results.
    raw = yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return parse_config(raw, cfg.source)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: None,
        lambda r: r.update(system={"placement": "spatial", "slices_per_gpu": 3, "max_batch": 4}),
        lambda r: r.update(system={"placement": "fmplex", "scheduler": "wfq", "cross_task": False,
                                   "max_wait_ms": 2.5, "on_task_end": "reject", "pipeline_depth": 3,
                                   "context_switch_ms": 0.1, "target_util": 0.5}),
        lambda r: r.update(latency_model={"roofline": {"compute_eff": 0.5, "lora_kernel": "loop"}}),
        lambda r: r["tasks"][0].update(end_s=7.5, start_s=1, max_queue_ms=250, weight=3),
        lambda r: r["tasks"][1].update(extensions=[{"kind": "prefix", "virtual_tokens": 4, "version": 2},
                                                   {"kind": "encoder", "params": 1000},
                                                   {"kind": "lora", "rank": 4, "targets": ["q", "k", "o"],
                                                    "alpha": 8}]),
        lambda r: r["tasks"].append({"name": "gen", "backbone": "llama-3.2-1b", "output_len": 16,
                                     "extensions": [{"kind": "lora", "targets": ["gate", "up"]}]}),
    ],
)
def test_to_dict_round_trips_to_an_equal_config(base_raw, mutate):
    mutate(base_raw)
    cfg = make_cfg(base_raw)
    assert _roundtrip(cfg) == cfg


def test_demo_and_issue_example_round_trip(tmp_path):
    for cfg in (load_config(DEMO), load_config(_write(tmp_path, ISSUE_EXAMPLE))):
        assert _roundtrip(cfg) == cfg
        assert _roundtrip(cfg.with_system("fmplex-wfq")) == cfg.with_system("fmplex-wfq")


# -- overrides --------------------------------------------------------------------------------
def test_overrides_apply_in_order_and_parse_values_as_yaml(tmp_path):
    path = _write(tmp_path, ISSUE_EXAMPLE)
    cfg = load_config(path, ["cluster.gpus=4", "tasks[0].weight=2", "tasks[0].arrival.rate_rps=5.5",
                             "seed=9", "seed=10", "drain_s=0"])
    assert cfg.cluster.gpus == 4 and cfg.tasks[0].weight == 2.0
    assert cfg.tasks[0].arrival.rate_rps == 5.5 and cfg.seed == 10 and cfg.drain_s == 0.0
    cfg = load_config(path, ["tasks[0].extensions=[{kind: head, outputs: 5}]"])
    assert cfg.tasks[0].extensions == (ExtensionSpec("head", outputs=5),)


def test_override_system_preset_and_knob_on_a_preset_string(tmp_path):
    path = _write(tmp_path, ISSUE_EXAMPLE)
    cfg = load_config(path, ["system=spatial"])
    assert (cfg.system.name, cfg.system.placement, cfg.system.scheduler) == ("spatial", "spatial", "fifo")
    # system is the string "fmplex" in the file: the knob keeps the preset
    cfg = load_config(path, ["system.max_batch=8"])
    assert (cfg.system.name, cfg.system.placement, cfg.system.scheduler) == ("fmplex", "fmplex", "bfq")
    assert cfg.system.max_batch == 8
    cfg = load_config(path, ["system=colocate", "system.max_batch=4"])
    assert (cfg.system.placement, cfg.system.max_batch) == ("colocate", 4)


def test_override_latency_profile_on_a_string(tmp_path, profile_csv):
    cfg = load_config(_write(tmp_path, ISSUE_EXAMPLE), [f"latency_model.profile={profile_csv}"])
    assert cfg.latency_model == LatencyConfig("profile", str(profile_csv.resolve()))


@pytest.mark.parametrize(
    "item, message",
    [
        ("foo", "--set: foo: expected key=value"),
        ("=3", "--set: =3: empty key"),
        ("tasks[9].weight=1", "--set: tasks[9].weight: no list element [9] (the list has 2)"),
        ("tasks[-1].weight=1", "--set: tasks[-1].weight: bad key syntax"),
        ("a..b=1", "--set: a..b: bad key syntax"),
        ("cluster[0]=1", "--set: cluster[0]: [0] indexes something that is not a list"),
        ("tasks.name=x", "--set: tasks.name: 'name' is not inside a mapping"),
        ("seed=[1", "--set: seed: value '[1' is not valid YAML"),
    ],
)
def test_bad_overrides_are_one_line_errors(base_raw, item, message):
    with pytest.raises(InputError) as e:
        apply_override(base_raw, item)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


# -- malformed configs ------------------------------------------------------------------------
def _del(d: dict, key: str):
    d.pop(key)


MALFORMED = [
    # (id, mutation of base_raw, key path in the message, what is wrong)
    ("seed-type", lambda r: r.update(seed="one"), "seed", "must be an integer"),
    ("seed-negative", lambda r: r.update(seed=-1), "seed", "must be >= 0"),
    ("duration-zero", lambda r: r.update(duration_s=0), "duration_s", "must be > 0"),
    ("duration-bool", lambda r: r.update(duration_s=True), "duration_s", "must be a number"),
    ("drain-negative", lambda r: r.update(drain_s=-1), "drain_s", "must be >= 0"),
    ("top-typo", lambda r: r.update(sead=1), "sead", "unknown key"),
    ("no-tasks", lambda r: _del(r, "tasks"), "tasks", "missing"),
    ("empty-tasks", lambda r: r.update(tasks=[]), "tasks", "non-empty list"),
    ("tasks-mapping", lambda r: r.update(tasks={"a": 1}), "tasks", "non-empty list"),
    ("task-scalar", lambda r: r["tasks"].__setitem__(1, "b"), "tasks[1]", "must be a mapping"),
    ("task-typo", lambda r: r["tasks"][1].update(wieght=2), "tasks[1].wieght", "unknown key"),
    ("no-backbone", lambda r: _del(r["tasks"][1], "backbone"), "tasks[1].backbone", "missing"),
    ("bad-backbone", lambda r: r["tasks"][0].update(backbone="bert-huge"), "tasks[0].backbone",
     "unknown backbone 'bert-huge'"),
    ("no-name", lambda r: _del(r["tasks"][0], "name"), "tasks[0].name", "non-empty name"),
    ("name-comma", lambda r: r["tasks"][0].update(name="a,b"), "tasks[0].name", "no commas"),
    ("dup-name", lambda r: r["tasks"][1].update(name="a"), "tasks[1].name", "duplicate task name 'a'"),
    ("weight-zero", lambda r: r["tasks"][1].update(weight=0), "tasks[1].weight", "must be > 0"),
    ("weight-negative", lambda r: r["tasks"][0].update(weight=-2), "tasks[0].weight", "must be > 0"),
    ("weight-text", lambda r: r["tasks"][0].update(weight="heavy"), "tasks[0].weight", "must be a number"),
    ("slo-zero", lambda r: r["tasks"][0].update(slo_ms=0), "tasks[0].slo_ms", "must be > 0"),
    ("slo-negative", lambda r: r["tasks"][1].update(slo_ms=-5), "tasks[1].slo_ms", "must be > 0"),
    ("rate-negative", lambda r: r["tasks"][0]["arrival"].update(rate_rps=-1), "tasks[0].arrival.rate_rps",
     "must be >= 0"),
    ("rate-nan", lambda r: r["tasks"][0]["arrival"].update(rate_rps=math.nan), "tasks[0].arrival.rate_rps",
     "finite"),
    ("rate-inf", lambda r: r["tasks"][1]["arrival"].update(rate_rps=math.inf), "tasks[1].arrival.rate_rps",
     "finite"),
    ("rate-huge", lambda r: r["tasks"][1]["arrival"].update(rate_rps=1e12), "tasks[1].arrival.rate_rps",
     "at most 50,000,000"),
    ("cv-zero", lambda r: r["tasks"][1]["arrival"].update(cv=0), "tasks[1].arrival.cv", "must be > 0"),
    ("cv-negative", lambda r: r["tasks"][1]["arrival"].update(cv=-1), "tasks[1].arrival.cv", "must be > 0"),
    ("cv-on-poisson", lambda r: r["tasks"][0]["arrival"].update(cv=2), "tasks[0].arrival.cv", "unknown key"),
    ("process", lambda r: r["tasks"][0]["arrival"].update(process="weibull"), "tasks[0].arrival.process",
     "unknown process"),
    ("arrival-list", lambda r: r["tasks"][0].update(arrival=[1]), "tasks[0].arrival", "must be a mapping"),
    ("end-before-start", lambda r: r["tasks"][0].update(start_s=5, end_s=5), "tasks[0].end_s",
     "must be after start_s"),
    ("end-negative", lambda r: r["tasks"][0].update(end_s=-1), "tasks[0].end_s", "must be >= 0"),
    ("start-negative", lambda r: r["tasks"][0].update(start_s=-1), "tasks[0].start_s", "must be >= 0"),
    ("input-len-zero", lambda r: r["tasks"][0].update(input_len=0), "tasks[0].input_len", "must be >= 1"),
    ("input-len-float", lambda r: r["tasks"][0].update(input_len=1.5), "tasks[0].input_len",
     "must be an integer"),
    ("input-too-long", lambda r: r["tasks"][0].update(input_len=4096), "tasks[0].input_len",
     "exceeds bert-base's 512 positions"),
    ("output-on-encoder", lambda r: r["tasks"][0].update(output_len=8), "tasks[0].output_len", "not a decoder"),
    ("queue-zero", lambda r: r["tasks"][0].update(max_queue_ms=0), "tasks[0].max_queue_ms", "must be > 0"),
    ("ext-kind", lambda r: r["tasks"][1]["extensions"][1].update(kind="adapterx"),
     "tasks[1].extensions[1].kind", "unknown extension 'adapterx'"),
    ("ext-no-kind", lambda r: r["tasks"][1]["extensions"][0].pop("kind"), "tasks[1].extensions[0].kind",
     "unknown extension None"),
    ("ext-kind-list", lambda r: r["tasks"][1]["extensions"][0].update(kind=["lora"]),
     "tasks[1].extensions[0].kind", "unknown extension ['lora']"),
    ("ext-typo", lambda r: r["tasks"][0]["extensions"][0].update(rnak=4), "tasks[0].extensions[0].rnak",
     "unknown key"),
    ("ext-not-list", lambda r: r["tasks"][0].update(extensions={"kind": "lora"}), "tasks[0].extensions",
     "must be a list"),
    ("ext-twice", lambda r: r["tasks"][0]["extensions"].append({"kind": "lora"}), "tasks[0].extensions",
     "more than one 'lora'"),
    ("lora-rank-zero", lambda r: r["tasks"][0]["extensions"][0].update(rank=0), "tasks[0].extensions[0].rank",
     "must be >= 1"),
    ("lora-target", lambda r: r["tasks"][0]["extensions"][0].update(targets=["qq"]),
     "tasks[0].extensions[0].targets", "must be a list"),
    ("lora-gate-on-bert", lambda r: r["tasks"][0]["extensions"][0].update(targets=["gate"]),
     "tasks[0].extensions[0].targets", "'gate' does not exist in bert-base"),
    ("head-outputs", lambda r: r["tasks"][0]["extensions"][1].update(outputs=0),
     "tasks[0].extensions[1].outputs", "must be >= 1"),
    ("cluster-type", lambda r: r.update(cluster="H100"), "cluster", "must be a mapping"),
    ("cluster-typo", lambda r: r["cluster"].update(gpu=2), "cluster.gpu", "unknown key"),
    ("zero-gpus", lambda r: r["cluster"].update(gpus=0), "cluster.gpus", "must be >= 1"),
    ("gpus-float", lambda r: r["cluster"].update(gpus=1.5), "cluster.gpus", "must be an integer"),
    ("gpus-huge", lambda r: r["cluster"].update(gpus=10**9), "cluster.gpus", "at most 4096"),
    ("device", lambda r: r["cluster"].update(device="TPU-v5"), "cluster.device", "unknown device 'TPU-v5'"),
    ("system", lambda r: r.update(system="fastest"), "system", "unknown system 'fastest'"),
    ("system-type", lambda r: r.update(system=3), "system", "must be a system name or a mapping"),
    ("placement", lambda r: r.update(system={"placement": "mig"}), "system.placement", "unknown placement 'mig'"),
    ("scheduler", lambda r: r.update(system={"scheduler": "edf"}), "system.scheduler", "unknown scheduler 'edf'"),
    ("system-typo", lambda r: r.update(system={"max_bacth": 2}), "system.max_bacth", "unknown key"),
    ("max-batch-zero", lambda r: r.update(system={"max_batch": 0}), "system.max_batch", "must be >= 1"),
    ("target-util", lambda r: r.update(system={"target_util": 1.5}), "system.target_util", "must be in (0, 1]"),
    ("cross-task", lambda r: r.update(system={"cross_task": "yes"}), "system.cross_task", "true or false"),
    ("on-task-end", lambda r: r.update(system={"on_task_end": "drop"}), "system.on_task_end", "'drain' or 'reject'"),
    ("latency", lambda r: r.update(latency_model="magic"), "latency_model", "must be 'roofline'"),
    ("roofline-typo", lambda r: r.update(latency_model={"roofline": {"compute_eff": 0.5, "mem_eff": 1}}),
     "latency_model.roofline.mem_eff", "unknown key"),
    ("roofline-eff", lambda r: r.update(latency_model={"roofline": {"memory_eff": 1.5}}),
     "latency_model.roofline.memory_eff", "must be in (0, 1]"),
    ("profile-missing", lambda r: r.update(latency_model={"profile": "/nonexistent/profile.csv"}),
     "latency_model.profile", "no such file"),
]


@pytest.mark.parametrize("mutate, where, problem", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_config_names_file_key_path_and_problem(base_raw, mutate, where, problem):
    raw = copy.deepcopy(base_raw)
    mutate(raw)
    with pytest.raises(InputError) as e:
        parse_config(raw, "test.yaml")
    msg = str(e.value)
    assert msg.startswith(f"test.yaml: {where}: "), msg
    assert problem in msg
    assert "\n" not in msg
    assert (e.value.source, e.value.where) == ("test.yaml", where)


# -- malformed files --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, message",
    [
        ("- a\n- b\n", "must be a mapping of keys, got a list"),
        ("42\n", "must be a mapping of keys, got 42"),
        ("just text\n", "must be a mapping of keys, got the text 'just text'"),
        ("seed: [1,\n", "line 2: invalid YAML"),
        ("seed: 1\n  duration_s: 2\n", "line 2: invalid YAML"),
        ("seed: 1\nseed: 2\n", "line 2: invalid YAML: duplicate key 'seed' (first on line 1)"),
        ("", "tasks: missing"),
        ("tasks:\n  - {name: a, backbone: bert-base, arrival: {rate_rps: .nan}}\n",
         "tasks[0].arrival.rate_rps: must be a finite number"),
    ],
)
def test_malformed_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(InputError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_binary_and_directory_files(tmp_path):
    with pytest.raises(InputError, match=r"nope\.yaml: no such file$"):
        load_config(tmp_path / "nope.yaml")
    binary = tmp_path / "garbage.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match=r"garbage\.yaml: not a UTF-8 text file"):
        load_config(binary)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"seed: 1\x00\x00\n")
    with pytest.raises(InputError, match=r"nul\.yaml: not a text file"):
        load_config(nul)
    with pytest.raises(InputError, match="is a directory"):
        load_config(tmp_path)


# -- profile latency model ----------------------------------------------------------------------
PROFILE_ROWS = [
    {"kind": "forward", "backbone": "bert-base", "device": "H100-80GB", "dtype": "bf16",
     "batch": b, "seq_len": s, "median_ms": 1.0 + b * s / 1000, "repeats": 5}
    for b in (1, 8) for s in (64, 128)
]


@pytest.fixture
def profile_csv(tmp_path):
    path = tmp_path / "profile.csv"
    write_profile(path, PROFILE_ROWS, ["synthetic"])
    return path


def test_profile_path_resolves_relative_to_the_config_file(tmp_path, profile_csv, monkeypatch):
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    monkeypatch.chdir(sub)  # not where the config and profile are
    cfg = load_config(_write(tmp_path, ISSUE_EXAMPLE.replace("roofline", "{profile: profile.csv}")))
    assert cfg.latency_model == LatencyConfig("profile", str(profile_csv.resolve()))
    assert cfg.latency_model.to_dict() == {"profile": str(profile_csv.resolve())}
    assert _roundtrip(cfg) == cfg


def test_malformed_profile_names_the_profile_file_and_line(tmp_path, profile_csv):
    lines = profile_csv.read_text().splitlines()
    bad_line = len(lines)  # the last measurement
    lines[-1] = lines[-1].replace("bert-base,H100-80GB,bf16,8,128", "bert-base,H100-80GB,bf16,8,lots")
    profile_csv.write_text("\n".join(lines) + "\n")
    path = _write(tmp_path, ISSUE_EXAMPLE.replace("roofline", "{profile: profile.csv}"))
    with pytest.raises(InputError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: latency_model.profile: ")
    assert f"profile.csv:{bad_line}: bad number 'lots' in column seq_len" in msg
    assert "\n" not in msg


def test_profile_without_rows_for_a_tasks_backbone_is_an_input_error(tmp_path, profile_csv):
    text = ISSUE_EXAMPLE.replace("roofline", "{profile: profile.csv}").replace("bert-base", "vit-base")
    text = text.replace("input_len: 128", "input_len: 197")
    with pytest.raises(InputError, match=r"tasks\[0\]\.backbone: profile .*profile\.csv has no forward rows "
                                         r"for vit-base on H100-80GB"):
        load_config(_write(tmp_path, text))
    empty = tmp_path / "empty.csv"
    empty.write_text("# nothing measured\n")
    with pytest.raises(InputError, match=r"latency_model\.profile: .*empty\.csv:1: empty table"):
        load_config(_write(tmp_path, ISSUE_EXAMPLE.replace("roofline", f"{{profile: {empty}}}")))


# -- anything a user can write gives an InputError, never a crash ---------------------------------
_JUNK = [None, True, 0, -1, 2.5, math.nan, math.inf, "", "x", "lora", [], [1], ["q"], {}, {"a": 1},
         {"kind": "lora"}, [{"kind": "head"}], 10**20, 1e300, [[1]], {"kind": [1]}]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@pytest.mark.parametrize("seed", range(3))
def test_random_mutations_give_valid_configs_or_one_line_input_errors(base_raw, seed):
    base_raw["system"] = {"placement": "fmplex", "scheduler": "wfq", "max_batch": 4, "cross_task": True,
                          "slices_per_gpu": 3, "context_switch_ms": 0.2, "target_util": 0.5}
    base_raw["latency_model"] = {"roofline": {"compute_eff": 0.5, "lora_kernel": "loop"}}
    base_raw["tasks"][1].update(end_s=5, max_queue_ms=9)
    rng = np.random.default_rng(seed)
    errors = 0
    for _ in range(400):
        raw = copy.deepcopy(base_raw)
        for _ in range(int(rng.integers(1, 3))):
            path = [p for p in _paths(raw) if p]
            *parent, last = path[int(rng.integers(len(path)))]
            node = raw
            for k in parent:
                node = node[k]
            node[last] = copy.deepcopy(_JUNK[int(rng.integers(len(_JUNK)))])
        try:
            cfg = parse_config(raw, "fuzz.yaml")
        except InputError as e:
            errors += 1
            assert str(e).startswith("fuzz.yaml: ") and "\n" not in str(e)
        else:
            assert _roundtrip(cfg) == cfg
    assert errors > 200  # most junk is rejected

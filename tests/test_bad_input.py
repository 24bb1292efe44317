"""Bad input never gives a traceback (property-based).

The contract of every command (``fmplex-sim run|compare|isolation|capacity|trace info|trace
convert``, ``fmplex-exec replay|validate|profile``): a malformed config, trace or option makes it exit 2 with exactly
one line on stderr that names the file (or the option) and, for a config, the key path or, for a
trace, the line; no traceback; no results left behind (``--out`` does not exist afterwards and
no temporary entry sits next to it).

Malformed inputs are made by hypothesis from small valid ones: a config mutation picks a key path
and a value that is wrong for it (type, range, unknown name, missing or unknown key, duplicate);
a trace mutation picks a row and a column of a small valid trace of each format and breaks it.
The CLIs are called in-process through their ``main(argv)`` for speed; a warning the user would
see counts as stderr output.

Sorting, as the loaders document it: ``azure``, ``alibaba`` and ``mooncake`` sort rows that are
out of time order (stably), so a decreasing timestamp there must be accepted and come out
sorted; ``native`` rejects a decrease and ``servegen`` any timestamp that does not increase,
naming the line.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fmplex_exec.cli import main as exec_main
from fmplex_sim.catalog import BACKBONES, DEVICES
from fmplex_sim.cli import main as sim_main
from fmplex_sim.config import PLACEMENTS, SCHEDULER_NAMES, SYSTEM_PRESETS
from fmplex_sim.traces import load_trace

# Derandomized: CI sees the same examples every run. FMPLEX_FUZZ_EXAMPLES=500 searches deeper locally.
EXAMPLES = int(os.environ.get("FMPLEX_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=max(1, EXAMPLES // 2))


# ----------------------------------------------------------------------------- running a CLI
def call(main, argv) -> tuple[int, str, str]:
    """Run ``main(argv)`` in-process; return (status, stdout, stderr). Warnings go to stderr."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)  # hidden by Python's default filters too
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: err.write(
            warnings.formatwarning(m, c, f, n, line))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def assert_refused(result, *names: str, out: Path | None = None) -> str:
    """Status 2, one non-empty line on stderr holding every one of ``names``, no traceback, and
    nothing written at ``out`` nor next to it (its parent was empty before)."""
    rc, stdout, stderr = result
    assert "Traceback" not in stdout + stderr, stderr
    assert rc == 2, f"status {rc}, stderr {stderr!r}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n") and lines[0].strip(), f"not one line: {stderr!r}"
    for name in names:
        assert name in lines[0], f"{name!r} is not named in {lines[0]!r}"
    if out is not None:
        assert not out.exists(), f"{out} was left behind"
        assert sorted(p.name for p in out.parent.iterdir()) == [], "entries left next to --out"
    return lines[0]


@contextlib.contextmanager
def workdir():
    """A fresh folder per example, with an empty ``res/`` to hold ``--out``."""
    with tempfile.TemporaryDirectory(prefix="fmplex-bad-") as d:
        (Path(d) / "res").mkdir()
        yield Path(d)


# ----------------------------------------------------------------------------- configs
BASE = {
    "seed": 1,
    "duration_s": 1,
    "drain_s": 1,
    "cluster": {"device": "H100-80GB", "gpus": 1},
    "latency_model": "roofline",
    "system": {"name": "mine", "placement": "fmplex", "scheduler": "bfq", "max_batch": 8, "max_wait_ms": 1.0,
               "cross_task": True, "slices_per_gpu": 7, "slicing": "mig", "context_switch_ms": 0.2, "target_util": 0.7,
               "on_task_end": "drain", "pipeline_depth": 2, "spread_idle": True, "light_first": True},
    "tasks": [
        {"name": "a", "backbone": "bert-base",
         "extensions": [{"kind": "lora", "rank": 8, "targets": ["q", "v"], "alpha": 16.0, "version": 1},
                        {"kind": "head", "outputs": 2}],
         "weight": 1.0, "slo_ms": 100.0, "input_len": 64, "start_s": 0.0, "end_s": 5.0, "max_queue_ms": 500.0,
         "arrival": {"process": "gamma", "rate_rps": 5.0, "cv": 2.0}},
        {"name": "b", "backbone": "llama-3.2-1b", "extensions": [{"kind": "prefix", "virtual_tokens": 4}],
         "weight": 2.0, "slo_ms": 500.0, "input_len": 32, "output_len": 4,
         "arrival": {"process": "diurnal", "rate_rps": 2.0, "amplitude": 0.5, "period_s": 10.0, "phase_s": 0.0}},
        {"name": "c", "backbone": "vit-base", "extensions": [{"kind": "encoder", "params": 1000}],
         "arrival": {"process": "onoff", "rate_rps": 2.0, "cv": 1.5, "on_s": 1.0, "off_s": 1.0}},
    ],
}
TASK_NAMES = {t["name"] for t in BASE["tasks"]}
LLAMA_POSITIONS = BACKBONES["llama-3.2-1b"].max_positions

JUNK = st.one_of(
    st.text(max_size=6), st.booleans(), st.lists(st.integers(0, 3), max_size=2),
    st.fixed_dictionaries({"x": st.integers(0, 3)}),
)
NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])
HUGE = st.integers(min_value=2**1024, max_value=10**400)  # beyond the float range
TOO_BIG_INT = st.integers(min_value=2**53 + 1, max_value=10**400)
FRACTION = st.floats(-1e6, 1e6).filter(lambda x: not x.is_integer())
NEGATIVE = st.floats(max_value=-1e-300) | st.integers(max_value=-1)


def _not_in(valid):
    return lambda v: not (isinstance(v, str) and v in valid)


# kind -> values that are wrong for a key of that kind (None is left out for optional keys)
BAD = {
    "pos": st.floats(max_value=0.0) | st.integers(max_value=0) | NONFINITE | HUGE | JUNK | st.none(),
    "pos_opt": st.floats(max_value=0.0) | st.integers(max_value=0) | NONFINITE | HUGE | JUNK,
    "nonneg": NEGATIVE | NONFINITE | HUGE | JUNK | st.none(),
    "nonneg_opt": NEGATIVE | NONFINITE | HUGE | JUNK,
    "num": NONFINITE | HUGE | JUNK | st.none(),
    "pos_int": st.integers(max_value=0) | FRACTION | NONFINITE | TOO_BIG_INT | JUNK | st.none(),
    "nonneg_int": st.integers(max_value=-1) | FRACTION | NONFINITE | TOO_BIG_INT | JUNK | st.none(),
    "bool": st.integers() | st.text(max_size=4) | st.none(),
    "bool_opt": st.integers() | st.text(max_size=4),
    "mapping": st.integers() | st.text(max_size=4) | st.lists(st.integers(), max_size=2) | st.none(),
    "mapping_opt": st.integers() | st.text(max_size=4) | st.lists(st.integers(), max_size=2),
    "list_opt": st.integers() | st.text(max_size=4) | st.fixed_dictionaries({"kind": st.just("head")}),
    "tasks": st.just([]) | st.integers() | st.text(max_size=4) | st.fixed_dictionaries({"name": st.just("a")})
    | st.none(),
    "task_name": st.integers() | st.booleans() | st.none() | st.lists(st.text(max_size=2), max_size=1)
    | st.sampled_from(["", "   "]) | st.text(max_size=4).map(lambda s: s + ",x") | st.text(max_size=4).map(
        lambda s: "x\n" + s),
    "system_name": st.integers() | st.booleans() | st.just("") | st.lists(st.integers(), max_size=1),
    "system": st.text(max_size=8).filter(_not_in(SYSTEM_PRESETS)) | st.integers() | st.none()
    | st.lists(st.integers(), max_size=1),
    "latency": st.text(max_size=8).filter(_not_in({"roofline"})) | st.integers() | st.none()
    | st.sampled_from([{"profile": "/nonexistent/profile.csv"}, {"profile": ""}, {"roofline": {"bogus": 1}},
                       {"roofline": {"compute_eff": 2.0}}, {"roofline": {"lora_kernel": "fast"}},
                       {"roofline": 3}, {"profile": "x", "roofline": {}}, {}]),
    "targets": st.sampled_from([[], ["gate"], ["q", "q"], ["qq"], [1], "q", {"q": 1}])
    | st.lists(st.text(max_size=3).filter(_not_in({"q", "k", "v", "o", "up", "down"})), min_size=1, max_size=2),
    "popularity": st.text(max_size=6).filter(_not_in({"uniform"})) | st.integers()
    | st.fixed_dictionaries({"zipf": NEGATIVE | NONFINITE | JUNK}) | st.just({"other": 1}),
}


def enum(valid) -> st.SearchStrategy:
    return (st.text(max_size=10).filter(_not_in(set(valid))) | st.integers() | st.none()
            | st.lists(st.sampled_from(sorted(valid)), min_size=1, max_size=1))


def T(i, *rest):
    return ("tasks", i, *rest)


FIELDS: list[tuple[tuple, st.SearchStrategy]] = [
    (("seed",), BAD["nonneg_int"]),
    (("duration_s",), BAD["pos"]),
    (("drain_s",), BAD["nonneg"]),
    (("cluster",), BAD["mapping"]),
    (("cluster", "device"), enum(DEVICES)),
    (("cluster", "gpus"), BAD["pos_int"] | st.integers(4097, 10**9)),
    (("latency_model",), BAD["latency"]),
    (("system",), BAD["system"]),
    (("system", "name"), BAD["system_name"]),
    (("system", "placement"), enum(PLACEMENTS)),
    (("system", "scheduler"), enum(SCHEDULER_NAMES)),
    (("system", "max_batch"), BAD["pos_int"]),
    (("system", "max_wait_ms"), BAD["nonneg"]),
    (("system", "cross_task"), BAD["bool_opt"]),
    (("system", "slices_per_gpu"), BAD["pos_int"] | st.integers(8, 10**9)),
    (("system", "slicing"), enum({"mig", "processes"})),
    (("system", "context_switch_ms"), BAD["nonneg_opt"]),
    (("system", "target_util"), BAD["pos"] | st.floats(1.0, 1e300, exclude_min=True)),
    (("system", "on_task_end"), enum({"drain", "reject"})),
    (("system", "pipeline_depth"), BAD["pos_int"]),
    (("system", "spread_idle"), BAD["bool"]),
    (("system", "light_first"), BAD["bool"]),
    (("tasks",), BAD["tasks"]),
    *[f for i in range(3) for f in [
        (T(i), BAD["mapping"]),
        (T(i, "name"), BAD["task_name"]),
        (T(i, "backbone"), enum(BACKBONES)),
        (T(i, "weight"), BAD["pos"]),
        (T(i, "slo_ms"), BAD["pos"]),
        (T(i, "max_queue_ms"), BAD["pos_opt"]),
        (T(i, "start_s"), BAD["nonneg"]),
        (T(i, "extensions"), BAD["list_opt"]),
        (T(i, "extensions", 0), BAD["mapping"]),
        (T(i, "extensions", 0, "kind"), enum({"lora", "prefix", "head", "encoder"})),
        (T(i, "arrival"), BAD["mapping"]),
        (T(i, "arrival", "process"), enum({"poisson", "gamma", "onoff", "diurnal"})),
        (T(i, "arrival", "rate_rps"), BAD["nonneg"] | st.floats(1e8, 1e300)),  # 1e8/s: too many requests
    ]],
    (T(0, "input_len"), BAD["pos_int"] | st.integers(BACKBONES["bert-base"].max_positions + 1, 10**9)),
    (T(0, "output_len"), BAD["nonneg_int"] | st.integers(1, 100)),  # bert-base generates nothing
    (T(0, "end_s"), BAD["pos_opt"]),  # must be after start_s = 0
    (T(0, "extensions", 0, "rank"), BAD["pos_int"]),
    (T(0, "extensions", 0, "alpha"), BAD["pos"]),
    (T(0, "extensions", 0, "targets"), BAD["targets"]),
    (T(0, "extensions", 0, "version"), BAD["pos_int"]),
    (T(0, "extensions", 1, "outputs"), BAD["pos_int"]),
    (T(0, "arrival", "cv"), BAD["pos"]),
    (T(1, "output_len"), BAD["nonneg_int"] | st.integers(LLAMA_POSITIONS, 10**9)),
    (T(1, "extensions", 0, "virtual_tokens"), BAD["pos_int"]),
    (T(1, "arrival", "amplitude"), BAD["nonneg"] | st.floats(1.0, 1e300, exclude_min=True)),
    (T(1, "arrival", "period_s"), BAD["pos"]),
    (T(1, "arrival", "phase_s"), BAD["num"]),
    (T(2, "extensions", 0, "params"), BAD["pos_int"]),
    (T(2, "arrival", "on_s"), BAD["pos"]),
    (T(2, "arrival", "off_s"), BAD["nonneg"]),
    (("workload",), BAD["mapping_opt"]),
    (("workload", "total_rps"), BAD["nonneg"]),
    (("workload", "tasks", "count"), BAD["pos_int"] | st.integers(100_001, 10**9)),
    (("workload", "tasks", "popularity"), BAD["popularity"]),
    (("workload", "rate_scale"), st.floats(0.5, 2)),  # shapes a trace: only with workload.trace
]
REQUIRED = [("tasks",), *[T(i, k) for i in range(3) for k in ("name", "backbone")], T(0, "extensions", 0, "kind")]
MAPPINGS = [(), ("cluster",), ("system",), *[T(i) for i in range(3)], *[T(i, "arrival") for i in range(3)],
            T(0, "extensions", 0), T(0, "extensions", 1)]
KNOWN_KEYS = {
    "seed", "duration_s", "drain_s", "cluster", "latency_model", "system", "systems", "tasks", "workload", "device",
    "gpus",
    "name", "placement", "scheduler", "max_batch", "max_wait_ms", "cross_task", "slices_per_gpu",
    "slicing", "context_switch_ms", "target_util", "on_task_end", "pipeline_depth", "spread_idle", "light_first", "backbone", "extensions",
    "weight", "slo_ms", "input_len", "output_len", "arrival", "start_s", "end_s", "max_queue_ms", "kind", "rank",
    "targets", "alpha", "version", "virtual_tokens", "outputs", "params", "process", "rate_rps", "cv", "on_s",
    "off_s", "amplitude", "period_s", "phase_s",
}


def key_path(path: tuple) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else k)
    return out


def _parent(raw: dict, path: tuple):
    node = raw
    for k in path[:-1]:
        if isinstance(k, str) and not isinstance(node.get(k), (dict, list)):
            node[k] = {}
        node = node[k]
    return node


def _flow(value) -> str | None:
    """``value`` as YAML text for ``--set`` (None when it does not survive the round trip)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    text = text[: -len("\n...\n")] if text.endswith("\n...\n") else text.rstrip("\n")
    if "\n" in text or text.startswith(("'", "!")):
        return None
    try:
        back = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return text if yaml.safe_dump(back) == yaml.safe_dump(value) else None


@st.composite
def bad_config(draw):
    """(raw config, key path the error must name, ``--set`` overrides)."""
    raw = copy.deepcopy(BASE)
    op = draw(st.sampled_from(["set"] * 6 + ["delete", "unknown", "duplicate"]))
    if op == "set":
        path, values = draw(st.sampled_from(FIELDS))
        value = draw(values)
        flow = _flow(value) if draw(st.booleans()) else None
        if flow is not None:
            return raw, key_path(path), [f"{key_path(path)}={flow}"]
        _parent(raw, path)[path[-1]] = value
        return raw, key_path(path), []
    if op == "delete":
        path = draw(st.sampled_from(REQUIRED))
        del _parent(raw, path)[path[-1]]
        return raw, key_path(path), []
    if op == "unknown":
        where = draw(st.sampled_from(MAPPINGS))
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in KNOWN_KEYS) | st.integers())
        node = raw
        for k in where:
            node = node[k]
        node[key] = draw(st.integers(0, 3))
        shown = str(key) if str(key).isprintable() else repr(key)
        return raw, f"{key_path(where)}.{shown}" if where else shown, []
    i, j = draw(st.sampled_from([(0, 1), (0, 2), (1, 2)]))
    raw["tasks"][j]["name"] = raw["tasks"][i]["name"]
    return raw, f"tasks[{j}].name", []


# (main, the command and the options it needs besides the config and --out)
CONFIG_COMMANDS = [(sim_main, ("run",)), (sim_main, ("compare",)), (sim_main, ("isolation", "--noisy", "a")),
                   (sim_main, ("capacity", "--system", "fmplex", "--slo-attainment", "0.9")),
                   (exec_main, ("replay",)), (exec_main, ("validate",))]


def test_base_config_is_valid_and_runs():
    with workdir() as d:
        cfg = d / "base.yaml"
        cfg.write_text(yaml.safe_dump(BASE, sort_keys=False))
        rc, out, err = call(sim_main, ["run", cfg, "--out", d / "res" / "run"])
        assert rc == 0, err
        assert (d / "res" / "run" / "summary.json").is_file()


def mutated(path: tuple, value) -> dict:
    raw = copy.deepcopy(BASE)
    _parent(raw, path)[path[-1]] = value
    return raw


RUN = CONFIG_COMMANDS[0]


# Bugs these tests found, kept as explicit examples (each gave a traceback or a wrong message).
@example(case=(mutated(T(0, "arrival", "rate_rps"), 10**400), "tasks[0].arrival.rate_rps", []), command=RUN)
@example(case=(mutated(("system", "max_batch"), 10**400), "system.max_batch", []), command=RUN)
@example(case=(mutated(T(1, "extensions", 0, "virtual_tokens"), 1e300), "tasks[1].extensions[0].virtual_tokens", []),
         command=RUN)
@example(case=(mutated(T(0, "x\u2028y"), 1), "tasks[0].'x\\u2028y'", []), command=RUN)
@FUZZ
@given(case=bad_config(), command=st.sampled_from(CONFIG_COMMANDS))
def test_malformed_config_is_refused_naming_the_key(case, command):
    raw, where, overrides = case
    main, (cmd, *opts) = command
    with workdir() as d:
        cfg = d / "bad.yaml"
        cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
        out = d / "res" / "run"
        argv = [cmd, cfg, "--out", out, *opts] + [a for o in overrides for a in ("--set", o)]
        assert_refused(call(main, argv), str(cfg), where, out=out)


BROKEN_YAML = ["key: [unclosed", "tasks: {a: 1", "- item\n  bad: : :", "\tseed: 1", "seed: 1\nseed: 2",
               "a: b: c", "}{", "'unterminated", "&anchor *alias", "!!python/object:os.system x: 1", "? [a]\n: b",
               "seed: *nowhere", "x: !!int abc"]


@st.composite
def malformed_text(draw):
    """(file bytes, whether the error must name a line)."""
    base = yaml.safe_dump(BASE, sort_keys=False)
    kind = draw(st.sampled_from(["syntax", "empty", "garbage", "top-level", "digits"]))
    if kind == "syntax":
        lines = base.splitlines()
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(BROKEN_YAML)))
        return "\n".join(lines).encode(), True
    if kind == "empty":
        return draw(st.sampled_from([b"", b"   \n\n", b"# only a comment\n", b"~\n", b"null\n", b"---\n"])), False
    if kind == "garbage":
        blob = draw(st.binary(max_size=64))
        bad = draw(st.sampled_from([b"\x00", b"\xff", b"\x07", b"\x1b[31m", b"\xc3\x28", b"\x1f\x8b"]))
        at = draw(st.integers(0, len(blob)))
        return blob[:at] + bad + blob[at:], False
    if kind == "top-level":
        value = draw(st.lists(st.integers(), max_size=3) | st.integers() | st.text(min_size=1, max_size=8)
                     | st.floats() | st.booleans())
        return yaml.safe_dump(value).encode(), False
    # a number with more digits than Python converts (4300), where the config wants a number
    path, _ = draw(st.sampled_from([f for f in FIELDS if f[0][-1] in ("rate_rps", "gpus", "seed", "slo_ms")]))
    raw = copy.deepcopy(BASE)
    _parent(raw, path)[path[-1]] = "__DIGITS__"
    digits = "9" * draw(st.integers(4301, 6000))
    return yaml.safe_dump(raw, sort_keys=False).replace("__DIGITS__", digits).encode(), True


@example(case=(yaml.safe_dump(BASE).replace("seed: 1", "seed: " + "1" * 5000).encode(), True), command=RUN)
@FUZZ
@given(case=malformed_text(), command=st.sampled_from(CONFIG_COMMANDS))
def test_unreadable_config_file_is_refused_naming_the_file(case, command):
    data, names_line = case
    main, (cmd, *opts) = command
    with workdir() as d:
        cfg = d / "bad.yaml"
        cfg.write_bytes(data)
        out = d / "res" / "run"
        line = assert_refused(call(main, [cmd, cfg, "--out", out, *opts]), str(cfg), out=out)
        if names_line:
            assert ": line " in line, line


SIM_OPTIONS = [  # (option the error must name, command, extra argv; {cfg}, {out}, {dir} filled in)
    ("--seed", "run", ["--seed=-1"]),
    ("--systems", "compare", ["--systems", "fmplex,nope-fifo"]),
    ("--systems", "compare", ["--systems", "fmplex,fmplex"]),
    ("--systems", "compare", ["--systems", " , "]),
    ("--set", "run", ["--set", "no_equals_sign"]),
    ("--set", "run", ["--set", "tasks[9].weight=2"]),
    ("--set", "run", ["--set", "seed=[unclosed"]),
    ("--set", "run", ["--set", "9bad.key=1"]),
    ("--set", "run", ["--set", "tasks[0].slo_ms=" + "9" * 5000]),
    ("--out", "run", ["--out", ""]),
    ("--out", "run", ["--out", "{cfg}"]),
    ("--out", "compare", ["--out", "{dir}"]),
    ("--out", "replay", ["--out", "{cfg}"]),
    ("--noisy", "isolation", ["--noisy", "nope"]),
    ("--noisy", "isolation", ["--noisy", ""]),
    ("--systems", "isolation", ["--noisy", "a", "--systems", "fmplex,fmplex"]),
    ("--out", "isolation", ["--noisy", "a", "--out", "{cfg}"]),
]


@pytest.mark.parametrize("option,command,extra", SIM_OPTIONS)
def test_bad_command_line_options_are_refused_naming_the_option(option, command, extra):
    with workdir() as d:
        cfg = d / "ok.yaml"
        cfg.write_text(yaml.safe_dump(BASE, sort_keys=False))
        out = d / "res" / "run"
        extra = [a.format(cfg=cfg, dir=d) for a in extra]
        argv = [command, cfg] + (["--out", out] if "--out" not in extra else []) + extra
        main = exec_main if command == "replay" else sim_main
        assert_refused(call(main, argv), option, out=out)
        assert cfg.read_text() == yaml.safe_dump(BASE, sort_keys=False)


@FUZZ
@given(name=st.text(max_size=12).filter(lambda s: s not in BACKBONES and "\x00" not in s))
def test_profile_with_an_unknown_backbone_is_refused_before_measuring(name):
    with workdir() as d:
        out = d / "res" / "profile.csv"
        assert_refused(call(exec_main, ["profile", f"--backbone={name}", "--out", out]), "--backbone", out=out)


@pytest.mark.parametrize("option", [["--sim-device", "TPU-v9"], ["--threads=-2"], ["--dtype", "int3"],
                                    ["--out", ""], ["--out", "{dir}"], ["--out", "{cfg}/p.csv"]])
def test_profile_with_bad_options_is_refused_before_measuring(option):
    with workdir() as d:
        out = d / "res" / "profile.csv"
        (d / "cfg").write_text("a file")
        option = [a.format(dir=d / "res", cfg=d / "cfg") for a in option]
        argv = ["profile", "--backbone", "minilm-l6", *(["--out", out] if option[0] != "--out" else []), *option]
        assert_refused(call(exec_main, argv), option[0].split("=")[0], out=out)


# ----------------------------------------------------------------------------- traces
FORMATS = ("azure", "alibaba", "mooncake", "native", "servegen")
HEADERS = {
    "azure": ["TIMESTAMP", "ContextTokens", "GeneratedTokens"],
    "alibaba": ["gmt_create", "groupId", "prompt_length", "checkpoint_model_version_id"],
    "native": ["arrival_s", "task", "input_len", "output_len"],
    "servegen": None,
    "mooncake": None,
}
# column -> kind of value it holds (the columns the loader reads and checks)
COLUMNS = {
    "azure": {0: "datetime", 1: "whole", 2: "whole"},
    "alibaba": {0: "datetime", 1: "name", 2: "round"},
    "native": {0: "number", 1: "name", 2: "whole", 3: "whole"},
    "servegen": {0: "number", 1: "number", 2: "number"},
}
T0 = datetime(2023, 11, 16, 18, 15, 46)
FIELD_TEXT = st.text(st.characters(blacklist_characters=',"\n\r', blacklist_categories=("Cs",)), min_size=1,
                     max_size=8)


def _is_nonneg_number(s: str) -> bool:
    try:
        x = float(s)
    except ValueError:
        return False
    return math.isfinite(x) and x >= 0 and "_" not in s


BAD_FIELD = {
    "number": FIELD_TEXT.filter(lambda s: not _is_nonneg_number(s))
    | st.sampled_from(["", "-1", "-0.5", "nan", "inf", "-inf", "1e999", "1_000"]),
    "whole": FIELD_TEXT.filter(lambda s: not _is_nonneg_number(s))
    | st.sampled_from(["", "-1", "3.5", "nan", "inf", "3000000000", "1e999"]),
    "round": FIELD_TEXT.filter(lambda s: s.strip() and not _is_nonneg_number(s))
    | st.sampled_from(["-1", "nan", "inf", "3000000000", "1e999"]),
    "datetime": FIELD_TEXT.filter(lambda s: not s.strip().startswith("2"))
    | st.sampled_from(["", "2023-02-30 00:00:00", "2023-11-16", "2023-11-16 25:00:00", "1000-01-01 00:00:00",
                       "2300-01-01 00:00:00", "9999-12-31 23:59:59", "2023-11-16T18:15:46Z", "1700000000"]),
    "name": st.sampled_from(["", "   "]),
}
BAD_JSON_VALUE = st.one_of(
    st.text(max_size=4), st.none(), st.booleans(), st.integers(max_value=-1), st.floats(max_value=-1e-300),
    st.sampled_from([math.nan, math.inf]), st.lists(st.integers(), max_size=2), st.integers(10**400, 10**401),
)


@st.composite
def valid_trace(draw, fmt):
    """(rows, each a list of fields or a JSON object, and the number of requests it holds)."""
    n = draw(st.integers(2, 5))
    gaps = draw(st.lists(st.integers(1, 5000), min_size=n, max_size=n))
    t_ms = list(itertools.accumulate(gaps))
    inp = draw(st.lists(st.integers(1, 500), min_size=n, max_size=n))
    out = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    task = draw(st.lists(st.sampled_from(["t0", "t1", "t2"]), min_size=n, max_size=n))
    if fmt == "azure":
        rows = [[(T0 + timedelta(milliseconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f"), str(i), str(o)]
                for t, i, o in zip(t_ms, inp, out)]
    elif fmt == "alibaba":
        rows = [[(T0 + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S"), k, f"{i}.0", "model-1"]
                for t, k, i in zip(t_ms, task, inp)]
    elif fmt == "native":
        rows = [[f"{t / 1000:.3f}", k, str(i), str(o)] for t, k, i, o in zip(t_ms, task, inp, out)]
    elif fmt == "servegen":
        rows = [[str(600 * r), "0.01", "1.5", "Gamma", "0.44", "1"] for r in range(n)]
    else:
        rows = [{"timestamp": t, "input_length": i, "output_length": o, "hash_ids": [1, 2]}
                for t, i, o in zip(t_ms, inp, out)]
    return rows


def render(fmt, rows) -> bytes:
    if fmt == "mooncake":
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    else:
        lines = [r if isinstance(r, str) else ",".join(r) for r in rows]
        if HEADERS[fmt]:
            lines.insert(0, ",".join(HEADERS[fmt]))
    return ("\n".join(lines) + "\n").encode()


def write_trace(d: Path, fmt: str, data: bytes) -> tuple[Path, Path]:
    """(path to pass to the CLI, file the error must name)."""
    if fmt == "servegen":
        folder = d / "servegen"
        folder.mkdir()
        (folder / "chunk-7-trace.csv").write_bytes(data)
        return folder, folder / "chunk-7-trace.csv"
    path = d / f"trace.{'jsonl' if fmt == 'mooncake' else 'csv'}"
    path.write_bytes(data)
    return path, path


@st.composite
def bad_trace(draw):
    """(format, file bytes, line the error must name or None, whether the file is valid but unsorted)."""
    fmt = draw(st.sampled_from(FORMATS))
    rows = draw(valid_trace(fmt))
    first = 2 if HEADERS[fmt] else 1  # file line of row 0
    op = draw(st.sampled_from(["field"] * 4 + ["count", "blank", "decrease", "file"]))
    r = draw(st.integers(1 if op == "decrease" else 0, len(rows) - 1))
    if op == "field":
        if fmt == "mooncake":
            key = draw(st.sampled_from(["timestamp", "input_length", "output_length"]))
            lengths = st.floats(0.1, 1e6).filter(lambda x: not x.is_integer()) | st.integers(2**31, 2**40)
            bad = draw(BAD_JSON_VALUE | (lengths if key != "timestamp" else st.nothing()))
            broken = draw(st.sampled_from(["value", "missing", "line"]))
            if broken == "value":
                rows[r] = {**rows[r], key: bad}  # json writes NaN and Infinity, which json reads back
            elif broken == "missing":
                del rows[r][key]
            else:
                rows[r] = draw(st.sampled_from(["[1, 2]", "5", "{", "not json", '{"timestamp": 1}',
                                                "[" * 100_000 + "]" * 100_000, "{}, {}"]))
        else:
            col = draw(st.sampled_from(sorted(COLUMNS[fmt])))
            rows[r][col] = draw(BAD_FIELD[COLUMNS[fmt][col]])
        return fmt, render(fmt, rows), first + r, False
    if op == "count":
        if fmt == "mooncake":
            rows[r] = json.dumps(rows[r]) + ", 5"
        elif draw(st.booleans()):
            rows[r] = rows[r] + ["extra"]
        else:
            rows[r] = rows[r][:-1]
        return fmt, render(fmt, rows), first + r, False
    if op == "blank":
        rows.insert(r, draw(st.sampled_from(["", "   "])))
        return fmt, render(fmt, rows), first + r, False
    if op == "decrease":
        # row r earlier than row r - 1 (servegen: not later)
        if fmt == "mooncake":
            rows[r]["timestamp"] = rows[r - 1]["timestamp"] - 1 - draw(st.integers(0, rows[r - 1]["timestamp"] - 1))
        elif fmt == "servegen":
            rows[r][0] = str(int(rows[r - 1][0]) - 600 * draw(st.integers(0, 1)))
        elif fmt == "native":
            rows[r][0] = f"{float(rows[r - 1][0]) - 0.0005:.4f}"
        else:
            rows[r][0] = (T0 - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
        sorts = fmt in ("azure", "alibaba", "mooncake")
        return fmt, render(fmt, rows), None if sorts else first + r, sorts
    # the whole file
    whole = draw(st.sampled_from(["empty", "blank", "header", "garbage", "gzip"]))
    if whole == "empty":
        return fmt, b"", None, False
    if whole == "blank":
        return fmt, b" \n\n  \n", None, False
    if whole == "header" and HEADERS[fmt]:
        return fmt, (",".join(HEADERS[fmt]) + "\n").encode(), None, False
    if whole == "gzip":
        return fmt, b"\x1f\x8b\x08\x00" + draw(st.binary(max_size=16)), None, False
    blob = draw(st.binary(max_size=48))
    at = draw(st.integers(0, len(blob)))
    return fmt, blob[:at] + draw(st.sampled_from([b"\x00", b"\xff\xfe", b"\xc3\x28"])) + blob[at:], None, False


FORMAT_NAMES = {"azure": "azure-llm-2023", "alibaba": "alibaba-genai-2026", "mooncake": "mooncake",
                "native": "native", "servegen": "servegen"}


def trace_command(d: Path, command: str, fmt: str, path: Path) -> tuple[list, Path]:
    """argv of ``command`` reading the trace at ``path``, and its --out."""
    if command == "info":
        return ["trace", "info", path, "--format", FORMAT_NAMES[fmt]], d / "res" / "none"
    if command == "convert":
        out = d / "res" / "converted.csv"
        return ["trace", "convert", path, "--format", FORMAT_NAMES[fmt], "--out", out], out
    cfg = d / "trace_run.yaml"
    raw = {"seed": 2, "drain_s": 1, "workload": {"trace": {"format": FORMAT_NAMES[fmt], "path": str(path)}},
           "tasks": [{"name": "t", "backbone": "bert-base", "slo_ms": 200}]}
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = d / "res" / "run"
    return ["run", cfg, "--out", out], out


MOONCAKE_OK = '{"timestamp": 1, "input_length": 3, "output_length": 4}'


@example(case=("mooncake", f"{MOONCAKE_OK}\n{MOONCAKE_OK.replace('1', '1' + '0' * 400, 1)}\n".encode(), 2, False),
         command="info")
@example(case=("mooncake", f"{MOONCAKE_OK}\n{'[' * 100_000}\n".encode(), 2, False), command="info")
@example(case=("azure", b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-01-01 00:00:00,1,2\n"
                        b"1000-01-01 00:00:00,1,2\n", 3, False), command="info")
@example(case=("servegen", b"0,1e300,1,Gamma,1,1\n1e300,1,1,Gamma,1,1\n", 1, False), command="info")
@FUZZ
@given(case=bad_trace(), command=st.sampled_from(["info", "convert", "run"]))
def test_malformed_trace_is_refused_naming_the_file_and_line(case, command):
    fmt, data, line, sorts = case
    with workdir() as d:
        path, named = write_trace(d, fmt, data)
        argv, out = trace_command(d, command, fmt, path)
        result = call(sim_main, argv)
        if sorts:
            # the loader sorts a file out of time order: accepted, and read sorted
            assert result[0] == 0, result[2]
            trace = load_trace(fmt, str(path))
            assert (trace.arrival_s[1:] >= trace.arrival_s[:-1]).all()
            if command == "convert":
                assert len(load_trace("native", str(out))) == len(trace)
            return
        msg = assert_refused(result, str(named), out=out)
        if line is not None:
            assert f": line {line}: " in msg, msg


@settings(FUZZ, max_examples=max(1, EXAMPLES // 3))
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_unbroken_traces_are_read(fmt, data):
    # the mutations start from these: the unbroken ones must load
    rows = data.draw(valid_trace(fmt))
    with workdir() as d:
        path, _ = write_trace(d, fmt, render(fmt, rows))
        argv, _ = trace_command(d, "convert", fmt, path)
        rc, _, err = call(sim_main, argv)
        assert rc == 0, err


TRACE_OPTIONS = {
    "--rate-scale": ["0", "-1", "nan", "inf", "-inf"],
    "--burstiness-scale": ["0", "-2", "nan", "inf"],
    "--zipf": ["-0.5", "nan", "inf"],
    "--window-start": ["-1", "nan", "inf"],
    "--window-duration": ["0", "-5", "nan", "inf"],
    "--seed": ["-1", "-99", "x", str(2**53 + 1)],
    "--max-requests": ["0", "-3", "1.5"],
    "--tasks": ["0", "-1"],
    "--input-len": ["0", "-4", "12"],  # 12: only servegen takes one
    "--format": ["", "azure-llm-2024", "csv"],
}
CONVERT_ONLY = {"--rate-scale", "--burstiness-scale", "--zipf", "--max-requests", "--tasks"}


@pytest.mark.parametrize("command", ["info", "convert"])
@pytest.mark.parametrize("option,value", [(o, v) for o, vs in TRACE_OPTIONS.items() for v in vs])
def test_bad_trace_options_are_refused_naming_the_option(option, value, command):
    if command == "info" and option in CONVERT_ONLY:
        return
    with workdir() as d:
        path, _ = write_trace(d, "native", render("native", [["0.5", "a", "3", "0"], ["1.5", "b", "4", "0"]]))
        out = d / "res" / "converted.csv"
        argv = ["trace", command, path, f"{option}={value}"]
        argv += ["--format", "native"] if option != "--format" else []
        argv += ["--out", out] if command == "convert" else []
        line = assert_refused(call(sim_main, argv), out=out)
        assert option in line, line


@FEW
@given(where=st.sampled_from(["file", "under-a-file", "folder"]))
def test_convert_to_an_unwritable_place_is_refused_naming_out(where):
    with workdir() as d:
        path, _ = write_trace(d, "native", render("native", [["0.5", "a", "3", "0"]]))
        out = {"file": d / "res" / "x.csv", "under-a-file": path / "x.csv", "folder": d / "res"}[where]
        if where == "file":
            (d / "res").chmod(0o500)  # not writable
        try:
            result = call(sim_main, ["trace", "convert", path, "--format", "native", "--out", out])
        finally:
            (d / "res").chmod(0o700)
        if where == "file" and result[0] == 0:  # running as root: permissions do not stop writing
            return
        assert_refused(result, "--out")
        assert sorted(p.name for p in (d / "res").iterdir()) == []


def test_replay_and_profile_refuse_bad_input_before_importing_torch(tmp_path):
    # Config and option errors come before any model work: no torch import, so they are fast.
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("tasks: [{name: a, backbone: nope}]\n")
    code = (
        "import sys\n"
        "from fmplex_exec.cli import main\n"
        f"a = main(['replay', {str(cfg)!r}, '--out', {str(tmp_path / 'r')!r}])\n"
        f"b = main(['profile', '--backbone', 'nope', '--out', {str(tmp_path / 'p.csv')!r}])\n"
        "print(a, b, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "2", "False"], done.stderr
    assert len(done.stderr.splitlines()) == 2 and "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- found by an audit
# Each case gave a traceback, exhausted memory or hung before its fix: a hand-written adversarial
# pass over every command, kept here as explicit examples.
def _cfg_with(d: Path, raw: dict) -> Path:
    p = d / "c.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


@pytest.mark.parametrize("path,value,where", [
    (T(0, "arrival", "cv"), 1e30, "tasks[0].arrival.cv"),  # chunk of 1e31 gaps: numpy refused the size
    (T(0, "arrival", "cv"), 1e308, "tasks[0].arrival.cv"),  # chunk size inf: OverflowError
    (T(2, "arrival", "on_s"), 1e-9, "tasks[2].arrival.on_s"),  # a billion ON/OFF cycles: memory exhausted
    (T(0, "arrival", "cv"), 1e-300, "tasks[0].arrival.cv"),  # Gamma shape 1/cv^2: ZeroDivisionError
    (T(0, "weight"), 1e-200, "tasks[0].weight"),  # Jain's index overflowed to NaN under load
])
def test_arrival_parameters_that_cannot_be_generated_are_refused(path, value, where):
    raw = mutated(path, value)
    if path[-1] == "on_s":
        _parent(raw, path)["off_s"] = 1e-9
    with workdir() as d:
        cfg = _cfg_with(d, raw)
        assert_refused(call(sim_main, ["run", cfg, "--out", d / "res" / "r"]), str(cfg), where, out=d / "res" / "r")


def test_compare_keeps_light_first_for_bfq_systems_only():
    """light_first is a bfq option: comparing a config that sets it under fifo systems ran into
    FifoScheduler(light_first=...)."""
    with workdir() as d:
        rc, out, err = call(sim_main, ["compare", _cfg_with(d, BASE), "--out", d / "res" / "c",
                                       "--systems", "fmplex,spatial,colocate"])
        assert rc == 0, err


@pytest.mark.parametrize("command", ["run", "isolation", "replay", "validate"])
@pytest.mark.parametrize("where", ["long-name", "under-a-file", "dot", "a-file", "data-folder"])
def test_unusable_out_is_refused_before_any_work(command, where, monkeypatch):
    """validate replaced an existing file or a folder of other data with its results."""
    with workdir() as d:
        monkeypatch.chdir(d)  # "." is the scratch folder, whatever the command does with it
        (d / "res" / "afile").write_text("keep me")
        (d / "res" / "data").mkdir()
        (d / "res" / "data" / "mine.txt").write_text("keep me too")
        out = {"long-name": str(d / "res" / ("x" * 300)), "under-a-file": str(d / "res" / "afile" / "sub"),
               "dot": ".", "a-file": str(d / "res" / "afile"), "data-folder": str(d / "res" / "data")}[where]
        main = exec_main if command in ("replay", "validate") else sim_main
        extra = ["--noisy", "a"] if command == "isolation" else ["--rounds", "1", "--systems", "fmplex"] \
            if command == "validate" else []
        rc, stdout, stderr = call(main, [command, _cfg_with(d, BASE), "--out", out, *extra])
        assert_refused((rc, stdout, stderr), "--out")
        assert (d / "res" / "afile").read_text() == "keep me"
        assert (d / "res" / "data" / "mine.txt").read_text() == "keep me too"
        assert sorted(p.name for p in (d / "res").iterdir()) == ["afile", "data"]


def test_out_in_a_read_only_folder_is_refused_before_any_work():
    """As root, the command runs with the permission-override capability dropped (setpriv), as a
    user without it would. Before the fix, a harness replay ran its models, then failed."""
    with workdir() as d:
        ro = d / "res" / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cmd = [str(Path(sys.executable).with_name("fmplex-sim")), "run", str(_cfg_with(d, BASE)), "--out", str(ro / "r")]
        if os.geteuid() == 0:
            cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search", *cmd]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            pytest.skip("setpriv is not installed")
        ro.chmod(0o755)
        assert_refused((p.returncode, p.stdout, p.stderr), "--out", "permission denied")
        assert list(ro.iterdir()) == []


def test_validate_refuses_an_empty_profile_name_before_profiling():
    with workdir() as d:
        out = d / "res" / "v"
        assert_refused(call(exec_main, ["validate", _cfg_with(d, BASE), "--profile", "", "--out", out]), "--profile", out=out)


def test_profile_on_cuda_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with workdir() as d:
        out = d / "res" / "p.csv"
        assert_refused(call(exec_main, ["profile", "--backbone", "minilm-l6", "--device", "cuda", "--out", out]),
                       "--device", out=out)


def test_profile_csv_with_an_oversized_field_names_its_line():
    good = (Path(__file__).resolve().parents[1] / "profiles" / "cpu-2core" / "minilm-l6.csv").read_text()
    with workdir() as d:
        prof = d / "huge.csv"
        lines = good.splitlines()
        i = next(k for k, line in enumerate(lines) if line.startswith("forward"))
        lines[i] = lines[i] + ',"' + "9" * 200_000 + '"'
        prof.write_text("\n".join(lines) + "\n")
        raw = copy.deepcopy(BASE)
        raw["latency_model"] = {"profile": str(prof)}
        out = d / "res" / "r"
        assert_refused(call(sim_main, ["run", _cfg_with(d, raw), "--out", out]), f"huge.csv:{i + 1}", out=out)


@pytest.mark.parametrize("option", [["--burstiness-scale", "1e300"], ["--rate-scale", "1e300"], ["--tasks", "1000000000"]])
def test_trace_convert_refuses_shaping_it_cannot_do(option):
    with workdir() as d:
        trace = d / "t.csv"
        trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                         + "".join(f"2023-11-16 18:15:{s:02d}.000000,10,1\n" for s in range(40)))
        out = d / "res" / "o.csv"
        assert_refused(call(sim_main, ["trace", "convert", trace, "--format", "azure", "--out", out, *option]),
                       option[0], out=out)


def test_a_config_that_is_not_a_regular_file_is_refused():
    with workdir() as d:
        out = d / "res" / "r"
        assert_refused(call(sim_main, ["run", "/dev/zero", "--out", out]), "/dev/zero", "regular file", out=out)


def test_sigterm_leaves_no_results_behind(tmp_path):
    """SIGTERM mid-run unwinds like Ctrl-C: one line, status 143, no results folder, no temporary one."""
    import signal
    import time

    raw = copy.deepcopy(BASE)
    raw.update(duration_s=300, drain_s=0)
    raw["tasks"] = [dict(raw["tasks"][0], end_s=None, arrival={"process": "poisson", "rate_rps": 10000.0})]
    del raw["tasks"][0]["end_s"]
    cfg = _cfg_with(tmp_path, raw)
    (tmp_path / "res").mkdir()
    out = tmp_path / "res" / "r"
    p = subprocess.Popen([str(Path(sys.executable).with_name("fmplex-sim")), "run", str(cfg), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # imports, then well into the 3 million requests
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 143, stderr
    assert stderr.count("\n") == 1 and "terminated" in stderr and "Traceback" not in stderr
    assert list((tmp_path / "res").iterdir()) == []


def test_a_system_named_placement_scheduler_is_accepted_as_the_readme_says():
    raw = copy.deepcopy(BASE)
    raw["system"] = "fmplex-wfq"
    with workdir() as d:
        rc, out, err = call(sim_main, ["run", _cfg_with(d, raw), "--out", d / "res" / "r"])
        assert rc == 0, err
        assert json.loads((d / "res" / "r" / "summary.json").read_text())["system"]["scheduler"] == "wfq"


def test_a_trace_spanning_centuries_is_refused():
    """1e300 s timestamps overflowed the trace's statistics into inf, which no JSON can hold."""
    with workdir() as d:
        trace = d / "t.csv"
        trace.write_text("arrival_s,task,input_len\n0,a,3\n1e300,a,4\n")
        assert_refused(call(sim_main, ["trace", "info", trace, "--format", "native"]), str(trace), "31 years")


def test_input_errors_cross_a_sweeps_process_pool():
    """A point whose trace is malformed fails in a worker process; its InputError used to break
    the pool (it could not be rebuilt there) and surface as a traceback."""
    with workdir() as d:
        trace = d / "t.csv"
        trace.write_text("arrival_s,task,input_len\n2,a,3\n1,a,4\n")  # native traces must not go back in time
        raw = {"seed": 1, "cluster": {"device": "H100-80GB", "gpus": 1}, "latency_model": "roofline",
               "workload": {"trace": {"format": "native", "path": str(trace)}},
               "tasks": [{"name": "t", "backbone": "bert-base"}]}
        base = _cfg_with(d, raw)
        sweep = d / "s.yaml"
        sweep.write_text(yaml.safe_dump({"base": str(base), "grid": {"seed": [1, 2]}}))
        rc, out, err = call(sim_main, ["sweep", sweep, "--out", d / "res" / "s", "--workers", "2"])
        assert "Traceback" not in err and rc == 2, err
        assert len(err.splitlines()) == 1 and str(trace) in err


def test_sweep_refuses_an_out_name_too_long():
    with workdir() as d:
        sweep = d / "s.yaml"
        sweep.write_text(yaml.safe_dump({"base": str(_cfg_with(d, BASE)), "grid": {"seed": [1]}}))
        assert_refused(call(sim_main, ["sweep", sweep, "--out", d / "res" / ("x" * 300)]), "--out")


def test_a_number_yaml_reads_as_text_gets_a_hint():
    with workdir() as d:
        cfg = d / "c.yaml"
        cfg.write_text(yaml.safe_dump(BASE, sort_keys=False).replace("duration_s: 1\n", "duration_s: 1e3\n"))
        line = assert_refused(call(sim_main, ["run", cfg, "--out", d / "res" / "r"]), str(cfg), "duration_s")
        fix = line.rsplit("e.g. ", 1)[1].rstrip(")")
        assert yaml.safe_load(f"x: {fix}") == {"x": 1000.0}  # the hint's own spelling reads as a number


def test_a_quoted_number_gets_the_hint_to_drop_the_quotes():
    with workdir() as d:
        cfg = d / "c.yaml"
        cfg.write_text(yaml.safe_dump(BASE, sort_keys=False).replace("duration_s: 1\n", "duration_s: '100'\n"))
        line = assert_refused(call(sim_main, ["run", cfg, "--out", d / "res" / "r"]), str(cfg), "duration_s")
        assert "without quotes" in line


def test_an_empty_config_path_is_named():
    with workdir() as d:
        assert_refused(call(sim_main, ["run", "", "--out", d / "res" / "r"]), "CONFIG", "empty path")


def test_a_preset_name_on_another_placement_is_refused():
    """`{name: spatial, placement: fmplex}` ran fmplex and labelled its results spatial."""
    raw = copy.deepcopy(BASE)
    raw["system"] = {"name": "spatial", "placement": "fmplex"}
    with workdir() as d:
        cfg = _cfg_with(d, raw)
        assert_refused(call(sim_main, ["run", cfg, "--out", d / "res" / "r"]), str(cfg), "system.name")


@pytest.mark.parametrize("main, command", [(sim_main, "compare"), (sim_main, "isolation"), (exec_main, "validate")])
@pytest.mark.parametrize("systems, problem", [("", "name at least one system"), (" , ", "name at least one system"),
                                              ("fmplex,fmplex", "a system is named twice")])
def test_an_empty_or_repeated_systems_option_is_refused(main, command, systems, problem):
    # validate used to read an empty --systems as "the config's systems"
    extra = ["--noisy", BASE["tasks"][0]["name"]] if command == "isolation" else []
    with workdir() as d:
        out = d / "res" / "r"
        assert_refused(call(main, [command, _cfg_with(d, BASE), "--out", out, "--systems", systems, *extra]),
                       "--systems", problem, out=out)


def test_a_huge_bad_field_is_not_echoed_whole():
    with workdir() as d:
        trace = d / "t.csv"
        trace.write_text("arrival_s,task,input_len\n0,a,3\n1,a," + "x" * 2_000_000 + "\n")
        rc, out, err = call(sim_main, ["trace", "info", trace, "--format", "native"])
        assert_refused((rc, out, err), str(trace))
        assert len(err) < 2000 and "characters)" in err


@pytest.mark.parametrize("name, problem", [("../../escaped", "'/'"), ("x/../y", "'/'"), ("..", "results folder"),
                                           ("b\x00c", "control"), ("n" * 300, "at most")])
def test_a_task_name_that_cannot_name_a_folder_is_refused(name, problem):
    """isolation writes <system>/alone/<task>/: '../..' wrote a results folder outside --out,
    a NUL byte crashed it, and a 300-character name failed as an unwritable --out."""
    raw = copy.deepcopy(BASE)
    raw["tasks"][1]["name"] = name
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "r"
        for argv in (["run", cfg, "--out", out], ["isolation", cfg, "--noisy", "a", "--out", out]):
            assert_refused(call(sim_main, argv), str(cfg), "tasks[1].name", problem, out=out)
        assert sorted(p.name for p in d.iterdir()) == ["c.yaml", "res"]


def test_a_system_name_that_cannot_name_a_folder_is_refused():
    raw = copy.deepcopy(BASE)
    raw["system"]["name"] = "a/b"
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "r"
        assert_refused(call(sim_main, ["run", cfg, "--out", out]), str(cfg), "system.name", out=out)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_trace_or_sweep_file_that_is_a_pipe_is_refused_not_read():
    """A FIFO hung forever and /dev/zero was read until memory ran out."""
    with workdir() as d:
        fifo = d / "f.csv"
        os.mkfifo(fifo)
        assert_refused(call(sim_main, ["trace", "info", fifo, "--format", "native"]), str(fifo), "not a regular file")
        raw = copy.deepcopy(BASE)
        raw["workload"] = {"trace": {"format": "native", "path": str(fifo)}}
        out = d / "res" / "r"
        assert_refused(call(sim_main, ["run", _cfg_with(d, raw), "--out", out]), str(fifo), "not a regular file", out=out)
        assert_refused(call(sim_main, ["sweep", fifo, "--out", out]), str(fifo), "not a regular file", out=out)


@pytest.mark.parametrize("value", ["2024-01-01", "!!binary YWJj", "!!set {a: null}"])
def test_a_sweep_value_yaml_reads_as_a_date_bytes_or_set_is_refused(value):
    with workdir() as d:
        sweep, out = d / "s.yaml", d / "res" / "r"
        sweep.write_text(f"base: {_cfg_with(d, BASE)}\ngrid: {{seed: [{value}]}}\n")
        assert_refused(call(sim_main, ["sweep", sweep, "--out", out]), str(sweep), "grid", "seed", out=out)


def test_a_bad_trace_row_in_any_sweep_point_is_found_before_any_point_runs():
    """The good point used to run and stay in --out while the bad one failed."""
    with workdir() as d:
        (d / "good.csv").write_text("arrival_s,task,input_len\n0.1,x,10\n0.2,y,12\n")
        (d / "bad.csv").write_text("arrival_s,task,input_len\n0.1,x,10\n0.2,x,ten\n")
        base = dict(copy.deepcopy(BASE), duration_s=None, workload={"trace": {"format": "native", "path": "good.csv"}})
        del base["duration_s"]
        sweep, out = d / "s.yaml", d / "res" / "r"
        sweep.write_text(yaml.safe_dump({"base": str(_cfg_with(d, base)),
                                         "grid": {"workload.trace.path": ["good.csv", "bad.csv"]}}))
        assert_refused(call(sim_main, ["sweep", sweep, "--out", out, "--workers", "1"]), "bad.csv", "line 3", out=out)


def test_trace_convert_names_the_window_option():
    with workdir() as d:
        trace, out = d / "t.csv", d / "res" / "o.csv"
        trace.write_text("arrival_s,task,input_len\n0.1,x,10\n0.5,x,8\n")
        assert_refused(call(sim_main, ["trace", "convert", trace, "--format", "native", "--window-start", "100",
                                       "--out", out]), str(trace), "--window-start", out=out)


def test_a_prefix_longer_than_the_positions_left_is_refused():
    raw = copy.deepcopy(BASE)
    raw["tasks"][1]["extensions"] = [{"kind": "prefix", "virtual_tokens": LLAMA_POSITIONS}]
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "r"
        assert_refused(call(sim_main, ["run", cfg, "--out", out]), str(cfg), "tasks[1].extensions", "positions", out=out)


# A config the harness runs as it is (BASE has a prefix extension, which only the simulator models)
HARNESS_CFG = {"seed": 1, "duration_s": 0.5, "cluster": {"device": "CPU"},
               "tasks": [{"name": n, "backbone": "minilm-l6", "extensions": [{"kind": "head", "outputs": 2}]}
                         for n in ("a", "b")]}


@pytest.mark.parametrize("command", ["replay", "validate", "isolation"])
def test_the_harness_refuses_an_extension_it_cannot_run_before_building_models(command):
    """A prefix extension passed the config check and failed with a traceback once the models
    were built."""
    raw = copy.deepcopy(HARNESS_CFG)
    raw["tasks"][1]["extensions"] = [{"kind": "prefix", "virtual_tokens": 4}]
    extra = ["--noisy", "a"] if command == "isolation" else []
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "r"
        assert_refused(call(exec_main, [command, cfg, "--out", out, "--device", "cpu", *extra]),
                       str(cfg), "'b'", "prefix", out=out)


@pytest.mark.parametrize("path", ["/dev/null"])
def test_validate_names_a_profile_that_is_not_a_regular_file(path):
    with workdir() as d:
        out = d / "res" / "r"
        assert_refused(call(exec_main, ["validate", _cfg_with(d, HARNESS_CFG), "--profile", path, "--out", out]),
                       "--profile", "not a regular file", out=out)


@pytest.mark.parametrize("name", ["colocate-vtc", "fmplex-fifo", "spatial-rr"])
def test_a_placement_scheduler_name_in_a_mapping_runs_that_system(name):
    """`{name: colocate-vtc, max_batch: 8}` ran fmplex with bfq under the label colocate-vtc."""
    from fmplex_sim.config import parse_config

    raw = copy.deepcopy(BASE)
    raw["system"] = {"name": name, "max_batch": 8}
    placement, scheduler = name.split("-")
    system = parse_config(raw, "c.yaml").system
    assert (system.name, system.placement, system.scheduler, system.max_batch) == (name, placement, scheduler, 8)
    raw["system"] = {"name": name, "scheduler": "bfq"}
    with workdir() as d:
        cfg = _cfg_with(d, raw)
        assert_refused(call(sim_main, ["run", cfg, "--out", d / "res" / "r"]), str(cfg), "system.name")


def test_yaml_nested_too_deeply_names_the_line():
    with workdir() as d:
        cfg, out = d / "c.yaml", d / "res" / "r"
        cfg.write_text("duration_s: 1\ntasks: []\nseed: " + "[" * 3000 + "]" * 3000 + "\n")
        assert_refused(call(sim_main, ["run", cfg, "--out", out]), str(cfg), "line 3", "nested too deeply", out=out)


def test_a_task_starting_after_the_run_is_refused():
    """It was accepted and never received a request."""
    raw = copy.deepcopy(BASE)
    raw["tasks"][2]["start_s"] = 5.0
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "r"
        assert_refused(call(sim_main, ["run", cfg, "--out", out]), str(cfg), "tasks[2].start_s", "duration_s", out=out)


@pytest.mark.parametrize("command", ["replay", "validate", "isolation"])
def test_the_harness_refuses_generated_tokens_before_building_models(command):
    """A gpt2 task with output_len 2 replayed one forward per request and exited 0, while the
    simulator modelled the decoding."""
    raw = copy.deepcopy(HARNESS_CFG)
    raw["tasks"][1].update(backbone="gpt2", output_len=2, input_len=8)
    extra = ["--noisy", "a"] if command == "isolation" else []
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "r"
        assert_refused(call(exec_main, [command, cfg, "--out", out, "--device", "cpu", *extra]),
                       str(cfg), "'b'", "output_len", out=out)


def test_the_harness_refuses_a_trace_that_asks_for_generated_tokens():
    import numpy as np

    from fmplex_exec.cli import check_runnable
    from fmplex_sim.config import parse_config
    from fmplex_sim.errors import InputError
    from fmplex_sim.workload import from_arrays

    cfg = parse_config(copy.deepcopy(HARNESS_CFG), "c.yaml")
    ones = np.ones(2, dtype=np.int32)
    check_runnable(cfg, from_arrays(("a", "b"), np.array([0.1, 0.2]), np.array([0, 1], dtype=np.int32), ones,
                                    0 * ones), "c.yaml")
    with pytest.raises(InputError, match="'b' for generated tokens"):
        check_runnable(cfg, from_arrays(("a", "b"), np.array([0.1, 0.2]), np.array([0, 1], dtype=np.int32), ones,
                                        np.array([0, 3], dtype=np.int32)), "c.yaml")


# ----------------------------------------------------------------------------- a later audit
# Each case below gave a traceback, a hang, a wrong status, a result left behind or a silently
# wrong result before its fix (a hand-written adversarial pass over every command).
def _sweep_of(d: Path, cfg: Path, grid: str) -> Path:
    p = d / "s.yaml"
    p.write_text(f"base: {cfg}\ngrid: {grid}\n")
    return p


@pytest.mark.parametrize("name,shown", [("a\ud800b", "\\ud800"), ("a\u2028b", "\\u2028"), ("a\x85b", "\\x85")])
@pytest.mark.parametrize("command", ["run", "compare", "isolation", "capacity", "sweep"])
def test_a_name_with_a_surrogate_or_line_break_is_refused_naming_it(name, shown, command):
    """A lone surrogate crashed printing (UnicodeEncodeError) after the results were written,
    and capacity exited 0; U+2028 and U+0085 break a line in a terminal or a CSV reader."""
    raw = copy.deepcopy(BASE)
    raw["tasks"][0]["name"] = name
    with workdir() as d:
        cfg = d / "c.yaml"
        cfg.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=False))
        out = d / "res" / "o"
        extra = {"isolation": ["--noisy", "b"], "capacity": ["--system", "fmplex", "--slo-attainment", "0.9"]}
        if command == "sweep":
            raw["tasks"][0]["name"] = "a"
            cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
            grid = "{tasks.0.name: [" + json.dumps(name) + "]}"  # JSON escapes are YAML escapes
            argv = ["sweep", _sweep_of(d, cfg, grid), "--out", out, "--workers", "1"]
        else:
            argv = [command, cfg, "--out", out, *extra.get(command, [])]
        line = assert_refused(call(sim_main, argv), "tasks[0].name", shown, out=out)
        line.encode("ascii")  # escaped, so any terminal can print it


def test_a_name_is_measured_in_bytes_too():
    """100 CJK characters passed the 100-character limit, then every run was simulated and the
    folder named after the task could not be made (an error blaming --out, a folder left)."""
    raw = mutated(T(0, "name"), "\u65e5" * 100)
    with workdir() as d:
        cfg, out = _cfg_with(d, raw), d / "res" / "new" / "o"
        assert_refused(call(sim_main, ["isolation", cfg, "--out", out, "--noisy", "b"]), "tasks[0].name",
                       "300 bytes")
        assert list((d / "res").iterdir()) == []


BOMB = "[" + ", ".join(["xx"] * 9) + "]"


def _bomb(levels: int) -> str:
    """Nested aliases: a few hundred bytes that expand to 9**levels values."""
    parts = [f"&a0 {BOMB}"] + [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize("where", ["config", "sweep", "--set"])
def test_an_alias_bomb_is_refused_at_once(where):
    """10 levels of nested aliases (727 bytes) ran out of memory after a minute, or hung."""
    with workdir() as d:
        out = d / "res" / "o"
        if where == "config":
            cfg = d / "c.yaml"
            cfg.write_text(yaml.safe_dump(BASE, sort_keys=False) + f"bomb: {_bomb(10)}\n")
            assert_refused(call(sim_main, ["run", cfg, "--out", out]), str(cfg), "expand to more than", out=out)
        elif where == "sweep":
            cfg = _cfg_with(d, BASE)
            sweep = _sweep_of(d, cfg, "{tasks.0.extensions: [" + _bomb(10) + "]}")
            assert_refused(call(sim_main, ["sweep", sweep, "--out", out]), str(sweep), "expand to more than", out=out)
        else:
            cfg = _cfg_with(d, BASE)
            assert_refused(call(sim_main, ["run", cfg, "--out", out, "--set", f"system.max_batch={_bomb(10)}"]),
                           "--set", "system.max_batch", out=out)


def test_a_yaml_merge_may_override_what_it_brings_in():
    """`{<<: *t, name: b}` was refused as a duplicate key; a key written twice still is."""
    text = ("seed: 1\nduration_s: 1\ncluster: {device: H100-80GB, gpus: 1}\ntasks:\n"
            "  - &t {name: a, backbone: bert-base, slo_ms: 50, arrival: &r {process: poisson, rate_rps: 5}}\n"
            "  - {<<: *t, name: b, arrival: {<<: *r, rate_rps: 7}}\n")
    with workdir() as d:
        cfg = d / "c.yaml"
        cfg.write_text(text)
        rc, _, err = call(sim_main, ["run", cfg, "--out", d / "res" / "o"])
        assert rc == 0, err
        saved = yaml.safe_load((d / "res" / "o" / "config.yaml").read_text())
        assert [(t["name"], t["arrival"]["rate_rps"], t["slo_ms"]) for t in saved["tasks"]] == [
            ("a", 5, 50), ("b", 7, 50)]
        cfg.write_text(text.replace("name: b,", "name: b, name: c,"))
        assert_refused(call(sim_main, ["run", cfg, "--out", d / "res" / "p"]), str(cfg), "line 6",
                       "duplicate key 'name'")


@pytest.mark.parametrize("name", ["a$\\frac$b.yaml", "x$^$y.yaml", "\u65e5\u672c.yaml"])
def test_compare_draws_any_config_name(name):
    """The config's name is the figure's title: `$...$` was parsed as math markup and crashed
    the save (after every system ran); characters the font lacks printed warnings."""
    with workdir() as d:
        cfg = d / name
        cfg.write_text(yaml.safe_dump(BASE, sort_keys=False))
        rc, _, err = call(sim_main, ["compare", cfg, "--out", d / "res" / "o", "--systems", "fmplex,spatial"])
        assert rc == 0 and err == "", err
        assert (d / "res" / "o" / "comparison.png").stat().st_size > 0


def test_isolation_defaults_to_the_configs_own_system_even_when_named():
    """`system: {name: mine, ...}` without --systems was refused as '--systems: mine: unknown'."""
    with workdir() as d:
        cfg, out = _cfg_with(d, BASE), d / "res" / "o"
        rc, _, err = call(sim_main, ["isolation", cfg, "--out", out, "--noisy", "a"])
        assert rc == 0, err
        assert list(json.loads((out / "isolation.json").read_text())["systems"]) == ["mine"]


@pytest.mark.parametrize("arrival,where", [
    ({"process": "onoff", "rate_rps": 30, "on_s": 1e308, "off_s": 1e308}, "tasks[0].arrival.on_s"),
    ({"process": "onoff", "rate_rps": 30, "on_s": 1.7e308, "off_s": 0}, "tasks[0].arrival.on_s"),
    ({"process": "onoff", "rate_rps": 30, "on_s": 1, "off_s": 1.7e308}, "tasks[0].arrival.off_s"),
])
def test_on_off_phases_that_overflow_are_refused(arrival, where):
    """on_s + off_s overflowed to inf: numpy raised drawing the first cycle's phase."""
    with workdir() as d:
        cfg, out = _cfg_with(d, mutated(T(0, "arrival"), arrival)), d / "res" / "o"
        assert_refused(call(sim_main, ["run", cfg, "--out", out]), str(cfg), where, out=out)


@pytest.mark.parametrize("grid,problem", [("0", "grid: must be a mapping"), ("false", "grid: must be a mapping"),
                                          ("{'seed=2': [1]}", "key 'seed=2'"), ("{'': [1]}", "key ''")])
def test_a_sweep_grid_that_is_not_one_is_refused(grid, problem):
    """`grid: 0` was read as no grid and the sweep ran its points only."""
    with workdir() as d:
        cfg = _cfg_with(d, BASE)
        sweep = d / "s.yaml"
        sweep.write_text(f"base: {cfg}\ngrid: {grid}\npoints: [{{seed: 3}}]\n")
        out = d / "res" / "o"
        assert_refused(call(sim_main, ["sweep", sweep, "--out", out]), str(sweep), problem, out=out)


def test_trace_convert_refuses_what_it_cannot_write():
    """An empty window wrote a header-only file no command could read; --out on the input
    overwrote the trace; a task name with a comma was blamed on a temporary file."""
    with workdir() as d:
        trace = d / "t.csv"
        trace.write_text("arrival_s,task,input_len\n0.1,a,10\n0.2,b,12\n0.5,a,9\n")
        before = trace.read_text()
        out = d / "res" / "o.csv"
        assert_refused(call(sim_main, ["trace", "convert", trace, "--format", "native", "--window-start", "0.3",
                                       "--window-duration", "0.1", "--out", out]),
                       str(trace), "--window-start", "no requests", out=out)
        assert_refused(call(sim_main, ["trace", "convert", trace, "--format", "native", "--out", trace]),
                       "--out", "is the trace being converted")
        assert trace.read_text() == before
        trace.write_text('arrival_s,task,input_len\n0.1,"a,b",10\n0.2,b,12\n')
        assert_refused(call(sim_main, ["trace", "convert", trace, "--format", "native", "--out", out]),
                       str(trace), "'a,b'", out=out)


@pytest.mark.parametrize("command", ["info", "run"])
def test_a_native_trace_of_clock_timestamps_is_refused_naming_its_line(command):
    """Epoch times were kept as offsets: a 10 s trace ran as 1.7e9 s, throughput 0.0 req/s."""
    with workdir() as d:
        trace = d / "t.csv"
        trace.write_text("arrival_s,task,input_len\n" + "".join(f"{1700000000 + i / 10},a,8\n" for i in range(5)))
        if command == "info":
            argv = ["trace", "info", trace, "--format", "native"]
        else:
            raw = {"seed": 1, "cluster": {"device": "H100-80GB", "gpus": 1},
                   "workload": {"trace": {"format": "native", "path": str(trace)}},
                   "tasks": [{"name": "a", "backbone": "bert-base"}]}
            argv = ["run", _cfg_with(d, raw), "--out", d / "res" / "o"]
        assert_refused(call(sim_main, argv), str(trace), "line 2", "epoch")


def test_a_failed_run_removes_the_folders_it_made_for_out():
    """--out under folders that did not exist: they were made and stayed after a failure."""
    with workdir() as d:
        cfg = _cfg_with(d, mutated(T(0, "name"), "\u65e5" * 30))
        out = d / "res" / "new" / "deeper" / "o"
        from fmplex_sim.results import results_dir

        with pytest.raises(RuntimeError), results_dir(out):
            raise RuntimeError("failed while writing")
        assert list((d / "res").iterdir()) == []
        rc, _, err = call(sim_main, ["run", cfg, "--out", out])
        assert rc == 0, err
        assert (out / "summary.json").is_file()

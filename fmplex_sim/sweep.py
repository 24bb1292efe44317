"""Parameter sweeps: many runs of one base config, one results folder per point.

A sweep file (YAML)::

    base: ../demo/config.yaml          # run config, path relative to the sweep file
    grid:                              # cartesian product of values (the last key varies fastest);
      system: [spatial, colocate, fmplex]   # keys are --set keys; `system` takes a preset or
      cluster.gpus: [1, 2, 4]               # PLACEMENT-SCHEDULER (RunConfig.with_system)
      seed: [1, 2]
    points:                            # optional explicit override sets, after the grid's
      - {system: fmplex, tasks.0.weight: 4}    # tasks.0.x is tasks[0].x ({...} needs no quotes)

Each point is the base config with its overrides; every point is validated before any work.
Its id (folder name) is ``key=value`` pairs joined by commas, ``tasks[0]`` written
``tasks.0``, with a short hash appended when characters had to be replaced or the name is long.
``system`` given as a name is applied last with :meth:`RunConfig.with_system`, keeping the
config's system knobs; any other value goes through the override like every other key.

The sweep folder (see :func:`run_sweep`)::

    sweep.json       the resolved sweep: file, base, points with their ids and overrides
    points/<id>/     the files of ``fmplex-sim run`` for that point, written atomically
    sweep.csv        one row per point, in sweep order: override columns, the headline numbers
                     of compare.comparison_row (a name already taken by an override column is
                     left out), then ``point``
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fmplex_sim.compare import COMPARISON_COLUMNS, comparison_row
from fmplex_sim.config import RunConfig, load_config, read_yaml_file
from fmplex_sim.errors import InputError
from fmplex_sim.results import results_dir
from fmplex_sim.sweep_exec import Interrupted

MAX_POINTS = 100_000  # guard against a grid that multiplies out to more runs than anyone meant
_ID_LEN = 96  # longest id kept without a hash
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]+")
_INDEX = re.compile(r"\[(\d+)\]")  # tasks[0].weight -> tasks.0.weight in ids
_DOTTED = re.compile(r"\.(\d+)(?=\.|$)")  # tasks.0.weight -> tasks[0].weight in keys


@dataclass(frozen=True)
class Point:
    """One run of a sweep."""

    id: str  # folder name under points/
    overrides: tuple[tuple[str, Any], ...]  # (key, value) in the order the sweep file gives them
    config: RunConfig  # base config with the overrides applied, validated

    def to_dict(self) -> dict:
        return {"point": self.id, "overrides": dict(self.overrides)}


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    source: str  # the sweep file, for messages
    base: str  # the base config's path
    points: tuple[Point, ...]  # in sweep order: grid first, then explicit points

    def to_dict(self) -> dict:
        return {"sweep": self.source, "base": self.base, "points": [p.to_dict() for p in self.points]}


def value_text(v: Any) -> str:
    """A value as written in ids and sweep.csv: strings as they are, anything else as JSON."""
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":"))


def point_id(overrides: tuple[tuple[str, Any], ...]) -> str:
    """A stable, filesystem-safe folder name for a set of overrides (``base`` for none)."""
    if not overrides:
        return "base"
    text = ",".join(_INDEX.sub(r".\1", k) + "=" + value_text(v) for k, v in overrides)
    safe = _UNSAFE.sub("_", text)
    if safe != text or len(safe) > _ID_LEN:
        return f"{safe[:_ID_LEN]}-{_digest(overrides)}"
    return safe


def _digest(overrides: tuple[tuple[str, Any], ...]) -> str:
    canon = json.dumps([[k, v] for k, v in overrides], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:8]


def _not_plain(v: Any) -> str | None:
    """The kind of the first value in ``v`` that is not plain JSON data (YAML also makes dates,
    bytes and sets), or None."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return None
    if isinstance(v, list):
        return next((k for k in map(_not_plain, v) if k is not None), None)
    if isinstance(v, dict):
        return next((k for k in map(_not_plain, list(v) + list(v.values())) if k is not None), None)
    return {"date": "a date", "datetime": "a date and time", "bytes": "binary data", "set": "a set"}.get(
        type(v).__name__, f"a {type(v).__name__}")


def _override_sets(raw: dict, src: str) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
    """(where, overrides) for every point: the grid's product, then the explicit points."""
    sets: list[tuple[str, tuple[tuple[str, Any], ...]]] = []
    grid = raw.get("grid")
    grid = {} if grid is None else grid  # absent or empty; 0, false or "" are mistakes, refused
    if not isinstance(grid, dict):
        raise InputError(src, "grid", "must be a mapping of key: [values]")
    for k, vals in grid.items():
        if not isinstance(k, str) or not k.strip() or "=" in k:
            raise InputError(src, "grid", f"key {k!r} must be a text key like cluster.gpus")
        if not isinstance(vals, list) or not vals:
            raise InputError(src, f"grid.{k}", "must be a non-empty list of values")
    size = math.prod(len(v) for v in grid.values()) if grid else 0
    points = raw.get("points")
    points = [] if points is None else points
    if not isinstance(points, list):
        raise InputError(src, "points", "must be a list of {key: value} mappings")
    if size + len(points) > MAX_POINTS:
        raise InputError(src, "grid", f"makes {size + len(points):,} points (at most {MAX_POINTS:,})")
    if grid:
        keys = [_DOTTED.sub(r"[\1]", k) for k in grid]
        for combo in itertools.product(*grid.values()):
            sets.append(("grid", tuple(zip(keys, combo))))
    for i, p in enumerate(points):
        if not isinstance(p, dict) or not all(isinstance(k, str) for k in p):
            raise InputError(src, f"points[{i}]", "must be a mapping of key: value")
        sets.append((f"points[{i}]", tuple((_DOTTED.sub(r"[\1]", k), v) for k, v in p.items())))
    for where, ov in sets:
        for k, v in ov:
            odd = _not_plain(v)
            if odd is not None:
                raise InputError(src, where, f"{k}: YAML read a value as {odd}; a value is a number, "
                                 "text, true/false, a list or a mapping (quote it to keep it as text)")
        keys = [k for k, _ in ov]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise InputError(src, where, f"sets {twice[0]} twice (tasks.0.x is tasks[0].x)")
    if not sets:
        raise InputError(src, "", "no points: give a grid, a list of points, or both")
    return sets


def _point_config(base: str, overrides: tuple[tuple[str, Any], ...]) -> RunConfig:
    system = None
    sets = []
    for k, v in overrides:
        if k == "system" and isinstance(v, str):
            system = v
        else:
            sets.append(f"{k}={yaml.safe_dump(v, default_flow_style=True)}")
    cfg = load_config(base, sets)
    try:
        return cfg if system is None else cfg.with_system(system)
    except InputError as e:
        raise InputError("", "system", f"{system!r}: {e.problem}") from None


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file and every one of its points. Raises InputError."""
    src = str(path)
    raw = read_yaml_file(Path(src), src)
    if not isinstance(raw, dict):
        raise InputError(src, "", "must be a mapping with base, grid and/or points")
    for k in raw:
        if k not in ("base", "grid", "points"):
            raise InputError(src, str(k), "unknown key (known: base, grid, points)")
    if "base" not in raw:
        raise InputError(src, "base", "missing: the path of the base run config")
    if not isinstance(raw["base"], str) or not raw["base"]:
        raise InputError(src, "base", f"must be the path of the base run config, got {raw['base']!r}")
    base_path = Path(raw["base"])
    base = str(base_path if base_path.is_absolute() else Path(src).parent / base_path)
    try:
        load_config(base)
    except InputError as e:
        raise InputError(src, "base", str(e)) from None
    points: list[Point] = []
    labels: list[str] = []
    ids: set[str] = set()
    contents: dict[str, int] = {}  # the overrides in key order -> point number
    for n, (where, ov) in enumerate(_override_sets(raw, src)):
        pid = point_id(ov)
        label = f"{where} {pid}"
        try:
            cfg = _point_config(base, ov)
        except InputError as e:
            raise InputError(src, label, ": ".join(x for x in (e.where, e.problem) if x)) from None
        content = json.dumps(sorted(ov, key=lambda kv: kv[0]), sort_keys=True, default=str)
        if content in contents:
            raise InputError(src, label, f"repeats point {contents[content] + 1} of the sweep")
        contents[content] = n
        if pid in ids:  # different overrides, same name once made safe
            pid = f"{pid[:_ID_LEN]}-{_digest(ov)}"
        ids.add(pid)
        points.append(Point(pid, ov, cfg))
        labels.append(label)
    _check_traces(src, points, labels)
    return Sweep(src, base, tuple(points))


def _check_traces(src: str, points: list[Point], labels: list[str]) -> None:
    """Resolve every point that replays a trace against it, so a bad row, or a point the trace
    cannot serve (a window past its end, an update after the span it sets), is reported before
    any point runs, naming the sweep file and the point. ServeGen folders are generated per
    point's window, not read whole, so they are checked when their point runs."""
    from fmplex_sim.run import prepare

    for p, label in zip(points, labels):
        tr = p.config.workload.trace
        if tr is None or tr.format == "servegen":
            continue
        try:
            prepare(p.config)
        except InputError as e:
            raise InputError(src, label, str(e)) from None


# ----------------------------------------------------------------------------- the folder
def check_sweep_out(out: str) -> None:
    """Refuse an --out that is neither new, empty, nor a sweep folder (which is resumed), or that
    cannot be written."""
    from fmplex_sim.clitools import out_path_errors, writable_parent

    with out_path_errors(out):
        _check_sweep_out(out)
        writable_parent(out)


def _check_sweep_out(out: str) -> None:
    path = Path(out)
    if not out.strip():
        raise InputError("--out", "", "name a sweep folder")
    if path.exists():
        if not path.is_dir():
            raise InputError("--out", out, "exists and is not a folder")
        if any(path.iterdir()) and not (path / "sweep.json").is_file():
            raise InputError("--out", out, "exists and is not a sweep folder of fmplex-sim; refusing to write into it")


def _is_leftover(name: str) -> bool:
    return name.startswith(".") and (".tmp-" in name or ".old-" in name)


def prepare_out(out: Path, sweep: Sweep) -> None:
    """Create the folder, remove temporaries an interrupted sweep left, write sweep.json."""
    (out / "points").mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "points"):
        for p in folder.iterdir():
            if _is_leftover(p.name):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    write_atomic(out / "sweep.json", json.dumps(sweep.to_dict(), indent=2, default=str) + "\n")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(obj: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(obj, sort_keys=False))


def is_finished(folder: Path, cfg: RunConfig) -> bool:
    """True when ``folder`` holds a complete run of exactly ``cfg`` (so it is not rerun)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        comparison_row(summary)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return False
    want = _plain(cfg.to_dict())
    if cfg.duration_s is None and isinstance(saved, dict):
        saved["duration_s"] = None  # a trace's span, resolved when the point ran
    return saved == want


def write_point(folder: Path, files: dict[str, bytes]) -> None:
    """Write one point's files into ``folder`` whole or not at all."""
    with results_dir(folder) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)


def sweep_rows(out: Path, sweep: Sweep) -> tuple[list[str], list[list]]:
    """Header and rows of sweep.csv, read back from the points' summary.json."""
    keys: list[str] = []
    for p in sweep.points:
        keys += [k for k, _ in p.overrides if k not in keys]
    heads = [c for c in COMPARISON_COLUMNS if c not in keys]
    rows = []
    for p in sweep.points:
        row = comparison_row(json.loads((out / "points" / p.id / "summary.json").read_text()))
        ov = dict(p.overrides)
        rows.append([value_text(ov[k]) if k in ov else "" for k in keys]
                    + ["" if row[c] is None else row[c] for c in heads] + [p.id])
    return keys + heads + ["point"], rows


def write_sweep_csv(out: Path, sweep: Sweep) -> None:
    header, rows = sweep_rows(out, sweep)
    tmp = out / f".sweep.csv.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
        os.replace(tmp, out / "sweep.csv")
    finally:
        tmp.unlink(missing_ok=True)


def run_sweep(sweep: Sweep, out: str | Path, backend, progress: bool = True) -> tuple[int, int]:
    """Run every point of ``sweep`` not already finished in ``out`` on ``backend`` (see
    :mod:`fmplex_sim.sweep_exec`), then write sweep.csv. Returns (points run, points skipped).

    Finished points are written as they arrive, each atomically; an interruption (any
    exception, including :class:`~fmplex_sim.sweep_exec.Interrupted`) leaves them intact and
    no half-written point folder, and a rerun skips them. One sweep per folder at a time.
    """
    from tqdm import tqdm

    out = Path(out)
    existed = out.is_dir()
    fresh = not existed or not any(out.iterdir())
    prepare_out(out, sweep)
    todo = [i for i, p in enumerate(sweep.points) if not is_finished(out / "points" / p.id, p.config)]
    bar = tqdm(total=len(sweep.points), initial=len(sweep.points) - len(todo), unit="point",
               desc="sweep", leave=False, disable=not progress)
    written = 0
    try:
        for i, files in backend.map([sweep.points[i].config for i in todo]):
            write_point(out / "points" / sweep.points[todo[i]].id, files)
            written += 1
            bar.update(1)
    except BaseException as e:
        backend.abort()
        if fresh and not written and not isinstance(e, Interrupted):
            # a point failed (bad trace row, unwritable disk) before any finished: what this
            # command wrote holds nothing worth resuming, so the folder is left as it was
            shutil.rmtree(out, ignore_errors=True)
            if existed:
                out.mkdir(exist_ok=True)
        raise
    finally:
        bar.close()
    write_sweep_csv(out, sweep)
    return len(todo), len(sweep.points) - len(todo)


def count_finished(out: Path, sweep: Sweep) -> int:
    return sum(is_finished(out / "points" / p.id, p.config) for p in sweep.points)

"""FMplex's own trace CSV: what ``fmplex-sim trace convert`` writes, and a simple format to hand-write.

Format: header ``arrival_s,task,input_len`` or ``arrival_s,task,input_len,output_len`` (any
column order; no other columns), then one request per row:

- ``arrival_s``: seconds (a number >= 0); rows must be in non-decreasing ``arrival_s`` order (a
  decrease is an error naming its line); times are kept as written (not shifted to start at 0),
  so they are seconds from the run's start, at most 1e9 (larger ones are clock timestamps);
- ``task``: the task's name (non-empty; surrounding spaces are dropped; a name holding a comma
  must be double-quoted, CSV style, and :func:`write_native` refuses such names);
  ``task_names`` lists them in order of first appearance;
- ``input_len``, ``output_len``: whole numbers >= 0 (``output_len`` is 0 when the column is
  absent).

``span_s`` = the last arrival. ``seed`` is unused; ``window`` is checked but not applied (the
caller's shaping cuts it). :func:`write_native` writes the format (times with 6 decimals), so
load(write(x)) gives x back with times rounded to the microsecond.

Speed: a 1,000,000-row file loads in about 1 s (numbers through :func:`numpy.loadtxt`'s C
parser, task names through one ``str.split`` per line); only a file that fails the fast path is
scanned line by line to name its first bad line.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from fmplex_sim.errors import InputError
from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.traces.formats._csv import (
    INT32_MAX,
    Col,
    check_window,
    data_lines,
    header_columns,
    index_first_seen,
    read_table,
    read_text,
    source_of,
    split_lines,
)

REQUIRED = ("arrival_s", "task", "input_len")
MAX_ARRIVAL_S = 1e9  # past it a time is a timestamp, not an offset (as traces.MAX_SPAN_S for spans)
OPTIONAL = ("output_len",)


class _NotFast(Exception):
    """The fast path cannot take this file; the line-by-line path names the problem."""


def _fast(lines: list[str], body: list[str], cols: dict[str, int], text: str):
    ncols = len(cols)
    if '"' in text:
        raise _NotFast
    # Every column is used below, so each row has at least ncols fields (loadtxt or the task
    # split fail otherwise); with this total, each row has exactly ncols.
    if text.count(",") - lines[0].count(",") != len(body) * (ncols - 1):
        raise _NotFast
    num_cols = [cols["arrival_s"], cols["input_len"]] + ([cols["output_len"]] if "output_len" in cols else [])
    try:
        x = np.loadtxt(
            body, delimiter=",", usecols=num_cols, comments=None, quotechar=None, dtype=np.float64, ndmin=2
        )
    except ValueError:
        raise _NotFast from None
    if x.shape[0] != len(body):  # loadtxt skips blank lines
        raise _NotFast
    t = x[:, 0]
    lens = x[:, 1:]
    if not (np.isfinite(x).all() and (x >= 0).all()):
        raise _NotFast
    if t.shape[0] > 1 and bool(np.any(t[1:] < t[:-1])):
        raise _NotFast
    if not ((lens == np.floor(lens)).all() and (lens <= INT32_MAX).all()):
        raise _NotFast
    ti = cols["task"]
    try:
        if ti == 0:
            raw = [line.split(",", 1)[0] for line in body]
        else:
            raw = [line.split(",", ti + 1)[ti] for line in body]
    except IndexError:
        raise _NotFast from None
    task, names = index_first_seen(raw)
    stripped = [n.strip() for n in names]
    if "" in stripped:
        raise _NotFast
    if stripped != list(names):  # " a" and "a" are the same task
        task2, names2 = index_first_seen(stripped)
        task = task2[task]
        names = names2
    input_len = lens[:, 0].astype(np.int32)
    output_len = lens[:, 1].astype(np.int32) if lens.shape[1] > 1 else np.zeros(t.shape[0], dtype=np.int32)
    return t, task, names, input_len, output_len


def _slow(path, body: list[str], cols: dict[str, int], header: str):
    spec = {
        cols["arrival_s"]: Col("arrival_s", "number"),
        cols["task"]: Col("task", "text"),
        cols["input_len"]: Col("input_len", "whole"),
    }
    if "output_len" in cols:
        spec[cols["output_len"]] = Col("output_len", "whole")
    table = read_table(path, body, 2, len(cols), spec, header, sorted_by=(cols["arrival_s"], False))
    t = table["arrival_s"]
    task, names = index_first_seen(table["task"])
    input_len = table["input_len"].astype(np.int32)
    out = table.get("output_len")
    output_len = out.astype(np.int32) if out is not None else np.zeros(t.shape[0], dtype=np.int32)
    return t, task, names, input_len, output_len


@TRACE_FORMATS.register("native")
def load(path: str, *, seed: int = 0, window: tuple[float, float | None] | None = None) -> Trace:
    """Load FMplex's own trace CSV (see the module docstring for the exact rules)."""
    check_window(path, window)
    text = read_text(path)
    lines = split_lines(path, text)
    cols = header_columns(path, lines[0], REQUIRED, OPTIONAL)
    body = data_lines(path, lines)
    try:
        t, task, names, input_len, output_len = _fast(lines, body, cols, text)
    except _NotFast:
        t, task, names, input_len, output_len = _slow(path, body, cols, lines[0].strip())
    if t.shape[0] and t[-1] > MAX_ARRIVAL_S:
        k = int(np.argmax(t > MAX_ARRIVAL_S))
        raise InputError(source_of(path), f"line {lines.index(body[k]) + 1}",
                         f"arrival_s {t[k]:g} is over {MAX_ARRIVAL_S:g} s (about 31 years): native times are "
                         "seconds from the run's start, not clock or epoch timestamps; subtract the first")
    return Trace(
        source=source_of(path),
        format="native",
        arrival_s=np.ascontiguousarray(t, dtype=np.float64),
        input_len=input_len,
        output_len=output_len,
        task=task,
        task_names=tuple(names),
        span_s=float(t[-1]),
    )


def _bad_name(name: str) -> str | None:
    if not isinstance(name, str):
        return f"task name {name!r} is not a string"
    if not name or name != name.strip():
        return f"task name {name!r} is empty or has surrounding spaces"
    if any(c in name for c in ',"\n\r'):
        return f"task name {name!r} holds a comma, quote or line break"
    return None


def write_native(
    path: str | os.PathLike,
    arrival_s: Sequence[float] | np.ndarray,
    tasks: str | Sequence[str] | np.ndarray,
    input_len: Sequence[int] | np.ndarray,
    output_len: Sequence[int] | np.ndarray | None = None,
    *,
    task_names: Sequence[str] | None = None,
) -> int:
    """Write requests as FMplex's native trace CSV; returns the number of rows written.

    ``tasks`` is one name per row, a single name for every row (e.g. a placeholder for a trace
    without task ids), or, with ``task_names``, an integer index per row into ``task_names``.
    ``output_len`` None writes the 3-column form. Times are written with 6 decimals. Raises
    InputError (naming ``path``) for what the format cannot hold: unsorted, negative or
    non-finite times, negative or fractional lengths, task names that are empty, padded with
    spaces, or hold a comma, quote or line break.
    """
    dest = source_of(path)
    t = np.asarray(arrival_s, dtype=np.float64).reshape(-1)
    n = t.shape[0]
    inp = np.asarray(input_len).reshape(-1)
    out = None if output_len is None else np.asarray(output_len).reshape(-1)
    if task_names is not None:
        idx = np.asarray(tasks).reshape(-1)
        if idx.shape[0] != n:
            raise ValueError(f"tasks has {idx.shape[0]} rows, arrival_s {n}")
        names = list(task_names)
        if n and (idx.min() < 0 or idx.max() >= len(names)):
            raise ValueError("a task index is outside task_names")
        used = names
        per_row = np.asarray(names, dtype=object)[idx].tolist() if n else []
    elif isinstance(tasks, str):
        used = [tasks]
        per_row = [tasks] * n
    else:
        per_row = [str(v) if isinstance(v, np.str_) else v for v in tasks]
        if len(per_row) != n:
            raise ValueError(f"tasks has {len(per_row)} rows, arrival_s {n}")
        used = list(dict.fromkeys(per_row))
    for arr, what in ((inp, "input_len"), (out, "output_len")):
        if arr is not None and arr.shape[0] != n:
            raise ValueError(f"{what} has {arr.shape[0]} rows, arrival_s {n}")
    for name in used:
        p = _bad_name(name)
        if p:
            raise InputError(dest, "task names", p)
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.shape[0]:
        raise InputError(dest, f"row {bad[0] + 1}", f"arrival_s must be finite and >= 0, got {t[bad[0]]}")
    dec = np.flatnonzero(t[1:] < t[:-1])
    if dec.shape[0]:
        raise InputError(dest, f"row {dec[0] + 2}", "arrival_s must be non-decreasing")
    cols_int = []
    for arr, what in ((inp, "input_len"), (out, "output_len")):
        if arr is None:
            continue
        a = arr.astype(np.float64)
        badl = np.flatnonzero(~np.isfinite(a) | (a < 0) | (a != np.floor(a)) | (a > INT32_MAX))
        if badl.shape[0]:
            raise InputError(dest, f"row {badl[0] + 1}", f"{what} must be a whole number >= 0, got {arr[badl[0]]}")
        cols_int.append(map(str, a.astype(np.int64).tolist()))
    header = "arrival_s,task,input_len" + (",output_len" if out is not None else "")
    times = [f"{x:.6f}" for x in (t + 0.0).tolist()]  # + 0.0: -0.0 (>= 0, allowed) as 0.000000
    rows = map(",".join, zip(times, per_row, *cols_int))
    with open(dest, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header + "\n")
        fh.write("\n".join(rows))
        if n:
            fh.write("\n")
    return n


def write_native_trace(path: str | os.PathLike, trace: Trace, *, default_task: str = "default") -> int:
    """Write a :class:`Trace` with :func:`write_native`; rows without task ids get ``default_task``."""
    if trace.task is not None:
        return write_native(
            path, trace.arrival_s, trace.task, trace.input_len, trace.output_len, task_names=trace.task_names
        )
    return write_native(path, trace.arrival_s, default_task, trace.input_len, trace.output_len)

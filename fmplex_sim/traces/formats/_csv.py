"""Shared reading and checking for the trace loaders: one-line errors, vectorized fast paths.

Every problem is an :class:`~fmplex_sim.errors.InputError` ``<file>: line <n>: <problem>`` where
``n`` is the 1-based line number in the file (the header, if any, is line 1). Columns are
converted in one vectorized step; only when that fails is the column scanned value by value to
name the first bad line. Across columns and checks the smallest line number wins, so the error
names the first bad line of the file.

Text rules shared by every loader: UTF-8 (a byte-order mark is skipped), ``\\n`` or ``\\r\\n``
line ends, blank lines at the end of the file are ignored, a blank line anywhere else is an
error. Fields are split on commas; a line holding a double quote is split by :mod:`csv` rules.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fmplex_sim.errors import InputError

INT32_MAX = 2**31 - 1

# "2023-11-16 18:15:46.6805900" or "2024-11-15 16:57:50" (a "T" separator is accepted too)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,9})?")
# Years that int64 nanoseconds hold (numpy wraps silently outside them), compared as text.
_YEARS = ("1678", "2262")  # first year in range, first year out of range


def source_of(path: str | os.PathLike) -> str:
    return os.fspath(path)


def read_text(path: str | os.PathLike) -> str:
    """The file's text with ``\\n`` line ends; InputError if missing, a folder, binary, not UTF-8 or empty."""
    src = source_of(path)
    if os.path.isdir(src):
        raise InputError(src, "", "is a folder, expected a file")
    if os.path.exists(src) and not os.path.isfile(src):
        raise InputError(src, "", "is not a regular file (a device, pipe or socket?)")
    try:
        with open(src, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise InputError(src, "", "no such file") from None
    except OSError as err:
        raise InputError(src, "", f"cannot be read: {err.strerror or err}") from None
    if not data.strip():
        raise InputError(src, "", "the file is empty (no rows)")
    if data[:2] == b"\x1f\x8b":
        raise InputError(src, "", "is gzip-compressed; decompress it first")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(src, f"line {line}", "binary data (a NUL byte), not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise InputError(
            src, f"line {line}", f"not UTF-8 text (byte 0x{data[err.start]:02x} cannot be decoded)"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


def split_lines(path: str | os.PathLike, text: str) -> list[str]:
    """Lines of ``text`` without the blank lines at its end; InputError when nothing is left."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(source_of(path), "", "the file is empty (no rows)")
    return lines


def data_lines(path: str | os.PathLike, lines: list[str]) -> list[str]:
    """The lines after the header; InputError when there are none."""
    if len(lines) < 2:
        raise InputError(source_of(path), "line 2", "no requests after the header")
    return lines[1:]


def split_fields(line: str) -> list[str]:
    if '"' in line:
        try:
            return next(csv.reader([line], strict=True))
        except (csv.Error, StopIteration):
            return [line]  # reported as a wrong field count by the caller
    return line.split(",")


def header_columns(
    path: str | os.PathLike, line: str, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, int]:
    """Column name -> index from a header line; InputError naming unknown, missing or repeated columns."""
    src = source_of(path)
    names = [f.strip() for f in split_fields(line)]
    known = list(required) + list(optional)
    expected = f"(expected {','.join(required)}" + (f" and optionally {','.join(optional)})" if optional else ")")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise InputError(src, "line 1", f"header: column {name!r} appears twice")
        seen[name] = i
    unknown = [n for n in names if n not in known]
    missing = [n for n in required if n not in seen]
    problems = []
    if unknown:
        problems.append("unknown column" + ("s " if len(unknown) > 1 else " ") + ", ".join(map(repr, unknown)))
    if missing:
        problems.append("missing column" + ("s " if len(missing) > 1 else " ") + ", ".join(map(repr, missing)))
    if problems:
        hint = "; is the header line missing?" if not set(names) & set(known) else ""
        raise InputError(src, "line 1", f"header: {'; '.join(problems)} {expected}{hint}")
    return seen


class FirstProblem:
    """Keeps the problem with the smallest row index; ``raise_if_any`` turns it into an InputError."""

    def __init__(self, path: str | os.PathLike, first_line: int) -> None:
        self.source = source_of(path)
        self.first_line = first_line  # file line of row 0
        self.index: int | None = None
        self.problem = ""

    def add(self, index: int | None, problem: str) -> None:
        if index is not None and (self.index is None or index < self.index):
            self.index, self.problem = int(index), problem

    def raise_if_any(self) -> None:
        if self.index is not None:
            raise InputError(self.source, f"line {self.first_line + self.index}", self.problem)


def first_true(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.shape[0] else None


@dataclass(frozen=True)
class Col:
    """How one column is read.

    kind: ``number`` (float), ``whole`` (a whole number that fits int32), ``round`` (a number
    rounded to the nearest whole number), ``text`` (a string, stripped) or ``datetime``
    (``YYYY-MM-DD HH:MM:SS[.fraction]``, read as int64 nanoseconds). ``empty``: the value an
    empty field stands for (None: an empty field is an error). ``nonneg``: negatives are errors.
    """

    name: str
    kind: str
    empty: str | None = None
    nonneg: bool = True


def _number_problem(col: Col, v: str) -> str | None:
    s = v.strip()
    if not s:
        return None if col.empty is not None else f"{col.name} is empty"
    try:
        x = float(s) if "_" not in s else float("x")
    except ValueError:
        return f"{col.name} {v!r} is not a number"
    if not math.isfinite(x):
        return f"{col.name} {v!r} is not a finite number"
    if col.nonneg and x < 0:
        return f"{col.name} must be >= 0, got {s}"
    if col.kind == "whole" and x != math.floor(x):
        return f"{col.name} {v!r} is not a whole number"
    if col.kind in ("whole", "round") and round(x) > INT32_MAX:
        return f"{col.name} {s} is too large (over {INT32_MAX})"
    return None


def _datetime_problem(col: Col, v: str) -> str | None:
    s = v.strip()
    if not s:
        return None if col.empty is not None else f"{col.name} is empty"
    if _DATETIME.fullmatch(s):
        if not _YEARS[0] <= s < _YEARS[1]:
            return f"{col.name} {v!r} is out of range (years {_YEARS[0]} to {int(_YEARS[1]) - 1})"
        try:
            np.datetime64(s, "ns")
            return None
        except ValueError:
            pass
    return f"{col.name} {v!r} is not a date and time (expected YYYY-MM-DD HH:MM:SS[.fraction])"


def convert(path, values: list[str], col: Col, problems: FirstProblem) -> np.ndarray | list[str] | None:
    """Convert one column (fast path, then a scan on failure); records the first bad row in ``problems``."""
    if col.kind == "text":
        out = [v.strip() for v in values]
        if col.empty is None:
            try:
                problems.add(out.index(""), f"{col.name} is empty")
            except ValueError:
                pass
        else:
            out = [v or col.empty for v in out]
        return out
    if col.empty is not None:
        values = [v if v.strip() else col.empty for v in values]
    if col.kind == "datetime":
        try:
            text = [v.strip() for v in values]
            if not all(_DATETIME.fullmatch(v) for v in text):
                raise ValueError("format")
            chars = np.array(text, dtype=str)
            if bool(((chars < _YEARS[0]) | (chars >= _YEARS[1])).any()):
                raise ValueError("range")
            ns = chars.astype("datetime64[ns]").astype(np.int64)
            return ns
        except ValueError:
            for i, v in enumerate(values):
                p = _datetime_problem(col, v)
                if p:
                    problems.add(i, p)
                    return None
            problems.add(0, f"{col.name}: cannot be read as dates and times")
            return None
    try:
        x = np.array(values, dtype=np.float64)
        if "_" in "".join(values):  # float() accepts "1_000"; a trace file should not
            raise ValueError("underscore")
    except ValueError:
        for i, v in enumerate(values):
            p = _number_problem(col, v)
            if p:
                problems.add(i, p)
                return None
        problems.add(0, f"{col.name}: cannot be read as numbers")
        return None
    finite = np.isfinite(x)
    bad = [first_true(~finite)]
    if col.nonneg:
        bad.append(first_true(x < 0))
    if col.kind == "whole":
        bad.append(first_true(finite & (x != np.floor(x))))
    if col.kind in ("whole", "round"):
        bad.append(first_true(finite & (np.rint(x) > INT32_MAX)))
    bad_i = [i for i in bad if i is not None]
    if bad_i:
        i = min(bad_i)
        problems.add(i, _number_problem(col, values[i]) or f"{col.name} {values[i]!r} is invalid")
        return None
    return x


def read_table(
    path: str | os.PathLike,
    lines: Sequence[str],
    first_line: int,
    ncols: int,
    cols: dict[int, Col],
    header_desc: str,
    sorted_by: tuple[int, bool] | None = None,
    with_rows: bool = False,
):
    """Split data ``lines`` (row 0 is file line ``first_line``) and convert the columns in ``cols``.

    Returns column name -> array (numbers: float64; whole/round: float64 holding whole numbers;
    datetime: int64 ns; text: list of str). ``sorted_by=(column index, strict)``: that numeric
    column must not decrease (strict: must increase). Raises the first bad line's InputError.
    ``with_rows``: return ``(columns, rows)``, rows being the split fields of every line.
    """
    problems = FirstProblem(path, first_line)
    if any('"' in line for line in lines):
        rows = [split_fields(line) for line in lines]
    else:
        rows = [line.split(",") for line in lines]
    n_ok = len(rows)
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    wrong = first_true(counts != ncols)
    if wrong is not None:
        if not lines[wrong].strip():
            problems.add(wrong, "empty line")
        else:
            problems.add(wrong, f"expected {ncols} comma-separated fields ({header_desc}), got {counts[wrong]}")
        n_ok = wrong
    out: dict[str, object] = {}
    for j, col in cols.items():
        out[col.name] = convert(path, [r[j] for r in rows[:n_ok]], col, problems)
    if sorted_by is not None:
        _check_order(rows, n_ok, sorted_by, cols[sorted_by[0]], out[cols[sorted_by[0]].name], problems)
    problems.raise_if_any()
    return (out, rows) if with_rows else out


def _check_order(rows, n_ok: int, sorted_by: tuple[int, bool], col: Col, values, problems: FirstProblem) -> None:
    j, strict = sorted_by
    if values is not None:  # converted: vectorized
        x = values
        bad = first_true(x[1:] <= x[:-1]) if strict else first_true(x[1:] < x[:-1])
        i = None if bad is None else bad + 1
    else:  # the column has a bad value: scan the rows before it
        i, prev = None, -math.inf
        for k in range(problems.index if problems.index is not None else n_ok):
            try:
                x_k = float(rows[k][j])
            except ValueError:
                break
            if x_k < prev or (strict and x_k == prev):
                i = k
                break
            prev = x_k
    if i is not None:
        word = "is not larger than" if strict else "is smaller than"
        problems.add(
            i,
            f"{col.name} {rows[i][j].strip()} {word} {rows[i - 1][j].strip()} on the line before "
            f"(rows must be sorted by {col.name})",
        )


def check_window(path, window) -> tuple[float, float] | None:
    """``(start_s, duration_s)`` as floats (duration None: to the end, returned as inf), or None."""
    if window is None:
        return None
    try:
        start, duration = window
        start = float(start)
        duration = math.inf if duration is None else float(duration)
    except (TypeError, ValueError):
        raise InputError(source_of(path), "window", f"must be (start_s, duration_s), got {window!r}") from None
    if not math.isfinite(start) or math.isnan(duration) or duration <= 0:
        raise InputError(
            source_of(path), "window", f"must have a finite start and a duration > 0 (or None), got {window!r}"
        )
    return start, duration


def seconds_from_first(ns: np.ndarray) -> np.ndarray:
    """``(ns - ns.min()) / 1e9`` as float64, the difference taken in unsigned 64-bit integers
    so that spans of more than 292 years do not wrap around."""
    if ns.shape[0] == 0:
        return ns.astype(np.float64)
    return (ns.view(np.uint64) - ns.min(keepdims=True).view(np.uint64)).astype(np.float64) / 1e9


def order_by_time(arrival_s: np.ndarray) -> np.ndarray | None:
    """A stable sorting index when ``arrival_s`` is not already non-decreasing, else None."""
    if arrival_s.shape[0] > 1 and bool(np.any(arrival_s[1:] < arrival_s[:-1])):
        return np.argsort(arrival_s, kind="stable")
    return None


def index_first_seen(values: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-row int32 index into names listed in order of first appearance."""
    ids: dict[str, int] = {}
    idx = np.fromiter((ids.setdefault(v, len(ids)) for v in values), dtype=np.int32, count=len(values))
    return idx, tuple(ids)

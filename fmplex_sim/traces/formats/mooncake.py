"""Mooncake FAST'25 traces (``conversation_trace.jsonl`` and the other ``*_trace.jsonl``).

Format: JSON lines, one object per request: ``timestamp`` (milliseconds, a number),
``input_length`` and ``output_length`` (whole numbers of tokens); other keys (``hash_ids``, the
512-token prefix blocks) are ignored. An object that names one key twice, at any depth, is
refused. There is no header: the first request is line 1.

Rules:

- every line is a request; ``input_len`` = input_length, ``output_len`` = output_length;
  no task or base-model ids;
- ``arrival_s`` = (timestamp - earliest timestamp) / 1000; the public file is in time order; a
  file that is not is sorted stably (ties keep file order); ``span_s`` = last arrival;
- ``seed`` is unused; ``window`` is checked but not applied (the caller's shaping cuts it).
"""

from __future__ import annotations

import json
import math

import numpy as np

from fmplex_sim.errors import InputError
from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.traces.formats._csv import (
    INT32_MAX,
    FirstProblem,
    check_window,
    order_by_time,
    read_text,
    source_of,
    split_lines,
)

KEYS = ("timestamp", "input_length", "output_length")


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list) -> dict:
    """A JSON object that names each key once: ``json`` would keep the last of two values of
    one key, and which the trace meant is not knowable."""
    seen: set = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(f"key {json.dumps(key)} given twice")
        seen.add(key)
    return dict(pairs)


def _problem(obj) -> str | None:
    """What is wrong with one parsed line, or None."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k in KEYS if k not in obj]
    if missing:
        return "missing key" + ("s " if len(missing) > 1 else " ") + ", ".join(map(repr, missing))
    for k in KEYS:
        v = obj[k]
        if type(v) not in (int, float):
            shown = json.dumps(v)
            return f"{k} {shown if len(shown) <= 40 else shown[:37] + '...'} is not a number"
        try:
            float(v)
        except OverflowError:
            return f"{k} (a whole number of {len(str(abs(v)))} digits) is out of range"
        if not math.isfinite(v):
            return f"{k} {v} is not a finite number"
        if v < 0:
            return f"{k} must be >= 0, got {v}"
        if k != "timestamp" and (v != math.floor(v) or v > INT32_MAX):
            return f"{k} {v} is not a whole number up to {INT32_MAX}"
    return None


def _scan(path, lines: list[str]) -> None:
    """Line-by-line check that raises the first bad line's InputError."""
    problems = FirstProblem(path, 1)
    for i, line in enumerate(lines):
        if not line.strip():
            problems.add(i, "empty line")
            break
        try:
            obj = json.loads(line, object_pairs_hook=_object)
        except json.JSONDecodeError as err:
            problems.add(i, f"not valid JSON ({err.msg} at column {err.colno})")
            break
        except _DuplicateKey as err:
            problems.add(i, str(err))
            break
        except ValueError:  # an integer of more than 4300 digits
            problems.add(i, "a number with too many digits")
            break
        except RecursionError:
            problems.add(i, "not a request: JSON nested too deeply")
            break
        p = _problem(obj)
        if p:
            problems.add(i, p)
            break
    problems.raise_if_any()


@TRACE_FORMATS.register("mooncake")
def load(path: str, *, seed: int = 0, window: tuple[float, float | None] | None = None) -> Trace:
    """Load a Mooncake JSON-lines trace (see the module docstring for the exact rules)."""
    check_window(path, window)
    lines = split_lines(path, read_text(path))
    try:
        objs = json.loads("[" + ",".join(lines) + "]", object_pairs_hook=_object)
        if len(objs) != len(lines):  # a line holding "1,2" parses as two values
            raise ValueError("line count")
        ts = [o["timestamp"] for o in objs]
        inp = [o["input_length"] for o in objs]
        out = [o["output_length"] for o in objs]
        if not {type(v) for v in ts + inp + out} <= {int, float}:
            raise ValueError("types")
        ts_a = np.array(ts, dtype=np.float64)
        inp_a = np.array(inp, dtype=np.float64)
        out_a = np.array(out, dtype=np.float64)
        both = np.concatenate([inp_a, out_a])
        if not (np.isfinite(ts_a).all() and (ts_a >= 0).all()):
            raise ValueError("timestamps")
        if not ((both >= 0).all() and (both == np.floor(both)).all() and (both <= INT32_MAX).all()):
            raise ValueError("lengths")
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as err:
        _scan(path, lines)
        raise InputError(source_of(path), "", f"cannot be read as JSON lines ({err})") from None
    arrival = (ts_a - ts_a.min()) / 1000.0
    input_len = inp_a.astype(np.int32)
    output_len = out_a.astype(np.int32)
    order = order_by_time(arrival)
    if order is not None:
        arrival, input_len, output_len = arrival[order], input_len[order], output_len[order]
    return Trace(
        source=source_of(path),
        format="mooncake",
        arrival_s=arrival,
        input_len=input_len,
        output_len=output_len,
        span_s=float(arrival[-1]),
    )

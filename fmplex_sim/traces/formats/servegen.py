"""ServeGen per-client arrival statistics (``data/language/m-small/chunk-<client>-trace.csv``).

Input: a folder of ``chunk-<client>-trace.csv`` files (other files in it are ignored) or one
such file. Each file has no header; each row ``timestamp,rate,cv,pattern,arg1,arg2`` describes
one window of a client's arrivals: ``timestamp`` its start (seconds, from 0, strictly
increasing), ``rate`` the window's empirical request rate (requests/s, >= 0), ``cv`` the
empirical coefficient of variation of its inter-arrival gaps (>= 0), ``pattern`` the fitted
inter-arrival family (``Gamma``, ``Weibull``, ...; empty when the rate is 0) and ``arg1``,
``arg2`` its fitted parameters. A row's window lasts until the next row's timestamp (600 s in
the public data); the last row's lasts as long as the one before it (600 s for a one-row file).

Generation rule (the files hold statistics, not requests, so arrivals are drawn):

- client ``<id>`` (from the file name) becomes the task ``client-<id>``; ``task_names`` lists
  the loaded clients sorted by id (all of them, even those without arrivals in the window);
- within each window with rate > 0, arrivals are a renewal process started afresh at the
  window's start: gaps g1, g2, ... are drawn until their running sum passes the window's end;
  arrivals are start + g1, start + g1 + g2, ... (so the first arrival is one full gap after the
  start, not a residual gap; nothing carries over between windows); rate 0 -> no arrivals;
- every gap distribution has mean 1/rate (the ``rate`` column is the window's request count
  over its length). Family and shape come from ``pattern`` and ``arg1``; ``arg2`` is NOT used:
  in the public data it is not a scale consistent with the rate column (for Gamma rows arg1 ==
  1/cv^2 exactly, but arg1 * arg2 != 1/rate).

  * ``Gamma``: shape k = arg1, scale = 1 / (rate * k);
  * ``Weibull``: shape k = arg1, scale = (1/rate) / Gamma(1 + 1/k). (In the public data the
    Weibull arg1 mostly does not reproduce the row's cv: the generated cv follows arg1.)
  * ``Exponential`` (also ``Poisson``, ``Exp``): mean 1/rate, arg1 unused;
  * an empty or unknown pattern (with rate > 0): exponential, mean 1/rate (the fallback);
  * arg1 missing, not a number, not finite or <= 0: the shape is derived from cv: Gamma
    k = 1/cv^2, Weibull the k whose cv equals the row's cv (bisection); cv 0 -> k = 1.
    Shapes are clamped to [1e-3, 1e6] (Gamma) and [0.05, 200] (Weibull). Pattern names are
    matched case-insensitively.
- randomness: each (client, window) pair gets its own stream
  ``numpy.random.default_rng([seed, client_id, row_index])`` (row_index: 0-based row of the
  client's file), so a client's arrivals do not change when other clients are dropped (one
  file vs the folder) nor when a ``window`` is given (a window cut of the whole trace equals
  the trace loaded with that window);
- ``input_len`` is the keyword ``input_len`` (default 256 tokens) for every request: these
  m-small statistics carry no request lengths; ``output_len`` is 0;
- times are the file's own (seconds from timestamp 0); ``span_s`` is the end of the latest
  window of any loaded client (1,209,600 s = 14 days for the public data), with or without a
  ``window``. Clients' arrivals are merged by time (stable: ties in client order).

``window=(start_s, duration_s)``: only the windows that overlap [start, start + duration) are
generated and the result is cut to that interval (``duration_s=None``: to the end); times are
NOT shifted (the caller's shaping does that). Without a window the whole trace is generated, which for the public folder is
about 1.4 billion requests: when the expected count (sum of rate * length over the windows to
generate) exceeds ``max_requests`` (default 50 million) the loader refuses with an InputError
that asks for a window or fewer clients.

Because each window restarts the renewal process, a window's expected count is rate * length
plus about (cv^2 - 1) / 2 (renewal theory), a small bias for the bursty rows.

Speed: reading the 43 public files takes about 0.1 s (numbers through loadtxt's C parser;
pattern and arg1 are split only for the windows generated); a one-hour window of the whole
folder holds 3 to 6.5 million requests and loads in about 0.3 to 0.8 s in all, mostly the
Gamma draws and the final stable merge by time.
"""

from __future__ import annotations

import math
import os
import re
from types import MappingProxyType

import numpy as np

from fmplex_sim.errors import InputError
from fmplex_sim.traces.base import TRACE_FORMATS, Trace
from fmplex_sim.traces.formats._csv import (
    INT32_MAX,
    Col,
    check_window,
    read_table,
    read_text,
    source_of,
    split_fields,
    split_lines,
)

FILE_NAME = re.compile(r"chunk-(\d+)-trace\.csv")
DEFAULT_WINDOW_S = 600.0  # window length of a one-row file
GAMMA_SHAPE = (1e-3, 1e6)
WEIBULL_SHAPE = (0.05, 200.0)
FAMILIES = MappingProxyType(
    {"gamma": "gamma", "weibull": "weibull", "exponential": "exp", "exp": "exp", "poisson": "exp"}
)


def _client_files(path: str) -> list[tuple[int, str]]:
    if os.path.isdir(path):
        found: dict[int, str] = {}
        for name in sorted(os.listdir(path)):
            m = FILE_NAME.fullmatch(name)
            if not m:
                continue
            cid = int(m.group(1))
            if cid in found:
                raise InputError(path, "", f"two files for client {cid}: {os.path.basename(found[cid])}, {name}")
            found[cid] = os.path.join(path, name)
        if not found:
            raise InputError(path, "", "no chunk-<client>-trace.csv files in this folder")
        return sorted(found.items())
    if not os.path.exists(path):
        raise InputError(path, "", "no such file or folder")
    m = FILE_NAME.fullmatch(os.path.basename(path))
    if not m:
        raise InputError(
            path, "", "a ServeGen file must be named chunk-<client>-trace.csv (the id seeds its arrivals)"
        )
    return [(int(m.group(1)), path)]


def _shape_arg(field: str) -> float:
    """arg1 as a number where it is a finite one, NaN elsewhere (then the shape comes from cv)."""
    try:
        x = float(field)
    except ValueError:
        return math.nan
    return x if math.isfinite(x) else math.nan


def _fast_numbers(text: str, lines: list[str]) -> np.ndarray | None:
    """timestamp, rate, cv of a well-formed file through loadtxt's C parser; None: take the slow path."""
    if '"' in text or any(line.count(",") != 5 for line in lines):
        return None
    try:
        x = np.loadtxt(lines, delimiter=",", usecols=(0, 1, 2), comments=None, quotechar=None, ndmin=2)
    except ValueError:
        return None
    if x.shape[0] != len(lines) or not (np.isfinite(x).all() and (x >= 0).all()):
        return None
    if x.shape[0] > 1 and not bool(np.all(x[1:, 0] > x[:-1, 0])):
        return None
    return x


def _read_client(path: str) -> dict:
    text = read_text(path)
    lines = split_lines(path, text)
    x = _fast_numbers(text, lines)
    if x is not None:
        start, rate, cv = x[:, 0].copy(), x[:, 1].copy(), x[:, 2].copy()
    else:  # names the first bad line
        table = read_table(
            path,
            lines,
            1,
            6,
            {0: Col("timestamp", "number"), 1: Col("rate", "number"), 2: Col("cv", "number")},
            "timestamp,rate,cv,pattern,arg1,arg2",
            sorted_by=(0, True),
        )
        start, rate, cv = table["timestamp"], table["rate"], table["cv"]
    length = np.empty_like(start)
    length[:-1] = np.diff(start)
    length[-1] = length[-2] if start.shape[0] > 1 else DEFAULT_WINDOW_S
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~(np.isfinite(start + length) & np.isfinite(rate * length)))
    if bad.shape[0]:
        raise InputError(source_of(path), f"line {bad[0] + 1}",
                         "the window's end or its request count (rate x length) is beyond the float range")
    # pattern and arg1 are read only for the windows generated (any text is valid there)
    return {"start": start, "length": length, "rate": rate, "cv": cv, "lines": lines}


def _weibull_cv(k: float) -> float:
    return math.sqrt(max(math.exp(math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k)) - 1, 0.0))


def _weibull_shape_for_cv(cv: float) -> float:
    lo, hi = WEIBULL_SHAPE  # cv decreases in k
    if cv >= _weibull_cv(lo):
        return lo
    if cv <= _weibull_cv(hi):
        return hi
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        if _weibull_cv(mid) > cv:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _sampler(pattern: str, arg1: float, cv: float, rate: float):
    """(draw(rng, size) -> gaps) with mean 1/rate, by the module docstring's rule."""
    mean = 1.0 / rate
    family = FAMILIES.get(pattern.strip().lower(), "exp")
    cv_ok = math.isfinite(cv) and cv > 0
    if family == "gamma":
        k = arg1 if arg1 > 0 else (1.0 / (cv * cv) if cv_ok else 1.0)
        k = min(max(k, GAMMA_SHAPE[0]), GAMMA_SHAPE[1])
        scale = mean / k
        return lambda rng, size: rng.gamma(k, scale, size)
    if family == "weibull":
        k = arg1 if arg1 > 0 else (_weibull_shape_for_cv(cv) if cv_ok else 1.0)
        k = min(max(k, WEIBULL_SHAPE[0]), WEIBULL_SHAPE[1])
        scale = mean * math.exp(-math.lgamma(1 + 1 / k))
        return lambda rng, size: rng.weibull(k, size) * scale
    return lambda rng, size: rng.exponential(mean, size)


def _window_arrivals(rng, draw, rate: float, length: float) -> np.ndarray:
    """Renewal arrivals in [0, length) started afresh at 0 (offsets from the window's start)."""
    expected = rate * length
    batch = int(expected * 1.02 + 3 * math.sqrt(expected) + 16)
    limit = 50 * batch + 10_000  # a mean-1/rate process passes `length` long before this many draws
    chunks = []
    total, drawn = 0.0, 0
    while drawn < limit:
        c = draw(rng, batch)
        np.cumsum(c, out=c)
        c += total
        drawn += batch
        if c[-1] >= length:
            chunks.append(c[: int(np.searchsorted(c, length, side="left"))])
            break
        chunks.append(c)
        total = float(c[-1])
        left = (length - total) * rate  # expected arrivals still to come
        batch = int(left * 1.1 + 3 * math.sqrt(left) + 16)
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


@TRACE_FORMATS.register("servegen")
def load(
    path: str,
    *,
    seed: int = 0,
    window: tuple[float, float | None] | None = None,
    input_len: int = 256,
    max_requests: int = 50_000_000,
) -> Trace:
    """Generate arrivals from ServeGen per-client statistics (see the module docstring for the rule)."""
    src = source_of(path)
    win = check_window(src, window)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(src, "seed", f"must be a whole number >= 0, got {seed!r}")
    if isinstance(input_len, bool) or not isinstance(input_len, (int, np.integer)) or not 0 <= input_len <= INT32_MAX:
        raise InputError(src, "input_len", f"must be a whole number >= 0, got {input_len!r}")
    lo, hi = (-math.inf, math.inf) if win is None else (win[0], win[0] + win[1])
    files = _client_files(src)
    clients = [(cid, _read_client(f)) for cid, f in files]

    plan = []  # (client position, client id, row index) of windows to generate
    expected = 0.0
    span = 0.0
    for pos, (cid, c) in enumerate(clients):
        end = c["start"] + c["length"]
        span = max(span, float(end[-1]))
        sel = np.flatnonzero((c["rate"] > 0) & (c["start"] < hi) & (end > lo))
        overlap = np.minimum(end[sel], hi) - np.maximum(c["start"][sel], lo)
        with np.errstate(over="ignore"):  # an overflowing sum is over max_requests: refused below
            expected += float((c["rate"][sel] * overlap).sum())
        plan.extend((pos, cid, int(i)) for i in sel)
    if expected > max_requests:
        what = "the whole trace" if win is None else f"window {window!r}"
        raise InputError(
            src,
            "",
            f"{what} holds about {expected:,.0f} requests, more than the {max_requests:,} generated at most; "
            "load a shorter window (workload.window: {start_s: 0, duration_s: 3600} in a config, "
            "--window-start/--window-duration to `trace`) or fewer clients (one chunk file)",
        )

    times, tasks = [], []
    for pos, cid, i in plan:
        c = clients[pos][1]
        rate, start, length = float(c["rate"][i]), float(c["start"][i]), float(c["length"][i])
        rng = np.random.default_rng([int(seed), cid, i])
        row = split_fields(c["lines"][i])
        draw = _sampler(row[3], _shape_arg(row[4]), float(c["cv"][i]), rate)
        t = _window_arrivals(rng, draw, rate, length)
        t += start
        if win is not None and (start < lo or start + length > hi):
            t = t[(t >= lo) & (t < hi)]
        times.append(t)
        tasks.append(np.full(t.shape[0], pos, dtype=np.int32))
    if times:
        arrival = np.concatenate(times)
        task = np.concatenate(tasks)
        order = np.argsort(arrival, kind="stable")
        arrival, task = arrival[order], task[order]
    else:
        arrival, task = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int32)
    n = arrival.shape[0]
    return Trace(
        source=src,
        format="servegen",
        arrival_s=arrival,
        input_len=np.full(n, int(input_len), dtype=np.int32),
        output_len=np.zeros(n, dtype=np.int32),
        task=task,
        task_names=tuple(f"client-{cid}" for cid, _ in clients),
        span_s=span,
    )


def statistics(path: str, window: tuple[float, float | None] | None = None, input_len: int = 256) -> dict:
    """The trace's statistics as recorded, without generating arrivals.

    ``requests`` is the recorded count, sum of rate x window length over the windows (or their
    parts) inside ``window``; per-client shares follow from it. ``interarrival_cv`` is the
    request-weighted mean of the windows' recorded CVs (the CV within a window, not across
    the whole trace). Used by ``trace info`` on spans too large to generate.
    """
    src = source_of(path)
    win = check_window(src, window)
    lo, hi = (-math.inf, math.inf) if win is None else (win[0], win[0] + win[1])
    files = _client_files(src)
    counts, span, first = [], 0.0, math.inf
    weighted_cv = 0.0
    for _cid, f in files:
        c = _read_client(f)
        end = c["start"] + c["length"]
        span = max(span, float(end[-1]))
        first = min(first, float(c["start"][0]))
        overlap = np.clip(np.minimum(end, hi) - np.maximum(c["start"], lo), 0.0, None)
        n = c["rate"] * overlap
        with np.errstate(over="ignore", invalid="ignore"):  # huge sums: refused below
            counts.append(float(n.sum()))
            weighted_cv += float((n * c["cv"]).sum())
    total = sum(counts)
    if not math.isfinite(total):
        raise InputError(src, "", "the recorded request count (rate x length over the windows) "
                         "is beyond the float range")
    dur = (min(hi, span) - max(lo, first)) if win is not None else span - first
    order = np.argsort(-np.asarray(counts), kind="stable")[:10]
    names = [f"client-{cid}" for cid, _ in files]
    return {
        "requests": int(round(total)),
        "duration_s": round(dur, 3),
        "mean_rate_rps": round(total / dur, 4) if dur > 0 else None,
        "interarrival_cv": round(weighted_cv / total, 4) if total > 0 else None,
        "interarrival_cv_note": "request-weighted mean of the recorded per-window CVs",
        "tasks": len(files),
        "input_len": {"mean": float(input_len), "p50": float(input_len), "p90": float(input_len),
                      "p99": float(input_len), "max": int(input_len)},
        "top_tasks": [{"task": names[i], "share": round(counts[i] / total, 4)} for i in order] if total else [],
        "generated": False,
    }

"""Latency model interpolated from a measured profile table (CSV).

Profile CSV format (version 1.9)
--------------------------------

A profile is a UTF-8 text file of latency measurements, one measurement per line.

* Lines whose first non-blank character is ``#`` are comments (provenance: tool version,
  host, GPU, driver, torch version, date, command line). Blank lines are ignored. A comment
  ``profile CSV format version X.Y`` (the first line of every file this version writes) names
  the format; a file of another major version is refused, one without the comment reads as 1.x.
* The first other line is the header. It must name all 15 columns below, in any order;
  extra columns are ignored. Every following non-comment line is one measurement::

    kind,backbone,device,dtype,batch,seq_len,n_adapters,rank,outputs,params,bytes,median_ms,p10_ms,p90_ms,repeats

* ``kind``: what was timed (see below). ``backbone``: catalog backbone name (``*`` allowed
  for ``overhead``/``dispatch``/``load_*`` rows). ``device``: catalog device name (e.g. ``H100-80GB``).
  ``dtype``: element type served (``bf16``, ``fp16``, ``fp32``; informational).
* Integer columns ``batch, seq_len, n_adapters, rank, outputs, params, bytes, repeats``:
  non-negative integers, empty where the kind does not use them (read as 0).
* ``median_ms`` (required), ``p10_ms``, ``p90_ms`` (may be empty): finite, non-negative
  milliseconds with ``p10_ms <= median_ms <= p90_ms``. ``repeats``: timed repetitions.

Kinds and the columns they require (all times exclude ``overhead`` unless stated):

==================  ===================================  =====================================
kind                required columns                     what median_ms is
==================  ===================================  =====================================
``forward``         batch>=1, seq_len>=1                 one backbone forward (prefill) of
                                                         ``batch`` rows padded to ``seq_len``,
                                                         inputs already on the device
``decode``          batch>=1, seq_len>=1                 one decode step, ``seq_len`` = context
``lora``            batch, seq_len, n_adapters, rank>=1  forward with ``n_adapters`` distinct
                                                         adapters (rows split evenly) minus the
                                                         plain forward; write max(0, diff)
``head``            batch>=1, outputs>=1                 a task head over ``batch`` pooled rows
``encoder``         batch, seq_len, params>=1            an input encoder of ``params`` weights
``overhead``        (none; batch optional)               per-batch runtime cost outside the
                                                         forward (end-to-end minus forward)
                                                         for a batch of ``batch`` requests
``contention``      batch>=1                             one forward while ``batch`` forwards
                                                         run at once in one serving process
                                                         (threads), same shape each: ``rows``
                                                         x ``seq_len`` (version 1.2)
``throttle``        batch, seq_len                       extra time of a batch whose serving
                                                         thread shares its process with
                                                         another replica's idle thread pool
``wake``            batch, seq_len, gap_ms>0             extra time of a batch that starts
                                                         after an idle gap of about ``gap_ms``
                                                         (version 1.7: gaps drawn within a
                                                         bin around it; before, exponential
                                                         gaps of that mean)
                                                         over one run back to back once
                                                         the wake-up has worn off
                                                         (``n_adapters`` 1: on an instance
                                                         holding LoRA adapters; ``threads``
                                                         n: sent to a slice's process of n
                                                         threads, round trip included;
                                                         ``beside`` k: with k other instances'
                                                         thread pools in the process)
``rewarm``          batch, seq_len                       busy ms over which what is left of a
                                                         woken instance's wake-up falls by a
                                                         factor e (version 1.6): from the
                                                         batches run back to back after the
                                                         ``wake`` rows' wake-ups at ``gap_ms``
                                                         (their largest gap), same columns
``warmup``          batch, seq_len                       ms a woken instance runs before it
                                                         has settled (version 1.7): from the
                                                         batches run back to back after the
                                                         wake-ups of the ``wake`` rows' gaps
                                                         from ``gap_ms`` up, same columns
``dispatch``        (none)                               from a request's arrival at an idle
                                                         instance to its serving thread's pick
                                                         (version 1.3)
``load_backbone``   bytes                                loading a backbone of ``bytes``
``load_extension``  bytes                                loading an extension of ``bytes``
==================  ===================================  =====================================

Optional column ``threads`` (version 1.1; files without it read as before): the CPU threads
the row was measured with, empty or 0 for all of the device's cores. ``forward`` and ``lora``
rows with a thread count form their own tables; they describe a CPU slice that owns that many
cores (a process serving on its main thread). ``wake`` rows with a thread count are a slice's.
Optional column ``rows`` (version 1.2): on ``contention`` rows, the batch of each concurrent
forward (with ``seq_len``, the shape they were measured at). Optional column ``beside``
(version 1.4): on ``wake``, ``rewarm`` and ``warmup`` rows, how many other instances' idle thread pools
the process held while they were measured (0 or empty: none). Optional column ``running``
(version 1.8): on ``wake`` and ``warmup`` rows, how many other instances' batches ran in the
process meanwhile (0 or empty: none); such ``wake`` rows give the extra in solo time (each
pair's extra over how much slower the settled batches ran beside the running ones), since the
engine adds it to the batch's work, which the running batches then slow. Optional column ``mean_ms`` (version 1.5):
on ``throttle`` and ``wake`` rows, the mean extra time over all samples (finite, >= 0; not
ordered against the percentiles). These costs are paid by some batches and not others, and
how often moves with the host's state from one series of batches to the next, so their median
over a few series jumps between 0 and the full cost; the mean is the expected cost per batch.
Version 1.9 gives ``forward`` rows ``mean_ms`` too: a host that runs in spells (seconds at a
time 30-45% slower on the 2-core machine) puts the median of a few samples in one spell or the
other, and a replay meets both in proportion: the mean is the expected time.
The model reads ``mean_ms`` where a row has it (the ``forward`` and ``decode`` grids included),
else ``median_ms``.

``forward`` and ``decode`` rows of one (backbone, device, threads) must form a full grid: every
(batch, seq_len) pair of the measured batch values x measured seq_len values, each once.
``lora`` rows are unique per (rank, n_adapters, batch, seq_len), ``head`` rows per (outputs,
batch); any grid may be irregular (e.g. batch 1, 2, 4, 8, 32, 128; seq_len 64, 128, 512).

How :class:`ProfileModel` answers:

* backbone_s / decode_step_s: bilinear interpolation over the (batch, seq_len) grid. Below
  the grid the edge value is used. Beyond it, time grows linearly in tokens (rows*seq_len)
  from the clamped edge point, with the per-token slope of the last two grid points along
  each exceeded axis (the larger if both; proportional scaling if an axis has one point),
  never below the edge value and never negative.
* adapters_s: per measured rank, piecewise-linear in tokens for each measured n_adapters,
  then linear in n_adapters (extrapolated past the grid with the last two points' slope,
  clamped at the edge below it); ranks between measured ones are interpolated linearly,
  ranks outside use the nearest.
* extension_s: head - piecewise linear in rows at the nearest measured ``outputs``;
  encoder - least-squares ``a + b*params*rows*seq_len`` (a, b >= 0).
* batch_overhead_s: ``a + b*rows`` over the device's ``overhead`` rows when they cover two or
  more batch sizes (per-request work: making, checking and padding each input, splitting
  outputs), else their mean. With five or more batch sizes (the profiler measures 1, 2, 4, 8
  and 16) the line is fitted by Theil-Sen (median slope), so that one row measured in a noisy
  moment does not pull it; with fewer, by least squares.
* contention: ``median(k) / median(1)`` of the ``contention`` rows, piecewise linear in k
  (extrapolated with the last slope, never below 1 at k=1); without rows, ``k``; with rows of
  several backbones on the device, the median of their slowdowns.
  contention_for (one batch's shape among ``k``): its own backbone's rows (else the device's,
  as contention), times the shape's speedup from ``n = cores // k`` threads to all cores
  (``forward`` grids) over the measured shape's (rows of version 1.2 record it); without the
  grids or the shape, the slowdown as is. On the 2-core machine MiniLM-L6 and BERT-base slow
  by 1.70x and 1.89x at k=2 (measured at 4 x 48), so one backbone's rows misjudge the other's.
* pool_throttle_s: the backbone's ``throttle`` rows (``mean_ms`` where given), piecewise linear in the batch's tokens
  (batch x seq_len; edge value below, last slope above); without rows, 0. The engine adds it
  on CPU devices to each batch of an instance whose process holds several instances.
* jitter_sigma: on CPU hosts the engine draws each batch's service time around the model's
  median from a lognormal whose 90th percentile matches the ``forward`` rows' (median over
  the grid of ``ln(p90/median) / 1.2816``), from the run's seeded generator.
* wake_s: the ``wake`` rows (extra ms of a batch after ``gap_ms`` of idleness; ``mean_ms``
  where given) piecewise
  linear in the gap, capped at the largest; proportional below the smallest gap; then
  piecewise linear in the batch's tokens (rows x seq_len) between the shapes measured, the
  nearest shape's value outside them; without rows, 0. The backbone's own rows when it has
  some, else another's on the device. The engine adds it on CPU devices to every batch, by
  how long its serving thread was idle: rows without ``threads`` for a thread of a shared
  process (those with ``beside`` when the process holds other instances and there are such
  rows), rows with ``threads = n`` for a spatial slice of ``n`` cores (its own process; no
  such rows: 0).
* rewarm_s: the median over shapes of the ``rewarm`` rows of the table ``wake_s`` reads
  (same preference), in seconds; without rows, 0. The engine keeps, per CPU instance, how
  cold it is (0: settled, 1: as cold as the ``wake`` rows' largest gap leaves it). An idle gap
  takes away the share of the remaining warmth that the ``wake`` rows give for that gap from
  a settled instance (``wake_s(gap) / wake_s(largest)``); the batch then pays ``coldness x
  wake_s(largest)``, and the wall time ``d`` it runs (slowed by contention or not) leaves
  ``coldness x exp(-d / rewarm_s)``. So a
  batch after a short gap that follows a woken batch pays more than one after the same gap
  that follows a settled stretch of work; without ``rewarm`` rows an instance settles within
  any batch and pays ``wake_s(gap)``, as before version 1.6.
* warmup_s (version 1.7, in place of ``rewarm`` rows): the median over shapes of the ``warmup``
  rows of the table ``wake_s`` reads, in seconds; without rows, 0. A gap makes a settled
  instance ``wake_s(gap) / wake_s(largest)`` cold, and it stays so until it has run
  ``warmup_s`` of wall time, idle time meanwhile adding to what it still needs (up to
  ``warmup_s``); an instance already cold keeps the larger coldness. A batch pays coldness x
  ``wake_s(largest)`` x the share of it run before it settles (``LatencyModel.woken``). Measured
  on the 2-core machine beside another pool, a MiniLM 1x64 batch right after a woken one paid
  three quarters of a full wake-up, and one two batches on had settled; ten or twenty ms of
  idle between them kept the third batch cold (``experiments/validation/wake_curve.py``).
* dispatch_s: the median of the device's ``dispatch`` rows (several when profiles are
  merged); without rows, the fallback's (0). The engine picks a batch for an idle instance this
  long after the arrival that wakes it, so requests arriving meanwhile join that batch.
* On a CPU device, a slice (share < 1) owning ``n = max(1, round(share*cores))`` cores reads
  the ``forward`` grid and ``lora`` rows measured with ``threads = n`` when there are some
  (head and encoder times scaled by the forward grids' ratio; without threaded lora rows, the
  all-core ones as they are: mostly per-layer host work); other slices use the rule below. load_s / extension_load_s:
  least-squares ``fixed + bytes/bandwidth`` over the device's ``load_*`` rows (fixed >= 0;
  one row: proportional).
* share < 1 (a slice; the profile is measured on a whole device): ``fixed + (t - fixed) /
  share``, where ``fixed`` (at most ``t``) is the part that does not shrink with the slice:
  the launch cost ``launches*kernel_launch_us`` of the device spec, with ``launches`` =
  ``layers*kernels_per_layer`` (forward, decode), ``2*layers*n_adapters`` (lora), 1 (head),
  ``kernels_per_layer`` (encoder).
* Missing rows: no ``forward`` rows for the backbone on the device -> ``KeyError`` naming the
  backbone and the file. Other kinds missing -> answered by the ``fallback`` model (a
  :class:`RooflineModel` by default; the kinds used are listed by :meth:`fallback_kinds`),
  or ``KeyError`` when ``strict=True``.
* Malformed file -> ``ValueError("<path>:<line>: <what is wrong>")``.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from fmplex_sim.latency.base import BESIDE_RUNNING, LATENCY_MODELS, LatencyModel
from fmplex_sim.latency.roofline import RooflineModel
from fmplex_sim.specs import BackboneSpec, DeviceSpec, ExtensionSpec

COLUMNS = ("kind", "backbone", "device", "dtype", "batch", "seq_len", "n_adapters", "rank",
           "outputs", "params", "bytes", "median_ms", "p10_ms", "p90_ms", "repeats")
FORMAT_VERSION = "1.9"
ROBUST_OVERHEAD_SIZES = 5  # overhead rows at this many batch sizes or more: Theil-Sen fit
_FORMAT_COMMENT = re.compile(r"profile CSV format version\s+(\S+?)\)?\s*$")
OPTIONAL_COLUMNS = ("threads", "gap_ms", "rows", "beside", "mean_ms", "running")  # threads, gap_ms: 1.1; rows: 1.2; beside: 1.4; mean_ms: 1.5; running: 1.8
_INTS = ("batch", "seq_len", "n_adapters", "rank", "outputs", "params", "bytes", "repeats", "threads",
         "rows", "beside", "running")
_REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "forward": ("batch", "seq_len"),
    "decode": ("batch", "seq_len"),
    "lora": ("batch", "seq_len", "n_adapters", "rank"),
    "head": ("batch", "outputs"),
    "encoder": ("batch", "seq_len", "params"),
    "overhead": (),
    "contention": ("batch",),
    "throttle": ("batch", "seq_len"),
    "wake": ("batch", "seq_len"),
    "rewarm": ("batch", "seq_len"),
    "warmup": ("batch", "seq_len"),
    "dispatch": (),
    "load_backbone": ("bytes",),
    "load_extension": ("bytes",),
})
KINDS = tuple(_REQUIRED)
_ANY_BACKBONE = ("overhead", "dispatch", "load_backbone", "load_extension")  # may use backbone "*"
_LORA_LAUNCHES_PER_LAYER = 2  # q and v: launch part of lora rows when scaling by share


@dataclass(frozen=True)
class ProfileRow:
    """One parsed measurement; ``line`` is its 1-based line number in the file."""

    kind: str
    backbone: str
    device: str
    dtype: str
    batch: int
    seq_len: int
    n_adapters: int
    rank: int
    outputs: int
    params: int
    bytes: int
    median_ms: float
    p10_ms: float | None
    p90_ms: float | None
    repeats: int
    line: int
    threads: int = 0  # CPU threads it was measured with; 0: all of the device's cores
    gap_ms: float = 0.0  # wake, rewarm, warmup rows: how long the serving thread had been idle
    rows: int = 0  # contention rows: each concurrent forward's batch (its seq_len: seq_len)
    beside: int = 0  # wake, rewarm, warmup rows: other instances' thread pools in the process when measured
    mean_ms: float | None = None  # throttle, wake rows: the samples' mean (version 1.5); forward (1.9)
    running: int = 0  # wake, warmup rows: other instances' batches running in the process when measured (1.8)

    @property
    def expected_ms(self) -> float:
        """The mean where the row gives one (``throttle``, ``wake``: costs a batch pays or
        not; ``forward``: a host's spells), else the median."""
        return self.median_ms if self.mean_ms is None else self.mean_ms


def _parse_row(cells: Mapping[str, str], path: object, line: int) -> ProfileRow:
    def bad(msg: str) -> ValueError:
        return ValueError(f"{path}:{line}: {msg}")

    kind, backbone, device = (cells[c].strip() for c in ("kind", "backbone", "device"))
    if kind not in _REQUIRED:
        raise bad(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    if not backbone or not device:
        raise bad("empty backbone or device")
    if backbone == "*" and kind not in _ANY_BACKBONE:
        raise bad(f"backbone '*' is only allowed for {', '.join(_ANY_BACKBONE)} rows")
    ints: dict[str, int] = {}
    for col in _INTS:
        s = cells.get(col, "").strip()
        need = col in _REQUIRED[kind]
        if not s:
            if need:
                raise bad(f"missing {col} (required for kind {kind})")
            ints[col] = 0
            continue
        try:
            v = int(s)
        except ValueError:
            raise bad(f"bad number {s!r} in column {col} (expected an integer)") from None
        if v < 0 or (need and col != "bytes" and v < 1):
            raise bad(f"{col} must be {'>= 1' if need else '>= 0'}, got {v}")
        ints[col] = v
    lat: dict[str, float | None] = {}
    for col in ("median_ms", "p10_ms", "p90_ms"):
        s = cells[col].strip()
        if not s:
            if col == "median_ms":
                raise bad("missing median_ms")
            lat[col] = None
            continue
        try:
            v = float(s)
        except ValueError:
            raise bad(f"bad number {s!r} in column {col}") from None
        if not math.isfinite(v):
            raise bad(f"non-finite latency {col}={s}")
        if v < 0:
            raise bad(f"negative latency {col}={s}")
        lat[col] = v
    mean = cells.get("mean_ms", "").strip()
    mean_ms: float | None = None
    if mean:
        try:
            mean_ms = float(mean)
        except ValueError:
            raise bad(f"bad number {mean!r} in column mean_ms") from None
        if not math.isfinite(mean_ms) or mean_ms < 0:
            raise bad(f"mean_ms must be finite and >= 0, got {mean}")
    gap = cells.get("gap_ms", "").strip()
    try:
        gap_ms = float(gap) if gap else 0.0
    except ValueError:
        raise bad(f"bad number {gap!r} in column gap_ms") from None
    if not math.isfinite(gap_ms) or gap_ms < 0 or (kind == "wake" and gap_ms <= 0):
        raise bad(f"gap_ms must be {'> 0 for wake rows' if kind == 'wake' else '>= 0'}, got {gap}")
    med, p10, p90 = lat["median_ms"], lat["p10_ms"], lat["p90_ms"]
    if (p10 is not None and p10 > med) or (p90 is not None and p90 < med):
        raise bad(f"percentiles out of order: p10_ms={p10} median_ms={med} p90_ms={p90}")
    return ProfileRow(kind, backbone, device, cells["dtype"].strip(), median_ms=med,
                      p10_ms=p10, p90_ms=p90, line=line, gap_ms=gap_ms, mean_ms=mean_ms, **ints)


def _check_version(version: str, path: object, line: int) -> None:
    major = version.split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ValueError(f"{path}:{line}: profile CSV format version {version[:40]}; this fmplex reads "
                         f"version {FORMAT_VERSION.split('.')[0]}.x (measure it again with this "
                         f"version's fmplex-exec profile)")


def read_profile(path: str | Path) -> list[ProfileRow]:
    """Parse and validate a profile CSV (format in the module docstring).

    Raises ``ValueError("<path>:<line>: ...")`` for another major format version, a missing
    header column, a wrong field count, an unknown kind, a bad or missing number, a negative
    latency or an empty table.
    """
    text = Path(path).read_text(encoding="utf-8")
    header: list[str] | None = None
    rows: list[ProfileRow] = []
    last = 0
    for line, raw in enumerate(text.splitlines(), 1):
        last = line
        if not raw.strip():
            continue
        if raw.lstrip().startswith("#"):
            if header is None and (m := _FORMAT_COMMENT.search(raw)):
                _check_version(m.group(1), path, line)
            continue
        try:
            cells = [c.strip() for c in next(csv.reader([raw]))]
        except csv.Error as e:
            raise ValueError(f"{path}:{line}: not a CSV row ({e})") from None
        if header is None:
            missing = [c for c in COLUMNS if c not in cells]
            if missing:
                raise ValueError(f"{path}:{line}: header lacks column(s) {', '.join(missing)}")
            if len(set(cells)) != len(cells):
                raise ValueError(f"{path}:{line}: header repeats a column")
            header = cells
            continue
        if len(cells) != len(header):
            raise ValueError(f"{path}:{line}: expected {len(header)} fields, got {len(cells)}")
        rows.append(_parse_row(dict(zip(header, cells)), path, line))
    if not rows:
        what = "no measurement rows" if header else "no header and no measurement rows"
        raise ValueError(f"{path}:{max(last, 1)}: empty table ({what})")
    return rows


def _cell(v: object) -> str:
    return "" if v is None else str(v)


def write_profile(
    path: str | Path, rows: Sequence[Mapping[str, object]], comments: Iterable[str] = ()
) -> None:
    """Write ``rows`` (dicts keyed by ``COLUMNS``; absent or None cells are left empty) to
    ``path`` in the profile CSV format, preceded by a line naming the format version and by
    ``comments`` as ``#`` lines (a comment naming a format version is dropped).

    Every row is validated as :func:`read_profile` would read it; a bad row raises
    ``ValueError("<path>:<line>: ...")`` with the line it would have had, and nothing is
    written. An empty ``rows`` is an error too.
    """
    lines = [f"# profile CSV format version {FORMAT_VERSION}"]
    lines += [f"# {part}".rstrip() for c in comments for part in (str(c).splitlines() or [""])
              if not _FORMAT_COMMENT.search(part)]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    header = COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if any(row.get(c) for row in rows))
    out.writerow(header)
    first = len(lines) + 2  # line number of the first measurement
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(COLUMNS) - set(OPTIONAL_COLUMNS))
        if unknown:
            raise ValueError(f"{path}:{first + i}: unknown column(s) {', '.join(unknown)}")
        cells = {c: _cell(row.get(c)) for c in header}
        _parse_row(cells, path, first + i)
        out.writerow([cells[c] for c in header])
    if not rows:
        raise ValueError(f"{path}:{first - 1}: empty table (no measurement rows)")
    Path(path).write_text("".join(s + "\n" for s in lines) + buf.getvalue(), encoding="utf-8")


# -- interpolation ---------------------------------------------------------------------------
def _bracket(xs: Sequence[float], x: float) -> tuple[int, int, float]:
    """Indices (lo, hi) and weight w of hi such that x ~ xs[lo]*(1-w) + xs[hi]*w, clamped."""
    if len(xs) == 1 or x <= xs[0]:
        return 0, 0, 0.0
    if x >= xs[-1]:
        return len(xs) - 1, len(xs) - 1, 0.0
    k = bisect.bisect_right(xs, x)
    return k - 1, k, (x - xs[k - 1]) / (xs[k] - xs[k - 1])


def _interp1(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise linear; edge value below; past the end the last two points' slope (>= 0),
    or proportional scaling with a single point."""
    if x <= xs[0]:
        return ys[0]
    if len(xs) == 1:
        return ys[0] * x / xs[0]
    if x >= xs[-1]:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return ys[-1] + max(slope, 0.0) * (x - xs[-1])
    lo, hi, w = _bracket(xs, x)
    return ys[lo] * (1 - w) + ys[hi] * w


def _fit_affine(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b*x`` with a, b >= 0 (proportional when that fails)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n >= 2 and sxx > 0:
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        if b <= 0:
            return my, 0.0
        if my - b * mx >= 0:
            return my - b * mx, b
    sx2 = sum(x * x for x in xs)
    if sx2 == 0:
        return my, 0.0
    return 0.0, max(sum(x * y for x, y in zip(xs, ys)) / sx2, 0.0)


def _fit_affine_robust(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Theil-Sen ``y = a + b*x`` (b: median of the slopes between points of distinct x; a: median
    of ``y - b*x``) with a, b >= 0 (proportional when a < 0). One stray point among five moves
    it little, where it would pull a least-squares line; through two points it is that line."""
    pairs = [(ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))
             if xs[j] != xs[i]]
    if not pairs:
        return statistics.median(ys), 0.0
    b = statistics.median(pairs)
    if b <= 0:
        return statistics.median(ys), 0.0
    a = statistics.median(y - b * x for x, y in zip(xs, ys))
    if a >= 0:
        return a, b
    return 0.0, max(statistics.median(y / x for x, y in zip(xs, ys) if x > 0), 0.0)


def _fit_overhead(points: list[tuple[int, float]]) -> tuple[float, float]:
    """``(a, b)`` of the per-batch overhead ``a + b*rows`` from ``(rows, ms)`` points."""
    sizes = len({b for b, _ in points})
    if sizes == 1:
        return sum(ms for _, ms in points) / len(points), 0.0
    # Theil-Sen outvotes one stray row only among five or more batch sizes; profiles with fewer
    # (written before the profiler measured five) keep their least-squares fit
    return (_fit_affine_robust if sizes >= ROBUST_OVERHEAD_SIZES else _fit_affine)(*zip(*points))


@dataclass(frozen=True)
class _Grid:
    """Measured ms on a full (batch, seq_len) grid: ms[i][j] at batches[i], seqs[j]."""

    batches: tuple[int, ...]
    seqs: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]

    def at(self, b: float, s: float) -> float:
        """Bilinear value, arguments clamped to the grid."""
        i0, i1, wb = _bracket(self.batches, b)
        j0, j1, ws = _bracket(self.seqs, s)
        m = self.ms
        lo = m[i0][j0] * (1 - ws) + m[i0][j1] * ws
        hi = m[i1][j0] * (1 - ws) + m[i1][j1] * ws
        return lo * (1 - wb) + hi * wb

    def value(self, rows: int, seq: int) -> float:
        """Interpolated inside, linear in tokens beyond the grid (module docstring)."""
        B, S = self.batches, self.seqs
        rc, sc = min(max(rows, B[0]), B[-1]), min(max(seq, S[0]), S[-1])
        t = self.at(rc, sc)
        extra = rows * seq - rc * sc
        if extra > 0 and (rows > B[-1] or seq > S[-1]):
            slopes = []
            if rows > B[-1]:
                d = self.at(B[-1], sc) - self.at(B[-2], sc) if len(B) > 1 else t
                slopes.append(d / (((B[-1] - B[-2]) if len(B) > 1 else B[-1]) * sc))
            if seq > S[-1]:
                d = self.at(rc, S[-1]) - self.at(rc, S[-2]) if len(S) > 1 else t
                slopes.append(d / (((S[-1] - S[-2]) if len(S) > 1 else S[-1]) * rc))
            t += max(0.0, *slopes) * extra
        return max(t, 0.0)


def _grid(rows: list[ProfileRow], path: object) -> _Grid:
    cells: dict[tuple[int, int], ProfileRow] = {}
    for r in rows:
        key = (r.batch, r.seq_len)
        if key in cells:
            raise ValueError(
                f"{path}:{r.line}: duplicate {r.kind} row for {r.backbone} on {r.device} at "
                f"batch={r.batch} seq_len={r.seq_len} (first at line {cells[key].line})"
            )
        cells[key] = r
    B = tuple(sorted({b for b, _ in cells}))
    S = tuple(sorted({s for _, s in cells}))
    missing = [(b, s) for b in B for s in S if (b, s) not in cells]
    if missing:
        r = rows[0]
        raise ValueError(
            f"{path}:{r.line}: {r.kind} rows of {r.backbone} on {r.device} are not a full "
            f"(batch, seq_len) grid; missing {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    return _Grid(B, S, tuple(tuple(cells[(b, s)].expected_ms for s in S) for b in B))


def _slowdown(curve: tuple, k: int) -> float:
    """A ``contention`` curve's ``median(k) / median(1)``, never below 1 (``k`` when its
    k=1 value is not positive)."""
    xs, ys = curve
    base = _interp1(xs, ys, 1)
    return max(1.0, _interp1(xs, ys, k) / base) if base > 0 else float(k)


def _curve(points: Iterable[tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Sorted (xs, ys), averaging ys of equal xs."""
    acc: dict[float, list[float]] = defaultdict(list)
    for x, y in points:
        acc[x].append(y)
    xs = tuple(sorted(acc))
    return xs, tuple(sum(acc[x]) / len(acc[x]) for x in xs)


def _scale(t: float, fixed: float, share: float) -> float:
    """``fixed + (t - fixed) / share`` with the fixed part capped at ``t``."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    fixed = min(fixed, t)
    return fixed + (t - fixed) / share


@LATENCY_MODELS.register("profile")
class ProfileModel(LatencyModel):
    """Latency model interpolated from a measured profile CSV (format: module docstring).

    ``ProfileModel(path, fallback=None, strict=False, name=None)`` reads and validates the
    whole file (``ValueError`` naming file and line if malformed). Parts the profile lacks are
    answered by ``fallback`` (default ``RooflineModel()``) unless ``strict``; a backbone without
    ``forward`` rows on the asked device is always a ``KeyError``. ``name`` is what ``source``
    reports instead of ``path`` (a file read from a temporary folder before it is moved).
    """

    kind = "profile"

    def __init__(
        self, path: str | Path, fallback: LatencyModel | None = None, strict: bool = False,
        name: str | None = None,
    ) -> None:
        self.path = path
        self._name = name
        self.fallback = fallback if fallback is not None else RooflineModel()
        self.strict = strict
        self.rows: tuple[ProfileRow, ...] = tuple(read_profile(path))
        groups: dict[tuple[str, str, str], list[ProfileRow]] = defaultdict(list)
        threaded: dict[tuple[str, str, int], list[ProfileRow]] = defaultdict(list)
        for r in self.rows:
            if r.threads and r.kind in ("forward", "lora"):
                threaded[(r.kind, r.backbone, r.device, r.threads)].append(r)
            else:
                groups[(r.kind, r.backbone, r.device)].append(r)
        self._grids: dict[tuple[str, str, str], _Grid] = {}
        self._thread_grids = {k[1:]: _grid(rs, path) for k, rs in threaded.items() if k[0] == "forward"}
        self._thread_lora = {k[1:]: self._lora_table(rs) for k, rs in threaded.items() if k[0] == "lora"}
        self._contention: dict[tuple[str, str], tuple] = {}  # (backbone, device) -> curve over k
        self._contention_shape: dict[tuple[str, str], tuple[int, int]] = {}  # -> its (rows, seq_len)
        self._contention_for: dict[tuple, float] = {}  # contention_for's answers, by its arguments
        self._throttle: dict[tuple[str, str], tuple] = {}
        # (backbone, device, lora, threads, beside, running) -> (tokens, gap curves), both by tokens
        self._wake: dict[tuple, tuple] = {}
        self._wake_pick: dict[tuple, tuple | None] = {}  # _wake_table's answers, by its arguments
        self._rewarm: dict[tuple, float] = {}  # same keys as _wake -> seconds
        self._warmup: dict[tuple, float] = {}  # same keys as _wake -> seconds
        self._dispatch: dict[str, float] = {}  # device -> seconds
        self._sigma: dict[tuple[str, str], float] = {}
        self._lora: dict[tuple[str, str], dict[int, dict[int, tuple]]] = {}
        self._heads: dict[tuple[str, str], dict[int, tuple]] = {}
        self._encoder: dict[tuple[str, str], tuple[float, float]] = {}
        over: dict[str, list[float]] = defaultdict(list)
        loads: dict[tuple[str, str], list[ProfileRow]] = defaultdict(list)
        for (kind, bb, dev), rs in groups.items():
            if kind in ("forward", "decode"):
                self._grids[(kind, bb, dev)] = _grid(rs, path)
            elif kind == "lora":
                self._lora[(bb, dev)] = self._lora_table(rs)
            elif kind == "head":
                self._heads[(bb, dev)] = self._head_table(rs)
            elif kind == "encoder":
                self._encoder[(bb, dev)] = _fit_affine(
                    [r.params * r.batch * r.seq_len for r in rs], [r.median_ms for r in rs])
            elif kind == "overhead":
                over[dev].extend((max(r.batch, 1), r.median_ms) for r in rs)
            elif kind == "contention":
                self._contention[(bb, dev)] = _curve((r.batch, r.median_ms) for r in rs)
                shapes = {(r.rows, r.seq_len) for r in rs}
                if len(shapes) == 1 and min(next(iter(shapes))) > 0:
                    self._contention_shape[(bb, dev)] = next(iter(shapes))
            elif kind == "throttle":
                self._throttle[(bb, dev)] = _curve((r.batch * r.seq_len, r.expected_ms) for r in rs)
            elif kind == "wake":
                tables: dict[tuple, dict[int, list]] = defaultdict(lambda: defaultdict(list))
                for r in rs:
                    key = (bb, dev, int(bool(r.n_adapters)), r.threads, int(r.beside > 0), int(r.running > 0))
                    tables[key][r.batch * r.seq_len].append((r.gap_ms, r.expected_ms))
                for key, by_tokens in tables.items():
                    ns = tuple(sorted(by_tokens))
                    self._wake[key] = (ns, tuple(_curve(by_tokens[n]) for n in ns))
            elif kind in ("rewarm", "warmup"):
                by_table: dict[tuple, list[float]] = defaultdict(list)
                for r in rs:
                    by_table[(bb, dev, int(bool(r.n_adapters)), r.threads, int(r.beside > 0),
                              int(r.running > 0))].append(r.median_ms)
                table = self._rewarm if kind == "rewarm" else self._warmup
                for key, xs in by_table.items():
                    table[key] = statistics.median(xs) / 1000.0
            elif kind == "dispatch":
                self._dispatch[dev] = statistics.median(r.median_ms for r in rs) / 1000.0
            else:
                loads[(kind, dev)].extend(rs)
        self._overhead = {d: _fit_overhead(v) for d, v in over.items()}
        self._loads = {k: _fit_affine([r.bytes for r in rs], [r.median_ms for r in rs])
                       for k, rs in loads.items()}

    def _lora_table(self, rs: list[ProfileRow]) -> dict[int, dict[int, tuple]]:
        seen: dict[tuple[int, int, int, int], int] = {}
        points: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        for r in rs:
            key = (r.rank, r.n_adapters, r.batch, r.seq_len)
            if key in seen:
                raise ValueError(f"{self.path}:{r.line}: duplicate lora row for {r.backbone} "
                                 f"on {r.device} (first at line {seen[key]})")
            seen[key] = r.line
            points[r.rank][r.n_adapters].append((r.batch * r.seq_len, r.median_ms))
        return {rk: {n: _curve(p) for n, p in by_n.items()} for rk, by_n in points.items()}

    def _head_table(self, rs: list[ProfileRow]) -> dict[int, tuple]:
        seen: dict[tuple[int, int], int] = {}
        points: dict[int, list] = defaultdict(list)
        for r in rs:
            if (r.outputs, r.batch) in seen:
                raise ValueError(f"{self.path}:{r.line}: duplicate head row for {r.backbone} "
                                 f"on {r.device} (first at line {seen[(r.outputs, r.batch)]})")
            seen[(r.outputs, r.batch)] = r.line
            points[r.outputs].append((r.batch, r.median_ms))
        return {o: _curve(p) for o, p in points.items()}

    @property
    def source(self) -> str:
        return self._name if self._name is not None else str(self.path)

    # -- coverage --------------------------------------------------------------------------
    def _has(self, kind: str, bb: str, dev: str) -> bool:
        if kind in ("forward", "decode"):
            return (kind, bb, dev) in self._grids
        if kind == "overhead":
            return dev in self._overhead
        if kind == "contention":
            return any(d == dev for _, d in self._contention)
        if kind == "wake":
            return any(key[1] == dev for key in self._wake)
        if kind in ("rewarm", "warmup"):  # two forms of one answer (how a woken instance settles)
            return any(key[1] == dev for key in (*self._rewarm, *self._warmup))
        if kind == "dispatch":
            return dev in self._dispatch
        if kind in ("load_backbone", "load_extension"):
            return (kind, dev) in self._loads
        table = {"lora": self._lora, "head": self._heads, "encoder": self._encoder,
                 "throttle": self._throttle}[kind]
        return (bb, dev) in table

    def fallback_kinds(self, bb: BackboneSpec, dev: DeviceSpec) -> tuple[str, ...]:
        """Kinds this profile lacks for ``bb`` on ``dev`` (answered by the fallback model)."""
        skip = ("forward",) if dev.kind == "cpu" else ("forward", "contention", "wake", "rewarm", "warmup", "throttle")  # GPUs: unused
        return tuple(k for k in KINDS if k not in skip and not self._has(k, bb.name, dev.name))

    def _missing(self, kind: str, bb: str, dev: str) -> str:
        have = sorted({f"{b} on {d}" for (k, b, d) in self._grids if k == "forward"})
        return (f"profile {self.source} has no {kind} rows for backbone {bb!r} on device "
                f"{dev!r} (forward rows exist for: {', '.join(have) or 'nothing'})")

    def _other(self, kind: str, bb: str, dev: str) -> LatencyModel:
        if self.strict:
            raise KeyError(self._missing(kind, bb, dev))
        return self.fallback

    @staticmethod
    def _launch_s(dev: DeviceSpec, launches: float) -> float:
        return launches * dev.kernel_launch_us * 1e-6

    # -- LatencyModel ----------------------------------------------------------------------
    def backbone_s(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, seq_len: int, share: float = 1.0
    ) -> float:
        """Interpolated ``forward`` time; ``KeyError`` if the profile lacks the backbone."""
        grid = self._grids.get(("forward", bb.name, dev.name))
        if grid is None:
            raise KeyError(self._missing("forward", bb.name, dev.name))
        if rows <= 0:
            return 0.0
        sl = self._cpu_slice(bb, dev, share)
        if sl is not None:
            return sl.value(rows, seq_len) / 1000.0
        fixed = self._launch_s(dev, bb.layers * dev.kernels_per_layer)
        return _scale(grid.value(rows, seq_len) / 1000.0, fixed, share)

    def decode_step_s(
        self, bb: BackboneSpec, dev: DeviceSpec, rows: int, ctx_len: int, share: float = 1.0
    ) -> float:
        """Interpolated ``decode`` time (``seq_len`` = context), or the fallback's."""
        grid = self._grids.get(("decode", bb.name, dev.name))
        if grid is None:
            return self._other("decode", bb.name, dev.name).decode_step_s(
                bb, dev, rows, ctx_len, share)
        if rows <= 0:
            return 0.0
        fixed = self._launch_s(dev, bb.layers * dev.kernels_per_layer)
        return _scale(grid.value(rows, ctx_len) / 1000.0, fixed, share)

    def adapters_s(
        self,
        bb: BackboneSpec,
        dev: DeviceSpec,
        rows: int,
        seq_len: int,
        n_adapters: int,
        rank: int,
        share: float = 1.0,
    ) -> float:
        """Interpolated ``lora`` time over tokens, n_adapters and rank, or the fallback's."""
        table = self._lora.get((bb.name, dev.name))
        sliced = self._cpu_slice(bb, dev, share) is not None
        if sliced:
            table = self._thread_lora.get((bb.name, dev.name, max(1, round(share * dev.cores))), table)
        if table is None:
            return self._other("lora", bb.name, dev.name).adapters_s(
                bb, dev, rows, seq_len, n_adapters, rank, share)
        if n_adapters <= 0 or rows <= 0:
            return 0.0
        tokens = rows * seq_len

        def at_rank(rk: int) -> float:
            ns = sorted(table[rk])
            return _interp1(ns, [_interp1(*table[rk][n], tokens) for n in ns], n_adapters)

        ranks = sorted(table)
        lo, hi, w = _bracket(ranks, rank)
        ms = at_rank(ranks[lo]) if lo == hi else (
            at_rank(ranks[lo]) * (1 - w) + at_rank(ranks[hi]) * w)
        if sliced:  # measured with the slice's threads, or (lacking those rows) host work as is
            return ms / 1000.0
        fixed = self._launch_s(dev, n_adapters * bb.layers * _LORA_LAUNCHES_PER_LAYER)
        return _scale(ms / 1000.0, fixed, share)

    def extension_s(
        self,
        ext: ExtensionSpec,
        bb: BackboneSpec,
        dev: DeviceSpec,
        rows: int,
        seq_len: int,
        share: float = 1.0,
    ) -> float:
        """``head`` (nearest outputs, linear in rows) or ``encoder`` (affine in
        params*tokens) time, or the fallback's; 0 for lora and prefix extensions."""
        if ext.kind not in ("head", "encoder"):
            return 0.0
        key = (bb.name, dev.name)
        if not self._has(ext.kind, *key):
            return self._other(ext.kind, *key).extension_s(ext, bb, dev, rows, seq_len, share)
        if rows <= 0:
            return 0.0
        if ext.kind == "head":
            curves = self._heads[key]
            outputs = min(curves, key=lambda o: (abs(o - ext.outputs), -o))
            ms, launches = _interp1(*curves[outputs], rows), 1
        else:
            a, b = self._encoder[key]
            ms, launches = a + b * ext.params * rows * seq_len, dev.kernels_per_layer
        ratio = self._slice_ratio(bb, dev, share, rows, seq_len)
        if ratio is not None:
            return ms * ratio / 1000.0
        return _scale(ms / 1000.0, self._launch_s(dev, launches), share)

    def batch_overhead_s(self, dev: DeviceSpec, rows: int = 1) -> float:
        """``a + b*rows`` fitted to the device's ``overhead`` rows, or the fallback's."""
        if dev.name not in self._overhead:
            return self._other("overhead", "*", dev.name).batch_overhead_s(dev, rows)
        a, b = self._overhead[dev.name]
        return (a + b * max(rows, 1)) / 1000.0

    def contention(self, dev: DeviceSpec, k: int) -> float:
        """Slowdown of each of ``k`` batches running at once: measured, else ``k``. With
        ``contention`` rows of several backbones on ``dev``, the median of their slowdowns (a
        batch whose backbone is known reads its own: :meth:`contention_for`)."""
        curves = [c for (_, d), c in self._contention.items() if d == dev.name]
        if not curves or k <= 1:
            return super().contention(dev, k)
        return statistics.median(_slowdown(c, k) for c in curves)

    def contention_for(self, bb: BackboneSpec, dev: DeviceSpec, k: int, rows: int, seq_len: int) -> float:
        """Slowdown of one batch of ``rows`` x ``seq_len`` among ``k`` running at once.

        The ``contention`` rows are measured at one shape. Each of ``k`` batches sharing
        ``dev.cores`` cores runs on about ``n = max(1, cores // k)`` of them, and loses to that
        what its shape gains from the other cores: a small batch that barely speeds up with
        more threads barely slows down with fewer. So the measured slowdown is scaled by the
        shape's speedup ``t_n / t_all`` (the ``forward`` grid measured with ``n`` threads over
        the all-core one) over the same speedup at the measured shape. Without a thread grid
        for ``n``, or rows that record their shape (``rows``, ``seq_len``; profile format
        1.2), the measured slowdown as it is (:meth:`contention`)."""
        key = (bb.name, dev.name, k, rows, seq_len)
        f = self._contention_for.get(key)
        if f is None:
            f = self._contention_for[key] = self._shaped_contention(bb, dev, k, rows, seq_len)
        return f

    def _shaped_contention(self, bb: BackboneSpec, dev: DeviceSpec, k: int, rows: int, seq_len: int) -> float:
        # the batch's own backbone's rows; else the device's one backbone's; else the median
        on_dev = [key for key in self._contention if key[1] == dev.name]
        ref = (bb.name, dev.name) if (bb.name, dev.name) in self._contention else (
            on_dev[0] if len(on_dev) == 1 else None)
        if ref is None or k <= 1:
            return self.contention(dev, k)
        base = _slowdown(self._contention[ref], k)
        measured = self._contention_shape.get(ref)
        n = max(1, dev.cores // max(k, 1))
        if base <= 1.0 or measured is None or n >= dev.cores:
            return base
        ref_bb, (ref_rows, ref_seq) = ref[0], measured
        speedups = []
        for name, b, sl in ((bb.name, rows, seq_len), (ref_bb, ref_rows, ref_seq)):
            few = self._thread_grids.get((name, dev.name, n))
            full = self._grids.get(("forward", name, dev.name))
            if few is None or full is None:
                return base
            t_all = full.value(max(b, 1), max(sl, 1))
            speedups.append(few.value(max(b, 1), max(sl, 1)) / t_all if t_all > 0 else 1.0)
        shape, ref = speedups
        return max(1.0, base * shape / ref) if ref > 0 else base

    def pool_throttle_s(self, bb: BackboneSpec, dev: DeviceSpec, rows: int, seq_len: int) -> float:
        """The ``throttle`` rows, piecewise linear in ``rows * seq_len``; else the fallback's."""
        curve = self._throttle.get((bb.name, dev.name))
        if curve is None:
            return super().pool_throttle_s(bb, dev, rows, seq_len)
        return max(0.0, _interp1(*curve, max(rows, 1) * max(seq_len, 1))) / 1000.0

    def jitter_sigma(self, bb: BackboneSpec, dev: DeviceSpec) -> float:
        """Median over the backbone's all-core ``forward`` rows of ``ln(p90/median) / 1.2816``:
        the lognormal sigma whose 90th percentile is the measured one (0 without p90s)."""
        key = (bb.name, dev.name)
        if key not in self._sigma:
            xs = sorted(math.log(r.p90_ms / r.median_ms) / 1.2816 for r in self.rows
                        if r.kind == "forward" and not r.threads and r.backbone == bb.name
                        and r.device == dev.name and r.p90_ms and r.median_ms > 0)
            self._sigma[key] = xs[len(xs) // 2] if xs else 0.0
        return self._sigma[key]

    def wake_s(self, dev: DeviceSpec, idle_s: float, lora: bool = False, threads: int = 0,
               bb: BackboneSpec | None = None, tokens: int = 0, beside: bool = False) -> float:
        """Extra time of a batch of ``tokens`` (rows x seq_len) of ``bb`` whose serving thread
        had been idle ``idle_s``: the ``wake`` rows (those with ``n_adapters`` for an instance
        holding LoRA adapters), piecewise linear in the gap (proportional below the first gap,
        capped at the largest), then in the tokens between the shapes measured (the nearest
        one's outside them), else 0. ``threads > 0``: a spatial slice of that many threads,
        read from the rows with that ``threads`` (measured through a slice's own process);
        without such rows, 0. ``beside``: a thread of a process holding other instances (their
        pools throttled), read from the rows with ``beside`` when there are some;
        ``BESIDE_RUNNING``: such a thread whose batch starts while another instance's runs,
        read from the rows with ``running`` first. Rows of
        ``bb`` first, else another backbone's on the device."""
        if idle_s <= 0:
            return 0.0
        table = self._wake_table(dev.name, bb.name if bb is not None else None, int(lora), threads, beside)
        if table is None:
            return 0.0
        gap_ms = idle_s * 1000.0

        def at(curve: tuple) -> float:
            xs, ys = curve
            if gap_ms < xs[0]:
                return ys[0] * gap_ms / xs[0]
            return min(_interp1(xs, ys, gap_ms), max(ys))

        ns, curves = table
        i = bisect.bisect_left(ns, tokens)
        if i == 0 or i == len(ns):
            return at(curves[min(i, len(ns) - 1)]) / 1000.0
        w = (tokens - ns[i - 1]) / (ns[i] - ns[i - 1])
        return ((1 - w) * at(curves[i - 1]) + w * at(curves[i])) / 1000.0

    def _wake_table(self, dev: str, bb: str | None, lora: int, threads: int, beside: bool) -> tuple | None:
        """The wake table for this instance: its own backbone's rows before any other's on the
        device; with ``beside``, rows measured beside other pools before those measured alone;
        rows of its kind (LoRA or not) before the others. Chosen once per argument set (the
        engine asks for every batch)."""
        args = ("wake", dev, bb, lora, threads, beside)
        if args not in self._wake_pick:
            self._wake_pick[args] = self._pick(self._wake, *args[1:])
        return self._wake_pick[args]

    @staticmethod
    def _pick(table: dict, dev: str, bb: str | None, lora: int, threads: int, beside: int):
        """``beside`` 0: rows measured alone; 1 (or True): beside idle pools, else alone; 2
        (:data:`~fmplex_sim.latency.base.BESIDE_RUNNING`): beside another instance's running
        batches, else beside idle pools, else alone."""
        backbones = ([bb] if bb is not None else []) + sorted({k[0] for k in table if k[1] == dev} - {bb})
        ctx = ((1, 1), (1, 0), (0, 0)) if beside == BESIDE_RUNNING else ((1, 0), (0, 0)) if beside else ((0, 0),)
        candidates = ((name, dev, lo, threads, b, run) for b, run in ctx for name in backbones
                      for lo in dict.fromkeys((lora, 0, 1) if b else (lora, 0)))
        return next((table[k] for k in candidates if k in table), None)

    def rewarm_s(self, dev: DeviceSpec, lora: bool = False, threads: int = 0,
                 bb: BackboneSpec | None = None, beside: bool = False) -> float:
        """The ``rewarm`` rows' time constant (s) for this instance, chosen as :meth:`wake_s`
        chooses its table; 0 without rows."""
        return self._settling("rewarm", dev, lora, threads, bb, beside)

    def warmup_s(self, dev: DeviceSpec, lora: bool = False, threads: int = 0,
                 bb: BackboneSpec | None = None, beside: bool = False) -> float:
        """The ``warmup`` rows' running time to settle (s) for this instance, chosen as
        :meth:`wake_s` chooses its table; 0 without rows."""
        return self._settling("warmup", dev, lora, threads, bb, beside)

    def _settling(self, kind: str, dev: DeviceSpec, lora: bool, threads: int, bb: BackboneSpec | None,
                  beside: bool) -> float:
        args = (kind, dev.name, bb.name if bb is not None else None, int(lora), threads, beside)
        if args not in self._wake_pick:
            table = self._rewarm if kind == "rewarm" else self._warmup
            self._wake_pick[args] = self._pick(table, *args[1:])
        value = self._wake_pick[args]
        return 0.0 if value is None else value

    def dispatch_s(self, dev: DeviceSpec) -> float:
        """The median of the device's ``dispatch`` rows, or the fallback's."""
        t = self._dispatch.get(dev.name)
        if t is None:
            return self._other("dispatch", "*", dev.name).dispatch_s(dev)
        return t

    def _cpu_slice(self, bb: BackboneSpec, dev: DeviceSpec, share: float) -> _Grid | None:
        """The forward grid measured with the cores a CPU slice of ``share`` owns, if any."""
        if dev.kind != "cpu" or share >= 1.0 or not dev.cores:
            return None
        return self._thread_grids.get((bb.name, dev.name, max(1, round(share * dev.cores))))

    def _slice_ratio(self, bb: BackboneSpec, dev: DeviceSpec, share: float, rows: int,
                     seq_len: int) -> float | None:
        """Slice-grid over all-core-grid forward time at this shape (CPU slices only)."""
        sl = self._cpu_slice(bb, dev, share)
        full = self._grids.get(("forward", bb.name, dev.name))
        if sl is None or full is None:
            return None
        base = full.value(rows, seq_len)
        return sl.value(rows, seq_len) / base if base > 0 else 1.0

    def _load(self, kind: str, nbytes: int, dev: DeviceSpec) -> float | None:
        fit = self._loads.get((kind, dev.name))
        if fit is None:
            return None
        return (fit[0] + fit[1] * nbytes) / 1000.0

    def load_s(self, nbytes: int, dev: DeviceSpec) -> float:
        """``fixed + bytes/bandwidth`` fitted to ``load_backbone`` rows, or the fallback's."""
        t = self._load("load_backbone", nbytes, dev)
        if t is None:
            return self._other("load_backbone", "*", dev.name).load_s(nbytes, dev)
        return t

    def extension_load_s(self, nbytes: int, dev: DeviceSpec) -> float:
        """``fixed + bytes/bandwidth`` fitted to ``load_extension`` rows, or the fallback's."""
        t = self._load("load_extension", nbytes, dev)
        if t is None:
            return self._other("load_extension", "*", dev.name).extension_load_s(nbytes, dev)
        return t

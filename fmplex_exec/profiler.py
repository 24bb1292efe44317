"""``fmplex-exec profile``: measure a backbone on this machine and write a latency profile.

:func:`profile_backbone` times, under ``torch.inference_mode()`` and after warm-up, the parts
of serving that the simulator's ``profile`` latency model reads (format and kinds:
:mod:`fmplex_sim.latency.profile`):

* ``forward``: one backbone forward over the full (batch x seq_len) grid, inputs already on
  the device; each point's repeats are spread over :data:`SWEEPS` sweeps of the grid. Vision
  backbones take fixed-size images: their grid has a single ``seq_len`` column, the catalog's
  ``default_input_len`` (tokens per image).
* ``lora``: the extra time of a batch carrying ``n`` distinct LoRA adapters of rank ``r``
  (rows split evenly) over the same batch without adapters, both through the runtime's own
  ``PhysicalFM.run_batch`` (batched multi-adapter LoRA), at a few (batch, seq_len) points.
  The two are timed alternately and the statistics are those of the paired differences,
  clamped at 0.
* ``head``: an ``nn.Linear(hidden, outputs)`` over ``batch`` pooled rows.
* ``overhead``: per-batch runtime work outside the forward, through the runtime's own
  ``PhysicalFM.run_batch`` (make and check each request's input, pad into one tensor with an
  attention mask, pool, one result per request), timed directly: the backbone hands back its
  output for the batch, computed beforehand, instead of running; at several batch sizes (the
  simulator fits ``a + b*rows``).
* CPU only: ``forward`` rows again with fewer threads (``threads`` column: a spatial slice
  pinned to that many cores); ``contention`` rows: one forward's time while ``k``
  threads of one process run forwards at once (co-located replicas sharing the cores);
  ``throttle`` rows: the extra time of a batch whose serving thread shares its process with
  another replica's idle thread pool (:func:`_throttle_rows`); and ``wake`` rows: the extra
  time of a batch after the serving thread slept about ``gap_ms`` over the same batch run
  again once the wake-up has worn off (:data:`WAKE_SETTLE` batches later), in pairs, the gaps
  drawn log-uniformly and binned (:data:`WAKE_GAP_RANGE_MS`, a row per bin); again
  with ``beside`` 1, on an instance holding a LoRA adapter while another instance's thread
  pool waits idle in the process (every pool throttled, as in a process serving several
  instances), at the ``throttle`` shapes, since the cost there grows with the batch
  (:func:`_beside_wake_rows`); again with ``running`` 1, at the wake shape, while another
  instance (a replica of its own) runs batches back to back on another thread
  (:func:`_running_wake_rows`: a woken co-located replica finding the cores busy pays far
  less); again with ``threads`` for a spatial slice, through a slice's
  own worker process (:func:`_slice_wake_rows`): the round trip after the gap over one sent
  :data:`WAKE_SETTLE` batches later. With each group of ``wake`` rows, a ``warmup`` row: how
  long an instance woken from the longest gaps runs before it has settled (:func:`warmup_ms`).
* Everything, the model build included, runs on one short-lived thread, never on the main
  thread (:mod:`fmplex_exec.threads`), as the runtime builds and serves.
* ``dispatch`` (every device): from a request's arrival at an idle instance to its serving
  thread's pick, through the runtime's own replay loop (:class:`fmplex_exec.runtime.Runtime`:
  the feeder thread releasing it on time, the serving thread woken, the scheduler asked) with
  an executor that does nothing (:func:`_dispatch_rows`).
* ``load_backbone``: loading the backbone's weights from a state-dict file (page cache warm)
  into the allocated model on the device, for the whole state dict and for about half of
  it, so the simulator can fit ``fixed + bytes/bandwidth``. ``load_extension``: creating one
  LoRA adapter (peft ``add_adapter``) and one head and loading their state dicts from files,
  for a few sizes.

Rows use the SIMULATOR's device name (``sim_device``: ``CPU`` for this host, ``H100-80GB``
for an H100, ...) and a short dtype name (``fp32``, ``bf16``, ``fp16``). The comments record
the command, package versions, host CPU, thread count, date and git commit.

Timings use ``time.perf_counter``; on CUDA every timed region is bracketed by
``torch.cuda.synchronize()``. Inputs come from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import math
import os
import platform
import shlex
import subprocess
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from fmplex_exec.backbones import DTYPES, Backbone, load_backbone
from fmplex_exec.threads import off_main
from fmplex_sim.specs import TaskSpec

SHORT_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
LORA_TARGETS = ("q", "v")  # the simulator's default LoRA targets (ExtensionSpec.targets)
#: Sweeps over a kind's points (forward, contention, throttle): each point's repeats are split
#: over this many passes through all of them, so every point samples the host over the same
#: minutes rather than one short spell that may be unusually fast or slow.
SWEEPS = 3
#: ``throttle`` rows take twice as many series: what a batch pays beside an idle pool moves
#: between consecutive series in one process far more than within one (on the 2-core machine
#: at 1 x 128, eight series' means of 0.0 to 22.1 ms: experiments/validation/throttle_series.py),
#: so the row is the mean over more of them.
THROTTLE_SWEEPS = 6

#: ``wake`` rows: the idle gaps (ms) are drawn log-uniformly over this range, within each of
#: :data:`WAKE_BINS` bins of equal width in log(gap), the same number in each; a row per bin,
#: at its geometric centre. Drawn so that a row sees every gap in its bin; binned finely, since
#: the cost can jump within a few ms of gap: on the 2-core machine beside another instance's
#: pool, a MiniLM 1 x 64 batch paid +1.7 ms after 45 ms idle and +10.5 ms after 60
#: (``experiments/validation/wake_curve.py``). Until format 1.7 the rows took exponential gaps
#: of mean 2, 20 and 200 ms, and read them as if each were that gap: the 200 ms row mixed in the
#: quarter of its gaps that fell below the jump, and the model drew a straight line from 20 to
#: 200 ms through it (+5.9 ms at 100 ms where the batch paid +9 to +14).
WAKE_GAP_RANGE_MS = (3.0, 600.0)
WAKE_BINS = 7
#: ``warmup`` rows: measured after the wake-ups of the top bins, the gaps that leave an instance
#: coldest (all of them when there are fewer bins)
WARMUP_TOP_BINS = 2


def _swept(points, measure: Callable[[object, int], list[float]], sweeps: int = SWEEPS) -> dict:
    """``{point: samples}``: ``measure(point, sweep)`` for every point in each of ``sweeps``
    passes through all of them, the samples of one point pooled (see :data:`SWEEPS`)."""
    pooled: dict = {pt: [] for pt in points}
    for p in range(sweeps):
        for pt in points:
            pooled[pt] += measure(pt, p)
    return pooled


QUICK = dict(batches=(1, 2), seq_lens=(8, 16), adapters=(1, 2), ranks=(4,), outputs=(2,),
             lora_points=((2, 16),), overhead_batches=(1, 2), extension_sizes=((4, 2),),
             thread_counts=(1,), contention_streams=(1, 2), contention_shape=(2, 16),
             throttle_shapes=((1, 8), (2, 16)),
             wake_gap_range_ms=(2.0, 8.0), wake_bins=2, dispatch_requests=10,
             repeats=3, warmup=1)


# -- timing -----------------------------------------------------------------------------------
def _percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] of already sorted values."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def summarize(samples_ms: Iterable[float], *, extra_cost: bool = False, mean: bool = False) -> dict:
    """``median_ms``, ``p10_ms``, ``p90_ms`` and ``repeats`` of timed samples (ms); with
    ``mean``, also ``mean_ms``, their mean (``forward`` rows: see :func:`_forward_rows`).

    ``extra_cost``: the samples are differences (a batch in some condition minus the same
    batch without it) that may come out negative by noise; the percentiles are then clamped
    at 0, and ``mean_ms`` is added, the mean of the unclamped samples clamped at 0 (clamping
    each sample first would bias it upwards by the noise). Such a cost is paid by some
    batches and not others, and how often moves with the host's state from one series to the
    next (``experiments/validation/throttle_series.py``), so the median of a few series jumps
    between 0 and the full cost; the mean is the expected cost per batch, the quantity the
    simulator adds."""
    xs = sorted(samples_ms)
    if not xs:
        raise ValueError("no samples")
    lo = 0.0 if extra_cost else -math.inf

    def q(p: float) -> float:
        return round(max(lo, _percentile(xs, p)), 6)

    out = {"median_ms": q(50), "p10_ms": q(10), "p90_ms": q(90), "repeats": len(xs)}
    if extra_cost or mean:
        out["mean_ms"] = round(max(0.0, math.fsum(xs) / len(xs)), 6)
    return out


#: The measured values of a profile row; every other column identifies the row.
MEASURED = ("median_ms", "p10_ms", "p90_ms", "mean_ms", "repeats")


def read_rows(path: str | Path) -> list[dict]:
    """A profile CSV's rows as :func:`profile_backbone` returns them: the columns given (blank
    ones left out), numbers as numbers; ready for :func:`merge_rows` and :func:`forward_apart`."""
    import csv

    def num(x: str):
        for f in (int, float):
            try:
                return f(x)
            except ValueError:
                pass
        return x

    with open(path, newline="") as fh:
        return [{k: num(v) for k, v in r.items() if v != ""}
                for r in csv.DictReader(line for line in fh if not line.startswith("#"))]


def merge_rows(profiles: Sequence[Sequence[dict]]) -> list[dict]:
    """One profile from several measured on the same grid (``fmplex-exec validate --rounds``):
    each row's ``median_ms``, ``p10_ms`` and ``p90_ms`` are the medians of its values across the
    profiles (the mean of two), ``mean_ms`` the mean of theirs weighted by ``repeats`` (the mean
    of all the samples), ``repeats`` their sum. Order statistics are monotone, so
    ``p10 <= median <= p90`` holds in the merge as in every input. Rows are matched by all their
    other columns, in the first profile's order; rows alike in all of them (``overhead`` rows of
    two backbones, both ``*``) are matched by occurrence. A row missing from any profile is an
    error."""
    if not profiles:
        raise ValueError("no profiles to merge")

    def keyed(rows: Sequence[dict]) -> dict:
        index: dict = {}
        seen: dict = {}
        for row in rows:
            key = tuple(sorted((k, v) for k, v in row.items() if k not in MEASURED))
            seen[key] = seen.get(key, 0) + 1
            index[(key, seen[key])] = row
        return index

    indexes = [keyed(rows) for rows in profiles]
    first = indexes[0]
    for i, index in enumerate(indexes[1:], start=2):
        if set(index) != set(first):
            (key, _), *_ = set(index) ^ set(first)
            raise ValueError(f"profile {i} does not measure the same rows as profile 1: {dict(key)}")
    out = []
    for key, row in first.items():
        merged = dict(row)
        for col in ("median_ms", "p10_ms", "p90_ms"):
            vals = [index[key].get(col) for index in indexes]
            merged[col] = None if any(v is None for v in vals) else round(float(statistics.median(vals)), 6)
        if row.get("mean_ms") is not None:  # the mean of all the samples: weighted by repeats
            means = [(index[key].get("mean_ms"), int(index[key].get("repeats") or 1)) for index in indexes]
            merged["mean_ms"] = None if any(m is None for m, _ in means) else round(
                math.fsum(m * n for m, n in means) / sum(n for _, n in means), 6)
        merged["repeats"] = sum(int(index[key].get("repeats") or 0) for index in indexes) or None
        out.append(merged)
    return out


#: ``fmplex-exec validate`` notes rounds' profiles whose ``forward`` rows lie further apart than
#: this (:func:`forward_apart`): the host's speed changed between them, and two merge by their
#: mean. In the suite at 5d45c32 and the held-out runs on the 2-core machine the two rounds'
#: profiles lay 2-11% apart, except in two runs where one profile caught a spell that slowed
#: two-thread forwards, invisible to the quiet gate: 27% and 45%.
PROFILES_APART = 0.2


def forward_apart(profiles: Sequence[Sequence[dict]]) -> float:
    """How far apart the ``forward`` rows of profiles measured on one grid lie: over every pair
    of profiles and every group of rows (backbone, device, thread count), the median over the
    group's shapes of ``max(a, b) / min(a, b)`` of their ``median_ms``, minus 1; the largest.
    A median over shapes, so one noisy point does not count, while a spell that slowed all of
    one thread count's forwards does. 0 with fewer than two profiles or no shared rows."""
    def groups(rows: Sequence[dict]) -> dict:
        out: dict = {}
        for r in rows:
            if r.get("kind") == "forward" and r.get("median_ms"):
                g = (r.get("backbone"), r.get("device"), r.get("threads") or None)
                out.setdefault(g, {})[(r.get("batch"), r.get("seq_len"))] = float(r["median_ms"])
        return out

    worst = 0.0
    gs = [groups(p) for p in profiles]
    for i in range(len(gs)):
        for j in range(i + 1, len(gs)):
            for g, a in gs[i].items():
                b = gs[j].get(g, {})
                ratios = [max(a[k], b[k]) / min(a[k], b[k]) for k in a.keys() & b.keys() if min(a[k], b[k]) > 0]
                if ratios:
                    worst = max(worst, statistics.median(ratios) - 1.0)
    return worst


#: Forwards :class:`HostProbe` times per backbone and probe (after two untimed ones).
PROBE_REPEATS = 15
#: ``fmplex-exec validate`` notes a system whose replays met the probe's forward further than
#: this from the profile's row (as a ratio, either way): the probes met other spells of the
#: host than the profile's row did.
HOST_SPEED_APART = 0.1


def probe_point(rows: Sequence[dict], backbone: str) -> tuple[tuple[int, int], float] | None:
    """The ``forward`` row :class:`HostProbe` times for ``backbone``: at all threads, the smallest
    batch of the profile's grid at its longest input. ``((batch, seq_len), median_ms)``, or None
    where ``rows`` hold no such row."""
    pts = {(int(r["batch"]), int(r["seq_len"])): float(r["median_ms"]) for r in rows
           if r.get("kind") == "forward" and r.get("backbone") == backbone and not r.get("threads")
           and r.get("median_ms")}
    if not pts:
        return None
    b = min(pt[0] for pt in pts)
    shape = (b, max(s for bb, s in pts if bb == b))
    return shape, pts[shape]


class HostProbe:
    """How fast the host runs now, against a profile: :data:`PROBE_REPEATS` forwards of each
    backbone at its :func:`probe_point`, at all threads as the profile's row was measured, on a
    short-lived thread (no OpenMP pool is left on the caller's). ``fmplex-exec validate`` probes
    before and after each replay: a replay run in slower spells of a shared host than its
    profile is slower everywhere. A probe takes about a second, so it tells which spell it met
    (``experiments/validation/host_spells.py`` takes it again and again). A diagnostic: nothing
    is scaled by it.

    ``backbones``: names; those without a probe point in ``rows`` are left out. The models are
    built once (random weights where not pretrained, from ``seed``)."""

    def __init__(self, backbones: Iterable[str], rows: Sequence[dict], *, device: str = "cpu",
                 dtype: str = "float32", seed: int = 0, repeats: int = PROBE_REPEATS) -> None:
        self.repeats = repeats
        self.clock = _Clock(torch.device(device))
        self.points: dict[str, tuple[tuple[int, int], Backbone, dict]] = {}
        gen = torch.Generator().manual_seed(seed)
        for name in sorted(set(backbones)):
            point = probe_point(rows, name)
            if point is not None:
                bb = off_main(load_backbone, name, device=device, dtype=dtype, seed=seed, name="fmplex-probe")
                self.points[name] = (point[0], bb, bb.make_inputs(*point[0], gen))

    def measure(self) -> dict[str, dict]:
        """Per backbone: ``{"batch", "seq_len", "median_ms"}`` of the forwards timed now."""
        def run() -> dict[str, dict]:
            out = {}
            with torch.inference_mode():
                for name, ((b, s), bb, x) in self.points.items():
                    (ms,) = _bench([lambda: bb.model(**x)], self.clock, self.repeats, 2, max_s=5.0)
                    out[name] = {"batch": b, "seq_len": s, "median_ms": round(statistics.median(ms), 4)}
            return out

        old = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count() or 1)  # as profile_backbone measured the row
        try:
            return off_main(run, name="fmplex-probe")
        finally:
            torch.set_num_threads(old)


def host_speed(probes: Sequence[dict], rows: Sequence[dict]) -> dict[str, dict]:
    """Per backbone, the probes of a system's replays (``probes``: each replay's
    ``{"before": HostProbe.measure(), "after": ...}``) against the profile ``rows``:
    ``probe_ms`` (every probe, in order), ``profile_ms`` (the row at the probe's shape) and
    ``ratio`` (their median over it: 1.2 means the host ran the probe 20% slower around the
    replays than the profile says)."""
    out: dict[str, dict] = {}
    for p in probes:
        for when in ("before", "after"):
            for name, m in (p.get(when) or {}).items():
                e = out.setdefault(name, {"batch": m["batch"], "seq_len": m["seq_len"], "probe_ms": []})
                e["probe_ms"].append(m["median_ms"])
    for name, e in out.items():
        point = probe_point(rows, name)
        ref = point[1] if point and point[0] == (e["batch"], e["seq_len"]) else None
        e["profile_ms"] = ref
        e["ratio"] = round(statistics.median(e["probe_ms"]) / ref, 4) if ref else None
    return out


class _Clock:
    """``perf_counter`` in seconds, with the device drained first on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self) -> float:
        self.sync()
        return time.perf_counter()


def _bench(fns: Sequence[Callable[[], object]], clock: _Clock, repeats: int, warmup: int,
           max_s: float, min_repeats: int = 3) -> list[list[float]]:
    """Time each function in ``fns`` alternately (one round = each once) after ``warmup``
    rounds; stop after ``repeats`` rounds, or earlier once ``max_s`` seconds were spent and at
    least ``min_repeats`` rounds are in. Returns per-function lists of ms."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for i in range(max(repeats, 1)):
        for k, fn in enumerate(fns):
            t0 = clock()
            fn()
            out[k].append((clock() - t0) * 1000.0)
        if i + 1 >= min_repeats and time.perf_counter() - start > max_s:
            break
    return out


class _Gate:
    """Keeps other processes' CPU use out of the measurements (small hosts are often shared
    with other users, and an oversubscribed OpenMP pool slows small forwards many times over).

    :meth:`run` waits until other processes have used less than ``max_other`` cores over a
    short window (at most ``wait_s``), runs one measurement, and redoes it (up to ``tries``
    times) if other processes used more than ``max_other`` cores on average meanwhile. CPU
    use comes from /proc/stat minus this process's own CPU time; without /proc/stat (or when
    disabled) it just runs."""

    def __init__(self, enabled: bool, max_other: float = 0.25, window_s: float = 0.2,
                 wait_s: float = 60.0, tries: int = 4, budget_s: float = 900.0) -> None:
        self.enabled = enabled and _busy_s() is not None
        self.max_other, self.window_s, self.wait_s, self.tries = max_other, window_s, wait_s, tries
        self.points = self.redone = self.noisy = 0
        self.worst = 0.0
        self.budget_s = budget_s  # total time the gate may spend waiting and redoing
        self.spent_s = 0.0

        self.pids: list[int] = []  # processes measured on our behalf (a slice's): their CPU is ours
        self.children_s = 0.0  # CPU seconds those processes used in all

    def _own(self) -> float:
        return _own_cpu_s() + sum(_proc_cpu_s(pid) for pid in self.pids)

    def _mark(self) -> tuple[float, float, float]:
        return time.perf_counter(), _busy_s() or 0.0, self._own()

    def _other(self, mark: tuple[float, float, float]) -> float:
        t, busy, own = mark
        dt = max(time.perf_counter() - t, 1e-9)
        return max(0.0, ((_busy_s() or 0.0) - busy) - (self._own() - own)) / dt

    def _wait(self) -> None:
        end = time.perf_counter() + self.wait_s
        while time.perf_counter() < end:
            m = self._mark()
            time.sleep(self.window_s)
            if self._other(m) <= self.max_other:
                return

    def run(self, fn: Callable[[], object]):
        if not self.enabled or self.spent_s > self.budget_s:
            return fn()
        self.points += 1
        for attempt in range(self.tries):
            t0 = time.perf_counter()
            self._wait()
            self.spent_s += time.perf_counter() - t0
            m = self._mark()
            result = fn()
            other = self._other(m)
            if other <= self.max_other or attempt == self.tries - 1:
                if other > self.max_other:
                    self.noisy += 1
                self.worst = max(self.worst, other)
                return result
            self.redone += 1
            self.spent_s += time.perf_counter() - m[0]
        raise AssertionError("unreachable")

    def comment(self) -> str:
        if not self.enabled:
            return "quiet gate: off (measurements may include other processes' load)"
        return (f"quiet gate: each point waited for other processes to use <= {self.max_other} "
                f"cores and was redone if they used more meanwhile; {self.points} points, "
                f"{self.redone} redone, {self.noisy} kept noisy after {self.tries} tries, worst "
                f"accepted other-process load {self.worst:.2f} cores; {self.spent_s:.0f} s spent "
                f"waiting/redoing{' (budget exhausted: later points ungated)' if self.spent_s > self.budget_s else ''}")


# -- helpers ----------------------------------------------------------------------------------
def _dtype_name(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    return SHORT_DTYPES[DTYPES[dtype]]


def _is_vision(bb: Backbone) -> bool:
    return bb.inputs == "pixel_values"


def _request_inputs(bb: Backbone, lengths: list[int], gen: torch.Generator) -> list[torch.Tensor]:
    """Per-request host inputs as a tokenizer / preprocessor would hand them over."""
    if _is_vision(bb):
        size = getattr(bb.model.config, "image_size", 224)
        return [torch.randn(3, size, size, generator=gen) for _ in lengths]
    if bb.inputs == "inputs_embeds":
        return [torch.randn(n, bb.hidden, generator=gen) for n in lengths]
    return [torch.randint(1, bb.spec.vocab, (n,), generator=gen) for n in lengths]


def _collate(bb: Backbone, reqs: list[torch.Tensor]) -> tuple[dict, torch.Tensor | None]:
    """Pad per-request inputs into one batch on the device: (model kwargs, attention mask)."""
    dev = bb.device
    if _is_vision(bb):
        return {"pixel_values": torch.stack(reqs).to(dev, bb.dtype)}, None
    L = max(r.shape[0] for r in reqs)
    mask = torch.zeros(len(reqs), L, dtype=torch.long)
    if bb.inputs == "inputs_embeds":
        x = torch.zeros(len(reqs), L, bb.hidden)
    else:
        x = torch.zeros(len(reqs), L, dtype=torch.long)
    for i, r in enumerate(reqs):
        x[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = 1
    mask = mask.to(dev)
    if bb.inputs == "inputs_embeds":
        return {"inputs_embeds": x.to(dev, bb.dtype), "attention_mask": mask}, mask
    return {"input_ids": x.to(dev), "attention_mask": mask}, mask


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit or 'unknown'}{' (dirty)' if dirty else ''}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _busy_s() -> float | None:
    """Seconds of CPU time the whole host has been busy (all cores), from /proc/stat."""
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(f[:8]) - f[3] - (f[4] if len(f) > 4 else 0)  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for name in ("transformers", "peft"):
        try:
            mod = __import__(name)
            parts.append(f"{name} {getattr(mod, '__version__', 'unknown')}")
        except ImportError:
            parts.append(f"{name} missing")
    return ", ".join(parts)


# -- the profile -------------------------------------------------------------------------------
def profile_backbone(
    name: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    batches: Sequence[int] = (1, 2, 4, 8, 16),
    seq_lens: Sequence[int] = (16, 32, 64, 128),
    adapters: Sequence[int] = (1, 2, 4),
    ranks: Sequence[int] = (8, 16),
    outputs: Sequence[int] = (2, 128),
    lora_points: Sequence[tuple[int, int]] = ((4, 32), (4, 128), (16, 64)),
    overhead_batches: Sequence[int] = (1, 2, 4, 8, 16),
    thread_counts: Sequence[int] | None = None,
    contention_streams: Sequence[int] = (1, 2, 3, 4),
    contention_shape: tuple[int, int] = (4, 64),
    throttle_shapes: Sequence[tuple[int, int]] = ((1, 16), (1, 128), (4, 128)),
    wake_gap_range_ms: tuple[float, float] = WAKE_GAP_RANGE_MS,
    wake_bins: int = WAKE_BINS,
    wake_shape: tuple[int, int] = (1, 64),
    dispatch_requests: int = 100,
    extension_sizes: Sequence[tuple[int, int]] = ((8, 2), (16, 128), (64, 1000)),
    repeats: int = 10,
    warmup: int = 2,
    max_point_s: float = 2.0,
    threads: int | None = None,
    sim_device: str = "CPU",
    seed: int = 0,
    quick: bool = False,
    quiet: bool | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict], list[str]]:
    """Measure ``name`` on ``device`` and return ``(rows, comments)`` for
    :func:`fmplex_sim.latency.profile.write_profile` (kinds and method: module docstring).

    ``repeats`` is the most timed repetitions per point, after ``warmup`` untimed ones; a
    point stops early (at 3 or more repetitions) once it has taken ``max_point_s`` seconds.
    ``threads``: ``torch.set_num_threads`` while profiling (default: all cores; restored
    afterwards). ``quick=True`` replaces the grids, repeats and sizes with tiny ones (tests).
    ``sim_device`` is the catalog device the rows describe (``CPU``, ``H100-80GB``, ...).
    ``quiet`` (default: on unless ``quick``): wait for, and redo points disturbed by, other
    processes' CPU use (:class:`_Gate`).
    """
    if quick:
        batches, seq_lens, adapters, ranks = QUICK["batches"], QUICK["seq_lens"], QUICK["adapters"], QUICK["ranks"]
        outputs, lora_points = QUICK["outputs"], QUICK["lora_points"]
        overhead_batches, extension_sizes = QUICK["overhead_batches"], QUICK["extension_sizes"]
        thread_counts, contention_streams = QUICK["thread_counts"], QUICK["contention_streams"]
        contention_shape = QUICK["contention_shape"]
        wake_gap_range_ms, wake_bins = QUICK["wake_gap_range_ms"], QUICK["wake_bins"]
        throttle_shapes, dispatch_requests = QUICK["throttle_shapes"], QUICK["dispatch_requests"]
        wake_shape = QUICK["contention_shape"]
        repeats, warmup = QUICK["repeats"], QUICK["warmup"]
    short = _dtype_name(dtype)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device")
    say = log or (lambda msg: None)
    old_threads = torch.get_num_threads()
    n_threads = threads or os.cpu_count() or 1
    torch.set_num_threads(n_threads)
    clock = _Clock(dev)
    gate = _Gate(not quick if quiet is None else quiet)
    wall0, busy0, own0 = time.perf_counter(), _busy_s(), _own_cpu_s()
    common = {"backbone": name, "device": sim_device, "dtype": short}

    def measure() -> tuple[Backbone, float, list[dict]]:
        t0 = time.perf_counter()
        bb = load_backbone(name, device=device, dtype=dtype, seed=seed)
        clock.sync()
        build_s = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(seed)
        rows: list[dict] = []
        with torch.inference_mode():
            rows += _forward_rows(bb, common, batches, seq_lens, gen, clock, gate, repeats,
                                  warmup, max_point_s, say)
            rows += _lora_rows(bb, common, adapters, ranks, lora_points, gen, clock, gate,
                               repeats, warmup, max_point_s, say)
            rows += _head_rows(bb, common, batches, outputs, gen, clock, gate, max(repeats, 20),
                               warmup)
            rows += _overhead_rows(bb, common, overhead_batches, max(seq_lens), gen, clock, gate,
                                   repeats, warmup, max_point_s, say)
            if dev.type == "cpu":
                rows += _contention_rows(bb, common, contention_streams, contention_shape, gen,
                                         gate, repeats, say)
                lora_fm = lora_harness_fm(bb)
                rows += _throttle_rows(bb, lora_fm, common, throttle_shapes, gate, repeats, say)
                gaps = WakeGaps(*wake_gap_range_ms, wake_bins)
                rows += _wake_rows(bb, lora_fm, common, gaps, wake_shape, gate, repeats, say)
                rows += _beside_wake_rows(bb, lora_fm, common, gaps, throttle_shapes, gate, repeats, say)
                rows += _running_wake_rows(bb, lora_fm, common, gaps, wake_shape, gate, repeats, say)
                del lora_fm
                # Slices: a spatial replica is a process serving alone with torch limited to
                # its cores; measured with that many threads on this same lone thread.
                counts = thread_counts if thread_counts is not None else [
                    2**i for i in range(8) if 2**i < n_threads]
                for n in counts:
                    rows += _thread_rows(bb, common, n, batches, seq_lens, adapters, ranks, lora_points,
                                         gen, clock, gate, repeats, warmup, max_point_s, say)
                    rows += _slice_wake_rows(name, common, n, gaps, wake_shape, gate, repeats,
                                             dtype, seed, say)
        rows += _load_rows(bb, common, extension_sizes, clock, gate, min(repeats, 5), say)
        rows += _dispatch_rows(name, common, dispatch_requests, gate, seed, say)
        return bb, build_s, rows

    try:
        # Everything, the model build included, on one short-lived thread: this process's
        # main thread never holds an OpenMP pool, as in the runtime (fmplex_exec.threads).
        bb, build_s, rows = off_main(measure, name="fmplex-profile")
    finally:
        torch.set_num_threads(old_threads)
    wall_s = time.perf_counter() - wall0
    busy1 = _busy_s()
    if busy0 is not None and busy1 is not None:
        own = _own_cpu_s() - own0 + gate.children_s
        other = max(0.0, (busy1 - busy0) - own) / max(wall_s, 1e-9)
        interference = (f"other processes kept {other:.2f} of {os.cpu_count()} cores busy on "
                        f"average while profiling (0 = quiet host)")
    else:
        interference = "other processes' CPU use while profiling: unknown (no /proc/stat)"
    cmd = command or " ".join(shlex.quote(a) for a in ["fmplex-exec", *sys.argv[1:]])
    comments = [
        "fmplex-exec profile",
        f"command: {cmd}",
        f"backbone: {name} ({'pretrained' if bb.pretrained else 'random'} weights; latency does not "
        f"depend on weight values), {bb.spec.params} catalog params, {bb.weight_bytes()} weight bytes",
        f"device: {device} -> simulator device {sim_device}; dtype {dtype} ({short})",
        f"host: {platform.node() or 'unknown'}, {platform.system()} {platform.release()}, "
        f"cpu: {_cpu_model()} ({os.cpu_count()} logical cores), torch threads: {n_threads}",
    ]
    if dev.type == "cuda":
        comments.append(f"gpu: {torch.cuda.get_device_name(dev)}, cuda {torch.version.cuda}")
    comments += [
        f"packages: {_versions()}",
        f"date: {_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}",
        f"git commit: {_git_commit()}",
        f"grid: batches {list(batches)}, seq_lens "
        f"{[bb.spec.default_input_len] if _is_vision(bb) else list(seq_lens)}, adapters "
        f"{list(adapters)}, ranks {list(ranks)} (targets {','.join(LORA_TARGETS)}), lora points "
        f"{[list(p) for p in lora_points]}, head outputs {list(outputs)}; repeats <= {repeats} "
        f"(>= 3, capped at {max_point_s}s per point), warmup {warmup}, seed {seed}",
        f"load_backbone(): {build_s * 1000:.1f} ms (model build/from_pretrained, not a row); "
        f"load rows read state-dict files from a warm page cache",
        f"profiling wall time: {wall_s:.1f} s",
        interference,
        gate.comment(),
    ]
    say(f"done in {wall_s:.1f} s")
    return rows, comments


def _forward_rows(bb, common, batches, seq_lens, gen, clock, gate, repeats, warmup, max_s, say,
                  passes: int | None = None) -> list[dict]:
    """``forward`` rows: the bare model over each (batch, seq_len) of the grid. A point's
    repeats are split over ``passes`` sweeps of the whole grid (default: one sample per sweep),
    so that every point samples the host over the same minutes. Measured back to back instead,
    one point could catch a slow spell of a shared VM and its neighbours a fast one: in one
    profile on the 2-core host, batch 4 x 128 ran as slowly on two threads as on one (170 vs
    162 ms) while the shapes around it ran twice as fast on two.

    The rows carry ``mean_ms``, which the model reads. The 2-core host runs in spells: for
    seconds at a time every forward is 30-45% slower, then fast again, with no steal time or
    other process to show for it (``experiments/validation/host_spells.py``). A replay of a
    minute meets both kinds of spell in proportion, and its forwards take the mean. The median
    of a few samples lands in one spell or the other: one held-out profile's chronos 1 x 96 row
    read 10.3 ms, its 10th percentile 6.5 ms, while the probes around that run's replays met
    6.4-6.9 ms in fast spells and 9.0-10.2 ms in slow ones. So each sample is taken in a sweep
    of its own, as far apart as the grid allows, and their mean is the row's expected time."""
    seqs = [bb.spec.default_input_len] if _is_vision(bb) else list(seq_lens)
    inputs = {(b, s): bb.make_inputs(b, s, gen) for b in batches for s in seqs}
    passes = max(1, min(repeats if passes is None else passes, repeats))

    def measure(pt, p: int) -> list[float]:
        x, n = inputs[pt], repeats // passes + (p < repeats % passes)
        (ms,) = gate.run(lambda: _bench([lambda: bb.model(**x)], clock, n, warmup if p == 0 else 1,
                                        max_s / passes, min_repeats=1))
        return ms

    rows = []
    for (b, s), ms in _swept(inputs, measure, passes).items():
        rows.append(dict(common, kind="forward", batch=b, seq_len=s, **summarize(ms, mean=True)))
        say(f"forward b={b} s={s}: {rows[-1]['median_ms']:.3f} ms")
    return rows


def _harness_fm(bb: Backbone, tasks: Sequence):
    """A :class:`~fmplex_exec.vfm.PhysicalFM` over ``bb`` hosting ``tasks``: what the runtime runs."""
    from fmplex_exec.vfm import PhysicalFM

    fm = PhysicalFM(bb, input_seed=0)
    for t in tasks:
        fm.add_task(t)
    return fm


def _task(name: str, bb: Backbone, *exts) -> TaskSpec:
    return TaskSpec(name=name, backbone=bb.spec.name, extensions=tuple(exts))


def lora_harness_fm(bb: Backbone):
    """A PhysicalFM over a copy of ``bb`` (peft injects LoRA layers in place) whose one task,
    ``plain``, holds a rank-8 LoRA adapter: an instance where every layer's LoRA hooks run."""
    from fmplex_sim.specs import ExtensionSpec

    return _harness_fm(copy.deepcopy(bb), [_task("plain", bb, ExtensionSpec("lora", rank=8))])


def cpu_lora_instance(backbone: str, seed: int = 0):
    """:func:`lora_harness_fm` over catalog backbone ``backbone`` on the CPU in float32, built on
    a thread that exits, so the calling thread holds no OpenMP pool (``fmplex_exec.threads``)."""
    return off_main(lambda: lora_harness_fm(load_backbone(backbone, device="cpu", dtype="float32", seed=seed)))


def _lora_rows(bb, common, adapters, ranks, points, gen, clock, gate, repeats, warmup, max_s, say) -> list[dict]:
    """The runtime's own path: a batch split evenly over ``n`` LoRA tasks of a PhysicalFM (on a
    copy of the backbone, since peft injects LoRA layers in place) minus the same batch on a
    PhysicalFM without LoRA, timed alternately: the adapters' compute plus the cost of running
    through peft's wrapped model at all."""
    from fmplex_exec.vfm import ExecRequest
    from fmplex_sim.specs import ExtensionSpec

    if not adapters or not ranks or not points:
        return []
    names = {r: [f"r{r}_a{i}" for i in range(max(adapters))] for r in ranks}
    tasks = [_task(nm, bb, ExtensionSpec("lora", rank=r)) for r in ranks for nm in names[r]]
    fm = _harness_fm(copy.deepcopy(bb), tasks)
    plain_fm = _harness_fm(bb, [_task("plain", bb)])  # no LoRA anywhere: peft never wraps it
    rows = []
    seen = set()
    for b, s in points:
        s = bb.spec.default_input_len if _is_vision(bb) else s
        if (b, s) in seen:
            continue
        seen.add((b, s))
        plain_reqs = [ExecRequest("plain", s)] * b
        for r in ranks:
            for n in adapters:
                reqs = [ExecRequest(names[r][i * n // b], s) for i in range(b)]  # rows split evenly
                # A few ms out of two timings of up to hundreds: three times the usual time
                # budget per point, for more pairs at the large shapes.
                plain, lora = gate.run(lambda: _bench(
                    [lambda: plain_fm.run_batch(plain_reqs), lambda: fm.run_batch(reqs)],
                    clock, repeats, warmup, 3 * max_s))
                diffs = [max(0.0, lo - pl) for pl, lo in zip(plain, lora)]
                rows.append(dict(common, kind="lora", batch=b, seq_len=s, n_adapters=n, rank=r,
                                 **summarize(diffs)))
                say(f"lora b={b} s={s} n={n} r={r}: +{rows[-1]['median_ms']:.3f} ms")
    del fm
    return rows


def _thread_rows(bb, common, threads, batches, seq_lens, adapters, ranks, lora_points, gen, clock,
                 gate, repeats, warmup, max_s, say) -> list[dict]:
    """``forward`` and single-adapter ``lora`` rows measured with ``threads`` torch threads: a
    CPU slice owning that many cores (one replica, so one adapter)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    note = lambda msg: say(f"{msg} ({threads} thread(s))")  # noqa: E731
    try:
        rows = _forward_rows(bb, common, batches, seq_lens, gen, clock, gate, repeats, warmup, max_s, note)
        rows += _lora_rows(bb, common, (1,), ranks[:1], lora_points, gen, clock, gate, repeats, warmup,
                           max_s, note)
    finally:
        torch.set_num_threads(old)
    return [dict(r, threads=threads) for r in rows]


def _wake_rows(bb, lora_fm, common, gaps: "WakeGaps", shape, gate, repeats, say) -> list[dict]:
    """Extra time of a batch that starts after the serving thread was idle (its worker threads
    gone to sleep, caches cold), at each of ``gaps``' bins, through the runtime's
    ``PhysicalFM.run_batch``, on an instance without LoRA (``n_adapters`` empty) and on one
    holding an adapter (``n_adapters`` 1: every layer's LoRA hooks run, many small ops that
    each wake the threads). Each sample is a pair: the batch after the gap minus the same batch
    run again once the wake-up has worn off (:func:`_wake_pairs`), so the host's speed
    drifting over the series cancels."""
    import random

    b, s = shape
    s = bb.spec.default_input_len if _is_vision(bb) else s
    rng = random.Random(0)
    fms = {0: _harness_fm(bb, [_task("plain", bb)]), 1: lora_fm}
    rows = []
    for lora, fm in fms.items():
        rows += _wake_gap_rows(fm, common, b, s, gaps, gate, max(repeats, 20), rng, say,
                               "LoRA" if lora else "plain", n_adapters=lora or None)
    return rows


def _wake_gap_rows(fm, common, b, s, gaps: "WakeGaps", gate, n, rng, say, label, **cols) -> list[dict]:
    """:func:`_wake_run_rows` of a batch of ``b`` x ``s`` through ``fm.run_batch``."""
    from fmplex_exec.vfm import ExecRequest

    reqs = [ExecRequest("plain", s)] * b
    return _wake_run_rows(lambda: fm.run_batch(reqs), common, b, s, gaps, gate, n, rng, say, label, **cols)


class WakeGaps:
    """The idle gaps of one group of ``wake`` rows (:data:`WAKE_GAP_RANGE_MS`)."""

    def __init__(self, lo_ms: float, hi_ms: float, bins: int) -> None:
        if not 0 < lo_ms < hi_ms or bins < 1:
            raise ValueError(f"wake gaps: need 0 < lo < hi and bins >= 1, got {lo_ms}, {hi_ms}, {bins}")
        self.lo, self.hi, self.bins = math.log(lo_ms), math.log(hi_ms), bins
        self.width = (self.hi - self.lo) / bins

    def edge_ms(self, k: float) -> float:
        """The gap ``k`` bins up from the range's lower end (``k + 0.5``: bin ``k``'s centre)."""
        return round(math.exp(self.lo + k * self.width), 1)

    def centre_ms(self, k: int) -> float:
        return self.edge_ms(k + 0.5)

    def draw(self, per_bin: int, rng) -> list[tuple[int, float]]:
        """``(bin, gap ms)``: ``per_bin`` gaps in each bin, log-uniform within it, shuffled (so
        the host's drift over the series does not follow the gap)."""
        out = [(k, math.exp(self.lo + (k + rng.random()) * self.width))
               for k in range(self.bins) for _ in range(per_bin)]
        rng.shuffle(out)
        return out


def _wake_run_rows(run, common, b, s, gaps: WakeGaps, gate, n, rng, say, label, solo_ms: float = 0.0,
                   **cols) -> list[dict]:
    """One ``wake`` row per bin of ``gaps``: :func:`_wake_pairs` of ``run`` (a batch of ``b`` x
    ``s``), ``max(n // 2, 6)`` pairs per bin; and one ``warmup`` row from the batches run after
    the wake-ups of the top bins (:func:`warmup_ms`). ``cols`` are the rows' own columns
    (``n_adapters``, ``beside``, ``threads``, ``running``). ``solo_ms``: the settled batch's time
    without the contention the pairs ran under (rows with ``running``); the extra is then given
    in that solo time, each pair's divided by how much slower the settled batches ran, since
    the simulator adds it to the batch's work, which the other batches then slow."""
    drawn = gaps.draw(max(n // 2, 6), rng)

    def pairs() -> tuple[list[float], list[list[float]]]:
        series: list[list[float]] = []  # a fresh list each time the gate runs it again
        return _wake_pairs(run, [g for _, g in drawn], series=series), series

    extra, series = gate.run(pairs)
    if solo_ms > 0:
        slow = max(1.0, statistics.median(t[-1] for t in series) / solo_ms)
        extra = [x / slow for x in extra]
    rows = []
    for k in range(gaps.bins):
        xs = [x for (kk, _), x in zip(drawn, extra) if kk == k]
        rows.append(dict(common, kind="wake", batch=b, seq_len=s, gap_ms=gaps.centre_ms(k), **cols,
                         **summarize(xs, extra_cost=True)))
        say(f"wake after ~{gaps.centre_ms(k)} ms idle ({label}, batch {b} x {s}): "
            f"+{rows[-1]['mean_ms']:.3f} ms mean, +{rows[-1]['median_ms']:.3f} median")
    top = max(0, gaps.bins - WARMUP_TOP_BINS)
    coldest = [t for (k, _), t in zip(drawn, series) if k >= top]
    w = warmup_ms(coldest)
    rows.append(dict(common, kind="warmup", batch=b, seq_len=s, gap_ms=gaps.edge_ms(top),
                     **cols, median_ms=round(w, 6), p10_ms=None, p90_ms=None, repeats=len(coldest)))
    say(f"warm-up after ~{rows[-1]['gap_ms']} ms idle and more ({label}, batch {b} x {s}): "
        f"settled after {w:.1f} ms of running")
    return rows


def _beside_wake_rows(bb, lora_fm, common, gaps: WakeGaps, shapes, gate, repeats, say) -> list[dict]:
    """``wake`` rows with ``beside`` 1: :func:`_wake_rows`'s pairs on the instance holding an
    adapter while another instance's OpenMP pool waits idle in this process, so every pool
    sleeps between parallel loops (:mod:`fmplex_exec.threads`), as in a process serving
    several instances. There the cost of a wake-up grows with the gap and with the batch:
    measured on the 2-core machine at 1 x 128, about +19 ms after 200 ms idle against +2 ms
    with the pool alone; so at each of ``shapes``."""
    import random

    rng = random.Random(1)
    n = max(repeats, 20)
    rows = []
    with idle_pool_beside(lora_fm, shapes[0][1] if shapes else 16):
        for b, s in dict.fromkeys((b, bb.spec.default_input_len if _is_vision(bb) else s) for b, s in shapes):
            rows += _wake_gap_rows(lora_fm, common, b, s, gaps, gate, n, rng, say,
                                   "LoRA, beside another pool", n_adapters=1, beside=1)
    return rows


def _running_wake_rows(bb, lora_fm, common, gaps: WakeGaps, shape, gate, repeats, say) -> list[dict]:
    """``wake`` and ``warmup`` rows with ``beside`` 1 and ``running`` 1: :func:`_wake_rows`'s
    pairs on the instance holding an adapter while another instance (its own replica) runs
    batches of the same length back to back on another thread of this process, as a woken
    co-located replica finds the cores when another is busy. On the 2-core machine, MiniLM
    1 x 64: +2.6 to +6.0 ms after 20-200 ms idle, where beside the same replica idle the batch
    paid +0.9 to +13.5 ms. The extra is given in solo time (``solo_ms`` of
    :func:`_wake_run_rows`: the settled batch beside the other replica's idle pool)."""
    import random

    from fmplex_exec.vfm import ExecRequest

    b, s = shape
    s = bb.spec.default_input_len if _is_vision(bb) else s
    n = max(repeats, 20)
    reqs = [ExecRequest("plain", s)] * b
    other = _harness_fm(copy.deepcopy(bb), [_task("plain", bb)])

    with idle_pool_beside(other, s):
        solo = gate.run(lambda: statistics.median(_series_ms(lora_fm, reqs, n)))
    with idle_pool_beside(other, s, running=True):
        rows = _wake_gap_rows(lora_fm, common, b, s, gaps, gate, n, random.Random(2), say,
                              "LoRA, beside another instance's running batches", solo_ms=solo,
                              n_adapters=1, beside=1, running=1)
    del other
    return rows


@contextlib.contextmanager
def idle_pool_beside(fm, seq_len: int, running: bool = False):
    """While inside, another thread of this process holds an OpenMP pool, idle after one batch
    of ``seq_len`` tokens through ``fm`` (another instance's serving thread between batches):
    every pool of the process is then throttled (:mod:`fmplex_exec.threads`). ``running``: the
    thread runs such batches back to back instead (another instance's serving thread at work;
    ``fm`` must then be a replica of its own); entered after its first."""
    import threading

    from fmplex_exec.vfm import ExecRequest

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with torch.inference_mode():
            while True:
                fm.run_batch([ExecRequest("plain", seq_len)])
                held.set()
                if not running or release.is_set():
                    break
        release.wait()

    other = threading.Thread(target=hold, name="fmplex-profile-beside", daemon=True)
    other.start()
    held.wait()
    try:
        yield
    finally:
        release.set()
        other.join()


#: ``wake`` samples: the batch after the gap is compared with the ``WAKE_SETTLE``-th batch run
#: back to back after it, not the next one. On the 2-core machine, a MiniLM batch beside another
#: instance's idle pool was still 5 ms slow one batch after a 200 ms gap and 3 ms two batches
#: after it; the third ran within 1 ms of a hot series. Compared with the next batch, the
#: beside wake-up came out 1.2-4 ms where it cost 6-10 ms
#: (``experiments/validation/wake_settle.py``).
WAKE_SETTLE = 3


def _wake_pairs(run: Callable[[], object], gaps_ms: Sequence[float], settle: int = WAKE_SETTLE,
                series: list | None = None) -> list[float]:
    """A pair per gap of ``gaps_ms``: ``run()`` after idling that long minus the ``settle``-th
    ``run()`` after it, run back to back (the ones between pay what is left of the wake-up), in
    ms (negative by noise at times: ``summarize(extra_cost=True)`` clamps); two untimed runs
    first. Pairing with a batch run moments later cancels the host's drift over the series.
    ``series``: a list that gets, per pair, the times (ms) of all ``settle + 1`` runs, from the
    one after the gap to the settled one."""
    def timed() -> float:
        t0 = time.perf_counter()
        run()
        return (time.perf_counter() - t0) * 1000.0

    for _ in range(2):
        run()
    out = []
    for gap in gaps_ms:
        time.sleep(gap / 1000.0)
        times = [timed() for _ in range(settle + 1)]
        out.append(times[0] - times[-1])
        if series is not None:
            series.append(times)
    return out


#: ``warmup``: a wake-up smaller than this (ms) leaves nothing to settle (how long noise lasts
#: is noise), and the row says 0
WARMUP_MIN_MS = 0.5


def warmup_ms(series: Sequence[Sequence[float]]) -> float:
    """The ``warmup`` row from :func:`_wake_pairs`' ``series`` (per wake-up, the times of the
    batch after the gap, those run back to back after it, and the settled one last): how long
    the instance ran cold, if it runs at the woken batch's pace until it settles. With ``t_k``
    the mean time of batch ``k`` and ``e_k`` its mean extra over the settled one, a batch ran
    ``e_k / e_0 x t_0`` ms cold (its extra at the woken batch's pace; at most ``t_k``): the sum
    of those, the woken batch's ``t_0`` first. 0 when the wake-up's mean is below
    :data:`WARMUP_MIN_MS`."""
    if not series or len(series[0]) < 2:
        return 0.0
    e0 = statistics.fmean(t[0] - t[-1] for t in series)
    if e0 < WARMUP_MIN_MS:
        return 0.0
    t0 = statistics.fmean(t[0] for t in series)
    total = t0
    for k in range(1, len(series[0]) - 1):
        left = statistics.fmean(t[k] - t[-1] for t in series) / e0
        total += min(max(left, 0.0) * t0, statistics.fmean(t[k] for t in series))
    return total


def _slice_wake_rows(name, common, threads, gaps: WakeGaps, shape, gate, repeats, dtype, seed, say) -> list[dict]:
    """``wake`` rows with ``threads``: what a spatial slice pays for having been idle. A
    slice is its own process pinned to its cores (:class:`~fmplex_exec.executors.ProcessExecutor`,
    exactly as the runtime starts one), reached through a pipe; after an idle gap its process
    must be woken and scheduled and its caches are cold. Timed as the runtime sees it, the
    round trip of a batch sent after an idle gap minus the same batch
    sent :data:`WAKE_SETTLE` batches later: pairs, as in :func:`_wake_rows`. Plain and LoRA (``n_adapters`` 1)."""
    import random
    from types import SimpleNamespace

    from fmplex_exec.executors import ProcessExecutor
    from fmplex_sim.records import Batch, Request
    from fmplex_sim.specs import ExtensionSpec

    cores = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else []
    b, s = shape
    rng = random.Random(0)
    n = max(repeats, 20)
    rows = []
    for lora in (0, 1):
        exts = (ExtensionSpec("lora", rank=8),) if lora else ()
        task = TaskSpec(name="plain", backbone=name, extensions=(*exts, ExtensionSpec("head", outputs=2)))
        ex = ProcessExecutor(SimpleNamespace(backbone=name), [task], "cpu", dtype, seed, cores)
        try:
            if ex.failed:
                raise RuntimeError(f"slice process for {name} failed to load: {ex.failed}")
            gate.pids = [ex.proc.pid]
            batch = Batch(tuple(Request(i, "plain", 0.0, s, 0) for i in range(b)))
            rows += _wake_run_rows(lambda: ex(batch), common, b, s, gaps, gate, n, rng, say,
                                   f"slice, {'LoRA' if lora else 'plain'}, {threads} thread(s), own process",
                                   threads=threads, n_adapters=lora or None)
        finally:
            gate.children_s += _proc_cpu_s(ex.proc.pid)
            gate.pids = []
            ex.close()
    return rows


def _contention_rows(bb, common, streams, shape, gen, gate, repeats, say) -> list[dict]:
    """One forward's time while ``k`` threads of this process run forwards at once (co-located
    replicas on one host): each thread times its own forwards; the row is their median over
    :data:`SWEEPS` sweeps of all ``k``."""
    import threading

    b, s = shape
    s = bb.spec.default_input_len if _is_vision(bb) else s
    x = bb.make_inputs(b, s, gen)

    def point(k: int) -> list[float]:
        samples: list[list[float]] = [[] for _ in range(k)]
        start = threading.Barrier(k)

        def worker(i: int) -> None:
            with torch.inference_mode():
                bb.model(**x)
                start.wait()
                for _ in range(max(repeats // SWEEPS, 3) + 2):
                    t0 = time.perf_counter()
                    bb.model(**x)
                    samples[i].append((time.perf_counter() - t0) * 1000.0)

        ths = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        # the first and last forward of each thread overlap less: keep the middle ones
        return [v for xs in samples for v in (xs[1:-1] if len(xs) > 2 else xs)]

    rows = []
    for k, xs in _swept(streams, lambda k, _: gate.run(lambda: point(k))).items():
        rows.append(dict(common, kind="contention", batch=k, rows=b, seq_len=s, **summarize(xs)))
        say(f"contention k={k} (batch {b} x {s}): {rows[-1]['median_ms']:.3f} ms per forward")
    return rows


def _series_ms(fm, reqs, n: int) -> list[float]:
    """``n`` timed ``fm.run_batch(reqs)`` back to back (ms) after one untimed, on this thread."""
    with torch.inference_mode():
        fm.run_batch(reqs)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fm.run_batch(reqs)
            out.append((time.perf_counter() - t0) * 1000.0)
        return out


def throttle_samples(fm, reqs, n: int, run: Callable = lambda f: f()) -> list[float]:
    """One series of a ``throttle`` row: ``n`` timed ``fm.run_batch(reqs)`` on a new thread
    (its own pool, while this thread's stays alive, idle) minus the (upper) median of ``n``
    on this thread, alone; each series after one untimed batch, each run through ``run``
    (the profiler's quiet gate). Raw differences, in ms (negative by noise at times)."""
    import threading

    def series() -> list[float]:
        return _series_ms(fm, reqs, n)

    def beside() -> list[float]:
        box: list[float] = []
        th = threading.Thread(target=lambda: box.extend(series()))
        th.start()
        th.join()
        return box

    base = sorted(run(series))[n // 2]  # alone, in this sweep
    return [v - base for v in run(beside)]


def _throttle_rows(bb, fm, common, shapes, gate, repeats, say) -> list[dict]:
    """Extra time of a batch on a serving thread whose process holds another replica's
    OpenMP pool (fmplex_exec.threads: every pool then sleeps between parallel loops), over the
    same batch alone in the process: through the runtime's ``PhysicalFM.run_batch`` on an
    instance holding a LoRA adapter (``fm``), at each (batch, seq_len) of ``shapes``. "Alone" runs on
    this profiling thread (the process's only pool); "beside" on a new thread while this
    thread's pool stays alive, idle."""
    from fmplex_exec.vfm import ExecRequest

    n = max(repeats // SWEEPS, 4)

    def extra(pt, _) -> list[float]:
        b, s = pt
        return throttle_samples(fm, [ExecRequest("plain", s)] * b, n, gate.run)

    points = dict.fromkeys((b, bb.spec.default_input_len if _is_vision(bb) else s) for b, s in shapes)
    rows = []
    for (b, s), xs in _swept(points, extra, THROTTLE_SWEEPS).items():
        rows.append(dict(common, kind="throttle", batch=b, seq_len=s, **summarize(xs, extra_cost=True)))
        say(f"throttle b={b} s={s}: +{rows[-1]['mean_ms']:.3f} ms mean, +{rows[-1]['median_ms']:.3f} median, "
            "beside another replica's pool")
    return rows


def _dispatch_rows(name, common, n, gate, seed, say) -> list[dict]:
    """One ``dispatch`` row: how long after its arrival an idle instance picks a request,
    through the runtime's own replay (feeder thread, condition wake-up, scheduler) on one
    instance whose executor returns at once. ``n`` arrivals 2-30 ms apart (seeded), so each
    finds the serving thread asleep; the sample is start minus arrival, as ``requests.csv``
    records them. No model runs, so it measures the harness, not the device."""
    import numpy as np

    from fmplex_exec.runtime import Runtime
    from fmplex_sim.config import parse_config
    from fmplex_sim.workload import from_arrays

    gaps = np.random.default_rng(seed).uniform(0.002, 0.030, n)
    arrivals = np.cumsum(gaps) - gaps[0]
    cfg = parse_config({
        "seed": seed, "duration_s": float(arrivals[-1]) + 0.01, "drain_s": 1.0,
        "cluster": {"device": common["device"], "gpus": 1}, "system": {"name": "fmplex"},
        "tasks": [{"name": "probe", "backbone": name, "slo_ms": 1000.0,
                   "arrival": {"process": "poisson", "rate_rps": 1.0}}],
    }, "<dispatch probe>")
    wl = from_arrays(("probe",), arrivals, np.zeros(n, dtype=np.int32), np.full(n, 8, dtype=np.int32),
                     np.zeros(n, dtype=np.int32))

    def replay() -> list[float]:
        rec, _ = Runtime(cfg, wl, lambda plan, tasks, opts: lambda batch: [""] * len(batch.requests)).run()
        return [float(d) * 1000.0 for d in rec.start_s - rec.arrival_s if np.isfinite(d)]

    row = dict(common, kind="dispatch", backbone="*", **summarize(gate.run(replay)))
    say(f"dispatch: {row['median_ms']:.3f} ms from arrival to pick on an idle instance")
    return [row]


def _head_rows(bb, common, batches, outputs, gen, clock, gate, repeats, warmup) -> list[dict]:
    rows = []
    for o in outputs:
        head = nn.Linear(bb.hidden, o).to(bb.device, bb.dtype).eval()
        for b in batches:
            x = torch.randn(b, bb.hidden, generator=gen).to(bb.device, bb.dtype)
            (ms,) = gate.run(lambda: _bench([lambda: head(x)], clock, repeats, warmup, max_s=1.0))
            rows.append(dict(common, kind="head", batch=b, outputs=o, **summarize(ms)))
    return rows


def _overhead_rows(bb, common, batches, seq_len, gen, clock, gate, repeats, warmup, max_s, say) -> list[dict]:
    """The runtime's per-batch work outside the forward, timed directly through its own path:
    a PhysicalFM batch of ``b`` requests (making, checking and padding each input, pooling, one
    result per request) whose backbone returns the forward's output for that batch, computed
    beforehand, instead of running. Taken as the difference of two timings instead (the batch
    minus the bare forward), the few ms of overhead at batch 16 drowned in the noise of two
    ~400 ms timings: profiles on one host gave anything from 0 to 32 ms."""
    from fmplex_exec.vfm import ExecRequest

    rows = []
    seq_len = bb.spec.default_input_len if _is_vision(bb) else seq_len
    fm = _harness_fm(bb, [_task("plain", bb)])  # no LoRA: peft leaves the backbone alone
    model = bb.model
    for b in batches:
        reqs = [ExecRequest("plain", seq_len)] * b
        out = model(**bb.make_inputs(b, seq_len, gen))
        model.forward = lambda *args, _out=out, **kwargs: _out  # an instance attribute: nn.Module calls it
        try:
            (samples,) = gate.run(lambda: _bench([lambda: fm.run_batch(reqs)], clock,
                                                 max(repeats, 30), warmup, max_s))
        finally:
            del model.forward  # the class's forward again
        rows.append(dict(common, kind="overhead", backbone="*", batch=b, seq_len=seq_len,
                         **summarize(samples)))
        say(f"overhead b={b}: {rows[-1]['median_ms']:.3f} ms")
    return rows


def _load_rows(bb, common, extension_sizes, clock, gate, repeats, say) -> list[dict]:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from fmplex_exec.vfm import _projection_shapes, lora_target_names

    rows = []
    repeats = max(repeats, 1)
    state = {k: v.detach().to("cpu").clone() for k, v in bb.model.state_dict().items()}
    with tempfile.TemporaryDirectory(prefix="fmplex-profile-") as tmp:
        # backbone: about half of the state dict (by bytes, in key order) and all of it
        total = _nbytes(state.values())
        half, acc = {}, 0
        for k, v in state.items():
            if acc >= total / 2:
                break
            half[k] = v
            acc += v.numel() * v.element_size()
        for label, sd in (("half", half), ("full", state)):
            path = Path(tmp) / f"backbone-{label}.pt"
            torch.save(sd, path)
            nbytes = _nbytes(sd.values())
            def backbone_point() -> list[float]:
                samples = []
                for i in range(repeats + 1):  # the first read warms the page cache (untimed)
                    t0 = clock()
                    loaded = torch.load(path, map_location="cpu", weights_only=True)
                    bb.model.load_state_dict(loaded, strict=False)
                    t1 = clock()
                    del loaded
                    if i:
                        samples.append((t1 - t0) * 1000.0)
                return samples

            samples = gate.run(backbone_point)
            rows.append(dict(common, kind="load_backbone", backbone=bb.spec.name, bytes=nbytes,
                             **summarize(samples)))
            say(f"load_backbone {nbytes} B: {rows[-1]['median_ms']:.1f} ms")
        del state, half
        # extensions: one LoRA adapter + one head per size, created and loaded from files
        targets = bb.lora_modules(LORA_TARGETS)
        # GPT-2's projections are Conv1D (weight stored [in, out]): say so, as the vFMs do
        shapes = _projection_shapes(bb.model)
        conv1d = any(shapes[name][2] for name in lora_target_names(bb, LORA_TARGETS, shapes))
        base = get_peft_model(copy.deepcopy(bb.model),
                              LoraConfig(r=1, target_modules=targets, lora_dropout=0.0, fan_in_fan_out=conv1d),
                              adapter_name="base")
        for r, o in extension_sizes:
            cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=0.0,
                             fan_in_fan_out=conv1d)
            base.add_adapter("src", cfg)
            gen = torch.Generator().manual_seed(r * 100003 + o)
            lsd = {k: torch.randn(v.shape, generator=gen).to(v.dtype)
                   for k, v in _adapter_state(base, "src").items()}
            base.delete_adapter("src")
            hsd = {"weight": torch.randn(o, bb.hidden, generator=gen).to(bb.dtype),
                   "bias": torch.zeros(o, dtype=bb.dtype)}
            lpath, hpath = Path(tmp) / f"lora-{r}.pt", Path(tmp) / f"head-{o}.pt"
            torch.save(lsd, lpath)
            torch.save(hsd, hpath)
            nbytes = _nbytes(lsd.values()) + _nbytes(hsd.values())
            def extension_point() -> list[float]:
                samples = []
                for i in range(repeats + 1):
                    t0 = clock()
                    base.add_adapter("ext", cfg)
                    set_peft_model_state_dict(
                        base, torch.load(lpath, map_location="cpu", weights_only=True), adapter_name="ext")
                    head = nn.Linear(bb.hidden, o, device=bb.device, dtype=bb.dtype)
                    head.load_state_dict(torch.load(hpath, map_location="cpu", weights_only=True))
                    t1 = clock()
                    base.delete_adapter("ext")
                    del head
                    if i:
                        samples.append((t1 - t0) * 1000.0)
                return samples

            samples = gate.run(extension_point)
            rows.append(dict(common, kind="load_extension", backbone="*", bytes=nbytes, rank=r,
                             outputs=o, **summarize(samples)))
            say(f"load_extension r={r} outputs={o} {nbytes} B: {rows[-1]['median_ms']:.2f} ms")
        del base
    return rows


def _adapter_state(pm, adapter: str) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(pm, adapter_name=adapter).items()}


# -- command line -------------------------------------------------------------------------------
def _ints(text: str | None) -> tuple[int, ...] | None:
    if text is None or text == "":
        return None
    return tuple(int(v) for v in str(text).split(","))


def default_sim_device(device: str) -> str:
    """Catalog device for a torch device: ``CPU`` for cpu; for cuda the catalog GPU whose name
    prefix (``H100``, ``A100``, ``L4``) appears in the CUDA device name."""
    from fmplex_sim.catalog import DEVICES

    if torch.device(device).type == "cpu":
        return "CPU"
    gpu = torch.cuda.get_device_name(torch.device(device)).upper().replace(" ", "")
    hits = [d for d in DEVICES if d != "CPU" and d.split("-")[0].upper() in gpu]
    if len(hits) != 1:
        raise ValueError(f"cannot tell the catalog device for {gpu!r}; pass --sim-device")
    return hits[0]


def add_profile_arguments(p) -> None:
    """Arguments of ``fmplex-exec profile`` on an argparse (sub)parser."""
    p.add_argument("--backbone", required=True, help="catalog backbone name")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda[:N]")
    p.add_argument("--out", required=True, help="profile CSV to write")
    p.add_argument("--dtype", default="float32", help="float32|bfloat16|float16 (or fp32|bf16|fp16)")
    p.add_argument("--sim-device", help="catalog device the profile describes (default: CPU for "
                   "cpu, guessed from the GPU name for cuda)")
    p.add_argument("--quick", action="store_true", help="tiny grids and few repeats (tests)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--batches", help="comma-separated batch grid")
    p.add_argument("--seq-lens", help="comma-separated seq_len grid")
    p.add_argument("--repeats", type=int, help="most timed repetitions per point")
    p.add_argument("--warmup", type=int, help="untimed repetitions per point")


def main_profile(args) -> int:
    """``fmplex-exec profile``: profile ``args.backbone`` and write ``args.out``."""
    from fmplex_sim.catalog import get_device
    from fmplex_sim.latency.profile import write_profile

    sim_device = getattr(args, "sim_device", None) or default_sim_device(args.device)
    get_device(sim_device)  # unknown catalog device -> error before measuring
    kw: dict = {}
    for key, val in (("batches", _ints(getattr(args, "batches", None))),
                     ("seq_lens", _ints(getattr(args, "seq_lens", None))),
                     ("repeats", getattr(args, "repeats", None)),
                     ("warmup", getattr(args, "warmup", None))):
        if val is not None:
            kw[key] = val
    rows, comments = profile_backbone(
        args.backbone, device=args.device, dtype=getattr(args, "dtype", None) or "float32",
        sim_device=sim_device, quick=bool(getattr(args, "quick", False)),
        threads=getattr(args, "threads", None),
        log=lambda msg: print(msg, file=sys.stderr, flush=True), **kw)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_profile(out, rows, comments)
    print(f"wrote {len(rows)} rows to {out}")
    return 0

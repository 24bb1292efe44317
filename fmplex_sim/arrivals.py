"""Synthetic arrival processes and per-task rate splits, in plain numpy.

Every process function returns a sorted ``float64`` array of arrival times in
``[start_s, end_s)`` (empty when ``end_s <= start_s`` or the rate is 0) and draws all its
randomness from the :class:`numpy.random.Generator` it is given, so the same generator state
gives the same arrivals. Nothing here keeps state between calls.

- :func:`poisson`, :func:`gamma`: renewal processes (they relocate
  :func:`fmplex_sim.workload.arrival_times`).
- :func:`onoff`: bursts, a renewal process that runs only during ON periods.
- :func:`diurnal`: a non-homogeneous Poisson process with a sinusoidal rate, by thinning.
- :func:`zipf_weights`, :func:`split_rate`: how a total rate is shared among tasks.
"""

from __future__ import annotations

import math

import numpy as np

from fmplex_sim.specs import ArrivalSpec
from fmplex_sim.workload import arrival_times

__all__ = ["poisson", "gamma", "onoff", "diurnal", "zipf_weights", "split_rate"]


# ---------------------------------------------------------------------------------------------
# validation helpers


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _nonneg(name: str, value: float) -> float:
    value = _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _positive(name: str, value: float) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _window(start_s: float, end_s: float) -> tuple[float, float]:
    return _finite("start_s", start_s), _finite("end_s", end_s)


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# renewal processes


def poisson(rate_rps: float, start_s: float, end_s: float, rng: np.random.Generator) -> np.ndarray:
    """Homogeneous Poisson arrivals at ``rate_rps`` (>= 0) in ``[start_s, end_s)``.

    Exponential gaps with mean ``1 / rate_rps`` are accumulated from ``start_s``.
    """
    rate = _nonneg("rate_rps", rate_rps)
    start, end = _window(start_s, end_s)
    if rate == 0 or end <= start:
        return _empty()
    spec = ArrivalSpec(process="poisson", rate_rps=rate)
    return np.asarray(arrival_times(spec, start, end, rng), dtype=np.float64)


def gamma(
    rate_rps: float, cv: float, start_s: float, end_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Gamma renewal arrivals in ``[start_s, end_s)``: mean gap ``1 / rate_rps``, gap CV ``cv``.

    Gaps are Gamma(shape ``1 / cv**2``, scale ``cv**2 / rate_rps``) accumulated from
    ``start_s`` (the process starts fresh at ``start_s``; it is not the stationary version).
    ``cv == 1`` is a Poisson process; ``cv > 1`` is burstier, ``cv < 1`` more regular.
    """
    rate = _nonneg("rate_rps", rate_rps)
    cv = _positive("cv", cv)
    start, end = _window(start_s, end_s)
    if rate == 0 or end <= start:
        return _empty()
    spec = ArrivalSpec(process="gamma", rate_rps=rate, cv=cv)
    return np.asarray(arrival_times(spec, start, end, rng), dtype=np.float64)


def _renewal(rate_rps: float, cv: float, start_s: float, end_s: float, rng) -> np.ndarray:
    """Poisson when ``cv == 1``, otherwise Gamma with that CV."""
    if cv == 1.0:
        return poisson(rate_rps, start_s, end_s, rng)
    return gamma(rate_rps, cv, start_s, end_s, rng)


# ---------------------------------------------------------------------------------------------
# ON/OFF bursts


def _on_intervals(
    on_s: float, off_s: float, start_s: float, end_s: float, phase_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends of the ON periods clipped to ``[start_s, end_s)`` (non-empty ones only).

    Cycle ``k`` (``k = 0, 1, ...``) begins at ``c_k = start_s - phase_s + k * (on_s + off_s)``
    and is ON during ``[c_k, c_k + on_s)``, OFF during ``[c_k + on_s, c_(k+1))``.
    """
    period = on_s + off_s
    first = start_s - phase_s
    n_cycles = int(math.ceil((end_s - first) / period)) + 1
    starts = first + period * np.arange(n_cycles, dtype=np.float64)
    ends = np.minimum(starts + on_s, end_s)
    starts = np.maximum(starts, start_s)
    keep = ends > starts
    return starts[keep], ends[keep]


def _map_on_time(tau: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Wall-clock times of points ``tau`` given in ON time (the ON periods laid end to end)."""
    cum = np.concatenate(([0.0], np.cumsum(ends - starts)))
    idx = np.searchsorted(cum, tau, side="right") - 1
    idx = np.clip(idx, 0, starts.shape[0] - 1)
    t = starts[idx] + (tau - cum[idx])
    # Rounding must never push a point onto the end of its ON period (the start of an OFF one).
    return np.minimum(t, np.nextafter(ends[idx], -np.inf))


def onoff(
    rate_rps: float,
    on_s: float,
    off_s: float,
    start_s: float,
    end_s: float,
    rng: np.random.Generator,
    cv: float = 1.0,
    phase_s: float | None = None,
) -> np.ndarray:
    """Bursty ON/OFF arrivals in ``[start_s, end_s)`` with long-run mean rate ``rate_rps``.

    The time axis is cut into cycles of ``on_s + off_s`` seconds, each ON for its first
    ``on_s`` seconds (``[c, c + on_s)``) and OFF for the rest. No request arrives while OFF.
    While ON, requests arrive at the *peak* rate ``rate_rps * (on_s + off_s) / on_s``, so the
    mean over whole cycles is ``rate_rps`` (the rate is the average load, not the burst load).

    Within ON periods the gaps are exponential (``cv == 1``) or Gamma with that CV: a single
    renewal process runs on ON time only, i.e. it is paused during OFF periods and a gap that
    is cut by an OFF period resumes after it.

    ``phase_s`` is the position within the cycle at ``start_s`` (``0 <= phase_s < on_s +
    off_s``; 0 means an ON period begins at ``start_s``). ``None`` (the default) draws it
    uniformly from ``[0, on_s + off_s)`` with ``rng`` (before any gap), which makes the process
    stationary: the expected count in any window is ``rate_rps`` times its length.

    Requires ``rate_rps >= 0``, ``on_s > 0``, ``off_s >= 0`` (0: no OFF periods), ``cv > 0``.
    """
    rate = _nonneg("rate_rps", rate_rps)
    on = _positive("on_s", on_s)
    off = _nonneg("off_s", off_s)
    cv = _positive("cv", cv)
    start, end = _window(start_s, end_s)
    period = on + off
    if phase_s is None:
        phase = float(rng.uniform(0.0, period))
    else:
        phase = _nonneg("phase_s", phase_s)
        if phase >= period:
            raise ValueError(f"phase_s must be < on_s + off_s = {period!r}, got {phase!r}")
    if rate == 0 or end <= start:
        return _empty()
    starts, ends = _on_intervals(on, off, start, end, phase)
    if starts.shape[0] == 0:
        return _empty()
    total_on = float(np.sum(ends - starts))
    tau = _renewal(rate * period / on, cv, 0.0, total_on, rng)
    return _map_on_time(tau, starts, ends)


# ---------------------------------------------------------------------------------------------
# diurnal (sinusoidal) rate


def diurnal(
    rate_rps: float,
    amplitude: float,
    period_s: float,
    start_s: float,
    end_s: float,
    rng: np.random.Generator,
    phase_s: float = 0.0,
) -> np.ndarray:
    """Non-homogeneous Poisson arrivals in ``[start_s, end_s)`` with a sinusoidal rate.

    ``rate(t) = rate_rps * (1 + amplitude * sin(2 * pi * (t - phase_s) / period_s))``: mean
    ``rate_rps`` over a whole period, peak at ``t = phase_s + period_s / 4`` (mod the period),
    trough at ``phase_s + 3 * period_s / 4``. Requires ``rate_rps >= 0``, ``0 <= amplitude <=
    1`` and ``period_s > 0``; ``amplitude == 0`` is a homogeneous Poisson process.

    Sampled by thinning (Lewis & Shedler): candidates from a Poisson process at
    ``rate_rps * (1 + amplitude)``, each kept with probability ``rate(t) / (rate_rps * (1 +
    amplitude))`` using one uniform draw per candidate, all vectorized.
    """
    rate = _nonneg("rate_rps", rate_rps)
    amp = _nonneg("amplitude", amplitude)
    if amp > 1:
        raise ValueError(f"amplitude must be in [0, 1], got {amp!r}")
    period = _positive("period_s", period_s)
    phase = _finite("phase_s", phase_s)
    start, end = _window(start_s, end_s)
    peak = rate * (1.0 + amp)
    candidates = poisson(peak, start, end, rng)
    if candidates.shape[0] == 0:
        return candidates
    # The position within the period, reduced first: a period of 1e-320 s or a phase of 1e308 s
    # would otherwise overflow the sine's argument (no arrivals at all, and numpy warnings).
    phase = math.fmod(phase, period)
    rel = 1.0 + amp * np.sin(2.0 * np.pi * (np.fmod(candidates - phase, period) / period))
    keep = rng.random(candidates.shape[0]) * (1.0 + amp) < rel
    return candidates[keep]


# ---------------------------------------------------------------------------------------------
# popularity


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Zipf popularity of ``n`` tasks: ``w[k] = (k + 1) ** -s / sum_j (j + 1) ** -s``.

    ``k = 0 .. n - 1``; the weights sum to 1 and are non-increasing in ``k`` (index 0 is the
    most popular). ``s == 0`` gives uniform weights. Requires ``n >= 1`` and ``s >= 0``.
    """
    n = _count("n", n)
    s = _nonneg("s", s)
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    return w / w.sum()


def split_rate(total_rps: float, n: int, popularity: str | float) -> np.ndarray:
    """Per-task rates (``float64``, length ``n``, non-increasing) that sum to ``total_rps``.

    ``popularity`` is ``"uniform"`` (each ``total_rps / n``) or a Zipf exponent ``s >= 0``
    (``total_rps * zipf_weights(n, s)``; 0 is uniform too). To make the sum exact in floating
    point (``np.sum``, ``math.fsum`` or any other order gives exactly ``total_rps``), every rate
    is a whole multiple of ``q = np.spacing(total_rps)`` (one ulp of the total): each is
    ``floor(ideal / q) * q`` and the leftover ulps go, one each, to the rates with the largest
    rounded-off remainders. So each rate is within ``2 * q`` (about ``4.4e-16 * total_rps``)
    of its ideal value. Requires ``total_rps >= 0`` and ``n >= 1``.
    """
    total = _nonneg("total_rps", total_rps)
    n = _count("n", n)
    return _exact_split(total, zipf_weights(n, _exponent(popularity)))


def _exact_split(total: float, weights: np.ndarray) -> np.ndarray:
    """``total * weights`` rounded to multiples of ``spacing(total)`` that sum exactly to it.

    ``weights`` are non-negative and sum to 1. All partial sums are multiples of the quantum
    below ``2**53`` quanta, hence exact in float64 in any order.
    """
    if total == 0:
        return np.zeros(weights.shape[0])
    q = float(np.spacing(total))
    units = int(round(total / q))  # total is an exact multiple of its own ulp
    ideal = weights * float(units)
    base = np.floor(ideal).astype(np.int64)
    missing = units - int(base.sum())
    if 0 <= missing <= base.shape[0]:
        by_remainder = np.argsort(-(ideal - base), kind="stable")
        base[by_remainder[:missing]] += 1
    else:  # float error in ideal beyond one unit per rate: settle it on the largest rate
        base[int(np.argmax(base))] += missing
    return base.astype(np.float64) * q


def _exponent(popularity: str | float) -> float:
    """The Zipf exponent ``popularity`` stands for (``"uniform"``: 0)."""
    bad = f"popularity must be 'uniform' or a Zipf exponent >= 0, got {popularity!r}"
    if isinstance(popularity, str):
        if popularity.strip().lower() == "uniform":
            return 0.0
        raise ValueError(bad)
    if isinstance(popularity, bool) or not isinstance(popularity, (int, float, np.number)):
        raise ValueError(bad)
    return _nonneg("popularity (Zipf exponent)", popularity)


def _count(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)

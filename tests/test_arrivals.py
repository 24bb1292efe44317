"""Synthetic arrival processes: rates, burst structure, diurnal shape, rate splits, determinism.

Statistical checks use fixed seeds and tolerances of at least ~4 standard errors, so they hold
for essentially any seed, not just the ones used here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmplex_sim import arrivals


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def check_times(t: np.ndarray, start: float, end: float) -> None:
    assert t.dtype == np.float64
    assert np.all(np.diff(t) >= 0)
    if t.shape[0]:
        assert t[0] >= start and t[-1] < end


# ---------------------------------------------------------------------------------------------
# poisson / gamma


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_and_gamma_rate_and_cv(seed):
    t = arrivals.poisson(50.0, 10.0, 410.0, rng(seed))  # expected 20,000
    check_times(t, 10.0, 410.0)
    assert abs(t.shape[0] - 20_000) < 4 * math.sqrt(20_000)
    g = arrivals.gamma(50.0, 3.0, 10.0, 410.0, rng(seed))
    check_times(g, 10.0, 410.0)
    gaps = np.diff(g)
    assert 2.6 < gaps.std() / gaps.mean() < 3.4
    assert abs(g.shape[0] - 20_000) < 0.1 * 20_000


def test_empty_cases():
    assert arrivals.poisson(0.0, 0.0, 10.0, rng()).shape == (0,)
    assert arrivals.poisson(5.0, 10.0, 10.0, rng()).shape == (0,)
    assert arrivals.gamma(5.0, 2.0, 10.0, 5.0, rng()).shape == (0,)
    assert arrivals.onoff(0.0, 1.0, 1.0, 0.0, 10.0, rng()).shape == (0,)
    assert arrivals.diurnal(0.0, 0.5, 10.0, 0.0, 10.0, rng()).shape == (0,)


# ---------------------------------------------------------------------------------------------
# on/off


@pytest.mark.parametrize("cv", [1.0, 2.0])
def test_onoff_no_arrivals_while_off_exact(cv):
    on, off, start = 2.0, 3.0, 100.0
    t = arrivals.onoff(20.0, on, off, start, 600.0, rng(3), cv=cv, phase_s=0.0)
    check_times(t, start, 600.0)
    # Cycles begin at 100 + 5k; exact float arithmetic (all values are multiples of 2^-k).
    pos = np.mod(t - start, on + off)
    assert np.all(pos < on)
    assert t.shape[0] > 0


def test_onoff_phase_offset_exact():
    # Phase 1.5 into a (2 on, 3 off) cycle: ON at [start - 1.5 + 5k, start + 0.5 + 5k).
    t = arrivals.onoff(20.0, 2.0, 3.0, 0.0, 500.0, rng(4), phase_s=1.5)
    check_times(t, 0.0, 500.0)
    on_start = -1.5 + 5.0 * np.arange(102)
    k = np.searchsorted(on_start, t, side="right") - 1
    assert np.all(t < on_start[k] + 2.0)
    assert np.any(t < 0.5)  # the clipped first ON period is used


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_onoff_mean_rate(seed):
    # Random phase, 1000 s of 10 rps = exactly 200 whole cycles, so 200 s of ON time whatever
    # the phase: the count is Poisson with mean 10,000 (sd 100); tolerance 5 sd.
    t = arrivals.onoff(10.0, 1.0, 4.0, 0.0, 1000.0, rng(seed))
    check_times(t, 0.0, 1000.0)
    assert abs(t.shape[0] - 10_000) < 500
    # Peak rate during ON: 10 * 5 / 1 = 50 rps -> arrivals cluster: gap CV well above 1.
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() > 1.5


def test_onoff_random_phase_is_seeded_and_consistent():
    a = arrivals.onoff(10.0, 1.0, 4.0, 0.0, 200.0, rng(7))
    b = arrivals.onoff(10.0, 1.0, 4.0, 0.0, 200.0, rng(7))
    c = arrivals.onoff(10.0, 1.0, 4.0, 0.0, 200.0, rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Some phase explains every arrival: all positions mod 5 fit in a window of length 1.
    pos = np.sort(np.mod(a, 5.0))
    widest_gap = max(np.max(np.diff(pos)), pos[0] + 5.0 - pos[-1])
    assert widest_gap >= 4.0 - 1e-9


def test_onoff_zero_off_is_plain_poisson_rate():
    t = arrivals.onoff(20.0, 1.0, 0.0, 0.0, 500.0, rng(1))
    assert abs(t.shape[0] - 10_000) < 4 * math.sqrt(10_000)


def test_onoff_validation():
    with pytest.raises(ValueError, match="on_s"):
        arrivals.onoff(1.0, 0.0, 1.0, 0.0, 10.0, rng())
    with pytest.raises(ValueError, match="off_s"):
        arrivals.onoff(1.0, 1.0, -1.0, 0.0, 10.0, rng())
    with pytest.raises(ValueError, match="phase_s"):
        arrivals.onoff(1.0, 1.0, 1.0, 0.0, 10.0, rng(), phase_s=2.0)
    with pytest.raises(ValueError, match="cv"):
        arrivals.onoff(1.0, 1.0, 1.0, 0.0, 10.0, rng(), cv=0.0)
    with pytest.raises(ValueError, match="rate_rps"):
        arrivals.onoff(-1.0, 1.0, 1.0, 0.0, 10.0, rng())


# ---------------------------------------------------------------------------------------------
# diurnal


def quarter_counts(t: np.ndarray, period: float, phase: float) -> tuple[int, int]:
    """Arrivals in the quarter-period centred on the peak, and in the one centred on the trough."""
    x = np.mod(t - phase, period) / period
    peak = int(np.sum((x >= 1 / 8) & (x < 3 / 8)))
    trough = int(np.sum((x >= 5 / 8) & (x < 7 / 8)))
    return peak, trough


@pytest.mark.parametrize("seed,amp,phase", [(0, 0.5, 0.0), (1, 0.8, 3.0), (2, 0.3, 7.5)])
def test_diurnal_peak_vs_trough(seed, amp, phase):
    period, rate = 10.0, 1000.0
    t = arrivals.diurnal(rate, amp, period, 0.0, 100.0, rng(seed), phase_s=phase)
    check_times(t, 0.0, 100.0)
    # Mean rate over whole periods is rate: 100,000 expected (sd ~316).
    assert abs(t.shape[0] - 100_000) < 2_000
    # Mean of 1 + a sin over the peak quarter is 1 + a * 2 sqrt(2) / pi (trough: minus).
    k = 2 * math.sqrt(2) / math.pi
    expected_peak = rate * 100.0 / 4 * (1 + amp * k)
    expected_trough = rate * 100.0 / 4 * (1 - amp * k)
    peak, trough = quarter_counts(t, period, phase)
    assert abs(peak - expected_peak) < 0.03 * expected_peak
    assert abs(trough - expected_trough) < 0.05 * expected_trough
    assert abs(peak / trough - (1 + amp * k) / (1 - amp * k)) < 0.06 * (1 + amp * k) / (1 - amp * k)


def test_diurnal_amplitude_zero_is_poisson():
    t = arrivals.diurnal(50.0, 0.0, 10.0, 0.0, 400.0, rng(5))
    check_times(t, 0.0, 400.0)
    assert abs(t.shape[0] - 20_000) < 4 * math.sqrt(20_000)
    gaps = np.diff(t)
    assert 0.95 < gaps.std() / gaps.mean() < 1.05
    peak, trough = quarter_counts(t, 10.0, 0.0)
    assert abs(peak / trough - 1.0) < 0.06


def test_diurnal_full_amplitude_has_near_empty_trough():
    t = arrivals.diurnal(1000.0, 1.0, 10.0, 0.0, 100.0, rng(6))
    x = np.mod(t, 10.0) / 10.0
    # rate(t) = 2000 * sin^2-like near 3/4: almost nothing within +-1% of the period there.
    near_trough = np.sum(np.abs(x - 0.75) < 0.01)
    near_peak = np.sum(np.abs(x - 0.25) < 0.01)
    assert near_trough < 0.01 * near_peak


def test_diurnal_validation():
    with pytest.raises(ValueError, match="amplitude"):
        arrivals.diurnal(1.0, 1.5, 10.0, 0.0, 10.0, rng())
    with pytest.raises(ValueError, match="amplitude"):
        arrivals.diurnal(1.0, -0.1, 10.0, 0.0, 10.0, rng())
    with pytest.raises(ValueError, match="period_s"):
        arrivals.diurnal(1.0, 0.5, 0.0, 0.0, 10.0, rng())


# ---------------------------------------------------------------------------------------------
# popularity


def test_zipf_weights():
    w = arrivals.zipf_weights(5, 1.0)
    expected = np.array([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-15)
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-15)
    np.testing.assert_allclose(arrivals.zipf_weights(4, 0.0), np.full(4, 0.25), rtol=1e-15)
    assert arrivals.zipf_weights(1, 2.0).tolist() == [1.0]
    with pytest.raises(ValueError):
        arrivals.zipf_weights(0, 1.0)
    with pytest.raises(ValueError):
        arrivals.zipf_weights(3, -1.0)


@pytest.mark.parametrize("total", [1.0, 7.3, 100.0, 0.1, 1234.5678])
@pytest.mark.parametrize("n", [1, 3, 7, 10, 33, 1000])
@pytest.mark.parametrize("popularity", ["uniform", 0.0, 0.9, 1.1, 2.5])
def test_split_rate_sums_exactly(total, n, popularity):
    r = arrivals.split_rate(total, n, popularity)
    assert r.shape == (n,) and r.dtype == np.float64
    assert float(np.sum(r)) == total
    assert math.fsum(r) == total and sum(r.tolist()) == total
    assert np.all(r >= 0) and np.all(np.diff(r) <= 0)
    ideal = total * arrivals.zipf_weights(n, 0.0 if popularity == "uniform" else popularity)
    assert np.all(np.abs(r - ideal) <= 2 * np.spacing(total))


def test_split_rate_shapes():
    np.testing.assert_allclose(arrivals.split_rate(12.0, 4, "uniform"), [3.0] * 4, rtol=1e-14)
    r = arrivals.split_rate(10.0, 50, 1.1)
    np.testing.assert_allclose(r, 10.0 * arrivals.zipf_weights(50, 1.1), rtol=1e-12)
    assert np.all(np.diff(r) <= 0)
    np.testing.assert_allclose(r[0] / r[1:], np.arange(2, 51) ** 1.1, rtol=1e-12)
    with pytest.raises(ValueError, match="popularity"):
        arrivals.split_rate(1.0, 3, "zipfian")
    with pytest.raises(ValueError, match="popularity"):
        arrivals.split_rate(1.0, 3, -0.5)
    with pytest.raises(ValueError, match="n must"):
        arrivals.split_rate(1.0, 0, "uniform")
    with pytest.raises(ValueError, match="total_rps"):
        arrivals.split_rate(-1.0, 3, "uniform")


# ---------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize(
    "make",
    [
        lambda g: arrivals.poisson(5.0, 0.0, 100.0, g),
        lambda g: arrivals.gamma(5.0, 2.0, 0.0, 100.0, g),
        lambda g: arrivals.onoff(5.0, 2.0, 1.0, 0.0, 100.0, g, cv=1.5),
        lambda g: arrivals.diurnal(5.0, 0.7, 20.0, 0.0, 100.0, g, phase_s=4.0),
    ],
)
def test_determinism_per_seed(make):
    a, b, c = make(rng(11)), make(rng(11)), make(rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for t in (a, c):
        check_times(t, 0.0, 100.0)

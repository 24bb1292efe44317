"""The host check of ``fmplex-exec validate``: reference points read from a profile, and the
profile's time rows scaled by the host's speed factor (fmplex_exec/hostcheck.py)."""

from __future__ import annotations

import pytest

from fmplex_exec.hostcheck import SCALED_KINDS, factors, reference_points, scale_profile
from fmplex_sim.latency.profile import read_profile, write_profile

COMMON = {"device": "CPU", "dtype": "fp32", "repeats": 5}


def _profile(path):
    rows = [dict(COMMON, kind="forward", backbone="a", batch=b, seq_len=s, median_ms=10.0 * b + s / 8,
                 p10_ms=9.0 * b, p90_ms=12.0 * b + s)
            for b in (1, 4) for s in (16, 64, 128)]
    rows += [dict(r, threads=1, median_ms=r["median_ms"] * 2, p10_ms=r["p10_ms"] * 2, p90_ms=r["p90_ms"] * 2)
             for r in rows]
    rows += [dict(COMMON, kind="forward", backbone="b", batch=1, seq_len=s, median_ms=s / 2.0,
                  p10_ms=s / 2.5, p90_ms=s / 1.5) for s in (32, 96)]
    rows += [dict(COMMON, kind="forward", backbone="b", batch=4, seq_len=s, median_ms=s * 1.0,
                  p10_ms=s * 0.9, p90_ms=s * 1.1) for s in (32, 96)]
    rows += [dict(COMMON, kind="overhead", backbone="*", batch=b, seq_len=128, median_ms=0.5 * b,
                  p10_ms=0.4 * b, p90_ms=0.6 * b) for b in (1, 4)]
    rows += [dict(COMMON, kind="contention", backbone="a", batch=k, median_ms=10.0 * k, p10_ms=9.0 * k,
                  p90_ms=11.0 * k) for k in (1, 2)]
    rows += [dict(COMMON, kind="load_backbone", backbone="a", bytes=n, median_ms=n / 1e6, p10_ms=n / 1e6,
                  p90_ms=n / 1e6) for n in (10**6, 2 * 10**6)]
    write_profile(path, rows, ["a test profile"])
    return rows


def test_reference_points_take_the_batch_1_row_nearest_the_median_input(tmp_path):
    _profile(tmp_path / "p.csv")
    pts = reference_points(tmp_path / "p.csv", {"a": [10, 50, 70, 90, 200], "b": [20, 30, 40]})
    assert pts == {("a", 0): (64, 10.0 + 8.0), ("a", 1): (64, 36.0), ("b", 0): (32, 16.0)}


def test_scale_profile_multiplies_host_time_rows_only(tmp_path):
    src, dst = tmp_path / "p.csv", tmp_path / "scaled.csv"
    _profile(src)
    f = {("a", 0): 1.5, ("a", 1): 0.8, ("b", 0): 2.0}
    scale_profile(src, dst, f, "scaled for a test")
    before, after = read_profile(src), read_profile(dst)  # still a valid profile
    assert len(before) == len(after)
    assert "# scaled for a test" in dst.read_text() and "# a test profile" in dst.read_text()
    for r0, r1 in zip(before, after):
        assert (r0.kind, r0.backbone, r0.batch, r0.seq_len, r0.threads) == (r1.kind, r1.backbone, r1.batch,
                                                                            r1.seq_len, r1.threads)
        if r0.kind not in SCALED_KINDS:
            want = 1.0  # contention is a ratio, loads time storage
        elif r0.backbone == "*":
            want = (1.5 + 2.0) / 2  # every backbone's: the mean whole-host factor
        else:
            want = f[(r0.backbone, r0.threads or 0)]
        for a, b in ((r0.median_ms, r1.median_ms), (r0.p10_ms, r1.p10_ms), (r0.p90_ms, r1.p90_ms)):
            assert b == pytest.approx(a * want, rel=1e-6)


def test_factors_are_the_mean_of_the_two_checks_over_the_one_at_profile_time():
    ref = {("a", 0): 20.0, ("a", 1): 40.0, ("b", 0): 10.0}
    got = factors(ref, {("a", 0): 22.0, ("a", 1): 40.0, ("b", 0): 9.4},
                  {("a", 0): 26.0, ("a", 1): 36.0, ("b", 0): 9.0})
    assert got[("a", 0)] == pytest.approx((1.2, 1.2))  # slower by 20%: applied
    assert got[("a", 1)] == pytest.approx((0.95, 1.0))  # within the check's own noise: none
    assert got[("b", 0)] == pytest.approx((0.92, 1.0))
    assert factors({("a", 0): 20.0}, {("a", 0): 17.0}, {("a", 0): 17.0})[("a", 0)] == pytest.approx((0.85, 0.85))

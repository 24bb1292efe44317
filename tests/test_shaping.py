"""Trace shaping: windows, rate and burstiness scaling, task selection and assignment.

Statistical checks use fixed seeds and tolerances of at least ~4 standard errors, so they hold
for essentially any seed, not just the ones used here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmplex_sim.arrivals import zipf_weights
from fmplex_sim.traces import shaping
from fmplex_sim.traces.base import Trace


def make_trace(arrival, task=None, names=(), span=None, backbone=None, bb_names=()) -> Trace:
    arrival = np.asarray(arrival, dtype=np.float64)
    n = arrival.shape[0]
    return Trace(
        source="t",
        format="test",
        arrival_s=arrival,
        input_len=np.arange(100, 100 + n, dtype=np.int32),  # unique: tracks each request
        output_len=np.arange(n, dtype=np.int32),
        task=None if task is None else np.asarray(task, dtype=np.int32),
        task_names=tuple(names),
        backbone=None if backbone is None else np.asarray(backbone, dtype=np.int32),
        backbone_names=tuple(bb_names),
        span_s=float(arrival[-1]) if span is None and n else (span or 0.0),
    )


def poisson_times(n: int, rate: float, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


def gap_cv(times: np.ndarray) -> float:
    gaps = np.diff(times)
    return float(gaps.std() / gaps.mean())


TEN = make_trace(np.arange(10.0), task=[0, 1] * 5, names=("a", "b"), span=10.0)


# ---------------------------------------------------------------------------------------------
# window


def test_window_selects_and_shifts_exactly():
    w = shaping.window(TEN, 3.0, 4.0)
    assert w.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert w.input_len.tolist() == [103, 104, 105, 106]
    assert w.output_len.tolist() == [3, 4, 5, 6]
    assert w.task.tolist() == [1, 0, 1, 0] and w.task_names == ("a", "b")
    assert w.span_s == 4.0


def test_window_open_ended_and_half_open():
    w = shaping.window(TEN, 7.0)
    assert w.arrival_s.tolist() == [0.0, 1.0, 2.0] and w.span_s == 3.0
    w = shaping.window(TEN, 2.5, 2.5)  # [2.5, 5): 3 and 4, not 5
    assert w.arrival_s.tolist() == [0.5, 1.5] and w.span_s == 2.5
    w = shaping.window(TEN, 8.5, 10.0)  # may reach past the end: span is the duration asked
    assert w.arrival_s.tolist() == [0.5] and w.span_s == 10.0
    assert shaping.window(TEN, 0.0).arrival_s.tolist() == TEN.arrival_s.tolist()
    assert TEN.arrival_s.tolist() == list(range(10))  # input untouched


@pytest.mark.parametrize("start,duration", [(-1.0, None), (10.0, None), (11.0, 2.0),
                                            (2.0, 0.0), (2.0, -1.0), (float("nan"), None),
                                            (1.0, float("inf"))])
def test_window_errors(start, duration):
    with pytest.raises(ValueError, match="window"):
        shaping.window(TEN, start, duration)


# ---------------------------------------------------------------------------------------------
# rate, max requests


def test_scale_rate_exact():
    t = make_trace([0.0, 1.0, 3.0, 7.0], span=8.0)
    s = shaping.scale_rate(t, 2.0)
    assert s.arrival_s.tolist() == [0.0, 0.5, 1.5, 3.5] and s.span_s == 4.0
    assert s.input_len.tolist() == t.input_len.tolist()
    s = shaping.scale_rate(t, 0.5)
    assert s.arrival_s.tolist() == [0.0, 2.0, 6.0, 14.0] and s.span_s == 16.0
    assert t.arrival_s.tolist() == [0.0, 1.0, 3.0, 7.0]


@pytest.mark.parametrize("factor", [0.0, -2.0, float("inf"), float("nan")])
def test_scale_rate_errors(factor):
    with pytest.raises(ValueError, match="rate factor"):
        shaping.scale_rate(TEN, factor)


def test_max_requests():
    m = shaping.max_requests(TEN, 4)
    assert m.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert m.task.tolist() == [0, 1, 0, 1] and m.input_len.tolist() == [100, 101, 102, 103]
    assert m.span_s == 4.0  # arrival time of the first dropped request
    assert shaping.max_requests(TEN, 10) is TEN
    assert shaping.max_requests(TEN, 1000) is TEN


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_max_requests_errors(n):
    with pytest.raises(ValueError, match="max requests"):
        shaping.max_requests(TEN, n)


# ---------------------------------------------------------------------------------------------
# burstiness


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("factor,low,high", [(2.0, 1.8, 2.2), (0.5, 0.4, 0.6), (3.0, 2.7, 3.3)])
def test_burstiness_scales_cv_keeps_count_first_last(seed, factor, low, high):
    times = 5.0 + poisson_times(20_000, 100.0, seed)
    t = make_trace(times, span=times[-1] + 1.0)
    base_cv = gap_cv(times)
    assert 0.97 < base_cv < 1.03
    out = shaping.scale_burstiness(t, factor, np.random.default_rng(100 + seed))
    assert len(out) == len(t)
    assert out.arrival_s[0] == times[0] and out.arrival_s[-1] == times[-1]
    assert out.span_s == t.span_s
    assert np.all(np.diff(out.arrival_s) >= 0)
    assert low <= gap_cv(out.arrival_s) <= high
    assert abs(gap_cv(out.arrival_s) / base_cv - factor) < 0.1 * factor
    # Lengths ride along in order (a single stream: the i-th request keeps the i-th lengths).
    assert out.input_len.tolist() == t.input_len.tolist()


def test_burstiness_factor_one_and_determinism():
    times = poisson_times(500, 10.0, 0)
    t = make_trace(times)
    assert shaping.scale_burstiness(t, 1.0, np.random.default_rng(0)) is t
    a = shaping.scale_burstiness(t, 2.0, np.random.default_rng(5))
    b = shaping.scale_burstiness(t, 2.0, np.random.default_rng(5))
    c = shaping.scale_burstiness(t, 2.0, np.random.default_rng(6))
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert np.array_equal(t.arrival_s, times)  # input untouched


def test_burstiness_per_task_streams():
    rng = np.random.default_rng(9)
    streams = [5.0 * k + poisson_times(n, rate, k) for k, (n, rate) in
               enumerate([(6000, 30.0), (3000, 15.0), (1000, 5.0)])]
    times = np.concatenate(streams)
    task = np.concatenate([np.full(s.shape[0], k) for k, s in enumerate(streams)])
    order = np.argsort(times, kind="stable")
    t = make_trace(times[order], task=task[order], names=("x", "y", "z"),
                   backbone=task[order] % 2, bb_names=("b0", "b1"))
    out = shaping.scale_burstiness(t, 2.0, rng)
    assert np.all(np.diff(out.arrival_s) >= 0)
    assert out.task_names == t.task_names and out.backbone_names == t.backbone_names
    assert np.bincount(out.task).tolist() == np.bincount(t.task).tolist()
    np.testing.assert_array_equal(out.backbone, out.task % 2)  # rows keep their backbone
    for k in range(3):
        before, after = t.arrival_s[t.task == k], out.arrival_s[out.task == k]
        assert after[0] == before[0] and after[-1] == before[-1]
        # each stream's CV doubles (per-stream, not over the merged trace)
        assert abs(gap_cv(after) / gap_cv(before) - 2.0) < 0.35
        # the stream's requests keep their lengths, in order
        assert out.input_len[out.task == k].tolist() == t.input_len[t.task == k].tolist()


def test_burstiness_short_and_regular_streams_unchanged():
    # task 0: 2 requests (too short); task 1: equal gaps (CV 0); task 2: irregular, changes.
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.5, 7.0, 9.5, 9.6]
    task = [0, 1, 2, 1, 0, 1, 2, 2, 2, 2]
    t = make_trace(times, task=task, names=("a", "b", "c"))
    out = shaping.scale_burstiness(t, 2.5, np.random.default_rng(0))
    np.testing.assert_array_equal(out.arrival_s[out.task == 0], [0.0, 4.0])
    np.testing.assert_array_equal(out.arrival_s[out.task == 1], [1.0, 3.0, 5.0])
    c = out.arrival_s[out.task == 2]
    assert c[0] == 2.0 and c[-1] == 9.6 and not np.array_equal(c, [2.0, 5.5, 7.0, 9.5, 9.6])


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan"), float("inf")])
def test_burstiness_errors(factor):
    with pytest.raises(ValueError, match="burstiness factor"):
        shaping.scale_burstiness(TEN, factor, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# task selection and ranking

# counts a=2, b=2, c=3, d=0; first appearance b (row 0), c (row 1), a (row 2)
POP = make_trace(np.arange(7.0), task=[1, 2, 0, 2, 1, 0, 2], names=("a", "b", "c", "d"),
                 span=8.0, backbone=[0, 1, 1, 0, 0, 1, 1], bb_names=("m0", "m1"))


def test_top_tasks_popularity_order_and_reindex():
    top = shaping.top_tasks(POP, 2)
    assert top.task_names == ("c", "b")
    assert top.arrival_s.tolist() == [0.0, 1.0, 3.0, 4.0, 6.0]
    assert top.task.tolist() == [1, 0, 0, 1, 0]
    assert top.backbone.tolist() == [0, 1, 0, 0, 1] and top.backbone_names == ("m0", "m1")
    assert top.input_len.tolist() == [100, 101, 103, 104, 106]
    assert top.span_s == 8.0 and top.task.dtype == np.int32
    one = shaping.top_tasks(POP, 1)
    assert one.task_names == ("c",) and one.arrival_s.tolist() == [1.0, 3.0, 6.0]
    every = shaping.top_tasks(POP, 10)  # d has no request: dropped
    assert every.task_names == ("c", "b", "a") and len(every) == 7
    assert [every.task_names[i] for i in every.task] == [POP.task_names[i] for i in POP.task]


def test_rank_tasks_keeps_all_rows_and_names():
    r = shaping.rank_tasks(POP)
    assert r.task_names == ("c", "b", "a", "d")
    assert len(r) == len(POP) and r.arrival_s.tolist() == POP.arrival_s.tolist()
    assert [r.task_names[i] for i in r.task] == [POP.task_names[i] for i in POP.task]
    assert r.task.tolist() == [1, 0, 2, 0, 1, 2, 0]
    assert r.backbone.tolist() == POP.backbone.tolist()


def test_task_selection_errors():
    no_tasks = make_trace(np.arange(5.0))
    with pytest.raises(ValueError, match="task ids"):
        shaping.top_tasks(no_tasks, 2)
    with pytest.raises(ValueError, match="task ids"):
        shaping.rank_tasks(no_tasks)
    with pytest.raises(ValueError, match="top tasks"):
        shaping.top_tasks(POP, 0)


# ---------------------------------------------------------------------------------------------
# task assignment

BIG = make_trace(np.arange(20_000) * 0.01)


def test_assign_tasks_deterministic_per_seed():
    a = shaping.assign_tasks(BIG, 8, np.random.default_rng(1), zipf=1.1)
    b = shaping.assign_tasks(BIG, 8, np.random.default_rng(1), zipf=1.1)
    c = shaping.assign_tasks(BIG, 8, np.random.default_rng(2), zipf=1.1)
    np.testing.assert_array_equal(a.task, b.task)
    assert not np.array_equal(a.task, c.task)
    assert a.task.dtype == np.int32 and a.task_names == tuple(str(k) for k in range(8))
    assert a.arrival_s is BIG.arrival_s and a.input_len is BIG.input_len
    assert BIG.task is None  # input untouched
    u = shaping.assign_tasks(BIG, 8, np.random.default_rng(1))
    z = shaping.assign_tasks(BIG, 8, np.random.default_rng(1), zipf=0.0)
    np.testing.assert_array_equal(u.task, z.task)  # None and 0 are both uniform


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assign_tasks_uniform_shares(seed):
    out = shaping.assign_tasks(BIG, 4, np.random.default_rng(seed))
    shares = np.bincount(out.task, minlength=4) / len(out)
    # sd of a share: sqrt(0.25 * 0.75 / 20000) ~ 0.003; tolerance 0.015
    assert np.all(np.abs(shares - 0.25) < 0.015)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assign_tasks_zipf_shares(seed):
    out = shaping.assign_tasks(BIG, 10, np.random.default_rng(seed), zipf=1.1)
    counts = np.bincount(out.task, minlength=10)
    shares = counts / len(out)
    # largest share ~0.37, sd ~0.0034; tolerance 0.015 absolute
    assert np.all(np.abs(shares - zipf_weights(10, 1.1)) < 0.015)
    assert int(np.argmax(counts)) == 0
    assert counts[0] > counts[1] > counts[3] > counts[9]


def test_assign_tasks_errors():
    with pytest.raises(ValueError, match="without task ids"):
        shaping.assign_tasks(POP, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="number of tasks"):
        shaping.assign_tasks(BIG, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="zipf"):
        shaping.assign_tasks(BIG, 3, np.random.default_rng(0), zipf=-1.0)
    with pytest.raises(ValueError, match="zipf"):
        shaping.assign_tasks(BIG, 3, np.random.default_rng(0), zipf=math.nan)


def test_pipeline_in_documented_order():
    rng = np.random.default_rng(3)
    t = make_trace(poisson_times(5000, 50.0, 7), span=None)
    t = shaping.window(t, 10.0, 60.0)
    t = shaping.assign_tasks(t, 5, rng, zipf=1.0)
    t = shaping.scale_burstiness(t, 2.0, rng)
    t = shaping.scale_rate(t, 2.0)
    t = shaping.max_requests(t, 1000)
    assert len(t) == 1000 and t.span_s <= 30.0
    assert np.all(np.diff(t.arrival_s) >= 0) and t.arrival_s[0] >= 0
    assert t.duration_s == t.span_s

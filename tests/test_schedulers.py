"""Batch schedulers (fifo, rr, wfq, vtc, bfq), driven directly with hand-made requests.

The fake instance's latency model is a deterministic function of the batch shape, and the
driver reports exactly that estimate as the measured service time, so every timeline is exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fmplex_sim.policies.scheduling import (
    SCHEDULERS,
    InstanceView,
    Scheduler,
    TaskQueues,
    make_scheduler,
)
from fmplex_sim.policies.scheduling.base import charge_shares
from fmplex_sim.records import Batch, Request, Wait

NAMES = ["fifo", "rr", "wfq", "vtc", "bfq"]
FAIR = ["bfq", "wfq", "vtc"]


def unit_est(rows: int, seq_len: int, n_adapters: int) -> float:
    """1 s per pass plus 1 s per row: easy to compute by hand."""
    return 1.0 + rows


def small_est(rows: int, seq_len: int, n_adapters: int) -> float:
    """1 ms plus 0.1 ms per row."""
    return 0.001 + 0.0001 * rows


def token_est(rows: int, seq_len: int, n_adapters: int) -> float:
    """1 ms per pass plus 10 us per padded token: service grows with the batch's tokens."""
    return 0.001 + 0.00001 * rows * seq_len


def view(max_batch: int = 2, max_batch_tokens: int = 10_000, est=unit_est) -> InstanceView:
    return InstanceView(max_batch=max_batch, max_batch_tokens=max_batch_tokens, estimate=est)


class Reqs:
    """Request factory with unique, increasing ids."""

    def __init__(self) -> None:
        self.next_id = 0

    def __call__(self, task: str, arrival_s: float = 0.0, input_len: int = 10, output_len=0):
        r = Request(self.next_id, task, arrival_s, input_len, output_len)
        self.next_id += 1
        return r


def run(sched: Scheduler, v: InstanceView, arrivals: list[Request], now: float = 0.0,
        max_steps: int = 10_000) -> list[Batch]:
    """Event loop: arrivals are enqueued at their arrival time (also while a batch runs, before
    its on_batch_done); a batch's service is the view's estimate; Wait sleeps until until_s or
    the next arrival. Stops when nothing is queued and nothing is left to arrive."""
    pending = sorted(arrivals, key=lambda r: (r.arrival_s, r.id))
    i = 0
    batches: list[Batch] = []
    for _ in range(max_steps):
        while i < len(pending) and pending[i].arrival_s <= now:
            sched.enqueue(pending[i], pending[i].arrival_s)
            i += 1
        d = sched.schedule(now, v)
        if d is None:
            if i == len(pending):
                return batches
            now = pending[i].arrival_s
            continue
        if isinstance(d, Wait):
            assert d.until_s > now
            now = min(d.until_s, pending[i].arrival_s) if i < len(pending) else d.until_s
            continue
        batches.append(d)
        service = v.estimate(d.size, d.seq_len, len(d.task_rows()))
        while i < len(pending) and pending[i].arrival_s <= now + service:
            sched.enqueue(pending[i], pending[i].arrival_s)
            i += 1
        sched.on_batch_done(d, service, now + service)
        now += service
    raise AssertionError("scheduler did not drain")


def ids(batches: list[Batch]) -> list[list[int]]:
    return [[r.id for r in b.requests] for b in batches]


def make(name: str, tasks: dict[str, float] | list[str], slo_s: float = 100.0, **kw) -> Scheduler:
    s = make_scheduler(name, **kw)
    weights = tasks if isinstance(tasks, dict) else {t: 1.0 for t in tasks}
    for t, w in weights.items():
        s.add_task(t, weight=w, slo_s=slo_s)
    return s


# --------------------------------------------------------------------------------------------
# package surface
# --------------------------------------------------------------------------------------------


def test_registry_and_factory():
    assert set(NAMES) <= set(SCHEDULERS.names())
    for n in NAMES:
        s = make_scheduler(n)
        assert isinstance(s, Scheduler) and s.name == n
        assert isinstance(s.queues, TaskQueues)
    assert make_scheduler("fifo").cross_task is True
    assert make_scheduler("fifo", cross_task=False).cross_task is False
    assert make_scheduler("bfq", max_wait_s=0.5).max_wait_s == 0.5
    with pytest.raises(KeyError, match="bfq"):
        make_scheduler("no-such-scheduler")


# --------------------------------------------------------------------------------------------
# 1. exact hand-made timelines
# --------------------------------------------------------------------------------------------


def test_fifo_global_order_with_token_cap():
    """Rows in global arrival order; a longer row recomputes the cap (rows*len <= 60)."""
    q = Reqs()
    arr = [q("A", 0.0, 10), q("B", 0.1, 10), q("A", 0.2, 30), q("C", 0.3, 10), q("B", 0.4, 10)]
    s = make("fifo", ["A", "B", "C"])
    got = run(s, view(max_batch=3, max_batch_tokens=60), arr, now=1.0)
    # [0,1]: adding id 2 (len 30) would give 3 rows x 30 = 90 > 60.
    # [2,3]: 2 x 30 = 60 fits; id 4 would be 3 x 30.
    assert ids(got) == [[0, 1], [2, 3], [4]]
    assert [b.leader for b in got] == [None, None, None]


def test_fifo_single_task_batches():
    """cross_task=False: the oldest request's task is served alone, FIFO up to the cap."""
    q = Reqs()
    arr = [q("A", 0.0, 10), q("B", 0.1, 10), q("A", 0.2, 30), q("C", 0.3, 10), q("B", 0.4, 10)]
    s = make("fifo", ["A", "B", "C"], cross_task=False)
    got = run(s, view(max_batch=3, max_batch_tokens=60), arr, now=1.0)
    assert ids(got) == [[0, 2], [1, 4], [3]]
    assert [b.leader for b in got] == ["A", "B", "C"]


def test_fifo_interleaved_arrivals():
    q = Reqs()
    arr = [q("A", 0.0), q("B", 0.0), q("A", 0.0), q("C", 0.0), q("A", 0.0), q("B", 0.0),
           q("A", 0.0)]
    got = run(make("fifo", ["A", "B", "C"]), view(max_batch=2), arr)
    assert ids(got) == [[0, 1], [2, 3], [4, 5], [6]]


def test_rr_cycles_in_add_order_and_picks_up_late_task():
    """A, B, C; B's only request arrives while A's first batch runs (t=2.5 < 3)."""
    q = Reqs()
    a0, a1, a2, c0 = q("A"), q("A"), q("A"), q("C")
    b0 = q("B", 2.5)
    s = make("rr", ["A", "B", "C"])
    got = run(s, view(max_batch=2), [a0, a1, a2, c0, b0])
    assert ids(got) == [[a0.id, a1.id], [b0.id], [c0.id], [a2.id]]
    assert [b.leader for b in got] == ["A", "B", "C", "A"]


def test_rr_skips_idle_tasks_and_pointer_survives_removal():
    q = Reqs()
    s = make("rr", ["A", "B", "C", "D"])
    for t in "ABCD":
        for _ in range(2):
            s.enqueue(q(t), 0.0)
    v = view(max_batch=1)
    assert s.schedule(0, v).leader == "A"
    assert s.schedule(0, v).leader == "B"
    s.remove_task("C")  # the pointer was on C: D is next
    assert s.schedule(0, v).leader == "D"
    assert s.schedule(0, v).leader == "A"
    s.remove_task("A")  # the pointer was past A, on B
    assert s.schedule(0, v).leader == "B"
    assert s.schedule(0, v).leader == "D"
    assert s.schedule(0, v) is None


def test_wfq_weighted_finish_tags():
    """A (w=2) x4, B (w=1) x2, C (w=1) x1, max_batch 2, cost = 1 + rows.

    tags round 1: A 0+3/2=1.5, B 0+3=3, C 0+2=2  -> A;  F_A = 1.5
    round 2:      A 1.5+1.5=3, B 3, C 2           -> C;  F_C = 2
    round 3:      A 3, B 3 (tie: add order)       -> A;  F_A = 3
    round 4:      B                               -> B
    """
    q = Reqs()
    a = [q("A") for _ in range(4)]
    b = [q("B") for _ in range(2)]
    c = [q("C")]
    s = make("wfq", {"A": 2.0, "B": 1.0, "C": 1.0})
    got = run(s, view(max_batch=2), a + b + c)
    assert ids(got) == [[a[0].id, a[1].id], [c[0].id], [a[2].id, a[3].id], [b[0].id, b[1].id]]
    assert s.finish_tags == pytest.approx({"A": 3.0, "B": 3.0, "C": 2.0})


def test_rr_same_workload_ignores_weights():
    q = Reqs()
    a = [q("A") for _ in range(4)]
    b = [q("B") for _ in range(2)]
    c = [q("C")]
    got = run(make("rr", {"A": 2.0, "B": 1.0, "C": 1.0}), view(max_batch=2), a + b + c)
    assert ids(got) == [[a[0].id, a[1].id], [b[0].id, b[1].id], [c[0].id], [a[2].id, a[3].id]]


def test_vtc_row_by_row_lowest_counter():
    """A (w=1) 3x10 tok, B (w=1) 30 then 5 tok, C (w=2) 3x20 tok; max_batch 3.

    batch 1: A0 (c_A=10), B0 (c_B=30), C0 (c_C=10)
    batch 2: A1 (A 10 ties C 10, add order; c_A=20), C1 (c_C=20), A2 (tie 20, add order)
    batch 3: C2 (20 < 30), B1
    """
    q = Reqs()
    a = [q("A", 0, 10) for _ in range(3)]
    b = [q("B", 0, 30), q("B", 0, 5)]
    c = [q("C", 0, 20) for _ in range(3)]
    s = make("vtc", {"A": 1.0, "B": 1.0, "C": 2.0})
    got = run(s, view(max_batch=3), a + b + c)
    assert ids(got) == [
        [a[0].id, b[0].id, c[0].id],
        [a[1].id, c[1].id, a[2].id],
        [c[2].id, b[1].id],
    ]
    assert s.counters == pytest.approx({"A": 30.0, "B": 35.0, "C": 30.0})


def test_vtc_single_task_batches():
    """cross_task=False: lowest counter (ties: add order) served alone, each row charged."""
    q = Reqs()
    a = [q("A", 0, 10) for _ in range(3)]
    b = [q("B", 0, 30), q("B", 0, 5)]
    c = [q("C", 0, 20) for _ in range(3)]
    late_a = q("A", 0.5, 10)  # arrives while A's batch runs; A (30) is still the highest
    s = make("vtc", {"A": 1.0, "B": 1.0, "C": 2.0}, cross_task=False)
    got = run(s, view(max_batch=3), a + b + c + [late_a])
    # 1: all 0 -> A (c_A=30). 2: B 0, C 0 -> B (c_B=35). 3: C (c_C=30). 4: A.
    assert ids(got) == [[r.id for r in a], [r.id for r in b], [r.id for r in c], [late_a.id]]


def test_bfq_leader_fill_and_lift():
    """A, B, C equal weights, max_batch 3, cost = 1 + rows, token share charging. Row fill: a
    row raises its task's projected v by a full batch's cost per row, 4/3.

    batch 1 (t=0..4): all at 0, ties by add order: a0 (A to 4/3), b0 (B to 4/3), c0 (C empty).
        charge 4 s, 4/3 each: v_A = v_B = v_C = 4/3.
    batch 2 (t=4..8): A and B tie at 4/3, A first: a1 (A empty), then b1 b2.
        a2 arrives at t=5 (A idle): lift to min(v_B) = 4/3, which v_A already is.
        charge 4 s: v_A = 8/3, v_B = 4/3 + 8/3 = 4.
    batch 3: A (8/3) < B (4): a2 + b3; 3 s, half to B.
    """
    q = Reqs()
    a0, a1 = q("A"), q("A")
    b = [q("B") for _ in range(4)]
    c0 = q("C")
    a2 = q("A", 5.0)
    s = make("bfq", ["A", "B", "C"])
    got = run(s, view(max_batch=3), [a0, a1, *b, c0, a2])
    assert ids(got) == [
        [a0.id, b[0].id, c0.id],
        [a1.id, b[1].id, b[2].id],
        [a2.id, b[3].id],
    ]
    assert [g.leader for g in got] == ["A", "A", "A"]
    assert s.virtual_service["B"] == pytest.approx(4 + 3 / 2)  # batch 3: 2 rows, 3 s, half


def test_bfq_a_task_less_than_a_batch_behind_gets_rows_of_the_next_batch():
    """The flood and the heavy task are backlogged with full queues; a light task becomes
    backlogged and is lifted to their v. It ties with the leader, which is ahead of it in add
    order, and still gets its row into the next batch (a leader-first fill gave the whole batch
    to the flood and kept the light request waiting a batch more)."""
    q = Reqs()
    s = make("bfq", ["flood", "heavy", "light"])
    for t in ("flood", "heavy"):
        for _ in range(8):
            s.enqueue(q(t), 0.0)
    light = q("light", 0.0)
    s.enqueue(light, 0.0)
    assert set(s.virtual_service.values()) == {0.0}
    got = s.schedule(0.0, view(max_batch=4))
    assert got.leader == "flood" and light in got.requests
    assert got.task_rows() == {"flood": 2, "heavy": 1, "light": 1}  # flood first, then the ties
    # weights: a task of weight 2 is charged half per row, so it gets two rows per row of the others
    s = make("bfq", {"a": 2.0, "b": 1.0})
    for t in ("a", "b"):
        for _ in range(8):
            s.enqueue(q(t), 0.0)
    assert s.schedule(0.0, view(max_batch=6)).task_rows() == {"a": 4, "b": 2}


# --------------------------------------------------------------------------------------------
# 2. properties of every scheduler
# --------------------------------------------------------------------------------------------

CONFIGS = [(n, ct, 0.0) for n in NAMES for ct in (True, False)] + [("bfq", True, 0.002)]


@pytest.mark.parametrize("name,cross_task,max_wait_s", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariants(name, cross_task, max_wait_s, seed):
    rng = np.random.default_rng(seed)
    tasks = ["t0", "t1", "t2", "t3", "t4"]
    s = make_scheduler(name, cross_task=cross_task, max_wait_s=max_wait_s)
    assert s.schedule(0.0, view()) is None
    for i, t in enumerate(tasks):
        s.add_task(t, weight=float(1 + i % 3), slo_s=float(rng.uniform(0.002, 0.05)))
    v = view(max_batch=4, max_batch_tokens=128, est=small_est)
    assert s.schedule(0.0, v) is None

    q = Reqs()
    arrivals, now = [], 0.0
    for _ in range(300):
        now += float(rng.exponential(0.0003))
        arrivals.append(q(tasks[int(rng.integers(len(tasks)))], now, int(rng.integers(1, 65))))
    removed_at = arrivals[150].arrival_s
    first, second = [r for r in arrivals if r.arrival_s < removed_at], [
        r for r in arrivals if r.arrival_s >= removed_at
    ]
    second = [r for r in second if r.task != "t2"]  # t2 gets nothing after removal

    batches = run(s, v, first)  # drains: nothing queued afterwards
    assert s.schedule(now, v) is None and len(s) == 0
    # queue up some t2 requests, then remove the task before serving them
    doomed = [q("t2", removed_at, 8) for _ in range(3)]
    for r in doomed:
        s.enqueue(r, removed_at)
    returned = s.remove_task("t2")
    assert [r.id for r in returned] == [r.id for r in doomed]
    batches += run(s, v, second, now=removed_at)
    assert s.schedule(1e9, v) is None and len(s) == 0

    served = [r for b in batches for r in b.requests]
    served_ids = [r.id for r in served]
    assert len(served_ids) == len(set(served_ids)), "a request was served twice"
    assert sorted(served_ids) == sorted(r.id for r in first + second)
    assert not set(served_ids) & {r.id for r in doomed}
    for b in batches:
        assert 1 <= b.size <= v.max_batch
        assert b.size * b.seq_len <= v.max_batch_tokens
        if not cross_task:
            assert len(b.task_rows()) == 1
    for t in tasks:  # FIFO within a task
        mine = [r for r in served if r.task == t]
        assert mine == sorted(mine, key=lambda r: (r.arrival_s, r.id))


@pytest.mark.parametrize("name", NAMES)
def test_removed_and_readded_task_is_clean(name):
    q = Reqs()
    s = make(name, ["A", "B"])
    v = view(max_batch=2)
    for _ in range(3):
        s.enqueue(q("A"), 0.0)
        s.enqueue(q("B"), 0.0)
    out = s.remove_task("A")
    assert [r.task for r in out] == ["A"] * 3
    assert s.remove_task("A") == []
    s.add_task("A")
    late = q("A", 1.0)
    s.enqueue(late, 1.0)
    got = run(s, v, [], now=1.0)
    served = [r.id for b in got for r in b.requests]
    assert sorted(served) == sorted([1, 3, 5, late.id])


# --------------------------------------------------------------------------------------------
# 3. weighted fairness, two always-backlogged tasks
# --------------------------------------------------------------------------------------------


def backlogged_run(s: Scheduler, v: InstanceView, weights: dict[str, float], n_batches: int,
                   rng, measure: str, depth: int = 16, now: float = 0.0,
                   start_ids: int = 0) -> tuple[dict[str, float], list[Batch], float]:
    """Keep every task of ``weights`` backlogged (>= ``depth`` queued, random lengths 8..128)
    for ``n_batches`` batches. Returns service per task (``measure``: "service" = token-share
    seconds from charge_shares, "tokens" = input+output tokens served), the batches, and now."""
    q = Reqs()
    q.next_id = start_ids
    got = {t: 0.0 for t in weights}
    batches = []
    for _ in range(n_batches):
        for t in weights:
            while len(s.queues[t]) < depth:
                s.enqueue(q(t, now, int(rng.integers(8, 129))), now)
        d = s.schedule(now, v)
        assert isinstance(d, Batch)
        service = v.estimate(d.size, d.seq_len, len(d.task_rows()))
        s.on_batch_done(d, service, now + service)
        now += service
        batches.append(d)
        if measure == "tokens":
            for t, w in d.task_work().items():
                got[t] += w
        else:
            for t, sh in charge_shares(d, service).items():
                got[t] += sh
    return got, batches, now


def max_batch_cost(v: InstanceView, measure: str) -> float:
    if measure == "tokens":
        return v.max_batch * 128.0
    return v.estimate(v.max_batch, v.max_batch_tokens // v.max_batch, 2)


@pytest.mark.parametrize("name", FAIR)
def test_weighted_share_two_backlogged_tasks(name):
    """Weights A=1, B=3, both always backlogged, random lengths 8..128 (30 seeds, 400 batches).

    Bound: normalized service (service / weight; bfq and wfq: token-share backbone seconds,
    vtc: tokens) of A over B is in [0.9, 1.1], and the absolute gap between the normalized
    services is at most one max batch's cost (max_batch rows at the token cap) / min weight.
    Ignoring the weights would give a normalized ratio of about 3 and a gap growing with N.
    """
    measure = "tokens" if name == "vtc" else "service"
    weights = {"A": 1.0, "B": 3.0}
    v = view(max_batch=8, max_batch_tokens=512, est=token_est)
    bound = max_batch_cost(v, measure) / min(weights.values())
    for seed in range(30):
        s = make(name, weights)
        got, _, _ = backlogged_run(s, v, weights, 400, np.random.default_rng(seed), measure)
        na, nb = got["A"] / weights["A"], got["B"] / weights["B"]
        assert 0.9 <= na / nb <= 1.1, (seed, na, nb)
        assert abs(na - nb) <= bound, (seed, na, nb, bound)


@pytest.mark.parametrize("name", ["rr", "fifo"])
def test_unweighted_schedulers_fail_the_weighted_bound(name):
    """Sanity check of the bound above: a weight-blind scheduler violates it."""
    weights = {"A": 1.0, "B": 3.0}
    v = view(max_batch=8, max_batch_tokens=512, est=token_est)
    s = make(name, weights)
    got, _, _ = backlogged_run(s, v, weights, 400, np.random.default_rng(0), "service")
    ratio = (got["A"] / weights["A"]) / (got["B"] / weights["B"])
    assert not 0.9 <= ratio <= 1.1


# --------------------------------------------------------------------------------------------
# 4. the lift: no banked credit
# --------------------------------------------------------------------------------------------


def split_after_return(name, weights, returning, *, system_idle=False, seed=0):
    """``returning`` is idle while the other task runs alone for 200 batches, then returns.

    With ``system_idle`` the other task drains and the instance is idle for a while first;
    the other task comes back right after ``returning``. Returns (index of the first batch
    after the return that serves the other task, normalized service over the next batches).
    """
    measure = "tokens" if name == "vtc" else "service"
    other = next(t for t in weights if t != returning)
    v = view(max_batch=8, max_batch_tokens=512, est=token_est)
    rng = np.random.default_rng(seed)
    s = make(name, weights)
    _, _, now = backlogged_run(s, v, {other: weights[other]}, 200, rng, measure)
    if system_idle:
        run(s, v, [], now=now)  # drain
        now += 100.0
    got, batches, _ = backlogged_run(s, v, weights, 200, rng, measure, now=now,
                                     start_ids=10**6)
    first_other = next((i for i, b in enumerate(batches) if other in b.task_rows()), len(batches))
    norm = {t: got[t] / weights[t] for t in weights}
    return first_other, norm, max_batch_cost(v, measure)


@pytest.mark.parametrize("name", FAIR)
@pytest.mark.parametrize("weights", [{"A": 1.0, "B": 1.0}, {"A": 1.0, "B": 3.0},
                                     {"A": 3.0, "B": 1.0}])
@pytest.mark.parametrize("returning", ["A", "B"])
@pytest.mark.parametrize("system_idle", [False, True])
def test_returning_task_cannot_use_banked_credit(name, weights, returning, system_idle):
    """After the return, the task that kept running is served within ceil(w_ret/w_other) + 2
    batches, and over the next 200 batches the normalized services differ by at most 10% and
    by at most two max batch costs / min weight (both directions: returning task A or B,
    heavier or lighter)."""
    other = "A" if returning == "B" else "B"
    first_other, norm, cost = split_after_return(name, weights, returning,
                                                 system_idle=system_idle)
    assert first_other <= math.ceil(weights[returning] / weights[other]) + 2
    assert 0.9 <= norm["A"] / norm["B"] <= 1.1, norm
    assert abs(norm["A"] - norm["B"]) <= 2 * cost / min(weights.values())


@pytest.mark.parametrize("name", ["bfq", "vtc"])
def test_lift_counter_values(name):
    """The returning task's counter is lifted to the lowest backlogged counter, or, when none
    is backlogged, to the counter of the task that went idle last; never lowered."""
    q = Reqs()
    s = make(name, ["A", "B", "C"])
    counters = (lambda: dict(s.virtual_service)) if name == "bfq" else (lambda: s.counters)
    v = view(max_batch=4)
    for _ in range(8):
        s.enqueue(q("A", 0, 10), 0.0)
    run(s, v, [])
    a_val = counters()["A"]
    assert a_val > 0 and counters()["B"] == 0
    s.enqueue(q("B", 50.0), 50.0)  # nobody backlogged: lifted to A (went idle last)
    assert counters()["B"] == pytest.approx(a_val)
    s.enqueue(q("C", 50.0), 50.0)  # B backlogged: lifted to min(B)
    assert counters()["C"] == pytest.approx(a_val)
    run(s, v, [], now=50.0)  # one batch [B, C]: both charged the same, C went idle last
    bc = counters()["C"]
    assert bc > a_val and counters()["B"] == pytest.approx(bc)
    s.enqueue(q("A", 60.0), 60.0)  # nobody backlogged: lifted to C (went idle last)
    assert counters()["A"] == pytest.approx(bc)
    s.add_task("D")  # a new task starts at the lowest backlogged counter
    assert counters()["D"] == pytest.approx(bc)
    s.add_task("A", weight=2.0)  # re-adding a present task does not reset its counter
    assert counters()["A"] == pytest.approx(bc)
    for _ in range(8):
        s.enqueue(q("A", 60.0), 60.0)
    run(s, v, [], now=60.0)
    s.remove_task("D")
    s.add_task("D")  # removed and re-added: starts at the last-idle counter, not at 0
    assert counters()["D"] == pytest.approx(counters()["A"])


# --------------------------------------------------------------------------------------------
# 5. bfq specifics
# --------------------------------------------------------------------------------------------


def test_bfq_leader_first_then_others_by_virtual_service():
    q = Reqs()
    s = make("bfq", ["A", "B", "C", "D"])
    for t, served in [("A", 5.0), ("B", 3.0), ("C", 1.0), ("D", 2.0)]:
        s.on_batch_done(Batch((q(t),)), served, 0.0)
    assert dict(s.virtual_service) == {"A": 5.0, "B": 3.0, "C": 1.0, "D": 2.0}
    reqs = {t: [q(t), q(t)] for t in "CDBA"}  # enqueue lowest first: no lift changes values
    for t in "CDBA":
        for r in reqs[t]:
            s.enqueue(r, 0.0)
    assert dict(s.virtual_service) == {"A": 5.0, "B": 3.0, "C": 1.0, "D": 2.0}
    b = s.schedule(0.0, view(max_batch=5))
    assert b.leader == "C"
    assert [r.id for r in b.requests] == [r.id for r in reqs["C"] + reqs["D"] + reqs["B"][:1]]
    # single-task mode: leader only
    s2 = make("bfq", ["A", "B"], cross_task=False)
    for r in [q("A"), q("B"), q("B")]:
        s2.enqueue(r, 0.0)
    assert s2.schedule(0.0, view(max_batch=5)).task_rows() == {"A": 1}


@pytest.mark.parametrize("light_first,leader", [(False, "A"), (True, "B")])
def test_bfq_light_first_ranks_by_virtual_deadline(light_first, leader):
    """At equal v, plain bfq leads with the task added first; light_first with the task whose
    own queue makes the shorter batch (deadline v + est(its rows) / weight: B 5 + 2, A 5 + 9)."""
    q = Reqs()
    s = make("bfq", ["A", "B"], light_first=light_first)
    for t in "AB":
        s.on_batch_done(Batch((q(t),)), 5.0, 0.0)
    a = [q("A") for _ in range(8)]
    b = q("B")
    for r in [*a, b]:
        s.enqueue(r, 0.0)
    batch = s.schedule(0.0, view(max_batch=8))
    assert batch.leader == leader
    assert batch.requests[0].task == leader


@pytest.mark.parametrize("light_first,rows", [(False, {"B": 1, "A": 7}), (True, {"B": 1, "A": 2})])
def test_bfq_light_first_gives_a_newly_backlogged_task_a_short_batch(light_first, rows):
    """B becomes backlogged while a batch of A runs. Plain bfq fills B's batch to max_batch
    with A's rows; light_first stops at 2x what B's row alone takes (unit_est: 2 s -> 4 s, 3 rows)."""
    q = Reqs()
    s = make("bfq", ["A", "B"], light_first=light_first)
    v = view(max_batch=8)
    for _ in range(20):
        s.enqueue(q("A"), 0.0)
    first = s.schedule(0.0, v)
    assert first.task_rows() == {"A": 8}
    s.enqueue(q("B", 1.0), 1.0)  # arrives while the first batch runs
    s.on_batch_done(first, 9.0, 9.0)
    second = s.schedule(9.0, v)
    assert second.leader == "B"
    assert second.task_rows() == rows
    # the batch after it is a full one again (as far as A's queue allows): B had its turn
    s.on_batch_done(second, v.estimate(second.size, 10, 2), 12.0)
    assert s.schedule(12.0, v).task_rows() == {"A": min(8, 12 - rows["A"])}


def test_bfq_light_first_is_bfq_only():
    from fmplex_sim.config import parse_config
    from fmplex_sim.errors import InputError

    with pytest.raises(InputError, match=r"system.light_first.*only the bfq"):
        parse_config({"system": {"placement": "fmplex", "scheduler": "vtc", "light_first": True},
                      "tasks": [{"name": "a", "backbone": "bert-base"}]}, "lf.yaml")


@pytest.mark.parametrize("slo_s,rows", [(100.0, 8), (5.5, 4), (3.5, 2), (2.0, 1), (1.0, 8)])
def test_bfq_cap_shrinks_with_leader_slack(slo_s, rows):
    """cost = 1 + rows; head arrived at 0, now = 0: rows b fit while 1 + b <= slo.
    slo 1.0 < cost of the head alone: the SLO is lost anyway, so the plain cap applies."""
    q = Reqs()
    s = make("bfq", ["A"], slo_s=slo_s)
    for _ in range(10):
        s.enqueue(q("A"), 0.0)
    b = s.schedule(0.0, view(max_batch=8))
    assert b.size == rows


def test_bfq_slack_shrinks_as_time_passes_and_negative_slack_serves_full():
    q = Reqs()
    s = make("bfq", ["A", "B"], slo_s=10.0)
    for _ in range(6):
        s.enqueue(q("A", 0.0), 0.0)
        s.enqueue(q("B", 0.0), 0.0)
    v = view(max_batch=8)
    assert s.schedule(0.0, v).size == 8  # slack 10: 1 + 8 <= 10
    assert s.schedule(6.0, v).size == 3  # leader B, slack 4: 1 + 3 <= 4
    assert s.schedule(50.0, v).size == 1  # slack < 0: plain cap, only one request left


def test_bfq_slo_cap_counts_adapters():
    """The slack check uses the distinct-task count of the grown batch."""
    q = Reqs()
    est = lambda rows, seq, k: 1.0 + rows + 2.0 * (k - 1)  # noqa: E731
    s = make("bfq", ["A", "B"], slo_s=6.0)
    s.enqueue(q("A"), 0.0)
    for _ in range(5):
        s.enqueue(q("B"), 0.0)
    b = s.schedule(0.0, view(max_batch=8, est=est))
    # A alone: 2. +B: 1 + 2 + 2 = 5 <= 6. +B: 6 <= 6. +B: 7 > 6.
    assert [r.task for r in b.requests] == ["A", "B", "B"]


def test_bfq_bounded_wait_once_then_serves():
    q = Reqs()
    v = view(max_batch=4)
    s = make("bfq", ["A"], slo_s=20.0, max_wait_s=1.0)
    a0 = q("A", 0.0)
    s.enqueue(a0, 0.0)
    d = s.schedule(0.0, v)
    assert d == Wait(until_s=1.0)  # 0 + 1 + cost(4 rows)=5 <= 20
    assert len(s) == 1
    d = s.schedule(1.0, v)  # never twice for the same head
    assert isinstance(d, Batch) and [r.id for r in d.requests] == [a0.id]
    # an arrival during the wait joins the batch
    a1, a2 = q("A", 2.0), q("A", 2.5)
    s.enqueue(a1, 2.0)
    assert s.schedule(2.0, v) == Wait(until_s=3.0)
    s.enqueue(a2, 2.5)
    d = s.schedule(2.5, v)
    assert [r.id for r in d.requests] == [a1.id, a2.id]
    # no wait when waiting would break the head's SLO
    tight = make("bfq", ["A"], slo_s=5.5, max_wait_s=1.0)
    tight.enqueue(q("A", 0.0), 0.0)
    assert isinstance(tight.schedule(0.0, v), Batch)  # 0 + 1 + 5 > 5.5
    # no wait when the batch is already full
    full = make("bfq", ["A"], slo_s=20.0, max_wait_s=1.0)
    for _ in range(4):
        full.enqueue(q("A", 0.0), 0.0)
    assert isinstance(full.schedule(0.0, v), Batch)


def test_bfq_bounded_wait_drains_with_event_loop():
    q = Reqs()
    arr = [q("A", 0.1 * i) for i in range(10)] + [q("B", 0.05 + 0.1 * i) for i in range(10)]
    s = make("bfq", ["A", "B"], slo_s=30.0, max_wait_s=0.3)
    got = run(s, view(max_batch=4), arr)
    assert sorted(r.id for b in got for r in b.requests) == sorted(r.id for r in arr)


def test_bfq_virtual_service_is_read_only():
    s = make("bfq", ["A"])
    with pytest.raises(TypeError):
        s.virtual_service["A"] = 1.0  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# 6. a flooding task cannot crowd out its neighbours under bfq
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cross_task", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_bfq_flooding_task_gets_only_its_share(cross_task, seed, name="bfq"):
    """One task with 10x the queued requests and three neighbours, equal weights, all always
    backlogged: each neighbour's charged service is within 10% of 1/4 of the total."""
    rng = np.random.default_rng(seed)
    q = Reqs()
    tasks = ["flood", "n1", "n2", "n3"]
    s = make(name, tasks, cross_task=cross_task)
    v = view(max_batch=8, max_batch_tokens=512, est=token_est)
    # over the same 0.2 ms the flood sends 2000 requests, each neighbour 200: in arrival
    # order the flood holds 10/13 of the queue (fifo would give it about that share)
    arrivals = [q("flood", k * 1e-7, int(rng.integers(8, 129))) for k in range(2000)]
    for t in tasks[1:]:
        arrivals += [q(t, k * 1e-6 + 5e-8, int(rng.integers(8, 129))) for k in range(200)]
    for r in sorted(arrivals, key=lambda r: (r.arrival_s, r.id)):
        s.enqueue(r, r.arrival_s)
    charged = {t: 0.0 for t in tasks}
    now = 0.01
    for _ in range(150):  # at most 1200 rows: neighbours (200 each) stay backlogged
        b = s.schedule(now, v)
        service = v.estimate(b.size, b.seq_len, len(b.task_rows()))
        s.on_batch_done(b, service, now + service)
        now += service
        for t, sh in charge_shares(b, service).items():
            charged[t] += sh
        assert all(s.queues[t] for t in tasks)
    total = sum(charged.values())
    for t in ["n1", "n2", "n3"]:
        assert abs(charged[t] / total - 0.25) <= 0.1 * 0.25, charged
    if name == "bfq":
        assert dict(s.virtual_service) == pytest.approx(charged)

"""Overload keeps queues bounded: a request that waits longer than its task's ``max_queue_ms``
(default 10 x ``slo_ms``) without starting is rejected with reason ``queue_timeout``.

The engine drops expired requests right before each batch decision, and a request's recorded
``start_s`` is the time of the decision that picked it, so every started request waited at most
its limit: the bound below is exact (up to float rounding), with no service-time tolerance.
Between two decisions of an instance there is at most one batch service time (a finished batch
triggers the next decision), so the requests queued at any moment arrived within the last
``limit + one batch service``: that bounds the queue length.
"""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_cfg
from fmplex_sim.config import parse_config
from fmplex_sim.engine import Engine
from fmplex_sim.metrics import Records, check_accounting, write_requests_csv
from fmplex_sim.policies.scheduling import InstanceView, TaskQueues, make_scheduler
from fmplex_sim.records import Request, Wait
from fmplex_sim.run import build_workload, simulate
from fmplex_sim.specs import DEFAULT_QUEUE_SLOS, TaskSpec

SCHEDULERS = ["fifo", "rr", "wfq", "vtc", "bfq"]
MAX_BATCH = 8
FIXED_S, PER_ROW_S = 0.010, 0.001  # LinearLatency: a full batch takes 18 ms
BATCH_S = FIXED_S + PER_ROW_S * MAX_BATCH
CAPACITY_RPS = MAX_BATCH / BATCH_S  # one device serves at most this (full batches back to back)
LIMIT_A_S = DEFAULT_QUEUE_SLOS * 0.050  # task a: slo 50 ms, no max_queue_ms -> 500 ms
LIMIT_B_S = 0.200  # task b: explicit max_queue_ms, below its default (10 x 100 ms)


def overload_raw(base_raw, load: float, scheduler: str = "bfq", placement: str = "fmplex") -> dict:
    """Two tasks on one device sharing ``load`` x the device's capacity equally."""
    raw = base_raw
    raw["duration_s"], raw["drain_s"] = 2.0, 2.0
    raw["cluster"] = {"device": "H100-80GB", "gpus": 1}
    raw["system"] = {"placement": placement, "scheduler": scheduler, "max_batch": MAX_BATCH}
    a, b = raw["tasks"]
    a.update(slo_ms=50, arrival={"process": "poisson", "rate_rps": load * CAPACITY_RPS / 2})
    b.update(slo_ms=100, max_queue_ms=LIMIT_B_S * 1000,
             arrival={"process": "poisson", "rate_rps": load * CAPACITY_RPS / 2})
    return raw


def run_sampled(cfg, latency, every_s: float = 0.005):
    """Simulate ``cfg``; also sample the number of requests queued over all instances."""
    wl = build_workload(cfg)
    eng = Engine(cfg, wl, latency=latency)
    samples: list[tuple[float, int]] = []

    def sampler():
        while eng.env.now < cfg.duration_s:
            yield eng.env.timeout(every_s)
            samples.append((eng.env.now, sum(i.sched.queues.total for i in eng.instances)))

    eng.env.process(sampler())
    res = eng.run()
    rec = Records(tasks=wl.tasks, task=wl.task, arrival_s=wl.arrival_s, start_s=res.start_s,
                  finish_s=res.finish_s, batch_id=res.batch_id, instances=tuple(res.instances),
                  instance=res.instance, reason=res.reason)
    return rec, samples, eng


def queueing_delay(rec: Records) -> np.ndarray:
    return rec.start_s - rec.arrival_s


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_ten_times_capacity_keeps_every_queue_bounded(base_raw, linear, scheduler):
    cfg = make_cfg(overload_raw(base_raw, 10.0, scheduler))
    out = simulate(cfg, latency=linear(FIXED_S, PER_ROW_S))
    rec, s = out.records, out.summary
    check_accounting(s)
    assert s["requests"]["arrived"] > 15 * CAPACITY_RPS  # about 10x what 2 s can serve
    assert s["requests"]["unfinished"] == 0  # drain_s outlasts the longest allowed wait
    reasons = np.asarray(rec.reason, dtype=object)
    started = np.isfinite(rec.start_s)
    limit = np.where(rec.task == rec.tasks.index("a"), LIMIT_A_S, LIMIT_B_S)
    assert np.all(queueing_delay(rec)[started] <= limit[started] + 1e-9)
    assert set(reasons[~started]) == {"queue_timeout"}
    assert set(reasons[started]) == {""}
    for name in ("a", "b"):  # both tasks hit their own limit
        mine = rec.task == rec.tasks.index(name)
        assert s["per_task"][name]["rejected"] > 0
        assert np.count_nonzero(reasons[mine] == "queue_timeout") == s["per_task"][name]["rejected"]


@pytest.mark.parametrize("scheduler,placement", [("bfq", "fmplex"), ("fifo", "colocate"), ("wfq", "spatial")])
def test_queue_length_stays_below_rate_times_limit(base_raw, linear, scheduler, placement):
    raw = overload_raw(base_raw, 10.0, scheduler, placement)
    cfg = make_cfg(raw)
    rec, samples, eng = run_sampled(cfg, linear(FIXED_S, PER_ROW_S))
    rate = {t.name: t.arrival.rate_rps for t in cfg.tasks}
    # Queued requests arrived within the last limit + the time between two decisions of their
    # instance (see the module docstring): one batch, slower on a slice, and on a device shared
    # by several instances one batch of each. A Poisson count over that window stays below its
    # mean + 6 standard deviations.
    between = len(eng.instances) * BATCH_S / min(i.plan.share for i in eng.instances) + 0.001
    window = {"a": LIMIT_A_S + between, "b": LIMIT_B_S + between}
    mean = sum(rate[t] * window[t] for t in rate)
    bound = mean + 6 * mean**0.5
    peak = max(n for _, n in samples)
    assert peak <= bound
    assert peak > 0.5 * mean  # the queue did fill up to about its bound: the test has teeth
    assert np.all(queueing_delay(rec)[np.isfinite(rec.start_s)] <= LIMIT_A_S + 1e-9)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_below_capacity_nothing_is_rejected(base_raw, linear, scheduler):
    cfg = make_cfg(overload_raw(base_raw, 0.3, scheduler))
    out = simulate(cfg, latency=linear(FIXED_S, PER_ROW_S))
    assert out.summary["requests"]["rejected"] == 0
    assert out.summary["requests"]["completed"] == out.summary["requests"]["arrived"] > 0
    assert set(out.records.reason) == {""}


def test_explicit_max_queue_ms_is_honoured_over_the_default(base_raw, linear):
    out = {}
    for limit_ms in (None, 150.0, 2000.0):
        raw = overload_raw(copy.deepcopy(base_raw), 5.0, "fifo")
        raw["tasks"][1].pop("max_queue_ms")
        if limit_ms is not None:
            raw["tasks"][1]["max_queue_ms"] = limit_ms
        cfg = make_cfg(raw)
        assert cfg.tasks[1].queue_limit_ms == (limit_ms or DEFAULT_QUEUE_SLOS * 100.0)
        rec = simulate(cfg, latency=linear(FIXED_S, PER_ROW_S)).records
        b = (rec.task == rec.tasks.index("b")) & np.isfinite(rec.start_s)
        out[limit_ms] = float(queueing_delay(rec)[b].max())
    assert 0.9 * 0.150 < out[150.0] <= 0.150 + 1e-9  # waits reach the limit, never pass it
    assert 0.150 < out[None] <= 1.000 + 1e-9  # default: 10 x slo_ms = 1 s
    assert out[2000.0] > out[None] * 0.9


def test_requests_csv_marks_timed_out_requests(base_raw, linear, tmp_path):
    cfg = make_cfg(overload_raw(base_raw, 10.0, "bfq"))
    out = simulate(cfg, latency=linear(FIXED_S, PER_ROW_S))
    write_requests_csv(tmp_path / "requests.csv", out.records)
    with open(tmp_path / "requests.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    timed_out = [r for r in rows if r["reason"] == "queue_timeout"]
    assert len(timed_out) == out.summary["requests"]["rejected"] > 0
    assert all(r["status"] == "rejected" and r["start_s"] == r["finish_s"] == "" for r in timed_out)


def test_requests_held_while_their_task_loads_count_their_wait(base_raw, linear):
    # Task b is deployed at 1 s; its backbone copy and extensions take 0.5 s + 0.5 s to load.
    # Requests arriving meanwhile wait in the engine; those older than 100 ms when it is ready
    # (at 2 s) time out, the others start within their limit.
    base_raw["duration_s"], base_raw["drain_s"] = 3.0, 1.0
    base_raw["tasks"][1].update(backbone="vit-base", start_s=1.0, max_queue_ms=100,
                                arrival={"process": "poisson", "rate_rps": 50})
    base_raw["tasks"][1]["extensions"] = [{"kind": "head", "outputs": 2}]
    base_raw["tasks"][1].pop("input_len", None)
    cfg = make_cfg(base_raw)
    rec = simulate(cfg, latency=linear(load_s=0.5)).records
    b = rec.task == rec.tasks.index("b")
    started = b & np.isfinite(rec.start_s)
    assert np.nanmin(rec.start_s[b]) >= 2.0 - 1e-9
    assert np.all(queueing_delay(rec)[started] <= 0.100 + 1e-9)
    early = b & (rec.arrival_s < 2.0 - 0.100)
    assert early.sum() > 10
    assert set(np.asarray(rec.reason, dtype=object)[early]) == {"queue_timeout"}


# ----------------------------------------------------------------------------- config
def test_max_queue_ms_parses_validates_and_round_trips(base_raw):
    base_raw["tasks"][0]["max_queue_ms"] = 250
    cfg = make_cfg(base_raw)
    a, b = cfg.tasks
    assert (a.max_queue_ms, a.queue_limit_ms) == (250.0, 250.0)
    assert (b.max_queue_ms, b.queue_limit_ms) == (None, DEFAULT_QUEUE_SLOS * b.slo_ms)
    back = parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())), cfg.source)
    assert back == cfg and back.tasks[0].to_dict()["max_queue_ms"] == 250.0
    assert "max_queue_ms" not in back.tasks[1].to_dict()  # the default stays implicit
    assert TaskSpec("t", "bert-base", slo_ms=40).queue_limit_ms == 400.0


# ----------------------------------------------------------------------------- policies
def _view() -> InstanceView:
    return InstanceView(max_batch=4, max_batch_tokens=4 * 64, estimate=lambda b, L, k: 0.001 + 0.0001 * b)


@st.composite
def queued_requests(draw):
    """Requests of three tasks in arrival order, per-task limits, and a time to drop at."""
    n = draw(st.integers(1, 40))
    gaps = draw(st.lists(st.floats(0.0, 0.05), min_size=n, max_size=n))
    times = np.cumsum(gaps).tolist()
    tasks = draw(st.lists(st.sampled_from("xyz"), min_size=n, max_size=n))
    lens = draw(st.lists(st.integers(1, 64), min_size=n, max_size=n))
    reqs = [Request(i, f"t{k}", t, ln) for i, (t, k, ln) in enumerate(zip(times, tasks, lens))]
    limits = {f"t{k}": draw(st.floats(0.0, 0.5)) for k in "xyz"}
    now = times[-1] + draw(st.floats(0.0, 0.5))
    return reqs, limits, now


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(case=queued_requests(), name=st.sampled_from(SCHEDULERS), cross_task=st.booleans())
def test_expired_requests_are_never_batched(case, name, cross_task):
    reqs, limits, now = case
    sched = make_scheduler(name, cross_task=cross_task)
    for k, t in enumerate(("tx", "ty", "tz")):
        sched.add_task(t, weight=1.0 + k, slo_s=0.05)
    for r in reqs:
        sched.enqueue(r, r.arrival_s)
    dropped = sched.drop_expired(now, limits)
    expired = {r.id for r in reqs if r.arrival_s + limits[r.task] < now}
    assert {r.id for r in dropped} == expired
    assert len(sched) == len(reqs) - len(expired)
    served: list[int] = []
    t = now
    for _ in range(10 * len(reqs) + 10):
        decision = sched.schedule(t, _view())
        if decision is None:
            break
        if isinstance(decision, Wait):
            t = decision.until_s
            continue
        served += [r.id for r in decision.requests]
        sched.on_batch_done(decision, 0.001, t)
    assert sorted(served) == sorted({r.id for r in reqs} - expired)  # each exactly once, none expired


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(case=queued_requests(), steps=st.lists(st.tuples(st.floats(0.0, 0.2), st.integers(0, 3)), max_size=12))
def test_task_queues_drop_every_expired_request_at_every_call(case, steps):
    """Interleaved arrivals, drops at growing times and pops by a scheduler: after each call no
    queued request has expired, whatever the lower bound skipped."""
    reqs, limits, _ = case
    q = TaskQueues()
    for t in ("tx", "ty", "tz"):
        q.add_task(t)
    pending = list(reqs)
    now = 0.0
    gone: set[int] = set()
    for dt, pops in steps + [(1.0, 0)]:
        now += dt
        while pending and pending[0].arrival_s <= now:
            q.push(pending.pop(0))
        gone |= {r.id for r in q.drop_expired(now, limits)}
        for task in q.tasks():
            assert all(r.arrival_s + limits[task] >= now for r in q[task]), f"{task} holds an expired request"
        for task in q.backlogged()[:pops]:
            gone |= {r.id for r in q.pop(task, 1)}
        assert q.total == sum(len(q[t]) for t in q.tasks())
        assert set(q.backlogged()) == {t for t in q.tasks() if q[t]}


def test_requests_past_their_limit_at_the_horizon_are_rejected_not_unfinished():
    """A request that never started and had already waited past its limit when the run ended
    could not start in time: rejected (queue_timeout), even though no batch decision came
    after its expiry to drop it (the last batch ran past the horizon)."""
    raw = {"seed": 3, "duration_s": 1.0, "drain_s": 0, "cluster": {"device": "H100-80GB", "gpus": 1},
           "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "bfq", "max_batch": 8},
           "tasks": [{"name": n, "backbone": "bert-base", "input_len": 128, "slo_ms": 50, "max_queue_ms": 5,
                      "arrival": {"process": "poisson", "rate_rps": 20000.0}} for n in ("a", "b")]}
    out = simulate(parse_config(raw, "overload.yaml"))
    rec = out.records
    waited_past = np.isnan(rec.start_s) & (rec.arrival_s + 0.005 < 1.0)
    st = rec.status()
    assert waited_past.any()
    assert np.all(st[waited_past] == 1), int(np.sum(st[waited_past] == 2))
    assert {rec.reason[i] for i in np.flatnonzero(waited_past & (st == 1))} == {"queue_timeout"}
    # what was still within its limit at the horizon stays unfinished
    assert np.all(st[np.isnan(rec.start_s) & (rec.arrival_s + 0.005 > 1.0)] == 2)
    check_accounting(out.summary)
    # a batch picked in time and still running at the horizon is unfinished, not timed out:
    # its requests have a start (the pick) and no finish
    running = np.isfinite(rec.start_s) & ~np.isfinite(rec.finish_s)
    assert running.any()
    assert np.all(st[running] == 2)
    assert np.all(rec.start_s[running] - rec.arrival_s[running] <= 0.005 + 1e-12)


OVER = {"seed": 3, "duration_s": 1.0, "drain_s": 0, "cluster": {"device": "H100-80GB", "gpus": 1},
        "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "bfq", "max_batch": 8},
        "tasks": [{"name": n, "backbone": "bert-base", "input_len": 128, "slo_ms": 50, "max_queue_ms": 5,
                   "arrival": {"process": "poisson", "rate_rps": 20000.0}} for n in ("a", "b")]}


@pytest.mark.parametrize("fault", ["lose", "settle-twice"])
def test_a_request_an_engine_loses_or_settles_twice_fails_the_run(monkeypatch, fault):
    """The per-status sums hold by construction; what catches a lost request is comparing the
    open records with what the engine still holds at the horizon. A request silently dropped
    from a queue used to be reported as queue_timeout."""
    from fmplex_sim.policies.scheduling.base import Scheduler

    simulate(parse_config(OVER, "overload.yaml"))  # unharmed: passes
    enqueue = Scheduler.enqueue
    if fault == "lose":
        def faulty(self, req, now):
            if req.id % 500 != 7:
                enqueue(self, req, now)
        monkeypatch.setattr(Scheduler, "enqueue", faulty)
    else:
        drop = Scheduler.drop_expired

        def faulty(self, now, limits):  # rejects the expired ones and leaves them queued
            out = drop(self, now, limits)
            for r in out[:1]:
                self.queues._q[r.task].appendleft(r)
                self.queues._busy.add(r.task)
                self.queues.total += 1
            return out
        monkeypatch.setattr(Scheduler, "drop_expired", faulty)
    with pytest.raises(AssertionError, match="request accounting broken"):
        simulate(parse_config(OVER, "overload.yaml"))

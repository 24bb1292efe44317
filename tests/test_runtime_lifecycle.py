"""The wall-clock runtime's lifecycle logic with a fake executor (no torch): deploy, end and
update mid-run decide each request's fate as the simulator does, and every model change happens
between batches."""

from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest

from conftest import make_cfg
from fmplex_exec.runtime import Runtime
from fmplex_sim.run import simulate
from fmplex_sim.workload import from_arrays

BATCH_S = 0.01  # every fake batch takes this long, whatever its size

TASK = {"backbone": "minilm-l6", "slo_ms": 500, "input_len": 16, "max_queue_ms": 60_000,
        "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
        "arrival": {"process": "poisson", "rate_rps": 1}}


class FakeExecutor:
    """Sleeps ``BATCH_S`` per batch; logs lifecycle calls; fails if a call overlaps a batch."""

    def __init__(self, plan, tasks, log) -> None:
        self.plan = plan
        self.tasks = {t: tasks[t] for t in plan.tasks}
        self.log = log
        self.busy = threading.Lock()

    def __call__(self, batch):
        with self.busy:
            time.sleep(BATCH_S)
            return ["" if r.task in self.tasks else f"unknown task {r.task!r}" for r in batch.requests]

    def prepare(self, task):
        self.log.append(("prepare", task.name, task.extensions[0].version))
        return task

    def _change(self, what, name, task=None):
        assert self.busy.acquire(blocking=False), f"{what} overlapped a batch"
        try:
            self.log.append((what, name))
            if task is None:
                self.tasks.pop(name)
            else:
                self.tasks[name] = task
        finally:
            self.busy.release()

    def add(self, task):
        self._change("add", task.name, task)

    def update(self, task):
        self._change("update", task.name, task)

    def remove(self, name):
        self._change("remove", name)


def _run(cfg, wl):
    log: list = []
    rt = Runtime(cfg, wl, lambda plan, tasks, opts: FakeExecutor(plan, tasks, log))
    rec, summary = rt.run()
    return rt, rec, summary, log


def _raw(**late):
    tasks = [dict(copy.deepcopy(TASK), name="stay"), dict(copy.deepcopy(TASK), name="late", **late)]
    return {"seed": 1, "duration_s": 2, "drain_s": 30, "cluster": {"device": "CPU", "gpus": 1},
            "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "fifo", "max_batch": 1},
            "tasks": tasks}


def _wl(rows):
    t = np.array([r[0] for r in rows], dtype=float)
    k = np.array([r[1] for r in rows], dtype=np.int32)
    n = len(rows)
    return from_arrays(("stay", "late"), t, k, np.full(n, 16, dtype=np.int32), np.zeros(n, dtype=np.int32))


def _fates(rec):
    return [r if r else ("completed" if np.isfinite(f) else "unfinished") for r, f in zip(rec.reason, rec.finish_s)]


@pytest.mark.parametrize("system", ["fmplex", "colocate"])
def test_deploy_holds_early_requests_like_the_simulator(system, linear):
    raw = _raw(start_s=0.3)
    raw["system"]["placement"] = system
    cfg = make_cfg(raw)
    wl = _wl([(0.0, 0), (0.1, 1), (0.2, 1), (0.35, 1), (0.5, 0)])
    rt, rec, s, log = _run(cfg, wl)
    sim = simulate(cfg, wl, latency=linear(fixed_s=BATCH_S, per_row_s=0.0))
    assert _fates(rec) == _fates(sim.records) == ["completed"] * 5
    ready = next(e["t_s"] for e in rt.events if e["event"] == "ready")
    late = rec.task == 1
    assert np.all(rec.start_s[late] >= ready - 1e-6) and ready >= 0.3
    if system == "fmplex":  # built beside the running instance, installed between batches
        assert ("prepare", "late", 1) in log and ("add", "late") in log
    else:  # a replica of its own
        assert s["cluster"]["instances"] == 2 and not any(e[0] == "add" for e in log)


@pytest.mark.parametrize("mode", ["drain", "reject"])
def test_end_drains_or_rejects_like_the_simulator(mode, linear):
    raw = _raw(end_s=0.3)
    raw["system"]["on_task_end"] = mode
    cfg = make_cfg(raw)
    # 50 "late" requests at 0.1 s, one batch of one every 10 ms: about 30 are queued at 0.3 s.
    wl = _wl([(0.1, 1)] * 50 + [(0.4, 1), (0.5, 0)])
    rt, rec, s, log = _run(cfg, wl)
    sim = simulate(cfg, wl, latency=linear(fixed_s=BATCH_S, per_row_s=0.0))
    fates, want = _fates(rec), _fates(sim.records)
    assert fates[-2:] == want[-2:] == ["task_ended", "completed"]
    if mode == "drain":
        assert fates == want  # everything queued at end_s is served
    else:
        ended = fates.count("task_ended")
        assert 15 <= ended <= 45 and abs(ended - want.count("task_ended")) <= 10  # wall clock vs simulated
    assert ("remove", "late") in log and log.index(("remove", "late")) == len(log) - 1
    assert [e["event"] for e in rt.events if e["task"] == "late"] == ["end", "removed"]


def test_update_swaps_between_batches_and_the_task_keeps_serving():
    cfg = make_cfg(_raw(update_s=0.2))
    wl = _wl([(0.02 * i, i % 2) for i in range(30)])
    rt, rec, s, log = _run(cfg, wl)
    assert ("prepare", "late", 2) in log and ("update", "late") in log
    swapped = next(e for e in rt.events if e["event"] == "swapped")
    assert swapped["t_s"] >= 0.2 and swapped["swap_s"] < BATCH_S
    assert s["requests"]["completed"] == 30
    assert rt.tasks["late"].extensions[0].version == 2


def test_update_of_a_task_deployed_mid_run_waits_for_its_deploy():
    cfg = make_cfg(_raw(start_s=0.1, update_s=0.15))
    wl = _wl([(0.0, 0), (0.12, 1), (0.3, 1)])
    rt, rec, s, log = _run(cfg, wl)
    events = [e["event"] for e in rt.events if e["task"] == "late"]
    assert events.index("ready") < events.index("swapped")
    assert s["requests"]["completed"] == 3


def test_no_model_is_built_or_run_on_the_main_thread():
    # The main thread must never hold an OpenMP pool (fmplex_exec.threads): executors are built,
    # and batches and model changes run, on other threads.
    seen: list = []

    class Recording(FakeExecutor):
        def __init__(self, *a) -> None:
            seen.append(("build", threading.current_thread() is threading.main_thread()))
            super().__init__(*a)

        def __call__(self, batch):
            seen.append(("batch", threading.current_thread() is threading.main_thread()))
            return super().__call__(batch)

        def add(self, task):
            seen.append(("add", threading.current_thread() is threading.main_thread()))
            super().add(task)

    log: list = []
    raw = _raw(start_s=0.2)
    wl = _wl([(0.0, 0), (0.3, 1)])
    rec, _ = Runtime(make_cfg(raw), wl, lambda plan, tasks, opts: Recording(plan, tasks, log)).run()
    assert {what for what, _ in seen} == {"build", "batch", "add"}  # the late task joins the backbone
    assert not any(on_main for _, on_main in seen)
    assert np.isfinite(rec.finish_s).all()

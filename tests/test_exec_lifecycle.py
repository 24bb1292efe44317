"""Lifecycle in the wall-clock runtime: tasks deployed, ended and updated mid-run on real
models, with the simulator's semantics (held requests, task_ended, drain or reject)."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest

pytest.importorskip("torch", reason="the execution harness needs the exec extra")

from conftest import make_cfg  # noqa: E402
from fmplex_exec.executors import build_fm, local_executor, make_executor  # noqa: E402
from fmplex_exec.runtime import Runtime  # noqa: E402
from fmplex_sim.workload import from_arrays  # noqa: E402

TASK = {"backbone": "minilm-l6", "slo_ms": 500, "input_len": 16,
        "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
        "arrival": {"process": "poisson", "rate_rps": 1}}


def _raw(**late):
    tasks = [dict(copy.deepcopy(TASK), name="stay"), dict(copy.deepcopy(TASK), name="late", **late)]
    return {"seed": 1, "duration_s": 3, "drain_s": 30, "cluster": {"device": "CPU", "gpus": 1},
            "latency_model": "roofline", "system": "fmplex", "tasks": tasks}


def _wl(rows):
    """rows: (arrival_s, task index); task 0 is ``stay``, 1 is ``late``."""
    t = np.array([r[0] for r in rows], dtype=float)
    k = np.array([r[1] for r in rows], dtype=np.int32)
    n = len(rows)
    return from_arrays(("stay", "late"), t, k, np.full(n, 16, dtype=np.int32), np.zeros(n, dtype=np.int32))


def _events(rt, task):
    return {e["event"]: e for e in rt.events if e["task"] == task}


class _Slow:
    """An executor whose first call (its warm-up) takes ``first_call_s`` longer, and every
    call ``each_call_s`` longer."""

    def __init__(self, inner, first_call_s: float = 0.0, each_call_s: float = 0.0) -> None:
        self._inner, self._wait, self._each = inner, first_call_s, each_call_s

    def __call__(self, batch):
        wait, self._wait = self._wait, 0.0
        time.sleep(wait + self._each)
        return self._inner(batch)

    def __getattr__(self, name):  # close, prepare, add, remove
        return getattr(self._inner, name)


def _slowed(task: str | None = None, build_s: float = 0.0, **slow):
    """A factory whose instances (those hosting ``task``, or all) take ``build_s`` longer to
    build and run as :class:`_Slow`: where a request or a deploy is at a given time is set by
    the test, not by how fast the machine running it loads and runs a model."""
    def factory(plan, tasks, opts):
        if task is not None and task not in plan.tasks:
            return make_executor(plan, tasks, opts)
        time.sleep(build_s)
        return _Slow(make_executor(plan, tasks, opts), **slow)
    return factory


@pytest.mark.parametrize("system,instances", [("fmplex", 1), ("colocate", 2)])
def test_deploy_mid_run_holds_early_requests_then_serves(system, instances):
    """fmplex adds the task to the running backbone (built beside it, installed between
    batches); colocate loads a replica of its own. Requests before it serves are held."""
    cfg = make_cfg(_raw(start_s=1.0), system=system)
    rows = [(0.05 * i, 0) for i in range(40)] + [(0.5, 1), (1.2, 1), (1.5, 1)]
    rt = Runtime(cfg, _wl(rows), make_executor)
    rec, s = rt.run()
    ready = _events(rt, "late")["ready"]["t_s"]
    late = rec.task == 1
    assert s["per_task"]["late"]["completed"] == 3 and s["per_task"]["stay"]["completed"] == 40
    assert ready >= 1.0 and np.all(rec.start_s[late] >= ready - 1e-6)
    assert s["cluster"]["instances"] == instances and s["cluster"]["tasks_hosted"] == 2


@pytest.mark.parametrize("mode", ["drain", "reject"])
def test_end_mid_run_drains_or_rejects_and_refuses_later_arrivals(mode):
    raw = _raw(end_s=0.5)
    raw["tasks"][1]["max_queue_ms"] = 60_000
    cfg = make_cfg(raw, system={"placement": "fmplex", "scheduler": "fifo", "on_task_end": mode, "max_batch": 1})
    # 20 "late" requests at 0.4 s queue behind one another (batches of one, 20 ms or more
    # each): some are still queued at end_s = 0.5 s; one more arrives after it.
    rows = [(0.4, 1)] * 20 + [(0.8, 1), (0.1, 0), (1.0, 0)]
    rt = Runtime(cfg, _wl(rows), _slowed(each_call_s=0.02))
    rec, s = rt.run()
    reason = np.asarray(rec.reason, dtype=object)
    late = rec.task == 1
    assert reason[late & (rec.arrival_s > 0.5)].tolist() == ["task_ended"]
    queued_at_end = late & (rec.arrival_s < 0.5)
    if mode == "drain":
        assert np.isfinite(rec.finish_s[queued_at_end]).all()
    else:
        assert set(reason[queued_at_end & ~np.isfinite(rec.finish_s)]) == {"task_ended"}
        assert (queued_at_end & ~np.isfinite(rec.finish_s)).sum() > 0
        assert not np.any(rec.start_s[late] > _events(rt, "late")["end"]["t_s"] + 1e-6)
    assert s["per_task"]["stay"]["completed"] == 2
    assert "removed" in _events(rt, "late")  # its extensions left the model once drained


def test_update_builds_beside_serving_then_swaps_between_batches():
    cfg = make_cfg(_raw(update_s=1.0))
    rows = [(0.05 * i, i % 2) for i in range(50)]
    fms = []

    def factory(plan, tasks, opts):
        fm = build_fm(plan.backbone, [tasks[t] for t in plan.tasks], opts.device, opts.dtype, opts.seed)
        fms.append(fm)
        return local_executor(fm, opts.device)

    rt = Runtime(cfg, _wl(rows), factory)
    rec, s = rt.run()
    ev = _events(rt, "late")
    swapped = ev["swapped"]
    assert swapped["t_s"] >= 1.0 and swapped["build_s"] > 0 and swapped["swap_s"] < 1.0
    assert fms[0].adapter_name("late") == "late@v2" and fms[0].adapter_name("stay") == "stay@v1"
    assert fms[0].task_spec("late").extensions[0].version == 2
    assert s["requests"]["completed"] == 50  # nobody failed or paused across the swap


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("system", ["spatial", "colocate"])
@pytest.mark.parametrize("crossing", ["build", "warmup"])
def test_a_deploy_still_loading_at_the_horizon_leaves_nothing_running(system, crossing, capfd):
    """A task added just before the horizon (drain 0): its new instance, a slice's process or a
    replica, was still loading when run() returned. It was never closed, loaded on into the
    next replay, and the slice's process died with an EOFError traceback when the pipe's other
    end went away. Now run() waits for it, closes it as soon as it is built, and serves nothing
    from it. ``warmup``: built before the horizon and still warming up past it, the task was
    made ready after the run had ended (seen once in CI, where a replica loads in 60 ms); now
    it never serves either."""
    import multiprocessing as mp

    raw = _raw(start_s=0.7)
    raw["duration_s"], raw["drain_s"] = 1.0, 0
    cfg = make_cfg(raw, system=system)
    factory = _slowed("late", build_s=0.6) if crossing == "build" else _slowed("late", first_call_s=0.6)
    rt = Runtime(cfg, _wl([(0.1, 0), (0.5, 0), (0.75, 1), (0.8, 1)]), factory)
    rec, s = rt.run()
    assert mp.active_children() == []  # every slice process has exited
    assert not rt.lifecycle.busy()
    late = s["per_task"]["late"]
    assert late["completed"] == 0 and late["arrived"] == late["rejected"] + late["unfinished"] == 2
    assert "ready" not in _events(rt, "late")
    assert "Traceback" not in capfd.readouterr().err


class _Closing:
    """An executor whose ``prepare`` lasts until the executor is closed (a build slower than
    what is left of the run, on a machine of any speed), and which records, in ``late``,
    every change to its model (add, update, remove) made after it was closed."""

    def __init__(self, inner, late: list) -> None:
        import threading

        self._inner, self._late, self._closed = inner, late, threading.Event()

    def __call__(self, batch):
        return self._inner(batch)

    def prepare(self, task):
        self._closed.wait(60)
        return self._inner.prepare(task)

    def _change(self, op: str, arg):
        if self._closed.is_set():
            self._late.append(op)
        return getattr(self._inner, op)(arg)

    def add(self, handle):
        return self._change("add", handle)

    def update(self, handle):
        return self._change("update", handle)

    def remove(self, name):
        return self._change("remove", name)

    def close(self):
        close = getattr(self._inner, "close", None)  # a slice's process; in process, nothing
        if close is not None:
            close()
        self._closed.set()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("system,change", [("fmplex", "deploy"), ("fmplex", "update"), ("spatial", "update")])
def test_a_change_still_under_way_at_the_horizon_never_reaches_a_closed_executor(system, change, capfd):
    """Drain 0: a task deployed onto fmplex's running instance, or updated, just before the
    horizon, whose extensions are still being built when the run has ended and closed its
    instances. The change used to be made anyway, on the closed executor: in process, on a
    model nobody serves; on a spatial slice, through the pipe of a process that had exited,
    which raised in the lifecycle thread. Now it finds the instance closed and leaves the
    model alone; the deployed task never serves."""
    import multiprocessing as mp

    raw = _raw(start_s=0.8) if change == "deploy" else _raw(update_s=0.8)
    raw["duration_s"], raw["drain_s"] = 1.0, 0
    cfg = make_cfg(raw, system=system)
    late: list[str] = []

    def factory(plan, tasks, opts):
        return _Closing(make_executor(plan, tasks, opts), late)

    rt = Runtime(cfg, _wl([(0.1, 0), (0.5, 1 if change == "update" else 0), (0.85, 1)]), factory)
    rec, s = rt.run()
    assert not rt.lifecycle.busy()
    assert mp.active_children() == []  # every slice process has exited
    assert late == []
    assert change in {e["event"] for e in _events(rt, "late").values()}  # the change did start
    assert "ready" not in _events(rt, "late") and "swapped" not in _events(rt, "late")
    if change == "deploy":
        assert s["per_task"]["late"]["completed"] == 0
    assert "Traceback" not in capfd.readouterr().err

"""The wall-clock runtime: replays on real models under all three systems write the
simulator's schema and accounting, and drive the simulator's own scheduler classes."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import yaml

pytest.importorskip("torch", reason="the execution harness needs the exec extra")

from fmplex_exec.cli import main  # noqa: E402
from fmplex_sim.records import RECORD_COLUMNS  # noqa: E402

CONFIG = {
    "seed": 2,
    "duration_s": 3,
    "drain_s": 60,  # generous: the replay ends as soon as its queues drain
    "cluster": {"device": "CPU", "gpus": 1},
    "latency_model": "roofline",
    "system": "fmplex",
    "tasks": [
        {"name": "sst2", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 32,
         "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
         "arrival": {"process": "poisson", "rate_rps": 6}},
        {"name": "intent", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 16,
         "extensions": [{"kind": "lora", "rank": 4}, {"kind": "head", "outputs": 10}],
         "arrival": {"process": "poisson", "rate_rps": 6}},
        {"name": "topic", "backbone": "minilm-l6", "slo_ms": 500, "input_len": 24,
         "extensions": [{"kind": "head", "outputs": 5}],
         "arrival": {"process": "poisson", "rate_rps": 6}},
    ],
}


@pytest.mark.parametrize("system", ["fmplex", "colocate", "spatial"])
def test_replay_writes_the_simulators_schema(tmp_path, system, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(copy.deepcopy(CONFIG)))
    out = tmp_path / system
    assert main(["replay", str(cfg), "--out", str(out), "--set", f"system={system}"]) == 0
    for name in ("config.yaml", "provenance.json", "requests.csv", "summary.json", "workload.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "requests.csv")))
    assert tuple(rows[0]) == RECORD_COLUMNS
    s = json.loads((out / "summary.json").read_text())
    assert s["system"]["name"] == system and s["cluster"]["engine"] == "fmplex_exec"
    req = s["requests"]
    assert req["arrived"] == len(rows) == req["completed"] + req["rejected"] + req["unfinished"]
    assert req["completed"] == req["arrived"] > 0
    if system == "spatial":
        # Three processes pinned round robin to the host's cores (slices 0, 1, 2 of 16).
        assert s["cluster"]["tasks_unplaced"] == 0 and s["cluster"]["instances"] == 3
    done = [r for r in rows if r["status"] == "completed"]
    assert all(float(r["finish_s"]) >= float(r["start_s"]) >= float(r["arrival_s"]) - 1e-6 for r in done)
    if system == "fmplex":  # one shared backbone; batches may mix tasks
        assert {r["instance"] for r in done} == {"g0/minilm-l6"}
    else:  # dedicated replicas batch only their own task
        by_batch: dict[str, set] = {}
        for r in done:
            by_batch.setdefault(r["batch_id"], set()).add(r["task"])
        assert all(len(t) == 1 for t in by_batch.values())


def test_replay_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = copy.deepcopy(CONFIG)
    bad["tasks"][0]["backbone"] = "bert-huge"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    assert main(["replay", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tasks[0].backbone" in err[0]
    assert not (tmp_path / "r").exists()


def test_isolation_replays_the_shared_stream_alone_and_without_the_noisy_task(tmp_path, capsys):
    """fmplex-exec isolation: every run a results folder of the harness; each alone run replays
    exactly the shared run's requests of its task; the report is the simulator's."""
    import threading

    raw = copy.deepcopy(CONFIG)
    raw["duration_s"] = 1.5
    raw["tasks"][0]["arrival"]["rate_rps"] = 200.0  # sst2 floods the backbone
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "iso"
    before = threading.active_count()
    assert main(["isolation", str(cfg), "--noisy", "sst2", "--out", str(out)]) == 0
    # Past the horizon no batch starts and the running one is waited for: nothing outlives the runs.
    assert threading.active_count() == before
    rep = json.loads((out / "isolation.json").read_text())
    assert rep["engine"] == "fmplex_exec" and set(rep["systems"]["fmplex"]["tasks"]) == {"sst2", "intent", "topic"}

    def arrivals(run, task):
        return [r["arrival_s"] for r in csv.DictReader(open(out / "fmplex" / run / "requests.csv")) if r["task"] == task]

    for task in ("intent", "topic"):
        s = json.loads((out / "fmplex" / "alone" / task / "summary.json").read_text())
        assert s["cluster"]["engine"] == "fmplex_exec" and list(s["per_task"]) == [task]
        assert arrivals(f"alone/{task}", task) == arrivals("shared", task) != []
        assert rep["systems"]["fmplex"]["tasks"][task]["p99_alone_ms"] == s["per_task"][task]["latency_ms"]["p99"]
    assert arrivals("without-noisy", "sst2") == []
    shared = json.loads((out / "fmplex" / "shared" / "summary.json").read_text())
    assert shared["requests"]["unfinished"] > 0  # the flood's queue at the horizon: not served after it


def _sleeper(seconds: float, late_s: float, after_s: float):
    """An executor factory whose instances run no model: a batch takes ``seconds``, or
    ``late_s`` when it holds a request that arrived at ``after_s`` or later."""
    import time as _time

    def factory(plan, tasks, opts):
        def run(batch):
            slow = any(r.arrival_s >= after_s for r in batch.requests)
            _time.sleep(late_s if slow else seconds)
            return [""] * batch.size
        return run
    return factory


def test_a_pick_held_up_past_its_limit_is_rejected_and_a_batch_running_at_the_horizon_is_unfinished():
    """Start is when the batch begins (after run_lock, which a task's update or removal holds):
    a request that waited past max_queue_ms by then is rejected (queue_timeout), never run late.
    A batch still running at the horizon leaves its requests unfinished with their start, not
    timed out. And nothing is lost: the records' open requests are what the runtime holds."""
    import threading
    import time as _time

    import numpy as np

    from conftest import make_cfg
    from fmplex_exec.runtime import Runtime
    from fmplex_sim.workload import from_arrays

    raw = {"seed": 1, "duration_s": 1.0, "drain_s": 0.0, "cluster": {"device": "CPU", "gpus": 1},
           "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "bfq", "max_batch": 4},
           "tasks": [{"name": "a", "backbone": "minilm-l6", "input_len": 16, "slo_ms": 20, "max_queue_ms": 50,
                      "arrival": {"process": "poisson", "rate_rps": 1}}]}
    t = np.array([0.05] + [0.30 + 0.001 * i for i in range(8)] + [0.90])
    n = len(t)
    wl = from_arrays(("a",), t, np.zeros(n, dtype=np.int32), np.full(n, 16, dtype=np.int32), np.zeros(n, dtype=np.int32))
    rt = Runtime(make_cfg(raw), wl, _sleeper(0.01, late_s=0.6, after_s=0.9))

    def hold():  # as an update's swap does: the serving thread picks, then waits for the lock
        while not rt.workers:
            _time.sleep(0.005)
        w = rt.workers[0]
        _time.sleep(0.28)
        with w.run_lock:
            _time.sleep(0.3)
    threading.Thread(target=hold, daemon=True).start()
    rec, s = rt.run()
    st = rec.status()
    wait = rec.start_s - rec.arrival_s
    assert st[0] == 0 and np.all(wait[st == 0] <= 0.050 + 1e-9), wait
    late = [i for i in range(1, 9) if rec.reason[i] == "queue_timeout"]
    assert late and all(np.isnan(rec.start_s[i]) for i in late)
    # the last request's batch began at once and was still running at the horizon
    assert st[-1] == 2 and rec.reason[-1] == "" and rec.start_s[-1] - rec.arrival_s[-1] < 0.05
    assert s["requests"]["arrived"] == n


class _PollingLock:
    """A lock that threads other than ``owner`` take by polling every ``lag_s``, as a thread
    of a saturated host gets scheduled: a thread that releases and retakes it at once always
    wins, unless it stands back."""

    def __init__(self, lag_s: float) -> None:
        import threading

        self._lock = threading.Lock()
        self.lag_s = lag_s
        self.owner: int | None = None

    def __enter__(self):
        import threading
        import time as _time

        if threading.get_ident() == self.owner:
            self._lock.acquire()
        else:
            while not self._lock.acquire(blocking=False):
                _time.sleep(self.lag_s)
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def acquire(self, timeout: float = -1) -> bool:  # as run() takes it to close the instance
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()


def test_a_lifecycle_change_waits_for_at_most_the_batch_in_flight():
    """_Worker.exclusive: while a change to the model waits for run_lock, no new batch starts,
    so a backlogged instance cannot hand the lock back to itself batch after batch."""
    import threading
    import time as _time

    import numpy as np

    from conftest import make_cfg
    from fmplex_exec.runtime import Runtime
    from fmplex_sim.workload import from_arrays

    log: list[str] = []
    lock = _PollingLock(0.03)

    def factory(plan, tasks, opts):
        def run(batch):
            lock.owner = threading.get_ident()  # the serving thread
            log.append("batch")
            _time.sleep(0.01)
            return [""] * batch.size
        return run

    raw = {"seed": 1, "duration_s": 1.0, "drain_s": 0.0, "cluster": {"device": "CPU", "gpus": 1},
           "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "fifo", "max_batch": 1},
           "tasks": [{"name": "a", "backbone": "minilm-l6", "input_len": 16, "slo_ms": 5000,
                      "arrival": {"process": "poisson", "rate_rps": 1}}]}
    n = 300  # all at once: 3 s of batches, backlogged for the whole run
    wl = from_arrays(("a",), np.full(n, 0.01), np.zeros(n, dtype=np.int32), np.full(n, 16, dtype=np.int32),
                     np.zeros(n, dtype=np.int32))
    rt = Runtime(make_cfg(raw), wl, factory)

    def change():
        while not rt.workers:
            _time.sleep(0.005)
        w = rt.workers[0]
        w.run_lock = lock
        _time.sleep(0.3)
        for _ in range(3):
            log.append("want")
            with w.exclusive():
                log.append("change")
            _time.sleep(0.05)
    threading.Thread(target=change, daemon=True).start()
    rt.run()
    wants = [i for i, e in enumerate(log) if e == "want"]
    assert len(wants) == 3, log.count("change")
    for i in wants:
        done = log.index("change", i)
        assert log[i + 1:done].count("batch") <= 1, log[i:done + 1]


def test_every_instance_warms_up_on_its_serving_thread_before_it_takes_requests():
    """A serving thread's first batch starts its thread pool (about 8x a warm batch on the
    2-core machine), which the simulator's warm instances never pay. So each instance runs
    one single-row batch per hosted task and one with a row of each, on the thread that then
    serves, before the clock starts (at time 0) or, for one deployed mid-run, before its task
    is ready. Warm-up rows are not requests: they are neither recorded nor charged."""
    import threading
    import time as _time

    import numpy as np

    from conftest import make_cfg
    from fmplex_exec.runtime import Runtime
    from fmplex_sim.workload import from_arrays

    calls: list[tuple[str, float, int, tuple]] = []  # instance, when, thread, (task, len) rows

    def factory(plan, tasks, opts):
        def run(batch):
            calls.append((plan.id, _time.perf_counter(), threading.get_ident(),
                          tuple((r.task, r.input_len) for r in batch.requests)))
            _time.sleep(0.005)
            return [""] * batch.size
        return run

    task = {"backbone": "minilm-l6", "slo_ms": 5000, "arrival": {"process": "poisson", "rate_rps": 1}}
    raw = {"seed": 1, "duration_s": 1.0, "drain_s": 1.0, "cluster": {"device": "CPU", "gpus": 1},
           "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "bfq", "max_batch": 8},
           "tasks": [{**task, "name": "a", "input_len": 16}, {**task, "name": "b", "input_len": 40},
                     {**task, "name": "late", "backbone": "bert-base", "input_len": 24, "start_s": 0.3}]}
    t = np.array([0.0, 0.05, 0.5, 0.6])
    wl = from_arrays(("a", "b", "late"), t, np.array([0, 1, 2, 2], dtype=np.int32),
                     np.array([16, 40, 24, 24], dtype=np.int32), np.zeros(4, dtype=np.int32))
    rt = Runtime(make_cfg(raw), wl, factory)
    rec, s = rt.run()
    assert s["requests"]["arrived"] == 4 and s["requests"]["completed"] == 4
    assert int(np.count_nonzero(rec.batch_id >= 0)) == 4  # warm-up rows are not requests
    by_inst: dict[str, list] = {}
    for c in calls:
        by_inst.setdefault(c[0], []).append(c)
    assert len(by_inst) == 2  # minilm-l6 at the start, bert-base deployed with "late"
    ready = {e["task"]: e["t_s"] for e in rt.events if e["event"] == "ready"}
    warm_rows = {"a": [(("a", 16),), (("b", 40),), (("a", 16), ("b", 40))], "late": [(("late", 24),)]}
    for inst, cs in by_inst.items():
        first = cs[0][3][0][0]
        n = len(warm_rows[first])
        assert [c[3] for c in cs[:n]] == warm_rows[first]
        assert len({c[2] for c in cs}) == 1  # warm-up and requests on the one serving thread
        assert s["cluster"]["warmup_ms"][inst] >= 5.0 * n
        done = cs[n - 1][1] + 0.005 - rt._t0  # the last warm-up batch's end, on the run's clock
        if first == "a":
            assert cs[n - 1][1] < rt._t0  # all before the clock started
        else:
            assert 0.3 <= cs[0][1] - rt._t0 and done <= ready["late"] + 1e-3
            assert rec.start_s[2] >= ready["late"]


def test_as_run_describes_the_harness_on_cuda_and_leaves_cpu_configs_alone(base_raw):
    from dataclasses import replace

    from conftest import make_cfg
    from fmplex_exec.cli import as_run

    cfg = make_cfg(base_raw, system={"placement": "spatial", "pipeline_depth": 3})
    assert as_run(cfg, "cpu") == cfg
    for device in ("cuda", "cuda:1"):
        run = as_run(cfg, device)
        # the harness makes a GPU's slices as processes the driver time-slices, and serves one
        # batch at a time per instance; nothing else changes
        assert (run.system.slicing, run.system.pipeline_depth) == ("processes", 1)
        assert run == replace(cfg, system=replace(cfg.system, slicing="processes", pipeline_depth=1))
    assert cfg.system.slicing == "mig"  # the config's own default


def test_an_idle_serving_thread_sleeps_until_work_arrives(monkeypatch):
    """Between two requests 1.2 s apart the instance's serving thread looks at its queues only
    when woken (the request, the run's end), not every 50 ms: a thread that polled while idle
    ran its next batch 8-10 ms slower after 0.3-0.6 s idle on the 2-core machine, a cost the
    profiler's wake rows (a thread asleep) never measured (``Runtime.IDLE_WAIT_S``)."""
    import numpy as np

    import fmplex_exec.runtime as R
    from conftest import make_cfg
    from fmplex_sim.workload import from_arrays

    looks: list[float] = []

    class Counting:
        """The scheduler, counting how often the serving loop asks whether it holds requests."""

        def __init__(self, inner) -> None:
            self._inner = inner

        def __len__(self) -> int:
            looks.append(R.time.perf_counter())
            return len(self._inner)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    make = R.make_scheduler
    monkeypatch.setattr(R, "make_scheduler", lambda *a, **k: Counting(make(*a, **k)))

    def factory(plan, tasks, opts):
        return lambda batch: [""] * batch.size

    raw = {"seed": 1, "duration_s": 1.6, "drain_s": 0.0, "cluster": {"device": "CPU", "gpus": 1},
           "latency_model": "roofline", "system": {"placement": "fmplex", "scheduler": "fifo", "max_batch": 1},
           "tasks": [{"name": "a", "backbone": "minilm-l6", "input_len": 16, "slo_ms": 5000,
                      "arrival": {"process": "poisson", "rate_rps": 1}}]}
    wl = from_arrays(("a",), np.array([0.1, 1.3]), np.zeros(2, dtype=np.int32), np.full(2, 16, dtype=np.int32),
                     np.zeros(2, dtype=np.int32))
    rt = R.Runtime(make_cfg(raw), wl, factory)
    rec, s = rt.run()
    assert s["requests"]["completed"] == 2
    t0 = rt._t0
    idle = [t - t0 for t in looks if 0.3 < t - t0 < 1.2]  # well after the first request, before the second
    assert len(idle) <= 2, idle

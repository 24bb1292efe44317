"""CPU devices: shared cores (processor sharing) and the spatial slice-to-core mapping."""

from __future__ import annotations

import pytest
import simpy

from fmplex_sim.sharing import SharedCores, slice_cores


def _run(jobs, slowdown=float):
    """jobs: (start_s, work_s); returns finish times in job order."""
    env = simpy.Environment()
    cores = SharedCores(env, slowdown)
    done = {}

    def starter(i, t, w):
        yield env.timeout(t)
        cores.add(w, lambda: done.__setitem__(i, env.now))

    for i, (t, w) in enumerate(jobs):
        env.process(starter(i, t, w))
    env.run()
    return [done[i] for i in range(len(jobs))]


def test_one_job_runs_at_full_speed():
    assert _run([(0.0, 2.0)]) == [pytest.approx(2.0)]


def test_two_equal_jobs_share_the_cores_and_finish_together():
    assert _run([(0.0, 1.0), (0.0, 1.0)]) == [pytest.approx(2.0), pytest.approx(2.0)]


def test_a_late_job_slows_the_running_one_by_half():
    # job 0: 1 s alone, then 1 s of work left shared with job 1 (rate 1/2 each):
    # job 0 finishes at 1 + 2*1 = 3; job 1 did 1 s by then, its last 0.5 s alone: 3.5.
    assert _run([(0.0, 2.0), (1.0, 1.5)]) == [pytest.approx(3.0), pytest.approx(3.5)]


def test_measured_contention_replaces_ideal_sharing():
    # two at once each at 1/1.5 of solo speed (a partly parallel host): 1 s of work takes 1.5 s
    slow = lambda k: 1.5 if k == 2 else float(k)  # noqa: E731
    assert _run([(0.0, 1.0), (0.0, 1.0)], slow) == [pytest.approx(1.5), pytest.approx(1.5)]


def test_a_job_with_its_own_slowdown_drains_at_its_own_rate():
    # job 0 loses half its speed beside another (its own slowdown 2), job 1 the cores' 1.5:
    # job 1 finishes at 1.5 s; job 0 has done 0.75 s by then and runs its last 0.25 s alone.
    env = simpy.Environment()
    cores = SharedCores(env, lambda k: 1.5 if k == 2 else float(k))
    done = {}
    cores.add(1.0, lambda: done.__setitem__(0, env.now), lambda k: 2.0 if k == 2 else float(k))
    cores.add(1.0, lambda: done.__setitem__(1, env.now))
    env.run()
    assert done == {0: pytest.approx(1.75), 1: pytest.approx(1.5)}


def test_callbacks_can_start_new_work_on_the_same_cores():
    env = simpy.Environment()
    cores = SharedCores(env, float)
    ends = []

    def chain(n):
        ends.append(env.now)
        if n:
            cores.add(1.0, lambda: chain(n - 1))

    cores.add(1.0, lambda: chain(2))
    env.run()
    assert ends == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)] and len(cores) == 0


@pytest.mark.parametrize("slices,cores,expect", [
    (2, 2, [(0,), (1,)]),
    (1, 2, [(0, 1)]),
    (8, 2, [(0,), (1,), (0,), (1,), (0,), (1,), (0,), (1,)]),
    (4, 8, [(0, 1), (2, 3), (4, 5), (6, 7)]),
])
def test_slices_map_to_cores_round_robin_when_they_outnumber_them(slices, cores, expect):
    assert [slice_cores(s, 1, slices, cores) for s in range(slices)] == expect


def test_a_wide_slice_takes_the_cores_of_each_of_its_slices():
    assert slice_cores(0, 2, 8, 2) == (0, 1)
    with pytest.raises(ValueError):
        slice_cores(0, 0, 2, 2)


# -- the engine on a CPU device --------------------------------------------------------------
import numpy as np  # noqa: E402

from conftest import LinearLatency, make_cfg  # noqa: E402
from fmplex_sim.run import simulate  # noqa: E402
from fmplex_sim.workload import from_arrays  # noqa: E402


class _Contended(LinearLatency):
    def contention(self, dev, k):
        return 1.5 * k if k > 1 else 1.0


def _cpu_run(base_raw, system, latency, arrivals=(0.0, 0.0), tasks=(0, 1)):
    for t in base_raw["tasks"]:
        t["backbone"] = "minilm-l6"
        t["arrival"] = {"process": "poisson", "rate_rps": 1}
    cfg = make_cfg(base_raw, cluster={"device": "CPU", "gpus": 1}, system=system)
    n = len(arrivals)
    wl = from_arrays(("a", "b"), np.array(arrivals, float), np.array(tasks, np.int32),
                     np.full(n, 16, np.int32), np.zeros(n, np.int32))
    out = simulate(cfg, wl, latency=latency)
    return [(round(float(s), 6), round(float(f), 6)) for s, f in zip(out.records.start_s, out.records.finish_s)]


def test_cpu_colocated_replicas_run_at_once_at_the_measured_contention(base_raw):
    # two 11 ms batches at once, each slowed 1.5 x 2 = 3x: both finish at 33 ms
    assert _cpu_run(base_raw, "colocate", _Contended()) == [(0.0, 0.033), (0.0, 0.033)]


class _Throttled(LinearLatency):
    def pool_throttle_s(self, bb, dev, rows, seq_len):
        return 0.004  # each batch of a replica in a process holding several: +4 ms


def test_cpu_replicas_sharing_a_process_are_slower_even_one_at_a_time(base_raw):
    # colocate: two replicas in one process, one request: 11 ms + 4 ms
    assert _cpu_run(base_raw, "colocate", _Throttled(), arrivals=(0.0,), tasks=(0,)) == [(0.0, 0.015)]
    # fmplex: one shared backbone, alone in its process: 11 ms
    assert _cpu_run(base_raw, {"placement": "fmplex", "scheduler": "fifo"}, _Throttled(),
                    arrivals=(0.0,), tasks=(0,)) == [(0.0, 0.011)]


class _Waking(LinearLatency):
    """Wake-up by idle time and by where the instance serves: +1 ms per 16 tokens after 0.1 s
    idle beside other instances' pools, +1 ms flat alone (in its process) or in a slice."""

    def wake_s(self, dev, idle_s, lora=False, threads=0, bb=None, tokens=0, beside=False):
        if idle_s < 0.1:
            return 0.0
        return 0.001 * tokens / 16 if beside else 0.001


def test_cpu_wake_up_beside_other_instances_pools_is_their_own_by_batch_tokens(base_raw):
    # a's requests at 0 and 0.3 s (16 tokens each): the second finds its thread idle 0.289 s.
    # The first batch: idle since 0 for 0 s, no wake-up.
    runs = {name: _cpu_run(base_raw, system, _Waking(), arrivals=(0.0, 0.3, 0.3), tasks=(0, 0, 0))
            for name, system in (("colocate", "colocate"),
                                 ("fmplex", {"placement": "fmplex", "scheduler": "fifo"}))}
    # colocate: a replica in a process holding two -> the rows measured beside other pools:
    # 2 rows x 16 tokens -> +2 ms over 12 ms
    assert runs["colocate"] == [(0.0, 0.011), (0.3, 0.314), (0.3, 0.314)]
    # fmplex: one instance alone in its process -> the rows measured alone: +1 ms
    assert runs["fmplex"] == [(0.0, 0.011), (0.3, 0.313), (0.3, 0.313)]


class _Recording(_Waking):
    """Records each idle gap it is asked about (not the full wake-up past every gap) and what
    the thread was beside."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def wake_s(self, dev, idle_s, lora=False, threads=0, bb=None, tokens=0, beside=False):
        if idle_s < 100:
            self.asked.append((round(idle_s, 6), beside))
        return super().wake_s(dev, idle_s, lora, threads, bb, tokens, beside)


def test_cpu_wake_up_starting_beside_another_replicas_running_batch_reads_its_own_rows(base_raw):
    from fmplex_sim.latency.base import BESIDE_RUNNING

    lat = _Recording()
    # b's request at 0.25 s: its replica wakes beside a's idle pool. a's at 0.255 s, while b's
    # batch runs on the same cores: a's wake-up is the one measured beside running batches.
    _cpu_run(base_raw, "colocate", lat, arrivals=(0.25, 0.255), tasks=(1, 0))
    assert lat.asked == [(0.25, True), (0.255, BESIDE_RUNNING)]
    # apart, each finds the other idle
    lat = _Recording()
    _cpu_run(base_raw, "colocate", lat, arrivals=(0.25, 0.5), tasks=(1, 0))
    assert lat.asked == [(0.25, True), (0.5, True)]


def test_cpu_fmplex_runs_one_batch_at_a_time_with_no_pipelining(base_raw):
    # one serving thread: r0 alone (0 -> 11 ms); r1 arrives at 1 ms and waits for it
    assert _cpu_run(base_raw, {"placement": "fmplex", "scheduler": "fifo"}, LinearLatency(),
                    arrivals=(0.0, 0.001), tasks=(0, 0)) == [(0.0, 0.011), (0.011, 0.022)]


def test_cpu_spatial_slices_on_different_cores_run_in_parallel_at_their_core_speed(base_raw):
    # 16 slices on 2 cores: slice 0 on core 0, slice 1 on core 1; each owns one core, so the
    # linear model's share 1/2 doubles the time (22 ms), and they do not slow each other.
    assert _cpu_run(base_raw, "spatial", _Contended()) == [(0.0, 0.022), (0.0, 0.022)]


def test_cpu_spatial_slices_on_one_core_time_share_it(base_raw):
    base_raw["tasks"].append(dict(base_raw["tasks"][0], name="c"))
    for t in base_raw["tasks"]:
        t["backbone"] = "minilm-l6"
        t["arrival"] = {"process": "poisson", "rate_rps": 1}
    cfg = make_cfg(base_raw, cluster={"device": "CPU", "gpus": 1}, system="spatial")
    wl = from_arrays(("a", "b", "c"), np.zeros(2), np.array([0, 2], np.int32),
                     np.full(2, 16, np.int32), np.zeros(2, np.int32))
    out = simulate(cfg, wl, latency=_Contended())
    # a (slice 0) and c (slice 2) share core 0; pinned processes split it evenly (not the
    # threads' contention): 22 ms of work each, at half speed: both end at 44 ms
    assert [round(float(f), 6) for f in out.records.finish_s] == [0.044, 0.044]

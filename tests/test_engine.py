"""The simpy engine: exact timelines on hand-made scenarios, accounting, lifecycle, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import make_cfg
from fmplex_sim.run import build_workload, simulate
from fmplex_sim.workload import from_arrays


def _wl(names, arrivals, tasks, input_len=128):
    n = len(arrivals)
    return from_arrays(
        tuple(names),
        np.array(arrivals, dtype=float),
        np.array(tasks, dtype=np.int32),
        np.full(n, input_len, dtype=np.int32),
        np.zeros(n, dtype=np.int32),
    )


def _timeline(out):
    r = out.records
    return [
        (i, round(float(r.start_s[i]), 6), round(float(r.finish_s[i]), 6), int(r.batch_id[i]))
        for i in range(len(r.task))
    ]


@pytest.fixture
def slow_raw(base_raw):
    # Low configured rates: placement gives every replica the smallest slice.
    for t in base_raw["tasks"]:
        t["arrival"] = {"process": "poisson", "rate_rps": 1}
    return base_raw


# Four requests: a at 0, b at 1 ms, a at 2 ms, b at 3 ms. Service = 10 ms + 1 ms per row.
ARRIVALS = [0.0, 0.001, 0.002, 0.003]
TASKS = [0, 1, 0, 1]


def test_fmplex_fifo_batches_across_tasks_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "fmplex", "scheduler": "fifo"})
    out = simulate(cfg, _wl(["a", "b"], ARRIVALS, TASKS), latency=linear())
    # r0 runs alone (0 -> 11 ms); r1, r2, r3 queue meanwhile and run as one batch (11 -> 24 ms).
    assert _timeline(out) == [
        (0, 0.0, 0.011, 0),
        (1, 0.011, 0.024, 1),
        (2, 0.011, 0.024, 1),
        (3, 0.011, 0.024, 1),
    ]
    assert out.summary["cluster"]["instances"] == 1


def test_requests_arriving_together_at_an_idle_instance_run_in_one_batch_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "fmplex", "scheduler": "fifo"})
    out = simulate(cfg, _wl(["a", "b"], [0.0, 0.0, 0.0, 0.5], [0, 1, 0, 1]), latency=linear())
    # The three arrivals at 0 are all queued before the idle instance picks: one batch of 3
    # (0 -> 13 ms). Picking at the first arrival ran it alone and the other two 11 ms later.
    assert _timeline(out) == [
        (0, 0.0, 0.013, 0),
        (1, 0.0, 0.013, 0),
        (2, 0.0, 0.013, 0),
        (3, 0.5, 0.511, 1),
    ]


def test_idle_instance_picks_dispatch_delay_after_the_arrival_that_wakes_it_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "fmplex", "scheduler": "fifo"})
    wl = _wl(["a", "b"], [0.0, 0.0004, 0.002, 0.1], [0, 1, 0, 1])
    out = simulate(cfg, wl, latency=linear(dispatch_s=0.0005))
    # r0 wakes the idle instance, which picks at 0.5 ms: r1 (0.4 ms) has joined, 0.5 -> 12.5 ms.
    # r2 arrives while it runs and is picked as it ends, with no delay (12.5 -> 23.5 ms). r3
    # finds the instance idle again: picked at 100.5 ms.
    assert _timeline(out) == [
        (0, 0.0005, 0.0125, 0),
        (1, 0.0005, 0.0125, 0),
        (2, 0.0125, 0.0235, 1),
        (3, 0.1005, 0.1115, 2),
    ]


def test_colocate_time_shares_with_context_switches_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "colocate", "context_switch_ms": 1.0})
    out = simulate(cfg, _wl(["a", "b"], ARRIVALS, TASKS), latency=linear())
    # Two replicas on one device, each batching only its own task. A batch starts when its
    # replica picks it; b's replica picks r1 at 1 ms and waits for the device until 11 ms;
    # every change of process costs 1 ms. Replicas with a batch in flight pick the next just
    # in time, when the device is due to be free (23 ms), not as soon as the queue is non-empty.
    assert _timeline(out) == [
        (0, 0.0, 0.011, 0),
        (1, 0.001, 0.023, 1),
        (2, 0.023, 0.035, 2),
        (3, 0.023, 0.047, 3),
    ]
    assert out.summary["cluster"]["instances"] == 2


def test_colocated_processes_overlap_host_work_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "colocate", "context_switch_ms": 1.0})
    out = simulate(cfg, _wl(["a", "b"], [0.0, 0.0], [0, 1]), latency=linear(host_s=0.004))
    # Both replicas spend their 4 ms of host work at once; the device then runs a's 7 ms of
    # device work (0.004 -> 0.011) and b's after a 1 ms switch (0.011 -> 0.019).
    assert _timeline(out) == [(0, 0.0, 0.011, 0), (1, 0.0, 0.019, 1)]


def test_spatial_slices_run_in_parallel_at_slice_speed_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system="spatial")
    out = simulate(cfg, _wl(["a", "b"], ARRIVALS, TASKS), latency=linear())
    # Each replica owns 1/7 of the device: a one-row batch takes 7 x 11 ms = 77 ms.
    assert _timeline(out) == [
        (0, 0.0, 0.077, 0),
        (1, 0.001, 0.078, 1),
        (2, 0.077, 0.154, 2),
        (3, 0.078, 0.155, 3),
    ]
    shares = {i["share"] for i in out.result.placement.to_dict()["instances"]}
    assert shares == {round(1 / 7, 6)}


def test_spatial_slices_made_by_time_slicing_processes_take_turns_at_full_speed_exact_timeline(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "spatial", "slicing": "processes", "context_switch_ms": 1.0})
    out = simulate(cfg, _wl(["a", "b"], ARRIVALS, TASKS), latency=linear())
    # The same two 1/7 slices, but each a process on the whole GPU (no MIG): a batch runs at the
    # whole GPU's speed (11 ms, not 77) and waits for the other slice's batch, with a 1 ms switch
    # between processes: exactly co-located replicas' timeline, on the spatial placement.
    colocated = make_cfg(slow_raw, system={"placement": "colocate", "context_switch_ms": 1.0})
    assert _timeline(out) == _timeline(simulate(colocated, _wl(["a", "b"], ARRIVALS, TASKS), latency=linear()))
    assert _timeline(out)[1] == (1, 0.001, 0.023, 1)
    shares = {i["share"] for i in out.result.placement.to_dict()["instances"]}
    assert shares == {round(1 / 7, 6)}  # placed as slices all the same


def test_requests_csv_columns_and_empty_times_for_unrun(tmp_path, base_raw):
    from fmplex_sim.run import write_run

    base_raw["cluster"]["gpus"] = 1
    base_raw["tasks"].append({"name": "huge", "backbone": "bert-base", "slo_ms": 100,
                              "arrival": {"process": "poisson", "rate_rps": 5}})
    # Two slices, three tasks: the third finds no slice.
    cfg = make_cfg(base_raw, system={"placement": "spatial", "slices_per_gpu": 2}, duration_s=2)
    out = simulate(cfg)
    write_run(tmp_path, cfg, out)
    lines = (tmp_path / "requests.csv").read_text().splitlines()
    assert lines[0].split(",")[:9] == [
        "request_id", "task", "arrival_s", "start_s", "finish_s", "latency_ms",
        "batch_id", "instance", "status",
    ]
    rejected = [l.split(",") for l in lines[1:] if ",rejected," in l]
    assert rejected, "the task too big for a slice must be rejected, not dropped"
    assert all(r[3] == "" and r[4] == "" and r[5] == "" and r[9] == "unplaced" for r in rejected)
    s = out.summary
    assert s["cluster"]["tasks_unplaced"] == 1
    assert s["per_task"]["huge"]["rejected"] == s["per_task"]["huge"]["arrived"] > 0
    for name in ("placement.json", "summary.json", "config.yaml", "provenance.json"):
        assert (tmp_path / name).exists()


def test_requests_csv_reads_back_as_the_records_it_was_written_from(tmp_path, base_raw):
    from fmplex_sim.metrics import read_requests_csv, write_requests_csv

    base_raw["drain_s"] = 0  # some unfinished, some rejected, most completed
    base_raw["tasks"][0]["arrival"]["rate_rps"] = 5000
    cfg = make_cfg(base_raw, system="spatial", duration_s=3)  # longer than its queue limit
    rec = simulate(cfg).records
    write_requests_csv(tmp_path / "requests.csv", rec)
    back = read_requests_csv(tmp_path / "requests.csv", rec.tasks)
    assert back.tasks == rec.tasks and back.instances == tuple(
        rec.instances[i] for i in dict.fromkeys(rec.instance[rec.instance >= 0].tolist()))
    assert np.array_equal(back.task, rec.task) and np.array_equal(back.batch_id, rec.batch_id)
    for col in ("arrival_s", "start_s", "finish_s"):
        assert np.allclose(getattr(back, col), getattr(rec, col), atol=1e-6, equal_nan=True), col
    assert np.array_equal(back.status(), rec.status()) and list(back.reason) == list(rec.reason)
    assert set(back.status().tolist()) == {0, 1, 2}
    names = np.array(back.instances)[back.instance[back.instance >= 0]]
    assert names.tolist() == np.array(rec.instances)[rec.instance[rec.instance >= 0]].tolist()


@pytest.mark.parametrize("system", ["spatial", "colocate", "fmplex"])
def test_accounting_holds_per_task_and_overall(base_raw, system):
    base_raw["drain_s"] = 0  # leave work unfinished on purpose
    base_raw["tasks"][0]["arrival"]["rate_rps"] = 20000  # overload
    out = simulate(make_cfg(base_raw, system=system, duration_s=2))
    s = out.summary
    req = s["requests"]
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"]
    assert req["unfinished"] > 0
    for t in s["per_task"].values():
        assert t["arrived"] == t["completed"] + t["rejected"] + t["unfinished"]


def test_same_seed_byte_identical_requests_csv_different_seed_differs(tmp_path, base_raw):
    from fmplex_sim.run import write_run

    paths = []
    for k, seed in enumerate([5, 5, 6]):
        cfg = make_cfg(base_raw, seed=seed)
        d = tmp_path / f"r{k}"
        write_run(d, cfg, simulate(cfg))
        paths.append((d / "requests.csv").read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]


def test_fmplex_beats_colocate_beats_spatial_at_moderate_load(base_raw):
    raw = base_raw
    raw["cluster"]["gpus"] = 2
    raw["tasks"] = [
        {"name": f"t{k}", "backbone": bb, "slo_ms": 80,
         "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 4}],
         "arrival": {"process": "poisson", "rate_rps": 60}}
        for k, bb in enumerate(["bert-base"] * 5 + ["vit-base"] * 4)
    ]
    cfg = make_cfg(raw, duration_s=20)
    wl = build_workload(cfg)
    res = {s: simulate(cfg.with_system(s), wl).summary for s in ("spatial", "colocate", "fmplex")}
    for key in ("mean", "p99"):
        f, c, s = (res[x]["latency_ms"][key] for x in ("fmplex", "colocate", "spatial"))
        assert f < c < s, (key, f, c, s)
    assert res["fmplex"]["cluster"]["memory_gib"] < res["colocate"]["cluster"]["memory_gib"]


def test_task_deployed_mid_run_pays_load_and_is_served(base_raw, linear):
    base_raw["tasks"].append({"name": "late", "backbone": "vit-base", "slo_ms": 100, "start_s": 4,
                              "arrival": {"process": "poisson", "rate_rps": 20}})
    cfg = make_cfg(base_raw)
    out = simulate(cfg, latency=linear(load_s=0.5))
    r = out.records
    k = r.tasks.index("late")
    mine = r.task == k
    assert mine.sum() > 0
    assert r.arrival_s[mine].min() >= 4.0
    # A new backbone copy and the extensions load before the first request of the task starts.
    assert np.nanmin(r.start_s[mine]) >= 4.0 + 0.5 + 0.5 - 1e-9
    assert out.summary["per_task"]["late"]["completed"] == mine.sum()


@pytest.mark.parametrize("mode,status", [("drain", "completed"), ("reject", "rejected")])
def test_task_end_drains_or_rejects_queued_requests(base_raw, linear, mode, status):
    base_raw["tasks"][0]["end_s"] = 5
    base_raw["tasks"][0]["arrival"]["rate_rps"] = 400  # capacity below is 250 rps: a queue builds
    base_raw["tasks"][0]["max_queue_ms"] = 60_000  # ... and waits seconds: no queue_timeout before end_s
    cfg = make_cfg(base_raw, system={"placement": "fmplex", "scheduler": "fifo", "on_task_end": mode,
                                     "max_batch": 2})
    out = simulate(cfg, latency=linear(fixed_s=0.008, per_row_s=0.0))
    pt = out.summary["per_task"]["a"]
    r = out.records
    a = r.task == r.tasks.index("a")
    assert r.arrival_s[a].max() < 5.0
    if mode == "drain":
        assert pt["rejected"] == 0 and pt["completed"] == pt["arrived"]
        assert np.nanmax(r.finish_s[a]) > 5.0  # served after end_s
    else:
        assert pt["rejected"] > 0
        assert set(np.asarray(r.reason, dtype=object)[a & ~np.isfinite(r.finish_s)]) == {"task_ended"}
        assert not np.any(r.start_s[a] > 5.0)


def test_flooding_task_cannot_take_more_than_its_weighted_share_under_bfq(base_raw, linear):
    base_raw["tasks"] = [
        {"name": n, "backbone": "bert-base", "slo_ms": 1000, "weight": 1,
         "arrival": {"process": "poisson", "rate_rps": r}}
        for n, r in [("flood", 4000), ("n1", 400), ("n2", 400), ("n3", 400)]
    ]
    # Capacity: 4 ms per batch of 4 rows = 1000 rows/s. The flood offers 16x its fair share
    # of 250 rows/s, each neighbour 1.6x: all four stay backlogged.
    cfg = make_cfg(base_raw, duration_s=10, drain_s=0,
                   system={"placement": "fmplex", "scheduler": "bfq", "max_batch": 4})
    s = simulate(cfg, latency=linear(fixed_s=0.004, per_row_s=0.0)).summary
    service = {t: s["per_task"][t]["service_s"] for t in ("flood", "n1", "n2", "n3")}
    total = sum(service.values())
    for t in ("n1", "n2", "n3"):
        assert abs(service[t] / total - 0.25) <= 0.025, service
    assert service["flood"] / total <= 0.25 * 1.1
    assert s["fairness"]["jain"] is not None and s["fairness"]["jain"] > 0.99


def test_fifo_lets_a_flooding_task_starve_neighbours(base_raw, linear):
    """The contrast to the bfq test: arrival order hands the flood its arrival share."""
    base_raw["tasks"] = [
        {"name": n, "backbone": "bert-base", "slo_ms": 1000, "arrival": {"process": "poisson", "rate_rps": r}}
        for n, r in [("flood", 2000), ("n1", 200), ("n2", 200), ("n3", 200)]
    ]
    cfg = make_cfg(base_raw, duration_s=10, drain_s=0,
                   system={"placement": "fmplex", "scheduler": "fifo", "max_batch": 4})
    s = simulate(cfg, latency=linear(fixed_s=0.004, per_row_s=0.0)).summary
    total = sum(s["per_task"][t]["service_s"] for t in s["per_task"])
    assert s["per_task"]["flood"]["service_s"] / total > 0.6


def test_summary_keys(base_raw):
    s = simulate(make_cfg(base_raw)).summary
    assert set(s["system"]) >= {"name", "placement", "scheduler"}
    assert set(s["latency_model"]) == {"kind", "source"}
    assert s["latency_model"]["kind"] == "roofline"
    assert set(s["requests"]) == {"arrived", "completed", "rejected", "unfinished"}
    assert set(s["latency_ms"]) == {"mean", "p50", "p95", "p99"}
    assert set(s["fairness"]) >= {"jain", "max_normalized_lag_s"}
    assert set(s["cluster"]) >= {"gpus_used", "tasks_hosted", "tasks_unplaced", "memory_gib"}
    assert set(s["run"]) == {"wall_s", "sim_requests_per_s"}
    for t in s["per_task"].values():
        assert set(t) >= {"arrived", "completed", "rejected", "unfinished", "weight",
                          "latency_ms", "slo_attainment", "service_s"}
    assert 0 <= s["slo_attainment"] <= 1
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["p99"]
    assert not math.isnan(s["throughput_rps"])


def test_backbone_copy_reloaded_after_retirement_pays_load_again(base_raw, linear):
    """fmplex drops a backbone copy whose last task ended; a later task must load it anew."""
    base_raw["tasks"] = [
        {"name": "a", "backbone": "bert-base", "slo_ms": 100, "end_s": 2,
         "arrival": {"process": "poisson", "rate_rps": 20}},
        {"name": "b", "backbone": "bert-base", "slo_ms": 100, "start_s": 4,
         "arrival": {"process": "poisson", "rate_rps": 20}},
    ]
    out = simulate(make_cfg(base_raw), latency=linear(load_s=0.25))
    r = out.records
    b = r.task == r.tasks.index("b")
    # backbone load (0.25 s) + extension load (0.25 s) before b's first batch
    assert np.nanmin(r.start_s[b]) >= 4.0 + 0.5 - 1e-9
    assert len(out.result.instances) == 2


@pytest.mark.parametrize("wait_ms,expected", [
    # No wait: r0 runs alone at once, r1 after it.
    (0.0, [(0, 0.0, 0.011, 0), (1, 0.011, 0.022, 1)]),
    # bfq waits up to 5 ms to grow the batch; r1 arrives at 2 ms and both run together.
    (5.0, [(0, 0.002, 0.014, 0), (1, 0.002, 0.014, 0)]),
])
def test_bfq_bounded_wait_grows_a_batch_exact_timeline(slow_raw, linear, wait_ms, expected):
    cfg = make_cfg(slow_raw, system={"placement": "fmplex", "scheduler": "bfq", "max_wait_ms": wait_ms})
    out = simulate(cfg, _wl(["a", "b"], [0.0, 0.002], [0, 0]), latency=linear())
    assert _timeline(out) == expected


def test_bounded_wait_expires_without_arrivals(slow_raw, linear):
    cfg = make_cfg(slow_raw, system={"placement": "fmplex", "scheduler": "bfq", "max_wait_ms": 5.0})
    out = simulate(cfg, _wl(["a", "b"], [0.0], [0]), latency=linear())
    # Nobody joins: the batch starts when the 5 ms wait ends.
    assert _timeline(out) == [(0, 0.005, 0.016, 0)]

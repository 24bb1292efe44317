"""Task lifecycle in the simulator: mid-run deploy, end and update (a new extension version)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import make_cfg
from fmplex_sim.config import parse_config
from fmplex_sim.errors import InputError
from fmplex_sim.run import build_workload, simulate, write_run


def _p99_ms(out, name: str, lo: float, hi: float) -> float:
    """p99 latency (ms) of ``name``'s requests that arrived in ``[lo, hi)`` and completed."""
    r = out.records
    sel = (r.task == r.tasks.index(name)) & (r.arrival_s >= lo) & (r.arrival_s < hi) & np.isfinite(r.finish_s)
    assert sel.sum() >= 50, f"too few requests of {name} in [{lo}, {hi}) for a p99"
    return float(np.percentile((r.finish_s[sel] - r.arrival_s[sel]) * 1000.0, 99))


# ---------------------------------------------------------------------------------------- config
def test_update_s_parses_round_trips_and_bumps_versions(base_raw):
    base_raw["tasks"][0]["update_s"] = 4
    cfg = make_cfg(base_raw)
    t = cfg.tasks[0]
    assert t.update_s == 4.0 and cfg.tasks[1].update_s is None
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False)), cfg.source)
    assert again == cfg
    new = t.next_version()
    assert [e.version for e in new.extensions] == [2, 2] and new.update_s is None
    assert [e.kind for e in new.extensions] == [e.kind for e in t.extensions]


@pytest.mark.parametrize("change,problem", [
    ({"update_s": 0}, "must be > 0"),
    ({"update_s": -1}, "must be > 0"),
    ({"update_s": "soon"}, "must be a number"),
    ({"start_s": 3, "update_s": 3}, "must be after start_s (3.0), got 3"),
    ({"end_s": 5, "update_s": 5}, "must be before end_s (5.0), got 5"),
    ({"update_s": 10}, "must be before duration_s (10), got 10"),
])
def test_bad_update_s_is_one_line_input_error(base_raw, change, problem):
    base_raw["tasks"][1].update(change)
    with pytest.raises(InputError) as e:
        make_cfg(base_raw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("test.yaml: tasks[1].update_s: ") and problem in msg, msg


# ---------------------------------------------------------------------------------------- engine
def test_update_swaps_after_the_new_version_loads_and_nothing_pauses(base_raw, linear, tmp_path):
    base_raw["tasks"][0]["update_s"] = 4
    cfg = make_cfg(base_raw, system={"placement": "fmplex", "scheduler": "bfq"})
    wl = build_workload(cfg)
    with_update = simulate(cfg, wl, latency=linear(load_s=0.5))
    base_raw["tasks"][0].pop("update_s")
    without = simulate(make_cfg(base_raw, system={"placement": "fmplex", "scheduler": "bfq"}), wl,
                       latency=linear(load_s=0.5))
    assert with_update.result.updated == {"a": pytest.approx(4.5)}
    assert without.result.updated == {}
    # ... and the results folder says when the new version took over
    write_run(tmp_path / "run", cfg, with_update)
    placement = json.loads((tmp_path / "run" / "placement.json").read_text())
    assert placement["updated_during_run"] == [{"task": "a", "swapped_s": pytest.approx(4.5)}]
    # The old version serves while the new one loads, and the swap costs no serving time: the
    # request timeline is exactly the one of the run without an update.
    for key in ("start_s", "finish_s", "batch_id"):
        np.testing.assert_array_equal(getattr(with_update.records, key), getattr(without.records, key))
    # Both versions are resident while the new one loads.
    assert with_update.result.peak_memory_gib > without.result.peak_memory_gib


def test_neighbours_p99_during_a_swap_within_10_percent_of_a_run_without_it(base_raw):
    """Roofline latencies with real load times: the other task's p99 over the swap window."""
    base_raw["tasks"][0]["update_s"] = 3
    for t in base_raw["tasks"]:
        t["arrival"]["rate_rps"] = 400
    cfg = make_cfg(base_raw)
    wl = build_workload(cfg)
    out = simulate(cfg, wl)
    swapped = out.result.updated["a"]
    assert 3.0 < swapped < 3.5
    base_raw["tasks"][0].pop("update_s")
    ref = simulate(make_cfg(base_raw), wl)
    for name in ("a", "b"):
        p_upd, p_ref = _p99_ms(out, name, 2.5, swapped + 0.5), _p99_ms(ref, name, 2.5, swapped + 0.5)
        assert p_upd <= 1.10 * p_ref, (name, p_upd, p_ref)


def test_update_due_while_the_task_loads_waits_for_it(base_raw, linear):
    base_raw["tasks"].append({"name": "late", "backbone": "vit-base", "slo_ms": 100, "start_s": 4,
                              "update_s": 4.2, "arrival": {"process": "poisson", "rate_rps": 20}})
    out = simulate(make_cfg(base_raw), latency=linear(load_s=0.5))
    # backbone 0.5 s + extensions 0.5 s: serving at 5.0; then the new version loads for 0.5 s
    assert out.result.updated["late"] == pytest.approx(5.5)
    assert out.summary["per_task"]["late"]["rejected"] == 0


def test_update_of_a_task_that_ended_meanwhile_is_dropped(base_raw, linear):
    base_raw["tasks"][0].update(update_s=4, end_s=4.2)
    out = simulate(make_cfg(base_raw), latency=linear(load_s=0.5))
    assert out.result.updated == {}


def test_a_loading_task_does_not_delay_another_tasks_end(base_raw, linear):
    """Lifecycle events run at their own time, even while another task's load is under way."""
    base_raw["tasks"][0].update(end_s=4.2, max_queue_ms=60_000)
    base_raw["tasks"][0]["arrival"]["rate_rps"] = 400  # a queue builds (capacity 250 rps)
    base_raw["tasks"].append({"name": "late", "backbone": "vit-base", "slo_ms": 100, "start_s": 4,
                              "arrival": {"process": "poisson", "rate_rps": 20}})
    cfg = make_cfg(base_raw, system={"placement": "fmplex", "scheduler": "fifo", "on_task_end": "reject",
                                     "max_batch": 2})
    out = simulate(cfg, latency=linear(fixed_s=0.008, per_row_s=0.0, load_s=0.5))
    r = out.records
    a = r.task == r.tasks.index("a")
    assert out.summary["per_task"]["a"]["rejected"] > 0
    assert np.nanmax(r.start_s[a]) <= 4.2 + 1e-9  # rejected at 4.2, not when "late" is ready at 5.0


def test_update_after_a_traces_span_is_refused_once_the_trace_sets_the_duration(base_raw):
    """A trace config without duration_s takes the shaped trace's span (120 s for this sample)."""
    from pathlib import Path

    from fmplex_sim.run import prepare

    raw = {k: v for k, v in base_raw.items() if k != "duration_s"}
    sample = Path(__file__).resolve().parents[1] / "traces" / "samples" / "native_zipf_onoff.csv"
    raw["workload"] = {"trace": {"format": "native", "path": str(sample)}, "tasks": {"count": 2}}
    for t in raw["tasks"]:
        t.pop("arrival")
    raw["tasks"][0]["update_s"] = 100
    cfg, _, _ = prepare(make_cfg(raw))  # within the trace's span
    assert cfg.tasks[0].update_s == 100
    raw["tasks"][0]["update_s"] = 500
    with pytest.raises(InputError, match=r"tasks\[0\]\.update_s: must be before duration_s"):
        prepare(make_cfg(raw))

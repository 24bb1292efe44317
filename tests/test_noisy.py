"""Noisy-neighbour guarantee in the simulator: one task offered 10x its weighted share.

A scenario generator draws, per seed, 1-2 *heavy* neighbours offered 2-3x their share (they
stay backlogged) and 1-2 *light* neighbours offered 0.2-0.5x their share, with weights in
{1, 2, 3}, next to the *flood* offered 10x its share; shares are weighted fractions of the
capacity measured by saturating the same instance with one task. Two instances: MiniLM-L6 on
the 2-core CPU (the measured profile, 16-token inputs) and BERT-base on an H100 (roofline,
128-token inputs); max_batch 16, placement fmplex.

Checked (README, section "Isolation"):
- bfq: every backlogged task (flood and heavies) receives within 10% of its weighted max-min
  fair share of backbone time: what the light tasks leave, split by weight;
- fifo: the flood takes more than its share and the heavies get less (what breaks);
- the light tasks' p99 against their p99 alone: the 1.5x target is not met under bfq (about
  1.9-5.5x); the test is a strict xfail with the reason, so a scheduler that meets it shows up;
- bfq with ``light_first`` keeps the shares fair and lowers that ratio on average on the CPU
  (3.5-4.3x), still short of 1.5x (also a strict xfail).
- no light task takes more than 1.1x its weighted share of all the backbone time, so the
  max-min shares above (light tasks get what they take) are fair ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmplex_sim.config import parse_config
from fmplex_sim.isolation import report
from fmplex_sim.run import simulate

PROFILE = str(Path(__file__).resolve().parents[1] / "profiles" / "cpu-2core" / "minilm-l6.csv")
# setup -> (device, backbone, latency model, input_len, slo_ms, duration_s)
SETUPS = {
    "cpu-minilm": ("CPU", "minilm-l6", {"profile": PROFILE}, 16, 1000, 10.0),
    "h100-bert": ("H100-80GB", "bert-base", "roofline", 128, 50, 0.5),
}
SEEDS = range(4)


def _cfg(setup: str, tasks, scheduler: str, seed: int, duration_s: float | None = None, **system_keys):
    """``scheduler``: fifo, bfq, or bfq+lf (bfq with light_first); ``system_keys``: more keys of
    the config's ``system`` (e.g. ``pipeline_depth``)."""
    device, bb, lat, input_len, slo_ms, dur = SETUPS[setup]
    name, _, lf = scheduler.partition("+")
    system = {"placement": "fmplex", "scheduler": name, "max_batch": 16, **system_keys}
    if lf:
        system["light_first"] = True
    return parse_config({
        "seed": seed, "duration_s": duration_s or dur, "drain_s": 0,
        "cluster": {"device": device, "gpus": 1}, "latency_model": lat,
        "system": system,
        "tasks": [{"name": n, "backbone": bb, "weight": w, "input_len": input_len, "slo_ms": slo_ms,
                   "extensions": [{"kind": "lora", "rank": 8}, {"kind": "head", "outputs": 2}],
                   "arrival": {"process": "poisson", "rate_rps": r}} for n, w, r in tasks],
    }, "noisy.yaml")


def capacity_rps(setup: str) -> float:
    """Requests per second one task completes when it saturates the instance alone."""
    dur = 2.0
    flood = 1e5 if SETUPS[setup][0] != "CPU" else 2000.0
    s = simulate(_cfg(setup, [("probe", 1.0, flood)], "fifo", 0, dur)).summary
    return s["per_task"]["probe"]["completed"] / dur


def scenario(seed: int, cap_rps: float) -> list[tuple[str, float, float]]:
    """(name, weight, offered rps) of the flood, 1-2 heavy and 1-2 light neighbours."""
    rng = np.random.default_rng(seed)
    n_heavy, n_light = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    names = ["flood"] + [f"heavy{i}" for i in range(n_heavy)] + [f"light{i}" for i in range(n_light)]
    w = {n: float(rng.choice([1, 2, 3])) for n in names}
    total = sum(w.values())
    backlogged = sum(v for n, v in w.items() if not n.startswith("light"))
    out = []
    for n in names:
        if n == "flood":
            rate = 10.0 * cap_rps * w[n] / total
        elif n.startswith("heavy"):  # 2-3x even the share it has when the light tasks take nothing
            rate = float(rng.uniform(2, 3)) * cap_rps * w[n] / backlogged
        else:
            rate = float(rng.uniform(0.2, 0.5)) * cap_rps * w[n] / total
        out.append((n, w[n], rate))
    return out


def weighted_shares(tasks) -> dict[str, float]:
    """Task -> its weight over all the tasks' weights (its share when every task is backlogged)."""
    wsum = sum(w for _, w, _ in tasks)
    return {n: w / wsum for n, w, _ in tasks}


def fair_share_ratios(summary: dict, tasks) -> dict[str, float]:
    """Backlogged task -> service received / its weighted max-min fair share (light tasks get
    what they ask; the rest of the backbone time is split by weight among the backlogged)."""
    pt = summary["per_task"]
    weight = {n: w for n, w, _ in tasks}
    back = [n for n in pt if not n.startswith("light")]
    rest = sum(p["service_s"] for p in pt.values()) - sum(pt[n]["service_s"] for n in pt if n not in back)
    wsum = sum(weight[n] for n in back)
    return {n: pt[n]["service_s"] / (rest * weight[n] / wsum) for n in back}


@pytest.fixture(scope="module")
def runs():
    """setup -> seed -> (tasks, {scheduler: summary}); computed once for the module."""
    out = {}
    for setup in SETUPS:
        cap = capacity_rps(setup)
        out[setup] = {}
        for seed in SEEDS:
            tasks = scenario(seed, cap)
            out[setup][seed] = (tasks, {s: simulate(_cfg(setup, tasks, s, seed)).summary for s in ("bfq", "fifo", "bfq+lf")})
    return out


@pytest.mark.parametrize("sched", ["bfq", "bfq+lf"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_bfq_gives_every_backlogged_task_its_weighted_share_within_10_percent(runs, setup, sched):
    for seed, (tasks, by_sched) in runs[setup].items():
        ratios = fair_share_ratios(by_sched[sched], tasks)
        assert all(0.9 <= r <= 1.1 for r in ratios.values()), (seed, tasks, ratios)


@pytest.mark.parametrize("sched", ["bfq", "bfq+lf"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_light_tasks_stay_within_their_weighted_share(runs, setup, sched):
    """The max-min share above gives a light task what it takes; that is fair only while it
    takes no more than its weighted share of all the backbone time (all tasks' weights). A rule
    that lets light tasks run as they do alone breaks this on the H100 (README, Isolation)."""
    for seed, (tasks, by_sched) in runs[setup].items():
        pt = by_sched[sched]["per_task"]
        total = sum(p["service_s"] for p in pt.values())
        for n, share in weighted_shares(tasks).items():
            if n.startswith("light"):
                assert pt[n]["service_s"] <= 1.1 * total * share, (seed, n, pt[n]["service_s"] / total, share)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_isolation_report_agrees_with_the_scenario(runs, setup):
    """``fmplex-sim isolation``'s report (fmplex_sim.isolation), which knows no task names, finds
    the flood and heavy tasks backlogged and the light ones not, and the same fair-share ratios."""
    for seed, (tasks, by_sched) in runs[setup].items():
        s = by_sched["bfq"]
        rep = report("flood", s, {"instances": [{"tasks": list(s["per_task"])}]}, {}, None)["tasks"]
        assert {n: r["backlogged"] for n, r in rep.items()} == {n: not n.startswith("light") for n, _, _ in tasks}
        for n, ratio in fair_share_ratios(s, tasks).items():
            assert rep[n]["share_ratio"] == pytest.approx(ratio, abs=2e-4), (seed, n)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_fifo_lets_the_flood_take_the_heavy_neighbours_share(runs, setup):
    for seed, (tasks, by_sched) in runs[setup].items():
        ratios = fair_share_ratios(by_sched["fifo"], tasks)
        assert ratios["flood"] > 1.3, (seed, ratios)
        assert min(r for n, r in ratios.items() if n != "flood") < 0.85, (seed, ratios)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_light_neighbours_p99_is_protected_by_bfq_and_lost_under_fifo(runs, setup):
    """bfq keeps a light neighbour's p99 a few full batches; fifo queues it behind the flood
    for most of the run (no drain: most of its requests are still queued at the end)."""
    slo_ms = SETUPS[setup][4]
    for seed, (tasks, by_sched) in runs[setup].items():
        for n, _, _ in tasks:
            if n.startswith("light"):
                bfq = by_sched["bfq"]["per_task"][n]["latency_ms"]["p99"]
                fifo = by_sched["fifo"]["per_task"][n]["latency_ms"]["p99"]
                assert bfq < 0.1 * fifo and fifo > 5 * slo_ms, (seed, n, bfq, fifo)


def _light_ratios(runs, setup: str, sched: str) -> list[float]:
    """Every light task's p99 under ``sched`` over its p99 alone under ``sched``, all seeds."""
    out = []
    for seed, (tasks, by_sched) in runs[setup].items():
        for n, w, r in tasks:
            if n.startswith("light"):
                alone = simulate(_cfg(setup, [(n, w, r)], sched, seed)).summary["per_task"][n]["latency_ms"]["p99"]
                out.append(by_sched[sched]["per_task"][n]["latency_ms"]["p99"] / alone)
    return out


@pytest.mark.parametrize("setup", ["cpu-minilm"])
def test_light_first_lowers_light_neighbours_p99_against_alone(runs, setup):
    """light_first (virtual-deadline order, short batches for newly backlogged tasks) brings the
    light tasks' p99 / alone down on average over the seeds on the CPU (README: 4.0-5.5x ->
    3.5-4.3x); the shares stay fair (test above). On the H100, since bfq fills batches row by
    row, it no longer does (1.9-2.3x -> 1.8-3.2x), so that setup is not asserted."""
    plain = _light_ratios(runs, setup, "bfq")
    lf = _light_ratios(runs, setup, "bfq+lf")
    assert np.mean(lf) < 0.85 * np.mean(plain), (lf, plain)


@pytest.mark.xfail(strict=True, reason=(
    "not met: under bfq a light neighbour's p99 is 1.9-5.5x its p99 alone, 1.8-4.3x with "
    "light_first (README, Isolation). Batches are not preemptible: it waits for the batch in "
    "flight, then shares a batch, where alone it runs batches of one or two. On the H100 every "
    "light task alone uses more than its weighted share of backbone time, so it cannot be served "
    "as it is alone while the backlogged tasks keep their share."))
@pytest.mark.parametrize("sched", ["bfq", "bfq+lf"])
@pytest.mark.parametrize("setup", list(SETUPS))
def test_light_neighbours_p99_within_1_5x_of_alone_under_bfq(runs, setup, sched):
    assert max(_light_ratios(runs, setup, sched)) <= 1.5

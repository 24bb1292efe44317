"""The accounting of experiments/validation/overlap_wake.py: the solo work a batch did while
another ran, as the simulator's processor sharing (fmplex_sim.sharing.SharedCores) counts it,
and the slowdown that makes two measured batches' times consistent with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script
import simpy

from fmplex_sim.sharing import SharedCores

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "validation" / "overlap_wake.py"


@pytest.fixture(scope="module")
def tool():
    return load_script(SCRIPT)


def _shared(jobs, c):
    """(start_s, work_s) jobs on SharedCores slowed ``c`` at two at once: their (start, end)."""
    env = simpy.Environment()
    cores = SharedCores(env, lambda k: c if k == 2 else float(k))
    spans = {}

    def starter(i, t, w):
        yield env.timeout(t)
        cores.add(w, lambda: spans.__setitem__(i, (t, env.now)))

    for i, (t, w) in enumerate(jobs):
        env.process(starter(i, t, w))
    env.run()
    return [spans[i] for i in range(len(jobs))]


@pytest.mark.parametrize("c", [1.0, 1.5, 1.93, 2.6])
@pytest.mark.parametrize("jobs", [
    [(0.0, 0.020), (0.005, 0.020)],  # B starts into A's batch and outlasts it
    [(0.0, 0.040), (0.010, 0.008)],  # B starts and ends inside A's batch
    [(0.0, 0.010), (0.030, 0.012)],  # apart: nothing shared
])
def test_solo_work_recovers_what_the_engine_ran_and_the_slowdown_is_its_inverse(tool, jobs, c):
    a, b = _shared(jobs, c)
    for (mine, other), (_, work) in (((b, a), jobs[1]), ((a, b), jobs[0])):
        assert tool.overlap_solo_ms(mine, other, c) == pytest.approx(work * 1000.0)
        met = tool.overlap_slowdown(mine, other, work * 1000.0)
        if tool._overlap_s(mine, other) > 0:
            assert met == pytest.approx(c)
        else:
            assert met is None  # nothing overlapped: no slowdown to find


def test_a_batch_slower_than_its_whole_overlap_can_explain_has_no_slowdown(tool):
    # 10 ms overlapped, but 15 ms lost over a 5 ms solo time: no c makes that consistent
    assert tool.overlap_slowdown((0.0, 0.020), (0.010, 0.030), 5.0) is None
    # a batch no slower than alone met no slowdown
    assert tool.overlap_slowdown((0.0, 0.020), (0.010, 0.030), 20.0) == 1.0

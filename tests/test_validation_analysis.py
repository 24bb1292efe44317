"""The replay analysis of experiments/validation/isolated_batches.py on a hand-made requests.csv:
which batches started beside a running one, their instance's idle gap, and how long k batches
ran at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "validation" / "isolated_batches.py"
HEADER = "request_id,task,arrival_s,start_s,finish_s,latency_ms,batch_id,instance,status,reason\n"
# instance a: batch 0 (two requests) 0.00-0.10, batch 2 at 0.30-0.36; b: batch 1 starts at 0.05
# inside a's first batch and ends at 0.20; c: a rejected request (no batch)
ROWS = [
    (0, "x", 0.00, 0.00, 0.10, 0, "g0/a", "completed"),
    (1, "x", 0.00, 0.00, 0.10, 0, "g0/a", "completed"),
    (2, "y", 0.05, 0.05, 0.20, 1, "g0/b", "completed"),
    (3, "x", 0.30, 0.30, 0.36, 2, "g0/a", "completed"),
    (4, "z", 0.31, "", "", "", "g0/c", "rejected"),
]


@pytest.fixture(scope="module")
def tool():
    return load_script(SCRIPT)


@pytest.fixture
def requests_csv(tmp_path):
    path = tmp_path / "requests.csv"
    lines = [HEADER]
    for rid, task, arr, start, fin, batch, inst, status in ROWS:
        lat = f"{(fin - arr) * 1000:.3f}" if fin != "" else ""
        lines.append(f"{rid},{task},{arr},{start},{fin},{lat},{batch},{inst},{status},"
                     f"{'queue_timeout' if status == 'rejected' else ''}\n")
    path.write_text("".join(lines))
    return path


def test_started_beside_marks_only_batches_that_began_inside_another_instances(tool, requests_csv):
    out = tool.started_beside(requests_csv)
    assert set(out) == {"0", "1", "2", "3"}  # the rejected request ran in no batch
    ms, task, idle, beside = out["2"]
    assert beside and task == "y" and idle is None and ms == pytest.approx(150.0)
    assert not out["0"][3] and not out["1"][3]  # a's first batch started first
    ms, _, idle, beside = out["3"]  # a again, after 0.2 s idle, with nothing running
    assert not beside and idle == pytest.approx(0.2) and ms == pytest.approx(60.0)


def test_concurrency_splits_the_busy_time_by_how_many_batches_ran(tool, requests_csv):
    busy, share = tool.concurrency(requests_csv)
    # 0-0.05 one batch, 0.05-0.10 two, 0.10-0.20 one, 0.30-0.36 one: 0.26 s busy
    assert busy == pytest.approx(0.26)
    assert share[1] == pytest.approx(0.21 / 0.26) and share[2] == pytest.approx(0.05 / 0.26)
    assert set(share) == {1, 2}

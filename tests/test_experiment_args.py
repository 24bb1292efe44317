"""The validation experiments' scripts refuse a bad argument as the CLI does: exit 2 and one
line naming the flag and what is wrong, before anything is measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "experiments" / "validation"


@pytest.mark.parametrize("script,args,says", [
    ("contention_shapes.py", ["--shapes", "1x16,4"], "argument --shapes: '4' is not BATCHxSEQ_LEN"),
    ("contention_shapes.py", ["--streams", "2,3"], "--streams: '2,3' is not increasing thread counts from 1"),
    ("overlap_wake.py", ["--other", "0x64"], "argument --other: '0x64' is not BATCHxSEQ_LEN"),
    ("overlap_wake.py", ["--other", "1x16,1x64"], "--other: one shape"),
    ("overlap_wake.py", ["--pairs", "0"], "--pairs must be >= 1"),
    ("wake_beside.py", ["--shapes", "1xa"], "argument --shapes: '1xa' is not BATCHxSEQ_LEN"),
    ("host_spells.py", ["--probes", "0"], "--probes must be >= 1"),
    ("duty_cycle.py", ["--gaps", "30,-1"], "argument --gaps: every gap must be a positive number of ms"),
    ("duty_cycle.py", ["--gaps", "30,x"], "argument --gaps: expected comma-separated numbers"),
    ("duty_cycle.py", ["--shape", "1x16,1x64"], "--shape: give one BATCHxSEQ_LEN"),
    ("duty_cycle.py", ["--cycles", "0"], "--cycles at least 1"),
    ("idle_wait.py", ["--gaps", "0"], "argument --gaps: every gap must be a positive number of ms"),
    ("idle_wait.py", ["--batches", "0"], "--batches and --rounds must be at least 1"),
    ("idle_wait.py", ["--shape", "2x8,1x8"], "--shape: give one BATCHxSEQ_LEN"),
    ("forward_protocol.py", ["--watch", "1xb"], "argument --watch: '1xb' is not BATCHxSEQ_LEN"),
    ("forward_protocol.py", ["--rounds", "0"], "--rounds must be at least 1"),
    ("resimulate.py", [".", "--first", "0"], "--first: give a number of rounds"),
    ("resimulate.py", [".", "--first", "2", "--profile", "p.csv"], "they take no --profile"),
])
def test_a_bad_argument_exits_2_naming_it(script, args, says, tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_duty_cycle_bins_each_gap_and_time_once():
    """duty_cycle.py's tables: a gap falls in the bin whose bounds hold it (lower bound in,
    upper out; outside every bin: None), a time into a phase in exactly one window."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import duty_cycle as D
    finally:
        sys.path.remove(str(SCRIPTS))
    assert D.gap_bin(D.BINS_MS[0] - 1e-9) is None and D.gap_bin(D.BINS_MS[-1]) is None
    for k, (lo, hi) in enumerate(zip(D.BINS_MS, D.BINS_MS[1:])):
        assert D.gap_bin(lo) == k and D.gap_bin((lo + hi) / 2) == k and D.gap_bin(hi - 1e-9) == k
    assert [D.window(t) for t in (0.0, 1.99, 2.0, 9.99, 10.0, 1e6)] == [0, 0, 1, 2, 3, 3]

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

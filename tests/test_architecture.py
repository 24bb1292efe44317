"""The rules of ARCHITECTURE.md's "Never" section, checked on the source tree."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIM = ROOT / "fmplex_sim"
POLICIES = SIM / "policies"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(POLICIES.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_policies_import_no_engine_no_torch_no_clock(path):
    bad = _imports(path) & {"simpy", "torch", "time", "datetime", "random", "fmplex_exec"}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted(SIM.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_simulator_never_imports_the_harness_or_torch(path):
    assert not _imports(path) & {"fmplex_exec", "torch", "transformers", "peft"}


def test_simulation_runs_without_loading_torch(tmp_path):
    code = (
        "import sys, json\n"
        "from fmplex_sim.config import load_config\n"
        "from fmplex_sim.run import simulate\n"
        f"cfg = load_config({str(ROOT / 'experiments/demo/config.yaml')!r}, ['duration_s=1'])\n"
        "simulate(cfg)\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'peft', 'fmplex_exec') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_global_random_state_in_simulator():
    for path in SIM.rglob("*.py"):
        text = path.read_text()
        assert "np.random.seed" not in text and "random.seed(" not in text, path
        assert "np.random.rand" not in text and "np.random.normal(" not in text, path


def test_fmplex_exec_env_reports_the_stack():
    from fmplex_exec.cli import main

    out = subprocess.run(
        [sys.executable, "-m", "fmplex_exec.cli", "env", "--json"], capture_output=True, text=True, check=True
    )
    info = json.loads(out.stdout)
    assert set(info["packages"]) == {"torch", "transformers", "peft"}
    assert main(["env"]) == 0

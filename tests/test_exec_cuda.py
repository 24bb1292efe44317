"""The same harness code path on CUDA (marker ``gpu``: skipped where no CUDA device exists)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the execution harness needs the exec extra")

from fmplex_exec.backbones import load_backbone, make_inputs  # noqa: E402
from fmplex_exec.vfm import ExecRequest, PhysicalFM, standalone_model  # noqa: E402
from fmplex_sim.specs import ExtensionSpec, TaskSpec  # noqa: E402

TASKS = [
    TaskSpec("a", "minilm-l6", (ExtensionSpec("lora", rank=8), ExtensionSpec("head", outputs=3))),
    TaskSpec("b", "minilm-l6", (ExtensionSpec("lora", rank=16), ExtensionSpec("head", outputs=5))),
]


@pytest.mark.gpu
def test_mixed_batch_matches_standalone_models_on_cuda():
    fm = PhysicalFM(load_backbone("minilm-l6", device="cuda"))
    for t in TASKS:
        fm.add_task(t)
    gen = torch.Generator().manual_seed(3)
    rows = []
    for i, length in enumerate([12, 30, 7, 19]):
        task = TASKS[i % 2]
        x = make_inputs(fm.backbone, [length], gen)
        rows.append((task, x, ExecRequest(task.name, length, x)))
    results = fm.run_batch([r for _, _, r in rows])
    for (task, x, _), res in zip(rows, results):
        assert res.ok, res.error
        ref = standalone_model("minilm-l6", task, device="cuda")(x)[0]
        err = (res.output - ref).norm() / ref.norm()
        assert err < 1e-4, (task.name, float(err))


@pytest.mark.gpu
def test_replay_runs_on_cuda(tmp_path):
    import yaml

    from fmplex_exec.cli import main

    cfg = {"seed": 1, "duration_s": 2, "drain_s": 30, "cluster": {"device": "H100-80GB", "gpus": 1},
           "system": "fmplex", "tasks": [
               {"name": t.name, "backbone": "minilm-l6", "slo_ms": 200, "input_len": 32,
                "extensions": [e.to_dict() for e in t.extensions],
                "arrival": {"process": "poisson", "rate_rps": 20}} for t in TASKS]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["replay", str(path), "--out", str(tmp_path / "r"), "--device", "cuda"]) == 0

"""The simulator's memory model against real parameter bytes of loaded backbones and vFMs."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the execution harness needs the exec extra")

from fmplex_exec.backbones import load_backbone  # noqa: E402
from fmplex_exec.vfm import PhysicalFM  # noqa: E402
from fmplex_sim import costs  # noqa: E402
from fmplex_sim.catalog import get_backbone  # noqa: E402
from fmplex_sim.specs import ExtensionSpec, TaskSpec  # noqa: E402


@pytest.mark.parametrize("name", ["minilm-l6", "bert-base", "vit-base", "moment-1-small", "chronos-t5-small"])
def test_backbone_bytes_agree_with_the_simulator_within_10_percent(name):
    bb = load_backbone(name)
    real = bb.weight_bytes()
    model = get_backbone(name).weight_bytes(4)  # float32
    assert abs(real - model) / real < 0.10, (name, real, model)


def test_encoder_decoder_backbones_keep_the_decoder_resident_but_run_the_encoder():
    """Chronos requests run the T5 encoder; the decoder is loaded (the checkpoint's memory) but
    is not part of the model that runs, so no adapter or forward touches it."""
    bb = load_backbone("chronos-t5-small")
    spec = get_backbone("chronos-t5-small")
    run = sum(p.numel() for p in bb.model.parameters())
    encoder = spec.layers * costs.layer_params(spec) + spec.vocab * spec.hidden
    assert abs(run - encoder) / run < 0.10
    assert bb.resident is not None and bb.resident_bytes() > 0.8 * run * 4
    fm = PhysicalFM(bb)
    assert fm.backbone_bytes() == bb.weight_bytes()


def test_shared_backbone_memory_of_many_tasks_agrees_with_the_simulator():
    fm = PhysicalFM(load_backbone("minilm-l6"))
    spec = get_backbone("minilm-l6")
    tasks = [TaskSpec(f"t{k}", "minilm-l6", (ExtensionSpec("lora", rank=4 * (k + 1)),
                                             ExtensionSpec("head", outputs=3 + k)))
             for k in range(6)]
    for t in tasks:
        fm.add_task(t)
    real = fm.backbone_bytes() + sum(fm.extension_bytes(t.name) for t in tasks)
    model = spec.weight_bytes(4) + sum(costs.extension_bytes(e, spec, 4) for t in tasks for e in t.extensions)
    assert abs(real - model) / real < 0.10
    # Sharing: the six tasks cost a few percent of one backbone copy, not six copies.
    assert sum(fm.extension_bytes(t.name) for t in tasks) < 0.1 * fm.backbone_bytes()

"""PhysicalFM: mixed-task batches over one backbone match dedicated merged models; live
add/remove/update; bad-input and bad-task isolation; extension memory."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("transformers")

from fmplex_exec import vfm as vfm_mod  # noqa: E402
from fmplex_exec.backbones import load_backbone, make_inputs  # noqa: E402
from fmplex_exec.vfm import ExecRequest, PhysicalFM, standalone_model  # noqa: E402
from fmplex_sim import costs  # noqa: E402
from fmplex_sim.specs import ExtensionSpec as E  # noqa: E402
from fmplex_sim.specs import TaskSpec  # noqa: E402

TOL = 1e-4


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def make_tasks(bb_name: str) -> list[TaskSpec]:
    return [
        TaskSpec("r4", bb_name, (E("lora", rank=4, targets=("q", "v"), alpha=8.0), E("head", outputs=3))),
        TaskSpec("r8", bb_name, (E("lora", rank=8, targets=("q", "k", "v", "o")), E("head", outputs=5),
                                 E("encoder", params=40_000))),
        TaskSpec("r16", bb_name, (E("lora", rank=16, targets=("up", "down"), alpha=32.0), E("head", outputs=7))),
        TaskSpec("plain", bb_name, (E("head", outputs=2),)),
    ]


SEEDS = {"r4": 11, "r8": 12, "r16": 13, "plain": 14}


class Setup:
    def __init__(self, name: str) -> None:
        self.bb = load_backbone(name, seed=0)
        self.fm = PhysicalFM(self.bb)
        self.tasks = make_tasks(name)
        for t in self.tasks:
            self.fm.add_task(t, seed=SEEDS[t.name])
        self.ref = {t.name: standalone_model(name, t, SEEDS[t.name], backbone_seed=0) for t in self.tasks}


@pytest.fixture(scope="module", params=["minilm-l6", "chronos-t5-tiny"])
def setup(request):
    return Setup(request.param)


@pytest.fixture(scope="module")
def minilm():
    return Setup("minilm-l6")


def mixed_requests(bb, names: list[str], per_task: int, gen: torch.Generator, lo=3, hi=40):
    """Interleaved rows of ``names`` with random lengths, each with its own single-row inputs."""
    reqs = []
    for k in range(per_task):
        for name in names:
            n = int(torch.randint(lo, hi, (1,), generator=gen))
            reqs.append(ExecRequest(name, n, make_inputs(bb, [n], gen)))
    return reqs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_batch_matches_standalone_merged_models(setup, seed):
    gen = torch.Generator().manual_seed(1000 + seed)
    names = [t.name for t in setup.tasks]
    reqs = mixed_requests(setup.bb, names, 3, gen)  # rows interleaved r4, r8, r16, plain, r4, ...
    assert len({r.length for r in reqs}) > 3  # really different lengths, padded in one batch
    res = setup.fm.run_batch(reqs)
    assert all(r.ok for r in res), [r.error for r in res if not r.ok]
    for t in setup.tasks:
        mine = [(q, r) for q, r in zip(reqs, res) if q.task == t.name]
        # the same inputs through the task's dedicated merged model, without the other tasks' rows
        lens = [q.length for q, _ in mine]
        inputs = {"input_ids": torch.zeros(len(mine), max(lens), dtype=torch.long),
                  "attention_mask": torch.zeros(len(mine), max(lens), dtype=torch.long)}
        for i, (q, _) in enumerate(mine):
            inputs["input_ids"][i, :q.length] = q.inputs["input_ids"][0]
            inputs["attention_mask"][i, :q.length] = 1
        want = setup.ref[t.name](inputs)
        for i, (q, r) in enumerate(mine):
            assert r.task == t.name and r.output.shape == want[i].shape
            err = rel(r.output, want[i])
            assert err < TOL, (t.name, q.length, err)
    # one row alone through the standalone model (no padding at all) agrees as well
    q, r = reqs[seed], res[seed]
    assert rel(r.output, setup.ref[q.task](q.inputs)[0]) < TOL


def test_adapters_change_outputs(setup):
    """Against the plain backbone with the same encoder/head: each LoRA moves the output."""
    gen = torch.Generator().manual_seed(7)
    base = setup.ref["plain"].backbone  # no adapter merged into it
    for t in setup.tasks:
        inputs = make_inputs(setup.bb, [17], gen)
        got = setup.fm.run_batch([ExecRequest(t.name, 17, inputs)])[0].output
        with torch.inference_mode():
            pooled = base.pooled(base.model(**inputs), inputs["attention_mask"])
            plain = vfm_mod._apply_task_modules(pooled, setup.fm.encoder(t.name), setup.fm.head(t.name))[0]
        d = rel(got, plain)
        if t.name == "plain":
            assert d < TOL
        else:
            assert d > 1e-2, (t.name, d)
    ids = [setup.fm.adapter_name(t.name) for t in setup.tasks]
    assert ids[:3] == ["r4@v1", "r8@v1", "r16@v1"] and ids[3] is None


def _snapshot(fm, reqs):
    res = fm.run_batch(reqs)
    assert all(r.ok for r in res), [r.error for r in res if not r.ok]
    return [r.output.clone() for r in res]


def test_add_remove_update_while_serving(monkeypatch):
    bb = load_backbone("minilm-l6", seed=0)
    model_id, bb_id = id(bb.model), id(bb)
    fm = PhysicalFM(bb)
    t_r4, t_r8, t_r16, t_plain = make_tasks("minilm-l6")
    fm.add_task(t_plain, seed=1)  # no LoRA yet: plain model path
    fm.add_task(t_r4, seed=2)  # first LoRA: peft wraps the model in place
    backbone_bytes = fm.backbone_bytes()
    assert backbone_bytes == sum(p.numel() * 4 for n, p in bb.model.named_parameters() if "lora_" not in n)

    ref_v2 = standalone_model("minilm-l6", t_r16, 5)  # the reference loads its own copy, before the guard

    def no_reload(*a, **k):
        raise AssertionError("backbone reloaded")

    monkeypatch.setattr(vfm_mod, "load_backbone", no_reload)
    gen = torch.Generator().manual_seed(3)
    others = mixed_requests(bb, ["plain", "r4"], 3, gen)
    before = _snapshot(fm, others)

    fm.add_task(t_r16, seed=4)
    assert fm.tasks() == ["plain", "r4", "r16"]
    r16_reqs = mixed_requests(bb, ["r16"], 2, gen)
    r16_v1 = _snapshot(fm, r16_reqs)
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(fm, others)))  # bit-for-bit

    fm.update_task(t_r16, seed=5)  # new version, new weights
    assert fm.adapter_name("r16") == "r16@v2"
    assert set(fm.peft_model.peft_config) == {"r4@v1", "r16@v2"}  # old version deleted
    r16_v2 = _snapshot(fm, r16_reqs)
    assert all(rel(a, b) > 1e-2 for a, b in zip(r16_v2, r16_v1))
    for q, out in zip(r16_reqs, r16_v2):
        assert rel(out, ref_v2(q.inputs)[0]) < TOL
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(fm, others)))

    fm.add_task(t_r8, seed=6)
    fm.remove_task("r16")
    assert "r16" not in fm.tasks() and set(fm.peft_model.peft_config) == {"r4@v1", "r8@v1"}
    from peft.tuners.lora import LoraLayer

    for m in bb.model.modules():
        if isinstance(m, LoraLayer):
            assert "r16@v2" not in m.lora_A and "r16@v2" not in m.lora_B
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(fm, others)))
    gone = fm.run_batch(r16_reqs[:1] + others[:1])
    assert not gone[0].ok and "unknown task" in gone[0].error and gone[1].ok

    # updating a task changes only that task
    fm.update_task(t_r4, seed=7)
    after = fm.run_batch(others)
    for q, a, b in zip(others, before, after):
        if q.task == "r4":
            assert rel(b.output, a) > 1e-2
        else:
            assert torch.equal(a, b.output)
    with pytest.raises(ValueError, match="already deployed"):
        fm.add_task(t_r8)
    with pytest.raises(KeyError):
        fm.remove_task("r16")
    assert id(bb.model) == model_id and id(fm.backbone) == bb_id
    assert fm.peft_model.get_base_model() is bb.model
    assert fm.backbone_bytes() == backbone_bytes

    # removing every LoRA task leaves a working base path
    fm.remove_task("r4")
    fm.remove_task("r8")
    res = fm.run_batch(others)
    assert [r.ok for r in res] == [q.task == "plain" for q in others]
    for q, a, b in zip(others, before, res):
        if q.task == "plain":
            assert torch.equal(a, b.output)
    fm.add_task(t_r4, seed=2)  # and LoRA tasks can come back
    res = fm.run_batch(others)
    assert all(r.ok for r in res)
    assert all(torch.equal(a, b.output) for a, b in zip(before, res))


def test_bad_inputs_fail_alone(minilm):
    bb, fm = minilm.bb, minilm.fm
    gen = torch.Generator().manual_seed(5)
    good = mixed_requests(bb, ["r4", "plain", "r8"], 1, gen)
    ids = make_inputs(bb, [12], gen)
    long_n = bb.spec.max_positions + 10
    bad = [
        ExecRequest("nope", 12, ids),  # unknown task
        ExecRequest("r4", long_n, make_inputs(bb, [long_n], gen)),  # longer than max positions
        ExecRequest("r4", long_n),  # same, inputs drawn by the FM
        ExecRequest("r8", 12, {"input_ids": ids["input_ids"].float(), "attention_mask": ids["attention_mask"]}),
        ExecRequest("r8", 12, {"input_ids": ids["input_ids"].reshape(2, 6)}),  # wrong shape
        ExecRequest("plain", 12, {"input_ids": ids["input_ids"] + bb.spec.vocab}),  # ids out of vocab
        ExecRequest("plain", 12, {"pixel_values": torch.zeros(1, 3, 4, 4)}),  # wrong kind of input
        ExecRequest("r4", 11, ids),  # declared length disagrees with the input
    ]
    reqs = [bad[0], good[0], bad[1], bad[2], good[1], bad[3], bad[4], good[2], bad[5], bad[6], bad[7]]
    res = fm.run_batch(reqs)
    assert len(res) == len(reqs)
    for q, r in zip(reqs, res):
        if any(q is g for g in good):
            assert r.ok, r.error
            assert rel(r.output, minilm.ref[q.task](q.inputs)[0]) < TOL
        else:
            assert not r.ok and isinstance(r.error, str) and r.error, q
    errors = [r.error for r in res]
    assert "unknown task" in errors[0]
    assert "max positions" in errors[2] and "max positions" in errors[3]
    assert "dtype" in errors[5] and "shape" in errors[6] and "out of range" in errors[8]
    assert not fm.quarantined  # bad input never quarantines a task


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_failing_head_quarantines_only_its_task(monkeypatch, failure):
    bb = load_backbone("minilm-l6", seed=0)
    fm = PhysicalFM(bb)
    tasks = make_tasks("minilm-l6")
    for t in tasks:
        fm.add_task(t, seed=SEEDS[t.name])
    head = fm.head("r8")

    def broken(x):
        if failure == "raise":
            raise RuntimeError("head exploded")
        return torch.full((x.shape[0], 5), float("nan"))

    monkeypatch.setattr(head, "forward", broken)
    gen = torch.Generator().manual_seed(9)
    reqs = mixed_requests(bb, [t.name for t in tasks], 2, gen)
    res = fm.run_batch(reqs)
    assert "r8" in fm.quarantined
    assert ("head exploded" if failure == "raise" else "non-finite") in fm.quarantined["r8"]
    for q, r in zip(reqs, res):
        if q.task == "r8":
            assert not r.ok and "quarantined" in r.error
        else:
            assert r.ok, r.error
    # other tasks' outputs are the correct ones (checked against the shared standalone models)
    refs = {t.name: standalone_model("minilm-l6", t, SEEDS[t.name]) for t in tasks if t.name in ("r4", "plain")}
    for q, r in zip(reqs, res):
        if q.task in refs:
            assert rel(r.output, refs[q.task](q.inputs)[0]) < TOL
    # later batches refuse the quarantined task up front; an update (new version) lifts it
    again = fm.run_batch(reqs[:4])
    assert [r.ok for r in again] == [q.task != "r8" for q in reqs[:4]]
    fm.update_task(tasks[1], seed=SEEDS["r8"])
    assert "r8" not in fm.quarantined
    assert all(r.ok for r in fm.run_batch(reqs[:4]))


def test_extension_bytes_by_hand_and_against_simulator(minilm):
    fm, spec = minilm.fm, minilm.bb.spec
    h, layers = spec.hidden, spec.layers
    specs = {t.name: t for t in minilm.tasks}
    # r4: q and v (384 x 384) in 6 layers, rank 4; head 384 -> 3
    lora_r4 = layers * 2 * 4 * (h + h) * 4
    head_r4 = (h * 3 + 3) * 4
    assert fm.extension_bytes("r4", "lora") == lora_r4
    assert fm.extension_bytes("r4", "head") == head_r4
    assert fm.extension_bytes("r4") == lora_r4 + head_r4
    # r16: up (384 -> 1536) and down (1536 -> 384) only, NOT attention.output.dense
    assert fm.extension_bytes("r16", "lora") == layers * 2 * 16 * (h + spec.intermediate) * 4
    # r8: q, k, v, o; encoder of about 40k params
    k = round((40_000 - h) / (2 * h + 1))
    enc = (h * k + k + k * h + h) * 4
    assert fm.extension_bytes("r8", "encoder") == enc
    assert abs(enc / 4 - 40_000) / 40_000 < 0.02
    assert fm.extension_bytes("r8") == layers * 4 * 8 * 2 * h * 4 + (h * 5 + 5) * 4 + enc
    assert fm.extension_bytes("plain") == fm.extension_bytes("plain", "head") == (h * 2 + 2) * 4
    # the simulator's model at float32
    for name in ("r4", "r8", "r16", "plain"):
        for ext in specs[name].extensions:
            sim = costs.extension_bytes(ext, spec, 4)
            real = fm.extension_bytes(name, ext.kind)
            assert abs(real - sim) <= 0.10 * sim, (name, ext.kind, real, sim)
    assert fm.backbone_bytes() == minilm.ref["plain"].backbone.weight_bytes()


def test_prefix_and_mismatched_tasks_are_refused(minilm):
    fm = minilm.fm
    before = fm.tasks()
    with pytest.raises(NotImplementedError, match="prefix"):
        fm.add_task(TaskSpec("p", "minilm-l6", (E("prefix", virtual_tokens=8), E("head"))))
    with pytest.raises(ValueError, match="backbone"):
        fm.add_task(TaskSpec("x", "bert-base", (E("head"),)))
    with pytest.raises(ValueError, match="not adaptable"):
        fm.add_task(TaskSpec("g", "minilm-l6", (E("lora", targets=("gate",)),)))
    assert fm.tasks() == before and set(fm.peft_model.peft_config) == {"r4@v1", "r8@v1", "r16@v1"}


def test_batched_lora_path_equals_peft_mixed_adapter_path():
    """The batched multiply path and peft's per-adapter loop give the same outputs."""
    import torch

    from fmplex_exec.backbones import load_backbone, make_inputs
    from fmplex_exec.vfm import ExecRequest, PhysicalFM
    from fmplex_sim.specs import ExtensionSpec, TaskSpec

    tasks = [TaskSpec(f"k{r}", "minilm-l6", (ExtensionSpec("lora", rank=r, targets=("q", "v", "up")),
                                            ExtensionSpec("head", outputs=3))) for r in (2, 8, 16)]
    tasks.append(TaskSpec("plain", "minilm-l6", (ExtensionSpec("head", outputs=3),)))
    fms = {k: PhysicalFM(load_backbone("minilm-l6"), lora_kernel=k) for k in ("batched", "peft")}
    for fm in fms.values():
        for t in tasks:
            fm.add_task(t)
    gen = torch.Generator().manual_seed(11)
    reqs = []
    for i, n in enumerate([9, 17, 5, 30, 12, 3, 25, 8]):
        x = make_inputs(fms["peft"].backbone, [n], gen)
        reqs.append(ExecRequest(tasks[i % 4].name, n, x))
    out = {k: fm.run_batch(reqs) for k, fm in fms.items()}
    for a, b in zip(out["batched"], out["peft"]):
        assert a.ok and b.ok
        assert (a.output - b.output).norm() / b.output.norm() < 1e-5
    # After removing a task, the batched path restacks and still agrees.
    for fm in fms.values():
        fm.remove_task("k8")
    rest = [r for r in reqs if r.task != "k8"]
    again = {k: fm.run_batch(rest) for k, fm in fms.items()}
    for a, b in zip(again["batched"], again["peft"]):
        assert (a.output - b.output).norm() / b.output.norm() < 1e-5
    # Switching a PhysicalFM from the batched kernel to peft's hands peft its adapters back on.
    fms["batched"].lora_kernel = "peft"
    switched = fms["batched"].run_batch(rest)
    for a, b in zip(switched, again["peft"]):
        assert (a.output - b.output).norm() / b.output.norm() < 1e-5


def _tiny(family: str):
    """A one-layer model of ``family``'s transformers class, as backbones.py builds it."""
    import transformers as tf

    small = dict(hidden_size=64, num_attention_heads=2, intermediate_size=128)
    t5 = dict(num_layers=1, d_model=64, d_ff=128, num_heads=2, d_kv=32)
    dec = dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
               intermediate_size=128, vocab_size=100)
    return {
        "bert": lambda: tf.BertModel(tf.BertConfig(num_hidden_layers=1, **small), add_pooling_layer=False),
        "vit": lambda: tf.ViTModel(tf.ViTConfig(num_hidden_layers=1, **small), add_pooling_layer=False),
        "clip": lambda: tf.CLIPVisionModel(tf.CLIPVisionConfig(num_hidden_layers=1, **small)),
        "chronos": lambda: tf.T5EncoderModel(tf.T5Config(**t5)),
        "moment": lambda: tf.T5EncoderModel(tf.T5Config(feed_forward_proj="gated-gelu", **t5)),
        "llama": lambda: tf.LlamaModel(tf.LlamaConfig(**dec)),
        "qwen": lambda: tf.Qwen2Model(tf.Qwen2Config(**dec)),
        "gpt2": lambda: tf.GPT2Model(tf.GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=100,
                                                   bos_token_id=0, eos_token_id=0)),
    }[family]()


def test_every_lora_target_of_every_family_finds_its_modules_in_the_installed_transformers():
    """Module names change between transformers versions (ViT's ``query`` became ``q_proj``
    in 5.x): each family's targets must name modules of the model this transformers builds."""
    from fmplex_exec.backbones import LORA_MODULES, Backbone
    from fmplex_exec.vfm import _projection_shapes, lora_target_names
    from fmplex_sim.catalog import BACKBONES

    for family, targets in LORA_MODULES.items():
        spec = next(b for b in BACKBONES.values() if b.family == family)
        model = _tiny(family)
        bb = Backbone(spec, model, False, "input_ids", 64, torch.device("cpu"), torch.float32)
        shapes = _projection_shapes(model)
        found = {t: lora_target_names(bb, (t,), shapes) for t in targets}
        for t, names in found.items():
            assert names, (family, t)
        if family != "gpt2":  # GPT-2 fuses q, k and v into one c_attn projection
            every = [n for names in found.values() for n in names]
            assert len(every) == len(set(every)), (family, found)  # no module adapted for two targets


def test_vit_mixed_batch_matches_standalone_merged_models():
    tasks = [TaskSpec("qkvo", "vit-base", (E("lora", rank=8, targets=("q", "k", "v", "o")), E("head", outputs=5))),
             TaskSpec("mlp", "vit-base", (E("lora", rank=4, targets=("up", "down"), alpha=8.0), E("head", outputs=3)))]
    bb = load_backbone("vit-base", seed=0)
    fm = PhysicalFM(bb)
    for k, t in enumerate(tasks):
        fm.add_task(t, seed=20 + k)
    gen = torch.Generator().manual_seed(5)
    reqs = [ExecRequest(t.name, bb.spec.default_input_len, make_inputs(bb, [bb.spec.default_input_len], gen))
            for t in tasks + tasks]
    res = fm.run_batch(reqs)
    assert all(r.ok for r in res), [r.error for r in res if not r.ok]
    for k, t in enumerate(tasks):
        ref = standalone_model("vit-base", t, 20 + k, backbone_seed=0)  # its LoRA merged by hand
        for q, r in zip(reqs, res):
            if q.task == t.name:
                assert rel(r.output, ref(q.inputs)[0]) < TOL

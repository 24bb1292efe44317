"""Catalog of foundation-model backbones with architecture numbers from public configurations.

Every entry names the HuggingFace configuration its numbers come from (``hf_config``) and
carries the published parameter count (``params``: every weight a serving process loads).
``layers``/``hidden``/``intermediate``/``heads``/``kv_heads`` describe the transformer stack a
request's compute passes through; where the loaded checkpoint holds more than that stack
(the T5 decoder of Chronos, the text tower of CLIP), ``note`` says so.

``BACKBONES`` is built once at import and is read-only (a ``MappingProxyType``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from fmplex_sim.specs import BackboneSpec

_LM = 128  # default tokens per language request

_T5_NOTE = (
    "T5 encoder-decoder. Modelled: the encoder over the context (layers = encoder layers, one "
    "token per observation); decoder=False, so the autoregressive decoder that emits forecast "
    "tokens (one step per token, 64 by default, with cross-attention) is not timed. params "
    "counts both stacks. Attention inner width is heads*64, approximated by hidden."
)
_MOMENT_NOTE = (
    "T5 (flan-t5, gated-GELU) encoder over 64 patches of 8 observations (context 512). params "
    "is the published count; the checkpoint also holds the unused 32128-row T5 token "
    "embedding, kept in vocab so the count matches approximately (about 12% above the "
    "computed encoder+embedding). Attention inner width is heads*64, approximated by hidden."
)
_CLIP_NOTE = (
    "Compute path = vision tower only ({v}); params = both towers (the text tower, {t}, is "
    "loaded but not run for image requests). Tokens = patches + CLS."
)


def _bb(**kw) -> BackboneSpec:
    kw.setdefault("kv_heads", kw["heads"])
    return BackboneSpec(**kw)


_ENTRIES: tuple[BackboneSpec, ...] = (
    # -- bert family: encoder-only language models ------------------------------------------
    _bb(name="minilm-l6", family="bert", modality="language", params=22_700_000, layers=6,
        hidden=384, intermediate=1536, heads=12, vocab=30522, max_positions=512,
        default_input_len=_LM, hf_config="sentence-transformers/all-MiniLM-L6-v2",
        note="Sentence embedding model (BERT architecture, mean pooling)."),
    _bb(name="bert-base", family="bert", modality="language", params=110_000_000, layers=12,
        hidden=768, intermediate=3072, heads=12, vocab=30522, max_positions=512,
        default_input_len=_LM, hf_config="google-bert/bert-base-uncased"),
    _bb(name="bert-large", family="bert", modality="language", params=340_000_000, layers=24,
        hidden=1024, intermediate=4096, heads=16, vocab=30522, max_positions=512,
        default_input_len=_LM, hf_config="google-bert/bert-large-uncased"),
    # -- gpt2 family: decoder-only, plain MLP, multi-head attention -------------------------
    _bb(name="gpt2", family="gpt2", modality="language", params=124_000_000, layers=12,
        hidden=768, intermediate=3072, heads=12, vocab=50257, max_positions=1024,
        decoder=True, default_input_len=_LM, hf_config="openai-community/gpt2",
        note="LM head tied to the token embedding."),
    _bb(name="gpt2-medium", family="gpt2", modality="language", params=355_000_000, layers=24,
        hidden=1024, intermediate=4096, heads=16, vocab=50257, max_positions=1024,
        decoder=True, default_input_len=_LM, hf_config="openai-community/gpt2-medium",
        note="LM head tied to the token embedding."),
    # -- llama family: decoder-only, SwiGLU, grouped-query attention ------------------------
    _bb(name="llama-3.2-1b", family="llama", modality="language", params=1_235_814_400,
        layers=16, hidden=2048, intermediate=8192, heads=32, kv_heads=8, vocab=128256,
        max_positions=131072, gated_mlp=True, decoder=True, default_input_len=_LM,
        hf_config="meta-llama/Llama-3.2-1B", note="LM head tied to the token embedding."),
    _bb(name="llama-3.2-3b", family="llama", modality="language", params=3_212_749_824,
        layers=28, hidden=3072, intermediate=8192, heads=24, kv_heads=8, vocab=128256,
        max_positions=131072, gated_mlp=True, decoder=True, default_input_len=_LM,
        hf_config="meta-llama/Llama-3.2-3B", note="LM head tied to the token embedding."),
    # -- qwen family: decoder-only, SwiGLU, GQA with 2 KV heads ------------------------------
    _bb(name="qwen2.5-0.5b", family="qwen", modality="language", params=494_000_000,
        layers=24, hidden=896, intermediate=4864, heads=14, kv_heads=2, vocab=151936,
        max_positions=32768, gated_mlp=True, decoder=True, default_input_len=_LM,
        hf_config="Qwen/Qwen2.5-0.5B", note="LM head tied; q/k/v biases ignored (tiny)."),
    _bb(name="qwen2.5-1.5b", family="qwen", modality="language", params=1_540_000_000,
        layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, vocab=151936,
        max_positions=131072, gated_mlp=True, decoder=True, default_input_len=_LM,
        hf_config="Qwen/Qwen2.5-1.5B", note="LM head tied; q/k/v biases ignored (tiny)."),
    # -- vit family: vision encoders over 16x16 / 14x14 patches of 224x224 images -----------
    _bb(name="vit-base", family="vit", modality="vision", params=86_600_000, layers=12,
        hidden=768, intermediate=3072, heads=12, vocab=0, max_positions=197,
        default_input_len=197, hf_config="google/vit-base-patch16-224",
        note="196 patches + CLS; ImageNet-1k classifier head included in params."),
    _bb(name="vit-large", family="vit", modality="vision", params=304_000_000, layers=24,
        hidden=1024, intermediate=4096, heads=16, vocab=0, max_positions=197,
        default_input_len=197, hf_config="google/vit-large-patch16-224",
        note="196 patches + CLS."),
    _bb(name="vit-huge", family="vit", modality="vision", params=632_000_000, layers=32,
        hidden=1280, intermediate=5120, heads=16, vocab=0, max_positions=257,
        default_input_len=257, hf_config="google/vit-huge-patch14-224-in21k",
        note="256 patches (14x14 px) + CLS; ImageNet-21k pretrained, no fine-tuned head."),
    # -- chronos family: T5 encoder-decoder forecasters over tokenized values ---------------
    _bb(name="chronos-t5-tiny", family="chronos", modality="timeseries", params=8_000_000,
        layers=4, hidden=256, intermediate=1024, heads=4, vocab=4096, max_positions=512,
        default_input_len=512, hf_config="amazon/chronos-t5-tiny", note=_T5_NOTE),
    _bb(name="chronos-t5-mini", family="chronos", modality="timeseries", params=20_000_000,
        layers=4, hidden=384, intermediate=1536, heads=8, vocab=4096, max_positions=512,
        default_input_len=512, hf_config="amazon/chronos-t5-mini",
        note=_T5_NOTE + " Here inner width 512 > hidden 384, so FLOPs are ~10% low."),
    _bb(name="chronos-t5-small", family="chronos", modality="timeseries", params=46_000_000,
        layers=6, hidden=512, intermediate=2048, heads=8, vocab=4096, max_positions=512,
        default_input_len=512, hf_config="amazon/chronos-t5-small", note=_T5_NOTE),
    _bb(name="chronos-t5-base", family="chronos", modality="timeseries", params=200_000_000,
        layers=12, hidden=768, intermediate=3072, heads=12, vocab=4096, max_positions=512,
        default_input_len=512, hf_config="amazon/chronos-t5-base", note=_T5_NOTE),
    _bb(name="chronos-t5-large", family="chronos", modality="timeseries", params=710_000_000,
        layers=24, hidden=1024, intermediate=4096, heads=16, vocab=4096, max_positions=512,
        default_input_len=512, hf_config="amazon/chronos-t5-large", note=_T5_NOTE),
    # -- moment family: T5 encoders over patches --------------------------------------------
    _bb(name="moment-1-small", family="moment", modality="timeseries", params=40_000_000,
        layers=8, hidden=512, intermediate=1024, heads=6, vocab=32128, max_positions=64,
        gated_mlp=True, default_input_len=64, hf_config="AutonLab/MOMENT-1-small",
        note=_MOMENT_NOTE + " Backbone google/flan-t5-small (inner width 384 < hidden)."),
    _bb(name="moment-1-base", family="moment", modality="timeseries", params=125_000_000,
        layers=12, hidden=768, intermediate=2048, heads=12, vocab=32128, max_positions=64,
        gated_mlp=True, default_input_len=64, hf_config="AutonLab/MOMENT-1-base",
        note=_MOMENT_NOTE + " Backbone google/flan-t5-base."),
    _bb(name="moment-1-large", family="moment", modality="timeseries", params=385_000_000,
        layers=24, hidden=1024, intermediate=2816, heads=16, vocab=32128, max_positions=64,
        gated_mlp=True, default_input_len=64, hf_config="AutonLab/MOMENT-1-large",
        note=_MOMENT_NOTE + " Backbone google/flan-t5-large."),
    # -- clip family: dual-tower image-text models; images go through the vision tower ------
    _bb(name="clip-vit-b16", family="clip", modality="multimodal", params=149_600_000,
        layers=12, hidden=768, intermediate=3072, heads=12, vocab=0, max_positions=197,
        default_input_len=197, hf_config="openai/clip-vit-base-patch16",
        note=_CLIP_NOTE.format(v="ViT-B/16, 12x768", t="12x512, vocab 49408")),
    _bb(name="clip-vit-l14", family="clip", modality="multimodal", params=427_600_000,
        layers=24, hidden=1024, intermediate=4096, heads=16, vocab=0, max_positions=257,
        default_input_len=257, hf_config="openai/clip-vit-large-patch14",
        note=_CLIP_NOTE.format(v="ViT-L/14, 24x1024", t="12x768, vocab 49408")),
)

BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType({b.name: b for b in _ENTRIES})

# Weights loaded with a backbone but outside its modelled compute path, described as
# architecture so ``costs.computed_params`` can count them: the CLIP text towers.
SECONDARY_TOWERS: Mapping[str, BackboneSpec] = MappingProxyType({
    "clip-vit-b16": _bb(name="clip-vit-b16/text", family="clip", modality="language",
                        params=63_400_000, layers=12, hidden=512, intermediate=2048, heads=8,
                        vocab=49408, max_positions=77, default_input_len=77,
                        hf_config="openai/clip-vit-base-patch16 (text_config)"),
    "clip-vit-l14": _bb(name="clip-vit-l14/text", family="clip", modality="language",
                        params=123_600_000, layers=12, hidden=768, intermediate=3072, heads=12,
                        vocab=49408, max_positions=77, default_input_len=77,
                        hf_config="openai/clip-vit-large-patch14 (text_config)"),
})


def get_backbone(name: str) -> BackboneSpec:
    """Return the catalog backbone called ``name``.

    Raises ``KeyError`` whose message lists every known backbone name.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone {name!r} (known: {', '.join(sorted(BACKBONES))})"
        ) from None

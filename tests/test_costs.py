"""FLOP, byte and parameter arithmetic, checked by hand on small shapes and against catalogs."""

from __future__ import annotations

import pytest

from fmplex_sim import costs
from fmplex_sim.catalog import BACKBONES, SECONDARY_TOWERS, get_backbone
from fmplex_sim.specs import BackboneSpec, ExtensionSpec

# A tiny hand-checkable backbone: hidden 8, 2 heads of 4, GQA with one KV head (kv_dim 4).
TINY = BackboneSpec(name="tiny", family="t", modality="language", params=1000, layers=3,
                    hidden=8, intermediate=16, heads=2, kv_heads=1, vocab=10,
                    max_positions=64, gated_mlp=True)
TINY_DEC = BackboneSpec(**{**TINY.__dict__, "decoder": True})


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_computed_params_match_published_counts(name):
    bb = BACKBONES[name]
    computed = costs.computed_params(bb)
    if name in SECONDARY_TOWERS:  # CLIP: published count covers both towers
        computed += costs.computed_params(SECONDARY_TOWERS[name])
    assert computed == pytest.approx(bb.params, rel=0.15)


def test_computed_params_exact_for_llama():
    # 16 layers of (q,o 2048^2; k,v 2048x512; 3 MLP 2048x8192; 2 norms) + tied embedding + norm
    assert costs.computed_params(get_backbone("llama-3.2-1b")) == 1_235_814_400


def test_layer_params_by_hand():
    # q,o: 2*8*8=128; k,v: 2*8*4=64; gated MLP: 3*8*16=384
    assert costs.attention_params(TINY) == 192
    assert costs.mlp_params(TINY) == 384
    assert costs.layer_params(TINY) == 576


def test_forward_flops_by_hand():
    rows, seq = 2, 5
    matmul = 2 * 576 * rows * seq * 3
    attn = 4 * rows * seq * seq * 8 * 3
    assert costs.forward_flops(TINY, rows, seq) == matmul + attn
    # decoders add the LM head on the last token of each row
    assert costs.forward_flops(TINY_DEC, rows, seq) == matmul + attn + 2 * 8 * 10 * rows


def test_forward_flops_scaling_and_bert_magnitude():
    bb = get_backbone("bert-base")
    assert costs.forward_flops(bb, 8, 128) == pytest.approx(8 * costs.forward_flops(bb, 1, 128))
    # attention grows quadratically, so doubling seq more than doubles FLOPs
    assert costs.forward_flops(bb, 1, 256) > 2 * costs.forward_flops(bb, 1, 128)
    # about 2 * 85M FLOPs per token plus attention: 21-23 GFLOPs per 128-token row
    assert 21e9 < costs.forward_flops(bb, 1, 128) < 23e9


def test_gqa_reduces_kv_projection_cost():
    mha = BackboneSpec(**{**TINY.__dict__, "kv_heads": 2})
    assert costs.forward_flops(mha, 1, 4) > costs.forward_flops(TINY, 1, 4)


def test_forward_bytes_weights_once_plus_activations():
    weights = 3 * 576 * 2
    one = costs.forward_bytes(TINY, 2, 1, 4)
    assert one == weights + costs.ACT_TRAFFIC_WIDTHS * 4 * 8 * 2 * 3
    # weights are read once per pass: 8x the rows adds only activation traffic
    assert costs.forward_bytes(TINY, 2, 8, 4) - weights == pytest.approx(8 * (one - weights))


def test_decode_step_reads_kv_cache():
    bb = get_backbone("llama-3.2-1b")
    a = costs.decode_step_bytes(bb, 2, 4, 100)
    b = costs.decode_step_bytes(bb, 2, 4, 200)
    assert b - a == pytest.approx(2 * bb.layers * bb.kv_dim * 100 * 4 * 2)
    assert a > bb.layers * costs.layer_params(bb) * 2  # at least all weights
    assert costs.decode_step_flops(bb, 4, 200) > costs.decode_step_flops(bb, 4, 100)
    assert costs.decode_step_flops(bb, 8, 100) == pytest.approx(
        2 * costs.decode_step_flops(bb, 4, 100))


def test_extension_params_by_kind():
    bert = get_backbone("bert-base")
    lora = ExtensionSpec("lora", rank=8, targets=("q", "v"))
    assert costs.extension_params(lora, bert) == 8 * (768 + 768) * 2 * 12
    llama = get_backbone("llama-3.2-1b")
    lora_kg = ExtensionSpec("lora", rank=4, targets=("k", "gate", "down"))
    per_layer = 4 * ((2048 + 512) + (2048 + 8192) + (8192 + 2048))
    assert costs.extension_params(lora_kg, llama) == per_layer * 16
    assert costs.extension_params(ExtensionSpec("prefix", virtual_tokens=10), bert) == (
        10 * 2 * 12 * 768)
    assert costs.extension_params(ExtensionSpec("head", outputs=3), bert) == 768 * 3 + 3
    assert costs.extension_params(ExtensionSpec("encoder", params=12345), bert) == 12345
    assert costs.extension_bytes(lora, bert, 2) == 2 * costs.extension_params(lora, bert)


def test_lora_unknown_target_is_an_error():
    with pytest.raises(ValueError, match="gate"):
        costs.extension_params(ExtensionSpec("lora", targets=("gate",)), get_backbone("bert-base"))
    with pytest.raises(ValueError, match="nope"):
        costs.lora_shape(get_backbone("bert-base"), "nope")


def test_small_flop_helpers():
    bert = get_backbone("bert-base")
    tokens = 64
    assert costs.lora_flops(bert, 8, tokens, ("q", "v")) == 2 * tokens * 8 * 1536 * 2 * 12
    assert costs.head_flops(bert, 3, 10) == 2 * 10 * 768 * 3
    assert costs.encoder_flops(1000, 2, 5) == 2 * 1000 * 10


def test_activation_bytes():
    live = 4 * (costs.ACT_LIVE_WIDTHS * 8 + 3 * 16) * 2
    scores = 1 * 2 * 4 * 4 * 2
    assert costs.activation_bytes(TINY, 2, 1, 4) == live + scores
    kv = 2 * 3 * 4 * 4 * 1 * 2
    assert costs.activation_bytes(TINY_DEC, 2, 1, 4) == live + scores + kv
    bert = get_backbone("bert-base")
    assert costs.activation_bytes(bert, 2, 16, 256) > 2 * costs.activation_bytes(bert, 2, 16, 128)
    # a batch of 32 bert-base requests fits comfortably: tens of MB, not GB
    assert costs.activation_bytes(bert, 2, 32, 128) < 200e6


def test_negative_shapes_rejected():
    with pytest.raises(ValueError):
        costs.forward_flops(TINY, -1, 4)

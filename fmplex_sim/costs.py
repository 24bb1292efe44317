"""FLOP, byte and parameter arithmetic of backbones and extensions (no device timing).

Conventions:

* A matmul of an ``m x k`` input with a ``k x n`` weight costs ``2*m*k*n`` FLOPs.
* Per layer, attention has q and o projections of ``hidden x hidden`` and k and v projections
  of ``hidden x kv_dim`` (grouped-query attention); the MLP has 2 matrices of
  ``hidden x intermediate`` (3 when ``gated_mlp``). Biases and norms are ignored in FLOPs.
* Attention scores and the weighted sum of values cost ``4*rows*seq_len^2*hidden`` FLOPs per
  layer (bidirectional; causal masking is not credited).
* Embedding lookups cost nothing. Decoders add an LM head (``hidden x vocab``, tied to the
  embedding) on the last position of each row, in both prefill and decode steps.
* Fused attention is assumed: score matrices are not written to memory in ``forward_bytes``;
  ``activation_bytes`` still counts one layer's scores, as eager attention would hold them.
"""

from __future__ import annotations

from typing import Iterable

from fmplex_sim.specs import BackboneSpec, ExtensionSpec

# Hidden-width activations read + written per token per layer during a forward (norm inputs
# and outputs, q/k/v, attention output, residual adds, MLP input/output).
ACT_TRAFFIC_WIDTHS = 16
# Hidden-width tensors alive at the peak of one block (residual, normed input, q, k, v,
# attention output).
ACT_LIVE_WIDTHS = 6
# Families whose checkpoints are T5 encoder-decoders: ``layers`` is the encoder depth and a
# decoder of the same depth with cross-attention is also loaded (counted in computed_params).
ENCODER_DECODER_FAMILIES = frozenset({"chronos"})

LORA_TARGETS = ("q", "k", "v", "o", "up", "gate", "down")


def _check_shape(rows: int, seq_len: int) -> None:
    if rows < 0 or seq_len < 0:
        raise ValueError(f"rows and seq_len must be >= 0, got rows={rows} seq_len={seq_len}")


def attention_params(bb: BackboneSpec) -> int:
    """Weights of one layer's q, k, v, o projections (GQA-aware, no biases)."""
    return 2 * bb.hidden * bb.hidden + 2 * bb.hidden * bb.kv_dim


def mlp_params(bb: BackboneSpec) -> int:
    """Weights of one layer's MLP: 2 (or 3 if gated) matrices of hidden x intermediate."""
    return (3 if bb.gated_mlp else 2) * bb.hidden * bb.intermediate


def layer_params(bb: BackboneSpec) -> int:
    """Matmul weights of one transformer block (attention + MLP)."""
    return attention_params(bb) + mlp_params(bb)


def lm_head_params(bb: BackboneSpec) -> int:
    """Weights of the LM head a decoder runs per generated token (0 for non-decoders)."""
    return bb.hidden * bb.vocab if bb.decoder else 0


def computed_params(bb: BackboneSpec) -> int:
    """Parameter count from architecture: block matmuls, norms, token embedding.

    Counts ``layers`` blocks (attention + MLP + two norms), one ``vocab x hidden`` token
    embedding (LM heads are assumed tied to it) and a final norm. For families in
    ``ENCODER_DECODER_FAMILIES`` (T5-style Chronos) a decoder of the same depth with an extra
    cross-attention per block is added. Not counted: position embeddings, biases, patch
    embeddings, classifier heads, secondary towers (CLIP's text tower: count it separately).
    """
    norms = 2 * bb.hidden
    n = bb.layers * (layer_params(bb) + norms) + bb.vocab * bb.hidden + bb.hidden
    if bb.family in ENCODER_DECODER_FAMILIES:
        n += bb.layers * (layer_params(bb) + attention_params(bb) + norms + bb.hidden)
    return n


def forward_flops(bb: BackboneSpec, rows: int, seq_len: int) -> float:
    """FLOPs of one forward (encode or prefill) of ``rows`` inputs of ``seq_len`` tokens.

    ``2*layer_params*tokens*layers`` for the matmuls, ``4*rows*seq_len^2*hidden*layers`` for
    attention, plus the LM head on the last token of each row for decoders.
    """
    _check_shape(rows, seq_len)
    tokens = rows * seq_len
    matmul = 2.0 * layer_params(bb) * tokens * bb.layers
    attn = 4.0 * rows * seq_len * seq_len * bb.hidden * bb.layers
    head = 2.0 * lm_head_params(bb) * rows if seq_len else 0.0
    return matmul + attn + head


def forward_bytes(bb: BackboneSpec, dtype_bytes: int, rows: int, seq_len: int) -> float:
    """Memory traffic of one forward: every layer weight (and a decoder's LM head) read once,
    plus ``ACT_TRAFFIC_WIDTHS*rows*seq_len*hidden*dtype_bytes`` activation traffic per layer."""
    _check_shape(rows, seq_len)
    weights = (bb.layers * layer_params(bb) + lm_head_params(bb)) * dtype_bytes
    acts = ACT_TRAFFIC_WIDTHS * rows * seq_len * bb.hidden * dtype_bytes * bb.layers
    return float(weights + acts)


def kv_cache_bytes(bb: BackboneSpec, dtype_bytes: int, rows: int, ctx_len: int) -> float:
    """Keys and values of ``ctx_len`` tokens for ``rows`` sequences over all layers."""
    return 2.0 * bb.layers * bb.kv_dim * ctx_len * rows * dtype_bytes


def decode_step_flops(bb: BackboneSpec, rows: int, ctx_len: int) -> float:
    """FLOPs of one decode step: one new token per row attending to ``ctx_len`` tokens."""
    _check_shape(rows, ctx_len)
    matmul = 2.0 * layer_params(bb) * rows * bb.layers
    attn = 4.0 * rows * ctx_len * bb.hidden * bb.layers
    return matmul + attn + 2.0 * lm_head_params(bb) * rows


def decode_step_bytes(bb: BackboneSpec, dtype_bytes: int, rows: int, ctx_len: int) -> float:
    """Memory traffic of one decode step: all weights re-read, the KV cache of ``ctx_len``
    tokens read, plus per-token activation traffic."""
    _check_shape(rows, ctx_len)
    weights = (bb.layers * layer_params(bb) + lm_head_params(bb)) * dtype_bytes
    acts = ACT_TRAFFIC_WIDTHS * rows * bb.hidden * dtype_bytes * bb.layers
    return float(weights + kv_cache_bytes(bb, dtype_bytes, rows, ctx_len) + acts)


def lora_shape(bb: BackboneSpec, target: str) -> tuple[int, int]:
    """(d_in, d_out) of the projection ``target`` (one of ``LORA_TARGETS``).

    Raises ``ValueError`` for an unknown target, or ``gate`` on a backbone without gated MLP.
    """
    h, kv, ff = bb.hidden, bb.kv_dim, bb.intermediate
    shapes = {"q": (h, h), "k": (h, kv), "v": (h, kv), "o": (h, h), "up": (h, ff),
              "down": (ff, h)}
    if bb.gated_mlp:
        shapes["gate"] = (h, ff)
    try:
        return shapes[target]
    except KeyError:
        raise ValueError(
            f"LoRA target {target!r} does not exist in {bb.name} "
            f"(targets: {', '.join(shapes)})"
        ) from None


def lora_params(bb: BackboneSpec, rank: int, targets: Iterable[str]) -> int:
    """``rank*(d_in+d_out)`` per target per layer."""
    per_layer = sum(rank * sum(lora_shape(bb, t)) for t in targets)
    return per_layer * bb.layers


def lora_flops(bb: BackboneSpec, rank: int, tokens: int, targets: Iterable[str]) -> float:
    """FLOPs of applying one LoRA (down- then up-projection) to ``tokens`` tokens."""
    return 2.0 * tokens * lora_params(bb, rank, targets)


def head_flops(bb: BackboneSpec, outputs: int, rows: int) -> float:
    """FLOPs of a linear head of ``outputs`` units over ``rows`` pooled rows."""
    return 2.0 * rows * bb.hidden * outputs


def encoder_flops(params: int, rows: int, seq_len: int) -> float:
    """FLOPs of an input encoder of ``params`` weights over ``rows*seq_len`` tokens."""
    return 2.0 * params * rows * seq_len


def extension_params(ext: ExtensionSpec, bb: BackboneSpec) -> int:
    """Parameters of one extension on ``bb``.

    lora: ``rank*(d_in+d_out)`` per target per layer; prefix: ``virtual_tokens*2*layers*
    kv_dim`` (a key and a value per virtual token per layer; kv_dim == hidden without GQA);
    head: ``hidden*outputs + outputs``; encoder: ``ext.params``.
    """
    if ext.kind == "lora":
        return lora_params(bb, ext.rank, ext.targets)
    if ext.kind == "prefix":
        return ext.virtual_tokens * 2 * bb.layers * bb.kv_dim
    if ext.kind == "head":
        return bb.hidden * ext.outputs + ext.outputs
    if ext.kind == "encoder":
        return ext.params
    raise ValueError(f"unknown extension kind {ext.kind!r}")


def extension_bytes(ext: ExtensionSpec, bb: BackboneSpec, dtype_bytes: int) -> int:
    """Bytes of one extension's weights at ``dtype_bytes`` per element."""
    return extension_params(ext, bb) * dtype_bytes


def activation_bytes(bb: BackboneSpec, dtype_bytes: int, rows: int, seq_len: int) -> float:
    """Peak activation memory of one inference pass (one block's live tensors).

    ``rows*seq_len*(ACT_LIVE_WIDTHS*hidden + k*intermediate)*dtype_bytes`` with k = 2 MLP
    intermediates (3 if gated), plus one layer's attention scores
    ``rows*heads*seq_len^2*dtype_bytes``, plus, for decoders, the KV cache of ``seq_len``
    tokens over all layers (pass input + output length as ``seq_len`` for generation).
    """
    _check_shape(rows, seq_len)
    tokens = rows * seq_len
    mlp = (3 if bb.gated_mlp else 2) * bb.intermediate
    live = tokens * (ACT_LIVE_WIDTHS * bb.hidden + mlp) * dtype_bytes
    scores = rows * bb.heads * seq_len * seq_len * dtype_bytes
    kv = kv_cache_bytes(bb, dtype_bytes, rows, seq_len) if bb.decoder else 0.0
    return float(live + scores + kv)

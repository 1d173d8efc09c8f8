"""Tiny random F32 models (oracle specs) of afmoe, apertus, arcee, arctic, bailingmoe, bailingmoe2,
bitnet, bloom, chatglm, codeshell, cohere2, cohere2moe, command-r and dbrx: each lists the tensors its llama.cpp loader
(`load_arch_tensors` in src/models/<arch>.cpp) creates as required, and the hyperparameter keys it
requires.

Not covered: chameleon: its graph writes -FLT_MAX over logits 4..8195 of the first output row of each ubatch
  (needs n_vocab >= 8196): chunked decoding masks other rows than one pass, and every relative error
  is taken against FLT_MAX, so plans cannot be told apart."""

from __future__ import annotations

import gguf
from tiny_oracle_archs import Dims, OracleFamily, Shapes, T, attention, default_head, dense_ffn, experts, moe_metadata


def _without(shapes: Shapes, *kinds: T) -> Shapes:
    return {key: shape for key, shape in shapes.items() if key not in kinds}


def _with_bias(shapes: Shapes, sizes: dict[T, int]) -> Shapes:
    return shapes | {(kind, "bias"): (size,) for kind, size in sizes.items()}


def _layer_norm_eps(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_layer_norm_eps(1e-5)


def _shexp(d: Dims, n_ff: int) -> Shapes:
    """A shared expert without its own gate (the families here size it n_ff_exp * n_expert_shared)."""
    return {T.FFN_GATE_SHEXP: (n_ff, d.n_embd), T.FFN_UP_SHEXP: (n_ff, d.n_embd), T.FFN_DOWN_SHEXP: (d.n_embd, n_ff)}


def _qkv_fused(d: Dims) -> Shapes:
    """One QKV projection, {n_embd, n_embd + 2*n_embd_gqa} (q spans n_embd = n_head * head_dim)."""
    q, kv = d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    return {T.ATTN_NORM: (d.n_embd,), T.ATTN_QKV: (q + 2 * kv, d.n_embd), T.ATTN_OUT: (d.n_embd, q)}


def _head_tied(d: Dims) -> Shapes:
    """token_embd doubles as the output (loaders that create `output` as TENSOR_DUPLICATED of it)."""
    return {T.TOKEN_EMBD: (d.n_vocab, d.n_embd), T.OUTPUT_NORM: (d.n_embd,)}


# --- afmoe: gated attention with Q/K norms, dual (pre/post) norms, sigmoid-routed experts + shared expert
def _afmoe_block(d: Dims) -> Shapes:
    q = d.n_head * d.head_dim
    return (
        attention(d)
        | {T.ATTN_POST_NORM: (d.n_embd,), T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,), T.ATTN_GATE: (q, d.n_embd)}
        | experts(d, d.n_ff_exp)
        | {T.FFN_POST_NORM: (d.n_embd,), (T.FFN_EXP_PROBS_B, "bias"): (d.n_expert,)}
        | _shexp(d, d.n_ff_exp)  # n_expert_shared = 1
    )


def _afmoe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_shared_count(1)
    # required in effect: the graph always builds the iSWA attention input, which on the plain KV
    # cache that n_swa = 0 gives crashes (stock llama.cpp too); pattern 4: layer il%4 == 3 is full
    writer.add_sliding_window(8)


# --- apertus: xIELU FFN (up/down only), Q/K norms; xIELU parameters are global keys ("xielu.*")
def _apertus_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    # per-layer arrays, as real files hold them (each layer its own values: export must reorder them)
    layers = range(d.n_layer)
    writer.add_array(gguf.Keys.xIELU.ALPHA_N, [0.8 + 0.1 * i for i in layers])
    writer.add_array(gguf.Keys.xIELU.ALPHA_P, [0.8 - 0.05 * i for i in layers])
    writer.add_array(gguf.Keys.xIELU.BETA, [0.5 + 0.02 * i for i in layers])
    writer.add_array(gguf.Keys.xIELU.EPS, [-1e-6] * d.n_layer)


def _up_down_ffn(d: Dims) -> Shapes:
    return _without(dense_ffn(d), T.FFN_GATE)


# --- arctic: a dense residual MLP of width n_embd in parallel with the experts (own norm)
def _arctic_block(d: Dims) -> Shapes:
    return (
        attention(d)
        | {T.FFN_GATE: (d.n_embd, d.n_embd), T.FFN_UP: (d.n_embd, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_embd)}
        | experts(d, d.n_ff)
        | {T.FFN_NORM_EXP: (d.n_embd,)}
    )


# --- bailingmoe / bailingmoe2
def _bailingmoe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_shared_count(1)


def _bailingmoe2_block(d: Dims) -> Shapes:
    return (
        _qkv_fused(d)
        | {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)}
        | experts(d, d.n_ff_exp)
        | _shexp(d, d.n_ff_exp)
    )


def _bailingmoe2_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    _bailingmoe_metadata(writer, d)
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)


# --- bitnet: sub-norms before the output projections; lm head is token_embd (no output tensor)
def _bitnet_block(d: Dims) -> Shapes:
    return attention(d) | {T.ATTN_SUB_NORM: (d.n_embd,), T.FFN_SUB_NORM: (d.n_ff,)} | dense_ffn(d)


# --- bloom: ALiBi, LayerNorm with biases, an embedding norm, fused QKV with bias, GELU up/down
def _bloom_head(d: Dims) -> Shapes:
    return _with_bias(default_head(d) | {T.TOKEN_EMBD_NORM: (d.n_embd,)}, {T.TOKEN_EMBD_NORM: d.n_embd, T.OUTPUT_NORM: d.n_embd})


def _bloom_block(d: Dims) -> Shapes:
    fused = _qkv_fused(d)
    return _with_bias(
        fused | _up_down_ffn(d),
        {
            T.ATTN_NORM: d.n_embd,
            T.ATTN_QKV: fused[T.ATTN_QKV][0],
            T.ATTN_OUT: d.n_embd,
            T.FFN_NORM: d.n_embd,
            T.FFN_UP: d.n_ff,
            T.FFN_DOWN: d.n_embd,
        },
    )


# --- codeshell: LayerNorm with biases, separate Q/K/V, biased output and GELU up/down
def _codeshell_head(d: Dims) -> Shapes:
    return _with_bias(default_head(d), {T.OUTPUT_NORM: d.n_embd})


def _codeshell_block(d: Dims) -> Shapes:
    return _with_bias(
        attention(d) | _up_down_ffn(d),
        {T.ATTN_NORM: d.n_embd, T.ATTN_OUT: d.n_embd, T.FFN_NORM: d.n_embd, T.FFN_UP: d.n_ff, T.FFN_DOWN: d.n_embd},
    )


# --- cohere2 / command-r: parallel attention and FFN off one LayerNorm (no ffn_norm), tied head
def _parallel_block(d: Dims) -> Shapes:
    return attention(d) | _without(dense_ffn(d), T.FFN_NORM)


def _cohere2_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_layer_norm_eps(1e-5)
    writer.add_sliding_window(8)  # shorter than the tests' prompt: the window is exercised
    writer.add_logit_scale(0.5)


# --- cohere2moe: cohere2's parallel block with experts (+ a shared expert); dense lead 0
def _cohere2moe_block(d: Dims) -> Shapes:
    return attention(d) | _without(experts(d, d.n_ff_exp), T.FFN_NORM) | _shexp(d, d.n_ff_exp)


def _cohere2moe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    # (the common writer adds layer_norm_rms_eps, so this tiny model takes the RMS-norm branch)
    writer.add_sliding_window(8)
    writer.add_logit_scale(0.5)
    writer.add_leading_dense_block_count(0)  # required; a dense lead would be positional (il < n)
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_shared_count(1)


# --- dbrx: fused QKV (KQV clamped), LayerNorm, attn_output_norm before the experts
def _dbrx_block(d: Dims) -> Shapes:
    return _qkv_fused(d) | {T.ATTN_OUT_NORM: (d.n_embd,)} | _without(experts(d, d.n_ff), T.FFN_NORM)


def _dbrx_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_layer_norm_eps(1e-5)
    writer.add_clamp_kqv(8.0)
    moe_metadata(writer, d)


SPECS: list[OracleFamily] = [
    # RoPE is skipped where (il + 1) % n_no_rope_layer_step == 0 (hparams default 4): by index
    OracleFamily("afmoe", _afmoe_block, _afmoe_metadata, positional=lambda layer: (layer + 1) % 4 != 0),
    OracleFamily(
        "apertus",
        lambda d: attention(d) | {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)} | _up_down_ffn(d),
        _apertus_metadata,
    ),
    OracleFamily("arcee", lambda d: attention(d) | _up_down_ffn(d)),
    OracleFamily("arctic", _arctic_block, lambda writer, d: moe_metadata(writer, d)),
    OracleFamily("bailingmoe", lambda d: attention(d) | experts(d, d.n_ff_exp) | _shexp(d, d.n_ff_exp), _bailingmoe_metadata),
    OracleFamily("bailingmoe2", _bailingmoe2_block, _bailingmoe2_metadata),
    OracleFamily("bitnet", _bitnet_block, head=_head_tied),
    OracleFamily(
        "chatglm",
        lambda d: attention(d) | {T.FFN_NORM: (d.n_embd,), T.FFN_UP: (2 * d.n_ff, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_ff)},
    ),
    OracleFamily("cohere2", _parallel_block, _cohere2_metadata, head=_head_tied),
    OracleFamily("cohere2moe", _cohere2moe_block, _cohere2moe_metadata, head=_head_tied),
    OracleFamily("command-r", _parallel_block, _layer_norm_eps, head=_head_tied),
    OracleFamily("dbrx", _dbrx_block, _dbrx_metadata),
    # GELU FFNs: llama.cpp's CPU GELU rounds through an fp16 table, so decoding a token at a time moves
    # the logits by ~1e-4 relative with no plan at all (as the GELU families of test_archs_tiny)
    OracleFamily("bloom", _bloom_block, _layer_norm_eps, head=_bloom_head, chunk_tolerance=1e-3),
    OracleFamily("codeshell", _codeshell_block, _layer_norm_eps, head=_codeshell_head, chunk_tolerance=1e-3),
]

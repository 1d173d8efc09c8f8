"""Tiny random F32 models of group 02's families (see tiny_oracle_archs.py): hy_v3 internlm2 jais laguna
llama4 maincoder maple mellum mpt muse-glimmer nemotron olmo openelm orion pangu-embedded."""

from __future__ import annotations

import gguf
from tiny_oracle_archs import Dims, OracleFamily, Shapes, T, attention, default_head, dense_ffn, experts, moe_metadata


def _qk_norm(d: Dims) -> Shapes:
    return {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)}


def _shared_expert_ungated(d: Dims, n_ff: int) -> Shapes:
    """A shared expert without its own scalar gate (hy_v3, laguna)."""
    return {T.FFN_GATE_SHEXP: (n_ff, d.n_embd), T.FFN_UP_SHEXP: (n_ff, d.n_embd), T.FFN_DOWN_SHEXP: (d.n_embd, n_ff)}


def _fused_qkv(d: Dims) -> Shapes:
    """wqkv {n_embd, n_embd + 2*n_embd_gqa} (Q spans n_embd: n_head * head_dim == n_embd here)."""
    return {T.ATTN_QKV: (d.n_embd + 2 * d.n_head_kv * d.head_dim, d.n_embd)}


def _layer_norm_eps(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_layer_norm_eps(1e-5)


def _with_bias(shapes: Shapes, *kinds: T) -> Shapes:
    """Each kind's bias, the size of its weight's output."""
    return shapes | {(kind, "bias"): (shapes[kind][0],) for kind in kinds}


def _layer_norm_head(d: Dims) -> Shapes:
    return default_head(d) | {(T.OUTPUT_NORM, "bias"): (d.n_embd,)}


# hy_v3: sigmoid-routed MoE with an ungated shared expert; a block is dense or MoE by the tensors present
# (every block MoE here)
def _hy_v3_block(d: Dims) -> Shapes:
    return attention(d) | _qk_norm(d) | experts(d, d.n_ff_exp) | _shared_expert_ungated(d, d.n_ff_shexp)


def _hy_v3_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp, shared=True)


# jais: LayerNorm with biases, fused biased QKV, ALiBi (no RoPE), biased SwiGLU
def _jais_block(d: Dims) -> Shapes:
    shapes = {T.ATTN_NORM: (d.n_embd,)} | _fused_qkv(d) | {T.ATTN_OUT: (d.n_embd, d.n_embd)} | dense_ffn(d)
    return _with_bias(shapes, *(kind for kind in shapes if isinstance(kind, T)))  # every tensor has its bias


def _alibi_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    _layer_norm_eps(writer, d)
    writer.add_max_alibi_bias(8.0)


# laguna: QK norm, a per-head softplus output gate, sigmoid MoE with a score-correction bias and an
# ungated shared expert; leading_dense_block_count 0 (every block MoE: a block function is one
# block's tensors for every layer); the hybrid full/SWA mode (XS.2) with a window of 8
def _laguna_block(d: Dims) -> Shapes:
    return (
        attention(d)
        | _qk_norm(d)
        | {T.ATTN_GATE: (d.n_head, d.n_embd)}
        | experts(d, d.n_ff_exp)
        | {(T.FFN_EXP_PROBS_B, "bias"): (d.n_expert,)}
        | _shared_expert_ungated(d, d.n_ff_shexp)
    )


def _laguna_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp, shared=True)
    writer.add_leading_dense_block_count(0)
    writer.add_sliding_window(8)  # hybrid (XS.2): full attention at il % 4 == 0, SWA elsewhere


# maple: sliding-window MoE (RoPE only on the SWA layers), its window pattern an explicit per-layer array
def _maple_block(d: Dims) -> Shapes:
    return attention(d) | _qk_norm(d) | experts(d, d.n_ff_exp)


def _maple_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_sliding_window(8)
    writer.add_sliding_window_pattern([(layer + 1) % 3 != 0 for layer in range(d.n_layer)])
    writer.add_array(f"{writer.arch}.swiglu_clamp_exp", [1.5 + 0.1 * i for i in range(d.n_layer)])  # per layer, as real files


# mellum: QK norm, softmax MoE; the optional sliding window on (pattern 4: every 4th layer full)
def _mellum_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_sliding_window(8)


# mpt: LayerNorm (no biases), fused QKV, ALiBi, GELU MLP; no GQA
def _mpt_block(d: Dims) -> Shapes:
    return (
        {T.ATTN_NORM: (d.n_embd,), T.FFN_NORM: (d.n_embd,)}
        | _fused_qkv(d)
        | {T.ATTN_OUT: (d.n_embd, d.n_embd), T.FFN_UP: (d.n_ff, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_ff)}
    )


# muse-glimmer: sandwich norms, QK norm, a sigmoid output gate; SWA (pattern 4) with RoPE only on SWA layers
def _muse_glimmer_block(d: Dims) -> Shapes:
    q = d.n_head * d.head_dim
    return (
        attention(d)
        | _qk_norm(d)
        | {T.ATTN_POST_NORM: (d.n_embd,), T.ATTN_GATE: (q, d.n_embd), T.FFN_POST_NORM: (d.n_embd,)}
        | dense_ffn(d)
    )


def _muse_glimmer_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_sliding_window(8)
    writer.add_logit_scale(0.5)
    writer.add_final_logit_softcapping(30.0)


# nemotron: LayerNorm with biases, squared-ReLU MLP (no gate)
def _nemotron_block(d: Dims) -> Shapes:
    return _with_bias(
        attention(d) | {T.FFN_NORM: (d.n_embd,), T.FFN_UP: (d.n_ff, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_ff)},
        T.ATTN_NORM,
        T.FFN_NORM,
    )


# olmo: non-parametric LayerNorm (no norm tensors at all)
def _olmo_block(d: Dims) -> Shapes:
    return {k: v for k, v in (attention(d) | dense_ffn(d)).items() if k not in (T.ATTN_NORM, T.FFN_NORM)}


def _olmo_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    _layer_norm_eps(writer, d)
    writer.add_clamp_kqv(8.0)


# openelm: fused QKV, QK norm, output tied to the embedding
def _openelm_block(d: Dims) -> Shapes:
    q = d.n_head * d.head_dim
    qkv = (d.n_head + 2 * d.n_head_kv) * d.head_dim
    return {T.ATTN_NORM: (d.n_embd,), T.ATTN_QKV: (qkv, d.n_embd), T.ATTN_OUT: (d.n_embd, q)} | _qk_norm(d) | dense_ffn(d)


# llama4: experts and an ungated shared expert on every other layer by index (interleave step 2), a
# dense FFN on the others; no RoPE and no Q/K norm (the attention temperature instead) on every 4th
# layer; chunked windows on the others (8192 tokens and a temperature of 1 below 8192, both fixed
# by the loader: the tests' prompts do not reach them)
def _llama4_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_interleave_moe_layer_step(2)


SPECS: list[OracleFamily] = [
    OracleFamily("hy_v3", _hy_v3_block, _hy_v3_metadata),
    OracleFamily("internlm2", lambda d: attention(d) | dense_ffn(d)),
    OracleFamily("jais", _jais_block, _alibi_metadata, head=_layer_norm_head),
    OracleFamily("laguna", _laguna_block, _laguna_metadata),
    OracleFamily(
        "llama4",
        lambda d: attention(d) | experts(d, d.n_ff_exp) | _shared_expert_ungated(d, d.n_ff_exp),
        _llama4_metadata,
        positional=lambda layer: (layer + 1) % 4 != 0,
        leading=lambda d: attention(d) | dense_ffn(d),
        moe_step=2,
    ),
    OracleFamily("maincoder", lambda d: attention(d) | _qk_norm(d) | dense_ffn(d)),
    OracleFamily("maple", _maple_block, _maple_metadata),
    OracleFamily("mellum", lambda d: attention(d) | _qk_norm(d) | experts(d, d.n_ff_exp), _mellum_metadata),
    OracleFamily("muse-glimmer", _muse_glimmer_block, _muse_glimmer_metadata),
    OracleFamily("nemotron", _nemotron_block, _layer_norm_eps, head=_layer_norm_head),
    OracleFamily(
        "olmo", _olmo_block, _olmo_metadata, head=lambda d: {T.TOKEN_EMBD: (d.n_vocab, d.n_embd), T.OUTPUT: (d.n_vocab, d.n_embd)}
    ),
    OracleFamily("openelm", _openelm_block, head=lambda d: {T.TOKEN_EMBD: (d.n_vocab, d.n_embd), T.OUTPUT_NORM: (d.n_embd,)}),
    OracleFamily(
        "orion",
        lambda d: _with_bias(attention(d) | dense_ffn(d), T.ATTN_NORM, T.FFN_NORM),
        _layer_norm_eps,
        head=_layer_norm_head,
    ),
    OracleFamily("pangu-embedded", lambda d: _with_bias(attention(d) | dense_ffn(d), T.ATTN_OUT)),
    # GELU MLP: llama.cpp's CPU GELU rounds through an fp16 table (~1e-4 between chunkings, no plan needed)
    OracleFamily("mpt", _mpt_block, _alibi_metadata, dims=Dims(n_head_kv=4), head=_layer_norm_head, chunk_tolerance=1e-3),
]

# Families whose spec loads but fails the oracle tests for a reason outside the spec: left out of SPECS.

"""Tiny random F32 models of group 03's families (plamo .. xverse), for the oracle tests
(`test_archs_oracles.py`): each lists the tensors its llama.cpp loader creates
(src/models/<arch>.cpp, `load_arch_tensors`) and the keys its `load_arch_hparams` requires.

Not covered: plm (stock llama.cpp aborts on any batch of more than one token: its graph hands
build_attn a 2-D V that the KV cache reads as 3-D) and step35 (its block names its input tensor
itself, which renames the tensor build_layer_stack names plan_inp / plan_out-<step>, so hidden
states cannot be captured under a plan)."""

from __future__ import annotations

import gguf
from tiny_oracle_archs import Dims, OracleFamily, Shapes, T, attention, default_head, dense_ffn, experts, moe_metadata

N_SWA = 8  # a window shorter than the tests' 23 tokens, so that it matters
SWA_PATTERN = [True, True, False, True, True, False]  # per layer: a sliding window, or full attention


def replace_key(writer: gguf.GGUFWriter, key: str) -> None:
    """Drop a key the common metadata wrote, before writing the family's own value of it."""
    writer.kv_data[0].pop(key.format(arch=writer.arch), None)


def layer_norm_eps(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_layer_norm_eps(1e-5)


def head_norm_bias(d: Dims) -> Shapes:
    return default_head(d) | {(T.OUTPUT_NORM, "bias"): (d.n_embd,)}


def tied_head(d: Dims) -> Shapes:
    """No output tensor: the loader reuses the token embeddings (TENSOR_DUPLICATED)."""
    return {T.TOKEN_EMBD: (d.n_vocab, d.n_embd), T.OUTPUT_NORM: (d.n_embd,)}


def biased(shapes: Shapes, *kinds: T) -> Shapes:
    """`shapes` plus the bias of each of `kinds` (its rows)."""
    return shapes | {(kind, "bias"): (shapes[kind][0],) for kind in kinds}


def layer_norms(shapes: Shapes) -> Shapes:
    """LayerNorm (weight and bias) in place of the RMS norms."""
    return biased(shapes, T.ATTN_NORM, T.FFN_NORM)


def up_down(d: Dims) -> Shapes:
    """A non-gated FFN (GELU and the like)."""
    return {T.FFN_NORM: (d.n_embd,), T.FFN_UP: (d.n_ff, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_ff)}


def mrope_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_rope_dimension_sections([2, 3, 3, 0])  # M-RoPE: head_dim / 2 rotated pairs in sections


# ---- the blocks


def plamo_block(d: Dims) -> Shapes:
    """Attention and FFN in parallel on the one input norm (no FFN norm)."""
    return attention(d) | {k: v for k, v in dense_ffn(d).items() if k != T.FFN_NORM}


def plamo3_block(d: Dims) -> Shapes:
    q, kv = d.n_head * d.head_dim, d.n_head_kv * d.head_dim
    return {
        T.ATTN_NORM: (d.n_embd,),
        T.ATTN_QKV: (q + 2 * kv, d.n_embd),
        T.ATTN_Q_NORM: (d.head_dim,),
        T.ATTN_K_NORM: (d.head_dim,),
        T.ATTN_OUT: (d.n_embd, q),
        (T.ATTN_POST_NORM, ""): (d.n_embd,),  # named without `.weight`, as its loader and converter do
        T.FFN_NORM: (d.n_embd,),
        (T.FFN_POST_NORM, ""): (d.n_embd,),
        T.FFN_UP: (2 * d.n_ff, d.n_embd),  # gate and up fused (SwiGLU)
        T.FFN_DOWN: (d.n_embd, d.n_ff),
    }


def plamo3_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_sliding_window(N_SWA)
    writer.add_sliding_window_pattern(3)  # a number: llama.cpp makes layers il % 3 == 2 full attention
    writer.add_rope_freq_base_swa(1000.0)


# PLM: multi-head latent attention (DeepSeek-2 style, without the Q LoRA): K's head is 16 "nope"
# dims from the latent and 8 RoPE dims shared by the heads; V's head is 16
PLM_LORA_KV, PLM_ROPE, PLM_NOPE = 16, 8, 16


def qwen_block(d: Dims) -> Shapes:
    half = d.n_ff // 2  # the loader halves feed_forward_length
    return biased(
        {T.ATTN_NORM: (d.n_embd,), T.ATTN_QKV: (3 * d.n_embd, d.n_embd), T.ATTN_OUT: (d.n_embd, d.n_embd)}, T.ATTN_QKV
    ) | {T.FFN_NORM: (d.n_embd,), T.FFN_GATE: (half, d.n_embd), T.FFN_UP: (half, d.n_embd), T.FFN_DOWN: (d.n_embd, half)}


def qk_norms(d: Dims) -> Shapes:
    return {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)}


def spark2_5_block(d: Dims) -> Shapes:
    return attention(d) | {T.ATTN_GATE: (d.n_head, d.n_embd)} | dense_ffn(d)


def swa_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_sliding_window(N_SWA)
    writer.add_sliding_window_pattern(SWA_PATTERN)
    writer.add_rope_freq_base_swa(1000.0)


def starcoder_block(d: Dims) -> Shapes:
    qkv = d.n_embd + 2 * d.n_head_kv * d.head_dim
    shapes = {
        T.ATTN_NORM: (d.n_embd,),
        T.ATTN_QKV: (qkv, d.n_embd),
        T.ATTN_OUT: (d.n_embd, d.n_embd),
    } | up_down(d)
    return layer_norms(biased(shapes, T.ATTN_QKV, T.ATTN_OUT, T.FFN_UP, T.FFN_DOWN))


def starcoder2_block(d: Dims) -> Shapes:
    shapes = attention(d) | up_down(d)
    return layer_norms(biased(shapes, T.ATTN_Q, T.ATTN_K, T.ATTN_V, T.ATTN_OUT, T.FFN_UP, T.FFN_DOWN))


def qwen3vlmoe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    mrope_metadata(writer, d)
    moe_metadata(writer, d, n_ff=d.n_ff_exp)


def talkie_head(d: Dims) -> Shapes:
    return {T.TOKEN_EMBD: (d.n_vocab, d.n_embd), T.OUTPUT: (d.n_vocab, d.n_embd)}  # its norms have no weights


def talkie_block(d: Dims) -> Shapes:
    no_norms: Shapes = {k: v for k, v in (attention(d) | dense_ffn(d)).items() if k not in (T.ATTN_NORM, T.FFN_NORM)}
    return no_norms | {T.ATTN_Q_NORM: (d.n_head, 1), T.LAYER_OUT_SCALE: (1,)}  # a gain per Q head; the embedding skip's scale


def talkie_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_logit_scale(0.5)


SPECS: list[OracleFamily] = [
    OracleFamily("plamo", plamo_block),
    # its SWA layers (il % 3 != 2 by the pattern number) need no `positional`: export writes the kinds as an array
    OracleFamily("plamo3", plamo3_block, plamo3_metadata),
    OracleFamily("qwen", qwen_block, dims=Dims(n_head_kv=4)),  # its fused QKV is 3 x n_embd: no GQA
    OracleFamily("qwen2vl", lambda d: biased(attention(d), T.ATTN_Q, T.ATTN_K, T.ATTN_V) | dense_ffn(d), mrope_metadata),
    OracleFamily("qwen3vl", lambda d: attention(d) | qk_norms(d) | dense_ffn(d), mrope_metadata),
    OracleFamily(
        "qwen3vlmoe",
        lambda d: attention(d) | qk_norms(d) | experts(d, d.n_ff_exp),
        qwen3vlmoe_metadata,
    ),
    OracleFamily("refact", lambda d: attention(d) | dense_ffn(d)),  # ALiBi, no RoPE
    OracleFamily("stablelm", lambda d: layer_norms(attention(d) | dense_ffn(d)), layer_norm_eps, head=head_norm_bias),
    OracleFamily("talkie", talkie_block, talkie_metadata, head=talkie_head),
    OracleFamily("xverse", lambda d: attention(d) | dense_ffn(d)),
    # GELU FFNs: ggml's CPU GELU rounds its input to fp16 for a table lookup, so a one-token batch moves
    # the logits by ~1e-4 relative (with no plan too)
    OracleFamily(
        "pockettts",
        lambda d: layer_norms(attention(d) | up_down(d)),
        layer_norm_eps,
        head=lambda d: biased(tied_head(d), T.OUTPUT_NORM),
        chunk_tolerance=1e-3,
    ),
    OracleFamily("spark2_5", spark2_5_block, swa_metadata, chunk_tolerance=1e-3),
    OracleFamily(
        "starcoder",
        starcoder_block,
        layer_norm_eps,
        head=lambda d: head_norm_bias(d) | {T.POS_EMBD: (d.n_ctx, d.n_embd)},  # learned absolute positions
        chunk_tolerance=1e-3,
    ),
    OracleFamily("starcoder2", starcoder2_block, layer_norm_eps, head=head_norm_bias, chunk_tolerance=1e-3),
]

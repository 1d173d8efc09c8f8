"""Tiny random F32 models of a group of families checked by oracles alone (see tiny_oracle_archs):
deepseek, dots1, ernie4_5-moe, exaone, exaone-moe, exaone4, falcon, gemma, glm4, gpt-oss, gpt2,
granite_swa, grok, grovemoe, hunyuan-moe, hunyuan_vl. Each lists the tensors its loader
(`load_arch_tensors` in llama.cpp's src/models/<file>.cpp) creates as required, in gguf-py's names,
numpy shapes (ggml's reversed), and the hyperparameters it requires.

Every block of a spec has the same tensors, so the MoE families keep `leading_dense_block_count`
at its default 0 (all layers MoE): none of these has a property derived from a layer's index at
these settings (the sliding-window patterns of exaone-moe and gpt-oss are derived from the index
by default, but export writes them as a per-layer array)."""

from __future__ import annotations

import gguf
from tiny_oracle_archs import (
    Dims,
    OracleFamily,
    Shapes,
    T,
    attention,
    default_head,
    dense_ffn,
    experts,
    granite_metadata,
    moe_metadata,
)

N_SWA = 8  # a sliding window shorter than the tests' prompt, so that the window matters


def without(shapes: Shapes, *kinds: T) -> Shapes:
    return {key: shape for key, shape in shapes.items() if key not in kinds}


def shared_ffn(d: Dims, n_ff: int) -> Shapes:
    """A shared expert without a gate of its own (deepseek, dots1, ernie4_5-moe, exaone-moe, hunyuan-moe)."""
    return {T.FFN_GATE_SHEXP: (n_ff, d.n_embd), T.FFN_UP_SHEXP: (n_ff, d.n_embd), T.FFN_DOWN_SHEXP: (d.n_embd, n_ff)}


def qk_norm(d: Dims) -> Shapes:
    return {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)}


def layer_norm_head(d: Dims) -> Shapes:
    """Output LayerNorm with a bias (falcon)."""
    return default_head(d) | {(T.OUTPUT_NORM, "bias"): (d.n_embd,)}


def tied_head(d: Dims) -> Shapes:
    """No output.weight: the loader takes token_embd (gemma always does, and refuses a stray tensor)."""
    return without(default_head(d), T.OUTPUT)


# deepseek (deepseek-moe): a shared expert of n_ff_exp * expert_shared_count
def deepseek_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_shared_count(1)


# dots1: sigmoid gating with a selection bias, normalized weights
def dots1_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_shared_count(1)
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    writer.add_expert_weights_norm(True)


# ernie4_5-moe: the graph takes a layer as MoE when (il + 1) % interleave_moe_layer_step == 0 and the
# loader gives every layer MoE tensors: the step must be 1
def ernie_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp, shared=True)
    writer.add_interleave_moe_layer_step(1)


# exaone-moe: sliding window (pattern 4 by default: RoPE on the window layers only), sigmoid gating
def exaone_moe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp, shared=True)
    writer.add_sliding_window(N_SWA)
    writer.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    writer.add_expert_weights_norm(True)


def layer_norm_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    writer.add_layer_norm_eps(1e-5)


# gpt-oss: sliding window on every other layer (pattern 2 by default), attention sinks, biased experts
def gpt_oss_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_sliding_window(N_SWA)


def gpt_oss_block(d: Dims) -> Shapes:
    return (
        attention(d)
        | {T.ATTN_POST_NORM: (d.n_embd,), T.ATTN_SINKS: (d.n_head,), (T.ATTN_OUT, "bias"): (d.n_embd,)}
        | without(experts(d, d.n_ff_exp), T.FFN_NORM)
        | {
            (T.FFN_GATE_INP, "bias"): (d.n_expert,),
            (T.FFN_GATE_EXP, "bias"): (d.n_expert, d.n_ff_exp),
            (T.FFN_UP_EXP, "bias"): (d.n_expert, d.n_ff_exp),
            (T.FFN_DOWN_EXP, "bias"): (d.n_expert, d.n_embd),
        }
    )


def gpt2_head(d: Dims) -> Shapes:
    return layer_norm_head(d) | {T.POS_EMBD: (d.n_ctx, d.n_embd)}


def gpt2_block(d: Dims) -> Shapes:
    qkv = d.n_embd + 2 * d.n_head_kv * d.head_dim
    return {
        T.ATTN_NORM: (d.n_embd,),
        (T.ATTN_NORM, "bias"): (d.n_embd,),
        T.ATTN_QKV: (qkv, d.n_embd),
        (T.ATTN_QKV, "bias"): (qkv,),
        T.ATTN_OUT: (d.n_embd, d.n_embd),
        (T.ATTN_OUT, "bias"): (d.n_embd,),
        T.FFN_NORM: (d.n_embd,),
        (T.FFN_NORM, "bias"): (d.n_embd,),
        T.FFN_UP: (d.n_ff, d.n_embd),
        (T.FFN_UP, "bias"): (d.n_ff,),
        T.FFN_DOWN: (d.n_embd, d.n_ff),
        (T.FFN_DOWN, "bias"): (d.n_embd,),
    }


def falcon_block(d: Dims) -> Shapes:
    return {
        T.ATTN_NORM: (d.n_embd,),
        (T.ATTN_NORM, "bias"): (d.n_embd,),
        T.ATTN_QKV: (d.n_embd + 2 * d.n_head_kv * d.head_dim, d.n_embd),
        T.ATTN_OUT: (d.n_embd, d.n_embd),
        T.FFN_UP: (d.n_ff, d.n_embd),
        T.FFN_DOWN: (d.n_embd, d.n_ff),
    }


# granite_swa: a window pattern as a per-layer array (required), attention sinks, granite's scales
def granite_swa_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    granite_metadata(writer, d)
    writer.add_sliding_window(N_SWA)
    writer.add_array(f"{writer.arch}.attention.sliding_window_pattern", [layer % 3 != 2 for layer in range(d.n_layer)])


# grok (grok-2 style: a dense FFN beside the experts, their sum scaled by 1/sqrt(2))
def grok_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_embedding_scale(8.0)  # the default (78.4, grok-1's) would drown the blocks' deltas
    writer.add_attn_output_scale(0.25)  # 1/sqrt(head_dim): the attention's scale, applied under the soft cap


def grok_block(d: Dims) -> Shapes:
    return attention(d) | {T.ATTN_OUT_NORM: (d.n_embd,), T.LAYER_OUT_NORM: (d.n_embd,)} | dense_ffn(d) | experts(d, d.n_ff_exp)


# grovemoe: experts in groups of experts_per_group, each group with a chunk expert of
# expert_chunk_feed_forward_length (default head_dim)
GROVE_GROUP = 2


def grovemoe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_group_scale(0.5)
    writer.add_experts_per_group(GROVE_GROUP)


def grovemoe_block(d: Dims) -> Shapes:
    n_chunk = d.n_expert // GROVE_GROUP
    return (
        attention(d)
        | qk_norm(d)
        | experts(d, d.n_ff_exp)
        | {
            T.FFN_GATE_CHEXP: (n_chunk, d.head_dim, d.n_embd),
            T.FFN_UP_CHEXP: (n_chunk, d.head_dim, d.n_embd),
            T.FFN_DOWN_CHEXP: (n_chunk, d.n_embd, d.head_dim),
        }
    )


# hunyuan-moe: the experts are n_ff wide (expert_feed_forward_length is required but unused for them)
def hunyuan_moe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff, shared=True)


SPECS: list[OracleFamily] = [
    OracleFamily(
        "deepseek",
        lambda d: attention(d) | experts(d, d.n_ff_exp) | shared_ffn(d, d.n_ff_exp),
        deepseek_metadata,
        n_dense_lead=1,  # as deepseek-moe-16b: the first block dense, the rest MoE
        leading=lambda d: attention(d) | dense_ffn(d),
    ),
    OracleFamily(
        "dots1",
        lambda d: (
            attention(d)
            | qk_norm(d)
            | experts(d, d.n_ff_exp)
            | {(T.FFN_EXP_PROBS_B, "bias"): (d.n_expert,)}
            | shared_ffn(d, d.n_ff_exp)
        ),
        dots1_metadata,
        dims=Dims(n_head_kv=4),  # its loader sizes K and V by n_head: no grouped-query attention
        n_dense_lead=1,  # as dots.llm1: the first block dense
        leading=lambda d: attention(d) | qk_norm(d) | dense_ffn(d),
    ),
    OracleFamily(
        "ernie4_5-moe",
        lambda d: attention(d) | experts(d, d.n_ff_exp) | shared_ffn(d, d.n_ff_shexp),
        ernie_metadata,
    ),
    OracleFamily("exaone", lambda d: attention(d) | dense_ffn(d)),
    OracleFamily(
        "exaone-moe",
        lambda d: (
            attention(d)
            | qk_norm(d)
            | experts(d, d.n_ff_exp)
            | {(T.FFN_EXP_PROBS_B, "bias"): (d.n_expert,)}
            | shared_ffn(d, d.n_ff_shexp)
        ),
        exaone_moe_metadata,
    ),
    OracleFamily(
        # exaone4 has a sliding window only at 64 layers (its 32B): at 6 it is the dense 1.2B's graph
        "exaone4",
        lambda d: (
            without(attention(d), T.ATTN_NORM)
            | qk_norm(d)
            | {T.ATTN_POST_NORM: (d.n_embd,), T.FFN_POST_NORM: (d.n_embd,)}
            | without(dense_ffn(d), T.FFN_NORM)
        ),
    ),
    OracleFamily(
        "glm4",
        lambda d: (
            attention(d)
            | {T.ATTN_POST_NORM: (d.n_embd,), T.FFN_POST_NORM: (d.n_embd,)}
            | {T.FFN_NORM: (d.n_embd,), T.FFN_UP: (2 * d.n_ff, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_ff)}
        ),
    ),
    OracleFamily("gpt-oss", gpt_oss_block, gpt_oss_metadata),
    OracleFamily(
        "granite_swa",
        lambda d: attention(d) | {T.ATTN_SINKS: (d.n_head,)} | dense_ffn(d),
        granite_swa_metadata,
    ),
    OracleFamily("grovemoe", grovemoe_block, grovemoe_metadata),
    OracleFamily(
        "hunyuan-moe",
        lambda d: attention(d) | qk_norm(d) | experts(d, d.n_ff) | shared_ffn(d, d.n_ff_shexp),
        hunyuan_moe_metadata,
    ),
    OracleFamily("hunyuan_vl", lambda d: attention(d) | qk_norm(d) | dense_ffn(d)),
    # GELU FFNs: ggml's CPU GELU rounds its input to F16 for a table lookup, so a one-token batch (other
    # matmul kernels, other last bits) moves the logits by 3e-5..2e-4 relative, with no plan too
    OracleFamily("falcon", falcon_block, layer_norm_metadata, head=layer_norm_head, chunk_tolerance=1e-3),
    OracleFamily("gemma", lambda d: attention(d) | dense_ffn(d), head=tied_head, chunk_tolerance=1e-3),
    OracleFamily("gpt2", gpt2_block, layer_norm_metadata, dims=Dims(n_head_kv=4), head=gpt2_head, chunk_tolerance=1e-3),
    OracleFamily("grok", grok_block, grok_metadata, chunk_tolerance=1e-3),
]

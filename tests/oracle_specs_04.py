"""Tiny random F32 models of the families that run another family's graph (llama.cpp's models.h:
`using graph = llama_model_<other>::graph`, or a subclass without a graph of its own), for the
oracle tests (`test_archs_oracles.py`): granitemoe and minicpm (granite's graph), hunyuan-dense
(hunyuan_vl's) and phimoe (phi3's, edited by hand), each with a loader (the tensors and keys
below) or an architecture name of its own in the covered list, so each is checked on its own; and
llama with experts (Mixtral: the llama architecture with a router in every block), and glm4moe
(its own graph, taken by blockify once declarations of the file's other graph were told apart).

Not covered: qwen3tts (qwen3vl's graph; a speech model whose output layer has 3072 codec rows,
not n_vocab: stock llama.cpp aborts on its logits, and llama.cpp's own architecture test skips it)."""

from __future__ import annotations

import gguf
from oracle_specs_03 import biased, head_norm_bias
from tiny_oracle_archs import (
    Dims,
    OracleFamily,
    Shapes,
    T,
    attention,
    dense_ffn,
    experts,
    granite_metadata,
    moe_metadata,
)


def qk_norms(d: Dims) -> Shapes:
    return {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)}


def granite_moe_block(d: Dims) -> Shapes:
    """Granite's attention with routed experts (the gate's experts optional: present here) and a shared expert."""
    shared = {
        T.FFN_GATE_SHEXP: (d.n_ff_shexp, d.n_embd),
        T.FFN_UP_SHEXP: (d.n_ff_shexp, d.n_embd),
        T.FFN_DOWN_SHEXP: (d.n_embd, d.n_ff_shexp),
    }
    return attention(d) | experts(d, d.n_ff) | shared


def granite_moe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    granite_metadata(writer, d)
    moe_metadata(writer, d, shared=True)


def phimoe_block(d: Dims) -> Shapes:
    """phi3's block (its norms with biases, a biased output projection) with routed experts."""
    return biased(attention(d), T.ATTN_NORM, T.ATTN_OUT) | biased(experts(d, d.n_ff), T.FFN_NORM)


def glm4moe_block(d: Dims) -> Shapes:
    """Post-attention norm (no FFN norm), sigmoid routing with a selection bias, one shared expert."""
    shared = {
        T.FFN_GATE_SHEXP: (d.n_ff_exp, d.n_embd),
        T.FFN_UP_SHEXP: (d.n_ff_exp, d.n_embd),
        T.FFN_DOWN_SHEXP: (d.n_embd, d.n_ff_exp),
    }
    routed = {key: shape for key, shape in experts(d, d.n_ff_exp).items() if key != T.FFN_NORM}
    return attention(d) | {T.ATTN_POST_NORM: (d.n_embd,), (T.FFN_EXP_PROBS_B, "bias"): (d.n_expert,)} | routed | shared


def glm4moe_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    moe_metadata(writer, d, n_ff=d.n_ff_exp)
    writer.add_expert_shared_count(1)


SPECS = (
    # glm4moe (GLM-4.5, GLM-4.5-Air): the first block dense, as the real ones
    OracleFamily(
        "glm4moe",
        glm4moe_block,
        glm4moe_metadata,
        n_dense_lead=1,
        leading=lambda d: (
            attention(d) | {T.ATTN_POST_NORM: (d.n_embd,)} | {k: v for k, v in dense_ffn(d).items() if k != T.FFN_NORM}
        ),
    ),
    # llama with experts (Mixtral): the llama graph, edited by hand, runs its MoE branch when the
    # block has a router; its numpy reference (tests/tiny_archs.py) covers the dense block only
    OracleFamily("llama", lambda d: attention(d) | experts(d, d.n_ff), lambda writer, d: moe_metadata(writer, d), variant="moe"),
    OracleFamily("granitemoe", granite_moe_block, granite_moe_metadata),
    OracleFamily("minicpm", lambda d: attention(d) | dense_ffn(d), granite_metadata),
    OracleFamily("hunyuan-dense", lambda d: attention(d) | qk_norms(d) | dense_ffn(d)),
    OracleFamily(
        "phimoe",
        phimoe_block,
        lambda writer, d: moe_metadata(writer, d),
        head=lambda d: head_norm_bias(d) | {(T.OUTPUT, "bias"): (d.n_vocab,)},
    ),
)

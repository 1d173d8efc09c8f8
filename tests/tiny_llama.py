"""Tiny random `llama` GGUFs written with the gguf package, and a numpy reference forward pass.

The reference is written from the architecture's definition (RMSNorm, RoPE on adjacent pairs
as llama.cpp's LLAMA_ROPE_TYPE_NORM does, grouped-query causal attention, SwiGLU), in float64,
independently of llama.cpp. Plans run as the paper defines them: a parallel step's output is the
mean of its members' outputs, each member seeing the same input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import gguf
import numpy as np


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    n_layer: int = 6
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2  # grouped-query attention: 2 query heads per KV head
    n_ff: int = 96
    n_vocab: int = 97
    n_ctx: int = 256
    rms_eps: float = 1e-5
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclasses.dataclass
class TinyWeights:
    config: TinyConfig
    tensors: dict[str, np.ndarray]  # GGUF names -> float32 arrays, numpy shape (out, in)


def random_weights(config: TinyConfig, seed: int) -> TinyWeights:
    rng = np.random.default_rng(seed)
    c = config

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(c.n_embd)).astype(np.float32)

    t: dict[str, np.ndarray] = {"token_embd.weight": rng.standard_normal((c.n_vocab, c.n_embd)).astype(np.float32)}
    for i in range(c.n_layer):
        t[f"blk.{i}.attn_norm.weight"] = norm()
        t[f"blk.{i}.attn_q.weight"] = mat(c.n_head * c.head_dim, c.n_embd)
        t[f"blk.{i}.attn_k.weight"] = mat(c.n_head_kv * c.head_dim, c.n_embd)
        t[f"blk.{i}.attn_v.weight"] = mat(c.n_head_kv * c.head_dim, c.n_embd)
        t[f"blk.{i}.attn_output.weight"] = mat(c.n_embd, c.n_head * c.head_dim)
        t[f"blk.{i}.ffn_norm.weight"] = norm()
        t[f"blk.{i}.ffn_gate.weight"] = mat(c.n_ff, c.n_embd)
        t[f"blk.{i}.ffn_up.weight"] = mat(c.n_ff, c.n_embd)
        t[f"blk.{i}.ffn_down.weight"] = mat(c.n_embd, c.n_ff)
    t["output_norm.weight"] = norm()
    t["output.weight"] = mat(c.n_vocab, c.n_embd)
    return TinyWeights(config, t)


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A real BPE tokenizer's metadata, copied from another GGUF."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos: int
    eos: int

    @classmethod
    def from_gguf(cls, path: Path) -> Vocab:
        fields = gguf.GGUFReader(str(path)).fields

        def value(key: str):
            return fields[key].contents()

        assert value("tokenizer.ggml.model") == "gpt2"
        return cls(
            value("tokenizer.ggml.tokens"),
            value("tokenizer.ggml.token_type"),
            value("tokenizer.ggml.merges"),
            value("tokenizer.ggml.pre"),
            value("tokenizer.ggml.bos_token_id"),
            value("tokenizer.ggml.eos_token_id"),
        )


def write_gguf(weights: TinyWeights, path: Path, arch: str = "llama", vocab: Vocab | None = None) -> Path:
    """Write the weights as a GGUF; `arch` other than llama gives a model the plans do not cover;
    with `vocab`, the model tokenizes text (its n_vocab must match)."""
    c = weights.config
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny-random-llama")
    writer.add_context_length(c.n_ctx)
    writer.add_embedding_length(c.n_embd)
    writer.add_block_count(c.n_layer)
    writer.add_feed_forward_length(c.n_ff)
    writer.add_head_count(c.n_head)
    writer.add_head_count_kv(c.n_head_kv)
    writer.add_rope_dimension_count(c.head_dim)
    writer.add_rope_freq_base(c.rope_base)
    writer.add_layer_norm_rms_eps(c.rms_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(c.n_vocab)
    if vocab is None:
        writer.add_tokenizer_model("no_vocab")  # tests pass token ids; no tokenizer needed
    else:
        assert len(vocab.tokens) == c.n_vocab
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab.pre)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.token_types)
        writer.add_token_merges(vocab.merges)
        writer.add_bos_token_id(vocab.bos)
        writer.add_eos_token_id(vocab.eos)
        writer.add_add_bos_token(False)
    for name, array in weights.tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- numpy reference forward pass (float64) ---


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """Rotate adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d). x: (T, heads, head_dim)."""
    head_dim = x.shape[-1]
    inv_freq = base ** (-np.arange(0, head_dim, 2) / head_dim)  # (head_dim/2,)
    angle = positions[:, None, None] * inv_freq[None, None, :]  # (T, 1, head_dim/2)
    cos, sin = np.cos(angle), np.sin(angle)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


class Reference:
    def __init__(self, weights: TinyWeights) -> None:
        self.c = weights.config
        self.w = {name: array.astype(np.float64) for name, array in weights.tensors.items()}

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        """One llama block over the whole sequence h (T, n_embd), residuals included."""
        c, w = self.c, self.w
        p = f"blk.{layer}."
        T = h.shape[0]
        positions = np.arange(T, dtype=np.float64)

        a = rms_norm(h, w[p + "attn_norm.weight"], c.rms_eps)
        q = (a @ w[p + "attn_q.weight"].T).reshape(T, c.n_head, c.head_dim)
        k = (a @ w[p + "attn_k.weight"].T).reshape(T, c.n_head_kv, c.head_dim)
        v = (a @ w[p + "attn_v.weight"].T).reshape(T, c.n_head_kv, c.head_dim)
        q, k = rope(q, positions, c.rope_base), rope(k, positions, c.rope_base)
        group = c.n_head // c.n_head_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # (T, n_head, head_dim)

        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(c.head_dim)  # (n_head, T, T)
        scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        attn = np.einsum("hts,shd->thd", probs, v).reshape(T, c.n_head * c.head_dim)
        h = h + attn @ w[p + "attn_output.weight"].T

        f = rms_norm(h, w[p + "ffn_norm.weight"], c.rms_eps)
        gate = f @ w[p + "ffn_gate.weight"].T
        up = f @ w[p + "ffn_up.weight"].T
        return h + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "ffn_down.weight"].T

    def hidden_states(self, tokens: Sequence[int], steps: Iterable[Sequence[int]]) -> list[np.ndarray]:
        """The embedding output, then the hidden state after each step (parallel: member mean)."""
        h = self.w["token_embd.weight"][list(tokens)]
        states = [h]
        for members in steps:
            h = np.mean([self.block(layer, h) for layer in members], axis=0)
            states.append(h)
        return states

    def logits(self, tokens: Sequence[int], steps: Iterable[Sequence[int]]) -> np.ndarray:
        h = self.hidden_states(tokens, steps)[-1]
        return rms_norm(h, self.w["output_norm.weight"], self.c.rms_eps) @ self.w["output.weight"].T


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest absolute difference relative to the largest expected magnitude."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def chunked_logits(ctx, tokens: Sequence[int], chunk: int) -> np.ndarray:
    """The logits of the tokens decoded through the KV cache `chunk` at a time, from an empty cache."""
    ctx.clear()
    return np.concatenate([ctx.eval(tokens[i : i + chunk]) for i in range(0, len(tokens), chunk)])


def assert_plans_differ(ctx, texts: Sequence[str], tokens: Sequence[int]) -> None:
    """Every pair of plans gives clearly different logits: agreement with a reference is not vacuous."""
    from painters_gguf.plan import Plan

    outputs = []
    for text in texts:
        ctx.set_plan(Plan.parse(text))
        outputs.append(ctx.logits(tokens))
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert relative_error(outputs[i], outputs[j]) > 1e-2, (texts[i], texts[j])


def assert_continues_from_kept_state(ctx, plan, tokens: Sequence[int]) -> None:
    """A plan that begins with the full model's layers, run from the full model's hidden state
    after them (kept by name, given back as embeddings input) under the rest of the plan, gives
    the plan's own logits bit for bit."""
    from painters_gguf import variants
    from painters_gguf.engine.hidden_states import HiddenStates, step_output
    from painters_gguf.engine.shared_prefix import remainder, shared_steps
    from painters_gguf.runtime import Batch

    n_layer = ctx.model.n_layer
    k = shared_steps(plan, n_layer)
    assert k > 0, f"plan {plan.text} shares no layer with the full model"
    hidden = HiddenStates(ctx.model.n_embd, {step_output(k - 1)})
    ctx.set_plan(variants.full(n_layer))
    ctx.set_eval_callback(hidden.observe)
    try:
        full = ctx.logits(tokens)
    finally:
        ctx.set_eval_callback(None)
    state = hidden.take()[step_output(k - 1)]
    assert state.shape == (len(tokens), ctx.model.n_embd)
    ctx.set_plan(None)
    assert np.array_equal(full, ctx.logits(tokens))  # keeping the state changes nothing
    ctx.set_plan(plan)
    expected = ctx.logits(tokens)
    ctx.set_plan(remainder(plan, k))
    ctx.clear()
    n = len(tokens)
    actual = ctx.decode(Batch([], list(range(n)), [(0,)] * n, [True] * n, embeddings=state))
    assert np.array_equal(actual, expected), f"{plan.text}: {relative_error(actual, expected)}"

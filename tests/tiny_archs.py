"""Tiny random GGUFs of every architecture that runs layer plans (besides llama: tiny_llama.py),
each with an independent float64 numpy forward pass written from the family's definition.

One class per family: its tensors (GGUF names, numpy shape (out, in)), its metadata, and its
block in a few lines. What the families share (norms, rotary embeddings, attention with a
window and a soft cap) is defined once below. A plan's steps run as the paper defines them: a
parallel step's output is the mean of its members' outputs, each member seeing the same input;
a layer run out of place keeps everything of its own (weights, window, rope base).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import gguf
import numpy as np
from tiny_llama import rms_norm, rope


@dataclasses.dataclass(frozen=True)
class Shape:
    n_layer: int = 6
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2  # grouped-query attention: 2 query heads per KV head
    head_dim: int = 16
    n_ff: int = 96
    n_vocab: int = 97
    n_ctx: int = 256


# --- what the families share ---


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def rope_neox(x: np.ndarray, positions: np.ndarray, base: float, n_rot: int) -> np.ndarray:
    """Rotate dimension i with i + n_rot/2 (i < n_rot/2) by pos * base^(-2i/n_rot); the dimensions
    past n_rot pass through (partial rotary). x: (T, heads, head_dim)."""
    half = n_rot // 2
    angle = positions[:, None, None] * base ** (-np.arange(half) * 2.0 / n_rot)[None, None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    first, second = x[..., :half], x[..., half:n_rot]
    return np.concatenate([first * cos - second * sin, second * cos + first * sin, x[..., n_rot:]], axis=-1)


def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, *, window: int | None = None, softcap: float | None = None
) -> np.ndarray:
    """Causal grouped-query attention. q: (T, n_head, d), k and v: (T, n_head_kv, d). A query at
    position p sees the keys at p - window < position <= p when a window is given."""
    T, n_head, _ = q.shape
    group = n_head // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scores = np.einsum("thd,shd->hts", q, k) * scale
    if softcap is not None:
        scores = softcap * np.tanh(scores / softcap)
    distance = np.arange(T)[:, None] - np.arange(T)[None, :]
    visible = distance >= 0 if window is None else (distance >= 0) & (distance < window)
    scores = np.where(visible, scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.einsum("hts,shd->thd", probs, v).reshape(T, -1)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def shape_metadata(writer: gguf.GGUFWriter, s: Shape, *, n_rot: int, rope_base: float, rms_eps: float) -> None:
    """The hyperparameters every family's loader reads."""
    writer.add_context_length(s.n_ctx)
    writer.add_embedding_length(s.n_embd)
    writer.add_block_count(s.n_layer)
    writer.add_feed_forward_length(s.n_ff)
    writer.add_head_count(s.n_head)
    writer.add_head_count_kv(s.n_head_kv)
    writer.add_key_length(s.head_dim)
    writer.add_value_length(s.head_dim)
    writer.add_rope_dimension_count(n_rot)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(rms_eps)


def write_f32(
    path: Path, arch: str, n_vocab: int, metadata: Callable[[gguf.GGUFWriter], None], tensors: dict[str, np.ndarray]
) -> Path:
    """A tiny random model's GGUF: F32 tensors, no tokenizer (tests pass token ids), the family's metadata."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-random-{arch}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("no_vocab")
    metadata(writer)
    for name, array in tensors.items():
        writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class TinyModel:
    """A family's tiny random model: weights, GGUF writer and reference forward pass."""

    arch = ""
    gelu = False  # an FFN through GELU (llama.cpp's CPU GELU rounds through an fp16 table)
    rms_eps = 1e-5
    rope_base = 10000.0

    def __init__(self, shape: Shape = Shape(), seed: int = 0) -> None:
        self.shape = shape
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, np.ndarray] = {"token_embd.weight": self.rng.standard_normal((shape.n_vocab, shape.n_embd))}
        for layer in range(shape.n_layer):
            self.tensors.update({f"blk.{layer}.{name}": array for name, array in self.layer_tensors().items()})
        self.tensors.update(self.head_tensors())
        self.w = {name: array.astype(np.float32).astype(np.float64) for name, array in self.tensors.items()}

    @classmethod
    def load(cls, path: Path) -> TinyModel:
        """The family's reference on a real GGUF: its hyperparameters read from the metadata, its
        weights dequantized to float64 by gguf-py (llama.cpp itself computes with quantized
        activations, so the two agree only within quantization noise)."""
        reader = gguf.GGUFReader(str(path))
        arch = reader.fields["general.architecture"].contents()
        assert arch == cls.arch, (arch, cls.arch)

        def meta(key: str, default: object = None):
            field = reader.fields.get(f"{arch}.{key}")
            return default if field is None else field.contents()

        n_embd, n_head = meta("embedding_length"), meta("attention.head_count")
        model = cls.__new__(cls)
        model.shape = Shape(
            n_layer=meta("block_count"),
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=meta("attention.head_count_kv", n_head),
            head_dim=meta("attention.key_length", n_embd // n_head),
            n_ff=meta("feed_forward_length"),
            n_vocab=len(reader.fields["tokenizer.ggml.tokens"].data),
            n_ctx=meta("context_length"),
        )
        model.configure(meta)
        model.tensors = {}
        model.w = {
            tensor.name: gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float64) for tensor in reader.tensors
        }
        return model

    def configure(self, meta: Callable[[str, object], object]) -> None:
        """Hyperparameters of a loaded file beyond its shape."""
        self.rope_base = float(meta("rope.freq_base", self.rope_base))
        self.rms_eps = float(meta("attention.layer_norm_rms_epsilon", self.rms_eps))

    # weights

    def mat(self, rows: int, cols: int) -> np.ndarray:
        return self.rng.standard_normal((rows, cols)) / np.sqrt(cols)

    def norm(self, n: int | None = None) -> np.ndarray:
        return 1.0 + 0.1 * self.rng.standard_normal(n or self.shape.n_embd)

    def bias(self, n: int) -> np.ndarray:
        return 0.1 * self.rng.standard_normal(n)

    def layer_tensors(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def attention_tensors(self) -> dict[str, np.ndarray]:
        """Separate Q, K and V projections and the output projection."""
        s = self.shape
        q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
        return {
            "attn_q.weight": self.mat(q, s.n_embd),
            "attn_k.weight": self.mat(kv, s.n_embd),
            "attn_v.weight": self.mat(kv, s.n_embd),
            "attn_output.weight": self.mat(s.n_embd, q),
        }

    def gated_ffn_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        return {
            "ffn_gate.weight": self.mat(s.n_ff, s.n_embd),
            "ffn_up.weight": self.mat(s.n_ff, s.n_embd),
            "ffn_down.weight": self.mat(s.n_embd, s.n_ff),
        }

    def head_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        return {"output_norm.weight": self.norm(), "output.weight": self.mat(s.n_vocab, s.n_embd)}

    # GGUF

    def metadata(self, writer: gguf.GGUFWriter) -> None:
        shape_metadata(writer, self.shape, n_rot=self.n_rot, rope_base=self.rope_base, rms_eps=self.rms_eps)

    def write(self, path: Path) -> Path:
        return write_f32(path, self.arch, self.shape.n_vocab, self.metadata, self.tensors)

    # reference forward pass (float64)

    @property
    def n_rot(self) -> int:
        return self.shape.head_dim

    def qkv(self, p: str, x: np.ndarray, bias: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Separate Q, K, V projections (with their biases), as (T, heads, head_dim)."""
        s, w, T = self.shape, self.w, x.shape[0]
        out = []
        for name, heads in (("attn_q", s.n_head), ("attn_k", s.n_head_kv), ("attn_v", s.n_head_kv)):
            y = x @ w[f"{p}{name}.weight"].T + (w[f"{p}{name}.bias"] if bias else 0.0)
            out.append(y.reshape(T, heads, s.head_dim))
        return out[0], out[1], out[2]

    def fused_qkv(self, qkv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A fused Q|K|V projection's output (T, q + 2 kv) split into (T, heads, head_dim) each."""
        s, T = self.shape, qkv.shape[0]
        q, k, v = np.split(qkv, [s.n_head * s.head_dim, (s.n_head + s.n_head_kv) * s.head_dim], axis=-1)
        return q.reshape(T, s.n_head, s.head_dim), k.reshape(T, s.n_head_kv, s.head_dim), v.reshape(T, s.n_head_kv, s.head_dim)

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        """One block over the whole sequence h (T, n_embd), residuals included."""
        raise NotImplementedError

    def embed(self, tokens: Sequence[int]) -> np.ndarray:
        return self.w["token_embd.weight"][list(tokens)]

    def head(self, h: np.ndarray) -> np.ndarray:
        return rms_norm(h, self.w["output_norm.weight"], self.rms_eps) @ self.w["output.weight"].T

    def hidden_states(self, tokens: Sequence[int], steps: Iterable[Sequence[int]]) -> list[np.ndarray]:
        """The embedding output, then the hidden state after each step (parallel: member mean)."""
        h = self.embed(tokens)
        states = [h]
        for members in steps:
            h = np.mean([self.block(layer, h) for layer in members], axis=0)
            states.append(h)
        return states

    def logits(self, tokens: Sequence[int], steps: Iterable[Sequence[int]]) -> np.ndarray:
        return self.head(self.hidden_states(tokens, steps)[-1])


def swiglu_ffn(w: dict[str, np.ndarray], p: str, x: np.ndarray) -> np.ndarray:
    return (silu(x @ w[p + "ffn_gate.weight"].T) * (x @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T


# --- the families ---


class Qwen2(TinyModel):
    """Llama with biases on Q, K and V and NEOX rotary embeddings."""

    arch = "qwen2"

    def layer_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
        return {
            "attn_norm.weight": self.norm(),
            **self.attention_tensors(),
            "attn_q.bias": self.bias(q),
            "attn_k.bias": self.bias(kv),
            "attn_v.bias": self.bias(kv),
            "ffn_norm.weight": self.norm(),
            **self.gated_ffn_tensors(),
        }

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        w, p, positions = self.w, f"blk.{layer}.", np.arange(h.shape[0], dtype=np.float64)
        q, k, v = self.qkv(p, rms_norm(h, w[p + "attn_norm.weight"], self.rms_eps), bias=True)
        q, k = rope_neox(q, positions, self.rope_base, self.n_rot), rope_neox(k, positions, self.rope_base, self.n_rot)
        h = h + attention(q, k, v, 1 / np.sqrt(self.shape.head_dim)) @ w[p + "attn_output.weight"].T
        return h + swiglu_ffn(w, p, rms_norm(h, w[p + "ffn_norm.weight"], self.rms_eps))


class Qwen3(TinyModel):
    """Llama with a per-head RMS norm on queries and keys before NEOX rotary embeddings; the head
    size is its own (`key_length`), not n_embd / n_head."""

    arch = "qwen3"

    def layer_tensors(self) -> dict[str, np.ndarray]:
        return {
            "attn_norm.weight": self.norm(),
            **self.attention_tensors(),
            "attn_q_norm.weight": self.norm(self.shape.head_dim),
            "attn_k_norm.weight": self.norm(self.shape.head_dim),
            "ffn_norm.weight": self.norm(),
            **self.gated_ffn_tensors(),
        }

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        w, p, positions = self.w, f"blk.{layer}.", np.arange(h.shape[0], dtype=np.float64)
        q, k, v = self.qkv(p, rms_norm(h, w[p + "attn_norm.weight"], self.rms_eps))
        q = rope_neox(rms_norm(q, w[p + "attn_q_norm.weight"], self.rms_eps), positions, self.rope_base, self.n_rot)
        k = rope_neox(rms_norm(k, w[p + "attn_k_norm.weight"], self.rms_eps), positions, self.rope_base, self.n_rot)
        h = h + attention(q, k, v, 1 / np.sqrt(self.shape.head_dim)) @ w[p + "attn_output.weight"].T
        return h + swiglu_ffn(w, p, rms_norm(h, w[p + "ffn_norm.weight"], self.rms_eps))


class Gemma3(TinyModel):
    """Token embeddings times sqrt(n_embd); per-head Q/K norms; sandwich norms around attention
    and the GELU(tanh)-gated FFN; queries scaled by 1/sqrt(head_dim); output tied to the
    embeddings. Sliding-window layers (a per-layer pattern) attend to the last `window` positions
    with their own rope base; the others see everything with the file's rope base."""

    arch = "gemma3"
    gelu = True
    rms_eps = 1e-6
    rope_base = 1_000_000.0
    rope_base_swa = 10_000.0

    def __init__(
        self, shape: Shape = Shape(), seed: int = 0, *, window: int = 4, swa_pattern: Sequence[bool] = (True, True, False) * 2
    ) -> None:
        assert len(swa_pattern) == shape.n_layer
        self.window = window
        self.swa_pattern = tuple(swa_pattern)
        super().__init__(shape, seed)

    def layer_tensors(self) -> dict[str, np.ndarray]:
        return {
            "attn_norm.weight": self.norm(),
            **self.attention_tensors(),
            "attn_q_norm.weight": self.norm(self.shape.head_dim),
            "attn_k_norm.weight": self.norm(self.shape.head_dim),
            "post_attention_norm.weight": self.norm(),
            "ffn_norm.weight": self.norm(),
            **self.gated_ffn_tensors(),
            "post_ffw_norm.weight": self.norm(),
        }

    def head_tensors(self) -> dict[str, np.ndarray]:
        return {"output_norm.weight": self.norm()}  # the output matrix is the token embedding

    def configure(self, meta: Callable[[str, object], object]) -> None:
        super().configure(meta)
        self.window = int(meta("attention.sliding_window", 0))
        self.rope_base_swa = float(meta("rope.freq_base_swa", 10_000.0))
        # without a pattern key every sixth layer is global (layers 5, 11, 17, ...)
        pattern = meta("attention.sliding_window_pattern", 6)
        n_layer = self.shape.n_layer
        self.swa_pattern = (
            tuple(pattern) if isinstance(pattern, list) else tuple(il % pattern < pattern - 1 for il in range(n_layer))
        )

    def metadata(self, writer: gguf.GGUFWriter) -> None:
        super().metadata(writer)
        writer.add_sliding_window(self.window)
        writer.add_sliding_window_pattern(list(self.swa_pattern))
        writer.add_rope_freq_base_swa(self.rope_base_swa)

    def embed(self, tokens: Sequence[int]) -> np.ndarray:
        return super().embed(tokens) * np.sqrt(self.shape.n_embd)

    def head(self, h: np.ndarray) -> np.ndarray:
        return rms_norm(h, self.w["output_norm.weight"], self.rms_eps) @ self.w["token_embd.weight"].T

    def block(self, layer: int, h: np.ndarray, *, swa: bool | None = None) -> np.ndarray:
        """`swa` overrides the layer's own kind (for tests of what a plan must not do)."""
        w, p, positions = self.w, f"blk.{layer}.", np.arange(h.shape[0], dtype=np.float64)
        swa = self.swa_pattern[layer] if swa is None else swa
        base = self.rope_base_swa if swa else self.rope_base
        q, k, v = self.qkv(p, rms_norm(h, w[p + "attn_norm.weight"], self.rms_eps))
        q = rope_neox(rms_norm(q, w[p + "attn_q_norm.weight"], self.rms_eps), positions, base, self.n_rot)
        k = rope_neox(rms_norm(k, w[p + "attn_k_norm.weight"], self.rms_eps), positions, base, self.n_rot)
        a = attention(q / np.sqrt(self.shape.head_dim), k, v, 1.0, window=self.window if swa else None)
        h = h + rms_norm(a @ w[p + "attn_output.weight"].T, w[p + "post_attention_norm.weight"], self.rms_eps)
        f = rms_norm(h, w[p + "ffn_norm.weight"], self.rms_eps)
        f = (gelu_tanh(f @ w[p + "ffn_gate.weight"].T) * (f @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        return h + rms_norm(f, w[p + "post_ffw_norm.weight"], self.rms_eps)


class Gemma2(Gemma3):
    """Gemma 3's block without Q/K norms, with a soft cap on the attention logits and on the final
    logits; by default every other layer (0, 2, ...) is a sliding-window layer."""

    arch = "gemma2"
    attn_softcap = 3.0
    final_softcap = 5.0

    def __init__(self, shape: Shape = Shape(), seed: int = 0, *, window: int = 4) -> None:
        super().__init__(shape, seed, window=window, swa_pattern=[layer % 2 == 0 for layer in range(shape.n_layer)])

    def layer_tensors(self) -> dict[str, np.ndarray]:
        tensors = super().layer_tensors()
        del tensors["attn_q_norm.weight"], tensors["attn_k_norm.weight"]
        return tensors

    def metadata(self, writer: gguf.GGUFWriter) -> None:
        TinyModel.metadata(self, writer)  # the default pattern: no pattern key
        writer.add_sliding_window(self.window)
        writer.add_rope_freq_base_swa(self.rope_base_swa)
        writer.add_attn_logit_softcapping(self.attn_softcap)
        writer.add_final_logit_softcapping(self.final_softcap)

    def head(self, h: np.ndarray) -> np.ndarray:
        logits = super().head(h)
        return self.final_softcap * np.tanh(logits / self.final_softcap)

    def block(self, layer: int, h: np.ndarray, *, swa: bool | None = None) -> np.ndarray:
        w, p, positions = self.w, f"blk.{layer}.", np.arange(h.shape[0], dtype=np.float64)
        swa = self.swa_pattern[layer] if swa is None else swa
        base = self.rope_base_swa if swa else self.rope_base
        q, k, v = self.qkv(p, rms_norm(h, w[p + "attn_norm.weight"], self.rms_eps))
        q, k = rope_neox(q, positions, base, self.n_rot), rope_neox(k, positions, base, self.n_rot)
        a = attention(q / np.sqrt(self.shape.head_dim), k, v, 1.0, window=self.window if swa else None, softcap=self.attn_softcap)
        h = h + rms_norm(a @ w[p + "attn_output.weight"].T, w[p + "post_attention_norm.weight"], self.rms_eps)
        f = rms_norm(h, w[p + "ffn_norm.weight"], self.rms_eps)
        f = (gelu_tanh(f @ w[p + "ffn_gate.weight"].T) * (f @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        return h + rms_norm(f, w[p + "post_ffw_norm.weight"], self.rms_eps)


class Mistral3(TinyModel):
    """Llama's block (rotary embeddings on adjacent pairs); the attention temperature it can scale
    queries by is 1 for positions below the training context, so a tiny model leaves it out."""

    arch = "mistral3"

    def layer_tensors(self) -> dict[str, np.ndarray]:
        return {
            "attn_norm.weight": self.norm(),
            **self.attention_tensors(),
            "ffn_norm.weight": self.norm(),
            **self.gated_ffn_tensors(),
        }

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        w, p, positions = self.w, f"blk.{layer}.", np.arange(h.shape[0], dtype=np.float64)
        q, k, v = self.qkv(p, rms_norm(h, w[p + "attn_norm.weight"], self.rms_eps))
        q, k = rope(q, positions, self.rope_base), rope(k, positions, self.rope_base)
        h = h + attention(q, k, v, 1 / np.sqrt(self.shape.head_dim)) @ w[p + "attn_output.weight"].T
        return h + swiglu_ffn(w, p, rms_norm(h, w[p + "ffn_norm.weight"], self.rms_eps))


class Phi3(TinyModel):
    """One fused Q|K|V projection, partial NEOX rotary embeddings (the first half of each head),
    queries scaled before attention, and one fused gate|up projection (the first half gates)."""

    arch = "phi3"

    @property
    def n_rot(self) -> int:
        return self.shape.head_dim // 2

    def layer_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
        return {
            "attn_norm.weight": self.norm(),
            "attn_qkv.weight": self.mat(q + 2 * kv, s.n_embd),
            "attn_output.weight": self.mat(s.n_embd, q),
            "ffn_norm.weight": self.norm(),
            "ffn_up.weight": self.mat(2 * s.n_ff, s.n_embd),
            "ffn_down.weight": self.mat(s.n_embd, s.n_ff),
        }

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        s, w, p, T = self.shape, self.w, f"blk.{layer}.", h.shape[0]
        positions = np.arange(T, dtype=np.float64)
        q, k, v = self.fused_qkv(rms_norm(h, w[p + "attn_norm.weight"], self.rms_eps) @ w[p + "attn_qkv.weight"].T)
        q, k = rope_neox(q, positions, self.rope_base, self.n_rot), rope_neox(k, positions, self.rope_base, self.n_rot)
        h = h + attention(q / np.sqrt(s.head_dim), k, v, 1.0) @ w[p + "attn_output.weight"].T
        gate, up = np.split(rms_norm(h, w[p + "ffn_norm.weight"], self.rms_eps) @ w[p + "ffn_up.weight"].T, 2, axis=-1)
        return h + (silu(gate) * up) @ w[p + "ffn_down.weight"].T


class Olmo2(TinyModel):
    """No pre-norms: RMS norms after attention and after the FFN (inside the residual), and RMS
    norms over the whole projected query and key vectors (not per head); NEOX rotary embeddings."""

    arch = "olmo2"

    def layer_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        return {
            **self.attention_tensors(),
            "attn_q_norm.weight": self.norm(s.n_head * s.head_dim),
            "attn_k_norm.weight": self.norm(s.n_head_kv * s.head_dim),
            "post_attention_norm.weight": self.norm(),
            **self.gated_ffn_tensors(),
            "post_ffw_norm.weight": self.norm(),
        }

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        s, w, p, T = self.shape, self.w, f"blk.{layer}.", h.shape[0]
        positions = np.arange(T, dtype=np.float64)
        q = rms_norm(h @ w[p + "attn_q.weight"].T, w[p + "attn_q_norm.weight"], self.rms_eps)
        k = rms_norm(h @ w[p + "attn_k.weight"].T, w[p + "attn_k_norm.weight"], self.rms_eps)
        v = (h @ w[p + "attn_v.weight"].T).reshape(T, s.n_head_kv, s.head_dim)
        q = rope_neox(q.reshape(T, s.n_head, s.head_dim), positions, self.rope_base, self.n_rot)
        k = rope_neox(k.reshape(T, s.n_head_kv, s.head_dim), positions, self.rope_base, self.n_rot)
        a = attention(q, k, v, 1 / np.sqrt(s.head_dim)) @ w[p + "attn_output.weight"].T
        h = h + rms_norm(a, w[p + "post_attention_norm.weight"], self.rms_eps)
        return h + rms_norm(swiglu_ffn(w, p, h), w[p + "post_ffw_norm.weight"], self.rms_eps)


class GPTNeoX(TinyModel):
    """Pythia: LayerNorms with biases, one fused Q|K|V projection with a bias, partial NEOX rotary
    embeddings, a GELU(tanh) MLP with biases, and the parallel residual: attention and MLP both
    read the block's input, x + attn(ln1(x)) + mlp(ln2(x))."""

    arch = "gptneox"
    gelu = True
    layer_norm_eps = 1e-5

    @property
    def n_rot(self) -> int:
        return self.shape.head_dim // 4

    def layer_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
        return {
            "attn_norm.weight": self.norm(),
            "attn_norm.bias": self.bias(s.n_embd),
            "attn_qkv.weight": self.mat(q + 2 * kv, s.n_embd),
            "attn_qkv.bias": self.bias(q + 2 * kv),
            "attn_output.weight": self.mat(s.n_embd, q),
            "attn_output.bias": self.bias(s.n_embd),
            "ffn_norm.weight": self.norm(),
            "ffn_norm.bias": self.bias(s.n_embd),
            "ffn_up.weight": self.mat(s.n_ff, s.n_embd),
            "ffn_up.bias": self.bias(s.n_ff),
            "ffn_down.weight": self.mat(s.n_embd, s.n_ff),
            "ffn_down.bias": self.bias(s.n_embd),
        }

    def head_tensors(self) -> dict[str, np.ndarray]:
        s = self.shape
        return {
            "output_norm.weight": self.norm(),
            "output_norm.bias": self.bias(s.n_embd),
            "output.weight": self.mat(s.n_vocab, s.n_embd),
        }

    def metadata(self, writer: gguf.GGUFWriter) -> None:
        super().metadata(writer)
        writer.add_layer_norm_eps(self.layer_norm_eps)
        writer.add_parallel_residual(True)

    def head(self, h: np.ndarray) -> np.ndarray:
        return (
            layer_norm(h, self.w["output_norm.weight"], self.w["output_norm.bias"], self.layer_norm_eps)
            @ self.w["output.weight"].T
        )

    def block(self, layer: int, h: np.ndarray) -> np.ndarray:
        s, w, p, T = self.shape, self.w, f"blk.{layer}.", h.shape[0]
        positions = np.arange(T, dtype=np.float64)
        x = layer_norm(h, w[p + "attn_norm.weight"], w[p + "attn_norm.bias"], self.layer_norm_eps)
        q, k, v = self.fused_qkv(x @ w[p + "attn_qkv.weight"].T + w[p + "attn_qkv.bias"])
        q, k = rope_neox(q, positions, self.rope_base, self.n_rot), rope_neox(k, positions, self.rope_base, self.n_rot)
        attn = attention(q, k, v, 1 / np.sqrt(s.head_dim))
        attn = attn @ w[p + "attn_output.weight"].T + w[p + "attn_output.bias"]
        m = layer_norm(h, w[p + "ffn_norm.weight"], w[p + "ffn_norm.bias"], self.layer_norm_eps)
        m = gelu_tanh(m @ w[p + "ffn_up.weight"].T + w[p + "ffn_up.bias"]) @ w[p + "ffn_down.weight"].T + w[p + "ffn_down.bias"]
        return h + attn + m


# every family, as its tests build it: qwen3 and the gemmas with a head size of their own
FAMILIES: dict[str, Callable[[], TinyModel]] = {
    "qwen3": lambda: Qwen3(Shape(head_dim=24)),
    "qwen2": Qwen2,
    "gemma3": lambda: Gemma3(Shape(head_dim=24)),
    "mistral3": Mistral3,
    "phi3": Phi3,
    "gemma2": lambda: Gemma2(Shape(head_dim=24)),
    "olmo2": Olmo2,
    "gptneox": GPTNeoX,
}

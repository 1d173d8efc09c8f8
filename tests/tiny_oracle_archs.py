"""Tiny random F32 models of the families checked by oracles alone (no numpy reference): each is a
table of hyperparameters and the tensors its llama.cpp loader creates, in gguf-py's names
(`gguf.TENSOR_NAMES`); the shapes are numpy's (ggml's reversed). MoE families have several experts,
top-k 2, and a shared expert where the family has one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
from tiny_archs import Shape, shape_metadata, write_f32

T = gguf.MODEL_TENSOR


@dataclasses.dataclass(frozen=True)
class Dims(Shape):
    """A tiny model's shape (6 layers, n_embd 64, 4 heads, 2 KV heads of 16), with its experts'."""

    n_expert: int = 4
    n_expert_used: int = 2
    n_ff_exp: int = 32
    n_ff_shexp: int = 48


Shapes = dict[T | tuple[T, str], tuple[int, ...]]  # a tensor kind (its .weight), or (kind, "bias" or "": none), and its shape


def default_head(d: Dims) -> Shapes:
    return {T.TOKEN_EMBD: (d.n_vocab, d.n_embd), T.OUTPUT_NORM: (d.n_embd,), T.OUTPUT: (d.n_vocab, d.n_embd)}


def attention(d: Dims, q_dim: int | None = None) -> Shapes:
    q = q_dim or d.n_head * d.head_dim
    kv = d.n_head_kv * d.head_dim
    return {
        T.ATTN_NORM: (d.n_embd,),
        T.ATTN_Q: (q, d.n_embd),
        T.ATTN_K: (kv, d.n_embd),
        T.ATTN_V: (kv, d.n_embd),
        T.ATTN_OUT: (d.n_embd, q),
    }


def dense_ffn(d: Dims) -> Shapes:
    return {T.FFN_NORM: (d.n_embd,), T.FFN_GATE: (d.n_ff, d.n_embd), T.FFN_UP: (d.n_ff, d.n_embd), T.FFN_DOWN: (d.n_embd, d.n_ff)}


def experts(d: Dims, n_ff: int) -> Shapes:
    return {
        T.FFN_NORM: (d.n_embd,),
        T.FFN_GATE_INP: (d.n_expert, d.n_embd),
        T.FFN_GATE_EXP: (d.n_expert, n_ff, d.n_embd),
        T.FFN_UP_EXP: (d.n_expert, n_ff, d.n_embd),
        T.FFN_DOWN_EXP: (d.n_expert, d.n_embd, n_ff),
    }


def shared_expert(d: Dims) -> Shapes:
    return {
        T.FFN_GATE_INP_SHEXP: (d.n_embd,),
        T.FFN_GATE_SHEXP: (d.n_ff_shexp, d.n_embd),
        T.FFN_UP_SHEXP: (d.n_ff_shexp, d.n_embd),
        T.FFN_DOWN_SHEXP: (d.n_embd, d.n_ff_shexp),
    }


def moe_metadata(writer: gguf.GGUFWriter, d: Dims, *, n_ff: int | None = None, shared: bool = False) -> None:
    writer.add_expert_count(d.n_expert)
    writer.add_expert_used_count(d.n_expert_used)
    if n_ff is not None:
        writer.add_expert_feed_forward_length(n_ff)
    if shared:
        writer.add_expert_shared_feed_forward_length(d.n_ff_shexp)


def granite_metadata(writer: gguf.GGUFWriter, d: Dims) -> None:
    arch = writer.arch
    writer.add_float32(f"{arch}.logit_scale", 4.0)
    writer.add_float32(f"{arch}.residual_scale", 0.5)
    writer.add_float32(f"{arch}.embedding_scale", 2.0)
    writer.add_float32(f"{arch}.attention.scale", 0.1)


@dataclasses.dataclass(frozen=True)
class OracleFamily:
    """A family's tiny model: the tensors of one block, metadata beyond the common, and the
    per-layer property that depends on the layer's position in the file (export must keep it)."""

    arch: str
    block: Callable[[Dims], Shapes]  # one block's tensors ({bid} in their names)
    extra_metadata: Callable[[gguf.GGUFWriter, Dims], None] = lambda writer, d: None
    positional: Callable[[int], bool] | None = None  # the layer's kind, as the loader derives it from its index
    dims: Dims = Dims()
    head: Callable[[Dims], Shapes] = default_head  # the tensors outside the blocks
    chunk_tolerance: float = 1e-5  # chunked vs one-pass decoding: float32 summation order (GELU's fp16 table: more)
    n_dense_lead: int = 0  # leading dense blocks (leading_dense_block_count), their tensors from `leading`
    leading: Callable[[Dims], Shapes] | None = None
    moe_step: int = 0  # experts only on every moe_step-th layer, by index (llama4's interleave step); the others from `leading`
    variant: str = ""  # a second model of a family (llama with experts: "moe"), named `<arch>-<variant>` in the tests

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.variant}" if self.variant else self.arch

    def kind(self, layer: int) -> tuple[bool, bool]:
        """What llama.cpp derives from a layer's index: its positional property, dense or MoE."""
        return (self.positional(layer) if self.positional else True, self.is_dense(layer))

    def is_dense(self, layer: int) -> bool:
        """A layer llama.cpp gives a dense FFN (tensors from `leading`) where the others route experts."""
        return layer < self.n_dense_lead or (self.moe_step > 0 and (layer + 1) % self.moe_step != 0)

    def write(self, path: Path, seed: int = 0) -> Path:
        dims, rng = self.dims, np.random.default_rng(seed)
        shapes = {tensor_name(key): shape for key, shape in self.head(dims).items()}
        for layer in range(dims.n_layer):
            block = self.leading if self.is_dense(layer) and self.leading else self.block
            shapes |= {tensor_name(key, layer): shape for key, shape in block(dims).items()}
        tensors = {name: _random(rng, name, shape) for name, shape in shapes.items()}
        return write_f32(path, self.arch, dims.n_vocab, self.metadata, tensors)

    def metadata(self, writer: gguf.GGUFWriter) -> None:
        shape_metadata(writer, self.dims, n_rot=self.dims.head_dim, rope_base=10000.0, rms_eps=1e-5)
        self.extra_metadata(writer, self.dims)
        if self.n_dense_lead:
            writer.add_leading_dense_block_count(self.n_dense_lead)


def _random(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 1:  # norms near 1; biases (and the shared expert's gate) small
        small = name.endswith(".bias") or "gate_inp" in name
        return (0.1 * rng.standard_normal(shape)) + (0.0 if small else 1.0)
    return rng.standard_normal(shape) / np.sqrt(shape[-1])


def tensor_name(key: T | tuple[T, str], layer: int | None = None) -> str:
    kind, suffix = key if isinstance(key, tuple) else (key, "weight")
    return gguf.TENSOR_NAMES[kind].format(bid=layer) + (f".{suffix}" if suffix else "")


FAMILIES_HERE = (
    OracleFamily(
        "qwen3moe",
        lambda d: attention(d) | {T.ATTN_Q_NORM: (d.head_dim,), T.ATTN_K_NORM: (d.head_dim,)} | experts(d, d.n_ff_exp),
        lambda writer, d: moe_metadata(writer, d, n_ff=d.n_ff_exp),
    ),
    OracleFamily(
        "qwen2moe",
        lambda d: attention(d) | experts(d, d.n_ff_exp) | shared_expert(d),
        lambda writer, d: moe_metadata(writer, d, n_ff=d.n_ff_exp, shared=True),
    ),
    OracleFamily(
        "olmoe",
        lambda d: attention(d) | {T.ATTN_Q_NORM: (d.n_embd,), T.ATTN_K_NORM: (d.n_embd,)} | experts(d, d.n_ff),
        lambda writer, d: moe_metadata(writer, d),
        dims=Dims(n_head_kv=4),  # its K norm spans n_embd: no grouped-query attention
    ),
    OracleFamily("smollm3", lambda d: attention(d) | dense_ffn(d), positional=lambda layer: (layer + 1) % 4 != 0),
    OracleFamily(
        "seed_oss",
        lambda d: attention(d) | {T.ATTN_POST_NORM: (d.n_embd,)} | {k: v for k, v in dense_ffn(d).items() if k != T.FFN_NORM},
    ),
    OracleFamily("granite", lambda d: attention(d) | dense_ffn(d), granite_metadata),
)


def _all_families() -> dict[str, OracleFamily]:
    """These and the groups' (tests/oracle_specs_*.py, one module per group of families)."""
    import importlib
    import pkgutil

    found = list(FAMILIES_HERE)
    here = Path(__file__).parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("oracle_specs_")):
        found += importlib.import_module(module).SPECS
    return {family.name: family for family in found}


ORACLE_FAMILIES = _all_families()

"""What the library knows about model families beyond the list the patched llama.cpp reports as
covered (`runtime.plan_architectures()`): why a family is refused, and which per-layer properties
stock llama.cpp derives from a layer's position in the file (an export must not move a layer to a
position of the other kind: stock llama.cpp would give it the position's property)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

# families whose layers do not keep their own state in a per-layer KV cache: a plan cannot give each
# execution of a block its own slot (patches/blockify.py refuses them by the same table)
REFUSED: dict[str, tuple[str, ...]] = {
    "recurrent or hybrid layers (their state is not a per-slot KV cache)": (
        "mamba",
        "mamba2",
        "jamba",
        "rwkv6",
        "rwkv6qwen2",
        "rwkv7",
        "arwkv7",
        "falcon-h1",
        "granitehybrid",
        "nemotron_h",
        "nemotron_h_moe",
        "lfm2",
        "lfm2moe",
        "plamo2",
        "qwen3next",
        "qwen35",
        "qwen35moe",
        "kimi-linear",
    ),  # fmt: skip
    "KV shared across layers": ("gemma3n", "gemma4"),
    "multi-head latent attention (MLA: a compressed cache, not per slot)": (
        "deepseek2",
        "deepseek2-ocr",
        "mistral4",
        "glm-dsa",
        "kimi-k2",
        "minimax-m2",
    ),
    "an encoder or no causal KV cache": (
        "bert",
        "nomic-bert",
        "nomic-bert-moe",
        "neo-bert",
        "jina-bert-v2",
        "jina-bert-v3",
        "llama-embed",
        "t5",
        "t5encoder",
    ),
}


def refusal(arch: str) -> str | None:
    """Why layer plans cannot run on a family, where the design rules it out."""
    return next((reason for reason, archs in REFUSED.items() if arch in archs), None)


Meta = Callable[[str], str | None]  # the model's metadata value under its architecture's prefix


@dataclasses.dataclass(frozen=True)
class PositionalProperty:
    """A per-layer property stock llama.cpp computes from the layer's index (no per-layer key can
    carry it into an exported file): its name, and a layer's kind given the model's metadata."""

    name: str
    of_layer: Callable[[int, Meta], bool]


NO_ROPE_EVERY_4TH = PositionalProperty("RoPE (skipped on every 4th layer, by index)", lambda layer, meta: (layer + 1) % 4 != 0)
LEADING_DENSE = PositionalProperty(
    "a dense or an MoE FFN (the first leading_dense_block_count layers are dense)",
    lambda layer, meta: layer < int(meta("leading_dense_block_count") or 0),
)
MOE_INTERLEAVED = PositionalProperty(
    "a dense or an MoE FFN (experts on every interleave_moe_layer_step-th layer)",
    lambda layer, meta: _moe_step(meta) > 0 and (layer + 1) % _moe_step(meta) == 0,
)
LLAMA4_NO_ROPE = PositionalProperty(
    "RoPE (skipped on every 4th layer by index; without a sliding window, on the last block)",
    lambda layer, meta: (layer + 1) % _llama4_no_rope_step(meta) != 0,
)
POSITIONAL: dict[str, tuple[PositionalProperty, ...]] = {
    "smollm3": (NO_ROPE_EVERY_4TH,),
    "afmoe": (NO_ROPE_EVERY_4TH,),
    "llama4": (LLAMA4_NO_ROPE, MOE_INTERLEAVED),
}


def _moe_step(meta: Meta) -> int:
    return int(meta("interleave_moe_layer_step") or 0)


def _llama4_no_rope_step(meta: Meta) -> int:
    """llama.cpp's n_no_rope_layer_step for llama4: 4, or the block count where sliding_window is 0."""
    return int(meta("block_count") or 0) if meta("attention.sliding_window") == "0" else 4


def positional_properties(arch: str, meta: Meta) -> tuple[PositionalProperty, ...]:
    """The family's, and leading dense blocks wherever the model has them (any family's key)."""
    dense_lead = int(meta("leading_dense_block_count") or 0) > 0
    return POSITIONAL.get(arch, ()) + ((LEADING_DENSE,) if dense_lead else ())


@dataclasses.dataclass(frozen=True)
class BlockCountProperty:
    """A property stock llama.cpp turns on or off by the model's block count: an export that moves
    the count across the threshold changes it for every layer."""

    name: str
    of_count: Callable[[int], bool]


BLOCK_COUNT: dict[str, BlockCountProperty] = {
    "exaone4": BlockCountProperty("sliding-window layers (exaone4 has them only at 64 blocks)", lambda n: n == 64),
    "command-r": BlockCountProperty("Q/K norms (command-r loads them from 64 blocks on)", lambda n: n >= 64),
}

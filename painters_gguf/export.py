"""A sequential plan written out as a GGUF that stock llama.cpp runs as the plan.

The layers the plan runs, in its order, become the new file's blocks 0..K-1: each block's tensors
are copied from its source layer (a repeated layer is copied again: a GGUF cannot make two tensors
share data), `block_count` becomes K, and every per-layer metadata array follows the new order.
A sliding-window pattern is written as a per-layer array of the source layers' kinds, as llama.cpp
decided them: a pattern number would be recomputed from the new positions. A parallel group has no
stock equivalent (a stock graph runs one block after another) and is refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import gguf

from painters_gguf.errors import PaintersError, PlanError
from painters_gguf.outputs import replaced
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model

# per-layer hyperparameters llama.cpp reads as a number or as one value per layer (llama-model.cpp)
PER_LAYER_KEYS = ("feed_forward_length", "attention.head_count", "attention.head_count_kv", "expert_used_count")
SWA_PATTERN_KEY = "attention.sliding_window_pattern"
BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.(.+)")
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS: the most blocks a stock llama.cpp loads


@dataclasses.dataclass(frozen=True)
class Exported:
    path: Path
    n_layer: int  # blocks in the new file
    source_layers: tuple[int, ...]  # the source layer of each new block
    n_bytes: int


def sequential_layers(plan: Plan) -> list[int]:
    """The layers a plan runs, in order; a parallel step cannot be written as stock blocks."""
    for index, step in enumerate(plan.steps):
        if step.is_parallel:
            raise PlanError(
                f"plan {plan.text!r}: step {index + 1} runs layers {step.layers} in parallel, which a stock llama.cpp "
                "cannot run (its graph runs one block after another): only skips, reorders and repeats export; "
                "score parallel plans with `painters-gguf eval --plan`"
            )
    return [layers[0] for layers in plan.executions()]


def export(model: Model, plan: Plan, out: Path) -> Exported:
    """Write `model`'s file under `plan` to `out` (whole or not at all: `outputs.replaced`).
    Only architectures that run plans export: their per-layer semantics are the ones known here."""
    model.validate_plan(plan)
    layers = sequential_layers(plan)
    if len(layers) > MAX_LAYERS:
        raise PlanError(f"plan {plan.text!r} runs {len(layers)} blocks; a stock llama.cpp loads at most {MAX_LAYERS}")
    reader = gguf.GGUFReader(model.path)
    arch = model.arch
    n_layer = model.n_layer
    swa = set(model.swa_layers())
    try:
        with replaced(out) as part:
            writer = gguf.GGUFWriter(part, arch, endianess=reader.endianess)
            alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
            if alignment is not None:
                writer.data_alignment = int(alignment.contents())
            _copy_metadata(reader, writer, arch, n_layer, layers, swa)
            writer.add_string("painters_gguf.plan", plan.text)
            writer.add_string("painters_gguf.source", model.path.name)
            writer.add_string("painters_gguf.source_sha256", model.sha256)
            tensors = _tensor_order(reader, n_layer, layers)
            for name, tensor in tensors:
                writer.add_tensor_info(name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for _, tensor in tensors:
                writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
            writer.close()
    except OSError as err:
        raise PaintersError(f"could not write {out} ({err.strerror or err})") from None
    return Exported(out, len(layers), tuple(layers), out.stat().st_size)


def _copy_metadata(
    reader: gguf.GGUFReader, writer: gguf.GGUFWriter, arch: str, n_layer: int, layers: Sequence[int], swa: set[int]
) -> None:
    per_layer = {f"{arch}.{key}" for key in PER_LAYER_KEYS}
    swa_key = f"{arch}.{SWA_PATTERN_KEY}"
    for field in reader.fields.values():
        name = field.name
        if name == gguf.Keys.General.ARCHITECTURE or name.startswith("GGUF.") or name == swa_key:
            continue  # written by the writer, or (the window pattern) below
        value_type = field.types[0]
        value = field.contents()
        if name == f"{arch}.block_count":
            value = len(layers)
        elif value_type == gguf.GGUFValueType.ARRAY and name.startswith(f"{arch}.") and len(value) == n_layer:
            if name not in per_layer:
                raise PaintersError(
                    f"{name} holds {n_layer} values, one per layer perhaps, and this exporter does not know it: "
                    "refusing to write a file that may pair layers with the wrong values"
                )
            value = [value[layer] for layer in layers]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, value_type, sub_type=sub_type)
    if swa:  # llama.cpp reads an array as the kind of each layer (load_swa_pattern)
        writer.add_array(swa_key, [layer in swa for layer in layers])


def _tensor_order(reader: gguf.GGUFReader, n_layer: int, layers: Sequence[int]) -> list[tuple[str, gguf.ReaderTensor]]:
    """(new name, source tensor): the tensors outside the blocks, then each new block's."""
    outside: list[tuple[str, gguf.ReaderTensor]] = []
    blocks: dict[int, list[tuple[str, gguf.ReaderTensor]]] = {layer: [] for layer in range(n_layer)}
    for tensor in reader.tensors:
        match = BLOCK_TENSOR.fullmatch(tensor.name)
        if match is None:
            outside.append((tensor.name, tensor))
        elif int(match.group(1)) < n_layer:
            blocks[int(match.group(1))].append((match.group(2), tensor))
        else:
            raise PaintersError(f"tensor {tensor.name} names a block past the model's {n_layer}")
    ordered = [(f"blk.{position}.{rest}", tensor) for position, layer in enumerate(layers) for rest, tensor in blocks[layer]]
    return outside + ordered

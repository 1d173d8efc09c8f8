"""A sequential plan written out as a GGUF that stock llama.cpp runs as the plan.

The layers the plan runs, in its order, become the new file's blocks 0..K-1: each block's tensors
are copied from its source layer (a repeated layer is copied again: a GGUF cannot make two tensors
share data), `block_count` becomes K, and every per-layer metadata array follows the new order.
A sliding-window pattern is written as a per-layer array of the source layers' kinds, as llama.cpp
decided them: a pattern number would be recomputed from the new positions. A parallel group has no
stock equivalent (a stock graph runs one block after another) and is refused.

Metadata is copied as stored: a string is its raw bytes (GGUF does not promise UTF-8, and a token of
a byte-level vocabulary may be any bytes). The `painters_gguf.*` keys record the original model (its
file name and sha256) and the plan in its layer ids: an export of an export composes the plans.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import gguf

from painters_gguf.architectures import BLOCK_COUNT, positional_properties
from painters_gguf.errors import PaintersError, PlanError
from painters_gguf.outputs import replaced
from painters_gguf.plan import Plan, Step
from painters_gguf.runtime import Model

# per-layer hyperparameters llama.cpp reads as a number or as one value per layer (llama-model.cpp)
PER_LAYER_KEYS = (
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "expert_used_count",
    "expert_feed_forward_length",
    "swiglu_clamp_exp",
    "swiglu_clamp_shexp",
)
# per-layer arrays under no architecture's prefix (apertus's xIELU activation, one value per layer)
GLOBAL_PER_LAYER_KEYS = ("xielu.alpha_n", "xielu.alpha_p", "xielu.beta", "xielu.eps")
SWA_PATTERN_KEY = "attention.sliding_window_pattern"
BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.(.+)")
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS: the most blocks a stock llama.cpp loads
PROVENANCE = "painters_gguf."  # the keys this exporter writes; an export of an export rewrites them
PLAN_KEY = PROVENANCE + "plan"
SOURCE_KEY = PROVENANCE + "source"
SOURCE_SHA256_KEY = PROVENANCE + "source_sha256"
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Exported:
    path: Path
    n_layer: int  # blocks in the new file
    source_layers: tuple[int, ...]  # the source layer of each new block
    n_bytes: int
    provenance: Provenance  # what the file records of where it came from


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The original model (not an export) and the plan over its layers that a file runs."""

    plan: Plan
    source: bytes  # its file name, as the file system gave it
    source_sha256: str


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


def check_positional(model: Model, plan: Plan, layers: Sequence[int]) -> None:
    """Refuse a plan that puts a layer where stock llama.cpp would give it another kind of a
    property it derives from the index (no per-layer key can carry it into the file)."""

    def meta(key: str) -> str | None:
        return model.meta(f"{model.arch}.{key}")

    by_count = BLOCK_COUNT.get(model.arch)
    if by_count is not None and by_count.of_count(len(layers)) != by_count.of_count(model.n_layer):
        raise PlanError(
            f"plan {plan.text!r} exports {len(layers)} blocks of {model.n_layer}: stock llama.cpp decides "
            f"{by_count.name} by the block count, so the file would not run as the plan"
        )

    def exported_meta(key: str) -> str | None:  # the new file's: its block count is the plan's
        return str(len(layers)) if key == "block_count" else meta(key)

    for found in positional_properties(model.arch, meta):
        for position, layer in enumerate(layers):
            if found.of_layer(layer, meta) != found.of_layer(position, exported_meta):
                raise PlanError(
                    f"plan {plan.text!r}: layer {layer} would stand as block {position}, where stock llama.cpp decides "
                    f"{found.name} differently: such a plan does not export (it runs under `eval --plan`)"
                )


def export(model: Model, plan: Plan, out: Path) -> Exported:
    """Write `model`'s file under `plan` to `out` (whole or not at all: `outputs.replaced`).
    Only architectures that run plans export: their per-layer semantics are the ones known here."""
    model.validate_plan(plan)
    layers = sequential_layers(plan)
    check_positional(model, plan, layers)
    return write_blocks(model, plan, layers, out)


def write_blocks(model: Model, plan: Plan, layers: Sequence[int], out: Path) -> Exported:
    """The file whose blocks are the source layers `layers` in order, recorded as `plan`: what
    `export` writes once it has checked the plan (a test writes a plan export refuses, to run the
    semantics stock llama.cpp would give it)."""
    if len(layers) > MAX_LAYERS:
        raise PlanError(f"plan {plan.text!r} runs {len(layers)} blocks; a stock llama.cpp loads at most {MAX_LAYERS}")
    try:
        reader = gguf.GGUFReader(model.path)
    except UnicodeDecodeError:  # llama.cpp takes any bytes there
        raise PaintersError(f"{model.path}: a key or tensor name is not UTF-8, which gguf-py cannot read to export") from None
    except ValueError as err:
        raise PaintersError(f"{model.path}: gguf-py cannot read it to export ({err})") from None
    arch = model.arch
    n_layer = model.n_layer
    swa = set(model.swa_layers())
    origin = provenance(reader, model, plan)
    try:
        with replaced(out) as part:
            writer = gguf.GGUFWriter(part, arch, endianess=reader.endianess)
            alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
            if alignment is not None:
                writer.data_alignment = int(alignment.contents())
            _copy_metadata(reader, writer, arch, n_layer, layers, swa)
            writer.add_key_value(PLAN_KEY, origin.plan.text, gguf.GGUFValueType.STRING)
            writer.add_key_value(SOURCE_KEY, origin.source, gguf.GGUFValueType.STRING)
            writer.add_key_value(SOURCE_SHA256_KEY, origin.source_sha256, gguf.GGUFValueType.STRING)
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
    return Exported(out, len(layers), tuple(layers), out.stat().st_size, origin)


def compose(plan: Plan, layers: Sequence[int]) -> Plan:
    """`plan`, over an export's blocks, in the layer ids of the export's source: block i is layer layers[i]."""
    return Plan(tuple(Step(tuple(layers[block] for block in step.layers), step.repeat) for step in plan.steps))


def provenance(reader: gguf.GGUFReader, model: Model, plan: Plan) -> Provenance:
    """What an export of `model` under `plan` records: `model` itself and `plan`, or, when `model`
    is an export, the model it records and `plan` composed with the plan it records."""
    fields = {name: field for name, field in reader.fields.items() if name.startswith(PROVENANCE)}
    if not fields:
        return Provenance(plan, os.fsencode(model.path.name), model.sha256)

    def refuse(problem: str) -> PaintersError:
        return PaintersError(
            f"{model.path} has {PROVENANCE}* keys, as an export does, but {problem}: refusing to write a "
            "provenance they do not support"
        )

    recorded: dict[str, bytes] = {}
    for key in (PLAN_KEY, SOURCE_KEY, SOURCE_SHA256_KEY):
        value = _string(fields.get(key))
        if value is None:
            raise refuse(f"{key} is missing or not a string")
        recorded[key] = value
    text, sha256 = recorded[PLAN_KEY], recorded[SOURCE_SHA256_KEY].decode("latin-1")
    if not SHA256.fullmatch(sha256):
        raise refuse(f"{SOURCE_SHA256_KEY} is not a sha256 in hex")
    try:
        layers = sequential_layers(Plan.parse(text.decode("ascii")))
    except (UnicodeDecodeError, PlanError):
        raise refuse(f"{PLAN_KEY} {_shown(text)} is not a sequential plan") from None
    if len(layers) != model.n_layer:
        raise refuse(f"{PLAN_KEY} {_shown(text)} runs {len(layers)} blocks and the file has {model.n_layer}")
    return Provenance(compose(plan, layers), recorded[SOURCE_KEY], sha256)


def _string(field: gguf.ReaderField | None) -> bytes | None:
    """A string field's raw bytes; None for another type."""
    if field is None or field.types != [gguf.GGUFValueType.STRING]:
        return None
    return bytes(field.parts[field.data[0]])


def _shown(text: bytes, limit: int = 60) -> str:
    return repr(text[:limit].decode("utf-8", "replace")) + ("..." if len(text) > limit else "")


def _value(field: gguf.ReaderField) -> object:
    """A field's value as the writer takes it back; strings as their raw bytes."""
    if field.types[0] == gguf.GGUFValueType.ARRAY and field.types[-1] == gguf.GGUFValueType.STRING:
        return [bytes(field.parts[index]) for index in field.data]
    return _string(field) if field.types[0] == gguf.GGUFValueType.STRING else field.contents()


def _copy_metadata(
    reader: gguf.GGUFReader, writer: gguf.GGUFWriter, arch: str, n_layer: int, layers: Sequence[int], swa: set[int]
) -> None:
    per_layer = {f"{arch}.{key}" for key in PER_LAYER_KEYS} | set(GLOBAL_PER_LAYER_KEYS)
    swa_key = f"{arch}.{SWA_PATTERN_KEY}"
    for field in reader.fields.values():
        name = field.name
        if name == gguf.Keys.General.ARCHITECTURE or name.startswith(("GGUF.", PROVENANCE)) or name == swa_key:
            continue  # written by the writer, or (the window pattern, the provenance) by the exporter
        value_type = field.types[0]
        value = _value(field)
        if name == f"{arch}.block_count":
            value = len(layers)
        elif isinstance(value, list) and len(value) == n_layer and not name.startswith(("general.", "tokenizer.")):
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

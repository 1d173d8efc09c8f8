"""Layer plans on the families covered by `patches/blockify.py` (MoE included), each on a tiny
random F32 model, checked by oracles built from the runtime and stock llama.cpp alone (no numpy
reference of ours): no plan and the identity plan are the stock library bit for bit; a sequential
plan is stock llama.cpp on the exported file of that plan, bit for bit; a parallel group's output is
the mean of its members' outputs on the same input, each taken from the runtime under a
sequential plan; chunked decoding is one pass; and a property stock llama.cpp derives from a
layer's index (smollm3's layers without RoPE) follows the layer: such a plan does not export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_archs_tiny import assert_identity_is_stock, stock_logits
from test_export import exported_matches, patched_logits
from test_runtime_tiny import TOKENS
from tiny_llama import assert_plans_differ, chunked_logits, relative_error
from tiny_oracle_archs import ORACLE_FAMILIES

from painters_gguf import export
from painters_gguf.errors import PlanError
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model, plan_architectures
from painters_gguf.similarity import capture

# on 6 layers: a skip, a reorder, a repeat, backwards, parallel groups (looped, and of non-adjacent layers)
PLANS = ["0,1,4,5", "1,0,3,2,5,4", "0-2,2,3-5", "5-0", "0,{1-2},3-5", "0,{1-3}x2,4-5", "0-1,{2,4}x3,5"]
SEQUENTIAL = ["1,0,3,2,5,4", "5,3,3,0"]


@pytest.fixture(scope="module", params=sorted(ORACLE_FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(arch, GGUF path, loaded model) of one family."""
    path = ORACLE_FAMILIES[request.param].write(tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}.gguf")
    with Model(path) as model:
        yield request.param, path, model


@pytest.fixture(scope="module")
def ctx_f32(family):
    _, _, model = family
    with model.context(n_ctx=128, n_batch=64, kv_type="f32", flash_attn="off") as ctx:
        yield ctx


def test_the_library_covers_every_family_here() -> None:
    assert {family.arch for family in ORACLE_FAMILIES.values()} <= set(plan_architectures())


def test_no_plan_and_the_identity_plan_are_the_stock_library(family, stock_lib_dir: Path, tmp_path: Path) -> None:
    _, path, model = family
    assert_identity_is_stock(model, path, stock_lib_dir, tmp_path)


def test_plans_change_the_output(ctx_f32) -> None:
    """Not vacuous: every plan's logits differ from the others' and the full model's."""
    assert_plans_differ(ctx_f32, ["0-5", *PLANS], TOKENS)


def test_every_layer_runs_alone(ctx_f32) -> None:
    """A plan of one layer: an input only some layers read (positions on RoPE layers, the mask of one
    window kind, llama4's attention temperature) has no reader under some of these, and llama.cpp
    aborted setting it (smollm3's plan 3, cohere2's 3)."""
    assert_plans_differ(ctx_f32, [str(layer) for layer in range(6)], TOKENS)


def test_sequential_plans_are_stock_llama_cpp_on_their_export(family, stock_lib_dir: Path, tmp_path: Path) -> None:
    arch, path, _ = family
    spec = ORACLE_FAMILIES[arch]
    plain = spec.positional is None and not spec.n_dense_lead and not spec.moe_step
    for text in SEQUENTIAL if plain else [kind_keeping(spec.kind, 6), *[t for t in SEQUENTIAL if keeps_kinds(spec.kind, t)]]:
        exported_matches(path, text, TOKENS, stock_lib_dir, tmp_path)


def keeps_kinds(kind: Callable[[int], object], text: str) -> bool:
    return all(kind(layer[0]) == kind(i) for i, layer in enumerate(Plan.parse(text).executions()))


def kind_keeping(kind: Callable[[int], object], n_layer: int) -> str:
    """A reorder that keeps every layer on a position of its kind: each kind's layers backwards."""
    order = list(range(n_layer))
    for value in {kind(i) for i in order}:
        where = [i for i in order if kind(i) == value]
        for position, layer in zip(where, reversed(where), strict=True):
            order[position] = layer
    return ",".join(map(str, order))


def test_a_parallel_group_is_the_mean_of_its_members(ctx_f32) -> None:
    """{2,4} after 0-1: the group's output against layers 2 and 4 each run alone on the same input
    (MoE routing is per executed block: each member routes the shared input itself)."""
    group = capture(ctx_f32, Plan.parse("0-1,{2,4},5"), TOKENS)[3]
    members = [capture(ctx_f32, Plan.parse(f"0-1,{layer}"), TOKENS)[3] for layer in (2, 4)]
    alone = capture(ctx_f32, Plan.parse("0-1,2"), TOKENS)[2]  # the shared input, as the group saw it
    assert np.array_equal(capture(ctx_f32, Plan.parse("0-1,{2,4},5"), TOKENS)[2], alone)
    assert relative_error(group, np.mean(members, axis=0)) < 1e-5
    assert relative_error(members[0], members[1]) > 1e-2  # the members differ: the mean is not vacuous


@pytest.mark.parametrize("text", PLANS)
@pytest.mark.parametrize("chunk", [1, 5])
def test_chunked_decode_equals_one_pass(family, ctx_f32, text: str, chunk: int) -> None:
    ctx_f32.set_plan(Plan.parse(text))
    whole = ctx_f32.logits(TOKENS)
    assert relative_error(chunked_logits(ctx_f32, TOKENS, chunk), whole) < ORACLE_FAMILIES[family[0]].chunk_tolerance


@pytest.mark.parametrize("arch", sorted(arch for arch, family in ORACLE_FAMILIES.items() if family.positional))
def test_positional_properties_follow_the_layer(arch: str, stock_lib_dir: Path, tmp_path: Path) -> None:
    """smollm3, afmoe and llama4 skip RoPE on layer 3 (every 4th, by index). Under a plan the layer
    keeps its kind wherever it runs; the plan that swaps it with the nearest layer below it that has
    RoPE and the same FFN (llama4: experts on every other layer) gives other logits than the export
    would (where stock llama.cpp gives each block its position's kind), so export refuses it by name,
    and one that keeps every layer on a position of its kind exports exactly."""
    spec = ORACLE_FAMILIES[arch]
    assert spec.positional is not None and not spec.positional(3)
    partner = max(layer for layer in range(3) if spec.positional(layer) and spec.is_dense(layer) == spec.is_dense(3))
    order = list(range(6))
    order[3], order[partner] = partner, 3
    moved, kept = Plan.sequential(order), Plan.parse(kind_keeping(spec.kind, 6))
    path = spec.write(tmp_path / f"tiny-{arch}.gguf")
    with (
        Model(path) as model,
        pytest.raises(PlanError, match=f"layer 3 would stand as block {partner}, where stock llama.cpp decides RoPE"),
    ):
        export.export(model, moved, tmp_path / "moved.gguf")
    exported_matches(path, kept.text, TOKENS, stock_lib_dir, tmp_path)
    # the wrong semantics (the position's kind): the layers permuted in the file, run by stock llama.cpp
    permuted = tmp_path / "permuted.gguf"
    with Model(path) as model:
        export.write_blocks(model, moved, order, permuted)
    by_position = stock_logits(stock_lib_dir, permuted, TOKENS, 128, tmp_path)
    assert relative_error(patched_logits(path, moved, TOKENS), by_position) > 1e-3


def test_export_keeps_leading_dense_blocks_in_place() -> None:
    """A model with leading dense blocks (any family's leading_dense_block_count): a dense layer may
    not export to an MoE position or the other way round; within each kind, reorders export."""

    class Metadata:
        arch, n_layer = "laguna", 6

        @staticmethod
        def meta(key: str) -> str | None:
            return {"laguna.leading_dense_block_count": "2"}.get(key)

    model = Metadata()
    export.check_positional(model, Plan.parse("1,0,3,2,5,4"), [1, 0, 3, 2, 5, 4])  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="layer 2 would stand as block 1, where stock llama.cpp decides a dense or an MoE FFN"):
        export.check_positional(model, Plan.parse("0,2,1"), [0, 2, 1])  # type: ignore[arg-type]


def test_llama4_without_a_window_keeps_its_last_layer_last() -> None:
    """llama4 with sliding_window 0 skips RoPE on the last block only (the step is the block count):
    an export that keeps its last layer last exports at any block count; one that ends on another
    layer puts a RoPE layer where stock llama.cpp would run none."""

    class Metadata:
        arch, n_layer = "llama4", 8

        @staticmethod
        def meta(key: str) -> str | None:
            values = {"attention.sliding_window": "0", "block_count": "8", "interleave_moe_layer_step": "1"}
            return values.get(key.removeprefix("llama4."))

    model = Metadata()
    for kept in ([1, 0, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 7], [0, 0, 7]):
        export.check_positional(model, Plan.sequential(kept), kept)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="layer 6 would stand as block 6, where stock llama.cpp decides RoPE"):
        export.check_positional(model, Plan.parse("0-6"), list(range(7)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arch", "n_layer", "blocks", "refused"),
    [("command-r", 64, 60, True), ("exaone4", 64, 64, False), ("exaone4", 30, 28, False)],
)
def test_export_refuses_to_move_a_block_count_threshold(arch: str, n_layer: int, blocks: int, refused: bool) -> None:
    """command-r loads Q/K norms only from 64 blocks, exaone4 has sliding-window layers only at 64."""

    class Metadata:
        @staticmethod
        def meta(key: str) -> str | None:
            return None

    model = Metadata()
    model.arch, model.n_layer = arch, n_layer  # type: ignore[attr-defined]
    layers = list(range(blocks))
    plan = Plan.parse(f"0-{blocks - 1}")
    if refused:
        with pytest.raises(PlanError, match=f"exports {blocks} blocks of {n_layer}: stock llama.cpp decides"):
            export.check_positional(model, plan, layers)  # type: ignore[arg-type]
    else:
        export.check_positional(model, plan, layers)  # type: ignore[arg-type]


def test_refused_families_say_why() -> None:
    from painters_gguf.architectures import refusal

    assert "recurrent" in (refusal("jamba") or "") and "MLA" in (refusal("deepseek2") or "")
    assert "KV shared across layers" in (refusal("gemma3n") or "") and refusal("qwen3moe") is None


@pytest.mark.parametrize(
    "arch", sorted(arch for arch, family in ORACLE_FAMILIES.items() if family.n_dense_lead or family.moe_step)
)
def test_a_dense_layer_runs_anywhere_but_exports_only_in_place(arch: str, tmp_path: Path) -> None:
    """Layer 0 is dense and layer 1 routes experts, by index: deepseek's, dots1's and glm4moe's
    leading dense block, llama4's experts on every other layer. Under a plan the dense layer runs
    after MoE layers, on an MoE layer's position, and repeated (its own FFN, by its own index);
    export refuses to move it (stock llama.cpp would look for experts in its block)."""
    spec = ORACLE_FAMILIES[arch]
    assert spec.is_dense(0) and not spec.is_dense(1)
    path = spec.write(tmp_path / f"tiny-{arch}.gguf")
    with Model(path) as model:
        with pytest.raises(PlanError, match="layer 1 would stand as block 0, where stock llama.cpp decides a dense or an MoE"):
            export.export(model, Plan.parse("1,0,2-5"), tmp_path / "moved.gguf")
        with model.context(n_ctx=128, n_batch=64, kv_type="f32", flash_attn="off") as ctx:
            assert_plans_differ(ctx, ["0-5", "1-5,0", "1,0,2-5", "0x3,1-5", "0x2,2-5", "{0,1},2-5"], TOKENS)

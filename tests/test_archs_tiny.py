"""Layer plans on every covered architecture besides llama, on tiny random F32 models:
against each family's numpy reference, against the stock library, and through the KV cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from test_runtime_tiny import PLAN_TEXTS, TOKENS
from tiny_archs import FAMILIES, Gemma2, Gemma3, Shape, TinyModel
from tiny_llama import assert_continues_from_kept_state, assert_plans_differ, chunked_logits, relative_error

from painters_gguf import variants
from painters_gguf.engine.shared_prefix import shared_steps
from painters_gguf.plan import Plan

if TYPE_CHECKING:
    from painters_gguf.runtime import Model

STOCK_SCRIPT = Path(__file__).with_name("stock_logits.py")


def chunk_tolerance(reference: TinyModel) -> float:
    """How far chunked decoding may move logits: float32 rounding of another summation order;
    GELU on the CPU rounds through an fp16 table, which turns a last-bit difference into ~1e-4."""
    return 1e-3 if reference.gelu else 1e-5


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(reference, GGUF path, loaded model) of one family."""
    from painters_gguf.runtime import Model

    reference = FAMILIES[request.param]()
    path = reference.write(tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}.gguf")
    with Model(path) as model:
        yield reference, path, model


@pytest.fixture(scope="module")
def ctx_f32(family):
    _, _, model = family
    with model.context(n_ctx=128, n_batch=64, kv_type="f32", flash_attn="off") as ctx:
        yield ctx


def test_model_facts(family) -> None:
    reference, _, model = family
    shape = reference.shape
    assert (model.arch, model.n_layer, model.n_embd, model.n_vocab) == (
        reference.arch,
        shape.n_layer,
        shape.n_embd,
        shape.n_vocab,
    )
    assert model.runs_plans


def test_default_order_matches_reference(family, ctx_f32) -> None:
    reference, _, _ = family
    ctx_f32.set_plan(None)
    expected = reference.logits(TOKENS, [(layer,) for layer in range(reference.shape.n_layer)])
    assert relative_error(ctx_f32.logits(TOKENS), expected) < 1e-3


@pytest.mark.parametrize("text", PLAN_TEXTS)
def test_plan_matches_reference(family, ctx_f32, text: str) -> None:
    reference, _, _ = family
    plan = Plan.parse(text)
    ctx_f32.set_plan(plan)
    assert ctx_f32.slot_layers() == [layer for step in plan.executions() for layer in step]
    assert relative_error(ctx_f32.logits(TOKENS), reference.logits(TOKENS, plan.executions())) < 1e-3


def test_every_layer_runs_alone_as_the_reference(family, ctx_f32) -> None:
    """A plan of one layer leaves inputs that only other layers read (positions, a window kind's
    mask) without a reader; they still get buffers, and each layer alone is the reference's."""
    reference, _, _ = family
    for layer in range(reference.shape.n_layer):
        ctx_f32.set_plan(Plan.sequential([layer]))
        assert relative_error(ctx_f32.logits(TOKENS), reference.logits(TOKENS, [(layer,)])) < 1e-3, layer


def test_plans_differ_from_each_other(ctx_f32) -> None:
    """The reference agreement above is not vacuous: the plans give clearly different logits."""
    assert_plans_differ(ctx_f32, PLAN_TEXTS, TOKENS)


@pytest.mark.parametrize("text", PLAN_TEXTS)
@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_chunked_decode_equals_one_pass(family, ctx_f32, text: str, chunk: int) -> None:
    """Decoding through the KV cache in chunks gives the logits of one pass, for every plan.

    Within float32 rounding; repeated blocks sharing one KV slot are off by more than 1e-2.
    """
    ctx_f32.set_plan(Plan.parse(text))
    whole = ctx_f32.logits(TOKENS)
    pieces = chunked_logits(ctx_f32, TOKENS, chunk)
    assert relative_error(pieces, whole) < chunk_tolerance(family[0])


def stock_logits(stock_lib_dir: Path, model_path: Path, tokens: list[int], n_ctx: int, tmp_path: Path) -> np.ndarray:
    """Logits of the unpatched library (a subprocess on LLAMA_CPP_LIB_PATH) for one pass of tokens."""
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    out = tmp_path / "stock.npy"
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(stock_lib_dir))
    command = [sys.executable, str(STOCK_SCRIPT), str(model_path), str(tmp_path / "tokens.json"), str(out), str(n_ctx), "2"]
    subprocess.run(command, env=env, check=True)
    return np.load(out)


def assert_identity_is_stock(model: Model, path: Path, stock_lib_dir: Path, tmp_path: Path) -> None:
    """No plan and the identity plan give the unpatched library's logits, bit for bit."""
    stock = stock_logits(stock_lib_dir, path, TOKENS, 128, tmp_path)
    with model.context(n_ctx=128, threads=2) as ctx:
        default = ctx.logits(TOKENS)
        ctx.set_plan(variants.full(model.n_layer))
        identity = ctx.logits(TOKENS)
    assert np.array_equal(default, stock)
    assert np.array_equal(identity, stock)


def test_identity_plan_is_bitwise_the_stock_library(family, stock_lib_dir: Path, tmp_path: Path) -> None:
    _, path, model = family
    assert_identity_is_stock(model, path, stock_lib_dir, tmp_path)


# --- sliding-window layers (gemma3, gemma2): the window, rope base and cache follow the layer ---

# sliding-window layers run where global layers stand and the other way round (in both families'
# patterns: gemma3's tiny model has global layers 2 and 5, gemma2's 1, 3 and 5), repeated, and in
# parallel groups that mix the two kinds
SWA_PLANS = ["1,0,3,2,5,4", "5,0,1,2,3,4", "0,1,2,2,1,0", "2x3,0,1x3", "{0,2},{1,5}x2,3,4"]


def by_position(reference: Gemma3, plan: Plan) -> np.ndarray:
    """The wrong semantics a plan must not have: the window and rope base of the position in the
    plan (the step index) instead of those of the layer that runs there."""
    h = reference.embed(TOKENS)
    for index, members in enumerate(plan.executions()):
        swa = reference.swa_pattern[index % reference.shape.n_layer]
        h = np.mean([reference.block(layer, h, swa=swa) for layer in members], axis=0)
    return reference.head(h)


@pytest.fixture(scope="module", params=[Gemma3, Gemma2], ids=["gemma3", "gemma2"])
def swa_family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(reference, model, f32 context) of a family with sliding-window and global layers."""
    from painters_gguf.runtime import Model

    reference = request.param(Shape(head_dim=24))
    path = reference.write(tmp_path_factory.mktemp("swa") / f"tiny-{reference.arch}.gguf")
    with Model(path) as model, model.context(n_ctx=128, n_batch=64, kv_type="f32", flash_attn="off") as ctx:
        yield reference, model, ctx


def test_swa_layers_are_reported_per_layer(swa_family) -> None:
    reference, model, _ = swa_family
    assert model.swa_layers() == [layer for layer, swa in enumerate(reference.swa_pattern) if swa]


def test_window_is_shorter_than_the_sequence(swa_family) -> None:
    """Without its window the reference disagrees: the window is exercised by these tokens."""
    reference, _, ctx = swa_family
    ctx.set_plan(None)
    windowless = type(reference)(reference.shape, window=len(TOKENS) + 1)
    full = [(layer,) for layer in range(6)]
    assert relative_error(ctx.logits(TOKENS), windowless.logits(TOKENS, full)) > 1e-2
    assert relative_error(ctx.logits(TOKENS), reference.logits(TOKENS, full)) < 1e-3


@pytest.mark.parametrize("text", SWA_PLANS)
def test_layer_properties_follow_the_layer_not_its_position(swa_family, text: str) -> None:
    reference, _, ctx = swa_family
    plan = Plan.parse(text)
    ctx.set_plan(plan)
    actual = ctx.logits(TOKENS)
    assert relative_error(actual, reference.logits(TOKENS, plan.executions())) < 1e-3
    wrong = by_position(reference, plan)
    assert relative_error(actual, wrong) > 1e-2


@pytest.mark.parametrize("text", SWA_PLANS)
def test_swa_plans_decode_in_chunks_as_in_one_pass(swa_family, text: str) -> None:
    """Each slot sits in the sub-cache of its layer's kind: a sliding-window slot keeps its window
    across decode calls, a global one keeps everything."""
    reference, _, ctx = swa_family
    ctx.set_plan(Plan.parse(text))
    whole = ctx.logits(TOKENS)
    for chunk in (1, 3, 5):
        pieces = chunked_logits(ctx, TOKENS, chunk)
        assert relative_error(pieces, whole) < chunk_tolerance(reference)


def test_reference_families_are_distinct() -> None:
    """Each family's reference computes something of its own on the same token ids."""
    outputs = {name: make().logits(TOKENS, [(0,), (1,)]) for name, make in FAMILIES.items()}
    names = sorted(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert outputs[a].shape != outputs[b].shape or relative_error(outputs[a], outputs[b]) > 1e-2


def test_plans_that_leave_one_cache_empty_switch_back(swa_family) -> None:
    """A plan of sliding-window layers only leaves the global cache without slots (and the other
    way round); the next plan, and the model's own order, still set and run."""
    reference, _, ctx = swa_family
    swa_only = [layer for layer, swa in enumerate(reference.swa_pattern) if swa]
    global_only = [layer for layer, swa in enumerate(reference.swa_pattern) if not swa]
    full = [(layer,) for layer in range(reference.shape.n_layer)]
    for layers in (swa_only, global_only, swa_only):
        plan = Plan.sequential(layers)
        ctx.set_plan(plan)
        assert relative_error(ctx.logits(TOKENS), reference.logits(TOKENS, plan.executions())) < 1e-3
        ctx.set_plan(None)
        assert relative_error(ctx.logits(TOKENS), reference.logits(TOKENS, full)) < 1e-3


@pytest.mark.parametrize("text", [t for t in PLAN_TEXTS if shared_steps(Plan.parse(t), Shape().n_layer) > 0])
def test_plans_go_on_from_kept_states(family, ctx_f32, text: str) -> None:
    """Each family's embeddings input takes a kept hidden state as it is (Gemma scales token
    embeddings only), so a sweep's shared layers are computed once with the same numbers."""
    assert_continues_from_kept_state(ctx_f32, Plan.parse(text), TOKENS)

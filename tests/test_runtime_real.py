"""Layer plans on the real Gemma 3 270M (gemma3) and Qwen2.5-Coder-0.5B (qwen2) checkpoints:
the stock library's logits, and each family's numpy reference on the dequantized weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import catalog_path
from test_archs_tiny import stock_logits
from tiny_archs import Gemma3, Qwen2, TinyModel

from painters_gguf import variants
from painters_gguf.plan import Plan

PROMPT = "The capital of France is Paris. The capital of Italy is"
THREADS = 2

# name: (reference family, sha256, layers, sliding-window layers, BOS first)
CHECKPOINTS = {
    "gemma3-270m": (
        Gemma3,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        18,
        [il for il in range(18) if il % 6 != 5],
        True,
    ),
    "qwen2.5-0.5b": (Qwen2, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 24, [], False),
}


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS))
def checkpoint(request: pytest.FixtureRequest):
    """(name, path, loaded model, prompt tokens) of one real checkpoint."""
    from painters_gguf.runtime import Model

    path = catalog_path(request.param)
    with Model(path) as model:
        yield request.param, path, model, model.tokenize(PROMPT, add_bos=CHECKPOINTS[request.param][4])


@pytest.fixture(scope="module")
def ctx(checkpoint):
    _, _, model, _ = checkpoint
    with model.context(n_ctx=128, threads=THREADS) as ctx:
        yield ctx


def test_model_facts(checkpoint) -> None:
    name, _, model, tokens = checkpoint
    _, sha256, n_layer, swa_layers, bos = CHECKPOINTS[name]
    assert model.sha256 == sha256
    assert model.n_layer == n_layer and model.runs_plans
    assert model.swa_layers() == swa_layers
    assert (tokens[0] == model.bos) == bos


def test_identity_plan_gives_the_stock_library_logits(checkpoint, ctx, stock_lib_dir: Path, tmp_path: Path) -> None:
    _, path, model, tokens = checkpoint
    stock = stock_logits(stock_lib_dir, path, tokens, 128, tmp_path)
    ctx.set_plan(None)
    assert np.array_equal(ctx.logits(tokens), stock)
    ctx.set_plan(variants.full(model.n_layer))
    assert np.array_equal(ctx.logits(tokens), stock)


def test_the_full_model_knows_the_answer(checkpoint, ctx) -> None:
    _, _, model, tokens = checkpoint
    ctx.set_plan(None)
    assert model.detokenize([int(np.argmax(ctx.logits(tokens)[-1]))]) == " Rome"


# --- against the numpy reference on the dequantized weights ---

# llama.cpp multiplies these quantized weights with quantized (Q8) activations, the reference with
# float64 ones (f32 KV cache, no flash attention on the llama.cpp side): measured, the logits of
# the full model and of 3 plans per checkpoint are 0.017..0.083 apart (RMS, relative), while any
# two of those plans are 0.29..2.3 apart
REFERENCE_TOLERANCE = 0.15
PLANS_APART = 0.25
PLANS = {
    "gemma3-270m": ["0-17", "0-4,12-17", "0-5,{6-11}x2,12-17"],
    "qwen2.5-0.5b": ["0-23", "0-6,17-23", "0-7,{8-15}x2,16-23"],
}


def rms_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual - expected) ** 2) / np.mean(expected**2)))


@pytest.fixture(scope="module")
def reference(checkpoint) -> TinyModel:
    name, path, _, _ = checkpoint
    return CHECKPOINTS[name][0].load(path)


@pytest.fixture(scope="module")
def ctx_f32(checkpoint):
    _, _, model, _ = checkpoint
    with model.context(n_ctx=128, threads=THREADS, kv_type="f32", flash_attn="off") as ctx:
        yield ctx


def test_plans_match_the_reference_on_real_weights(checkpoint, reference: TinyModel, ctx_f32) -> None:
    """Plans on the real weights (gemma3: its window, rope bases and BOS) against the numpy reference.

    (Chunked decoding is checked exactly on the tiny F32 models: on these quantized files the
    stock library's own logits move by 2-5% with the chunk size, plan or no plan.)
    """
    name, _, _, tokens = checkpoint
    outputs = []
    for text in PLANS[name]:
        plan = Plan.parse(text)
        ctx_f32.set_plan(plan)
        actual = ctx_f32.logits(tokens)
        assert rms_error(actual, reference.logits(tokens, plan.executions())) < REFERENCE_TOLERANCE, text
        outputs.append(actual)
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert rms_error(outputs[i], outputs[j]) > PLANS_APART, (PLANS[name][i], PLANS[name][j])

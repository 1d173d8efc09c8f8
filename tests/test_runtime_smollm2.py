"""The patched runtime on the real SmolLM2-135M (llama architecture, 30 layers, Q4_1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_llama import chunked_logits

from painters_gguf import variants
from painters_gguf.plan import Plan

PROMPT = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"
THREADS = 2


@pytest.fixture(scope="module")
def tokens(smollm2) -> list[int]:
    return smollm2.tokenize(PROMPT)


@pytest.fixture(scope="module")
def ctx(smollm2):
    with smollm2.context(n_ctx=256, threads=THREADS) as ctx:
        yield ctx


def test_model_facts(smollm2) -> None:
    assert (smollm2.arch, smollm2.n_layer, smollm2.n_vocab, smollm2.n_embd) == ("llama", 30, 49152, 576)
    assert smollm2.sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_tokenize_round_trip(smollm2, tokens: list[int]) -> None:
    assert smollm2.detokenize(tokens) == PROMPT
    assert smollm2.tokenize(" Paris") != smollm2.tokenize("Paris")


def test_identity_plan_gives_the_stock_library_logits(
    smollm2_path: Path, stock_lib_dir: Path, ctx, tokens, tmp_path: Path
) -> None:
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    out = tmp_path / "stock.npy"
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(stock_lib_dir))
    script = Path(__file__).with_name("stock_logits.py")
    subprocess.run(
        [sys.executable, str(script), str(smollm2_path), str(tmp_path / "tokens.json"), str(out), "256", str(THREADS)],
        env=env,
        check=True,
    )
    stock = np.load(out)
    ctx.set_plan(None)
    assert np.array_equal(ctx.logits(tokens), stock)
    ctx.set_plan(variants.full(30))
    assert np.array_equal(ctx.logits(tokens), stock)


def test_full_model_knows_the_answer(smollm2, ctx, tokens) -> None:
    ctx.set_plan(None)
    assert smollm2.detokenize([int(np.argmax(ctx.logits(tokens)[-1]))]) == " Rome"


def test_parallel_middle_changes_the_next_token_ranking(ctx, tokens) -> None:
    ctx.set_plan(None)
    full = np.argsort(-ctx.logits(tokens)[-1])[:10]
    ctx.set_plan(variants.parallel(30, 4))
    parallel = np.argsort(-ctx.logits(tokens)[-1])[:10]
    assert list(full) != list(parallel)


@pytest.mark.parametrize("text", ["0-9,{10-19}x3,20-29", "0-3,26-29", "0,15x4,29"])
def test_chunked_decode_equals_one_pass(ctx, tokens, text: str) -> None:
    ctx.set_plan(Plan.parse(text))
    whole = ctx.logits(tokens)
    pieces = chunked_logits(ctx, tokens, 5)
    assert np.max(np.abs(pieces - whole)) / np.max(np.abs(whole)) < 1e-4

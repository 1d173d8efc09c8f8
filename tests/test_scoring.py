"""The scoring engine: lm-eval's tokenization rules, and the fast shared-prefix batched path
against one plain sequence per request, on a tiny random model with a real BPE vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from painters_gguf.engine.scoring import Scorer, log_softmax_at
from painters_gguf.plan import Plan
from painters_gguf.requests import LoglikelihoodRequest
from painters_gguf.tasks import TASKS


@pytest.fixture(scope="module")
def scorer(tiny_bpe_model) -> Scorer:
    # flash attention off: the float32 attention path, so batch composition changes only rounding
    return Scorer(tiny_bpe_model, n_ctx=512, n_batch=256, n_seq_max=16, threads=2, flash_attn="off")


def test_encode_pair_moves_trailing_spaces(scorer: Scorer) -> None:
    model = scorer.model
    ctx, cont = scorer.encode_pair("Question: 2+2?\nAnswer: ", "4")
    assert ctx == model.tokenize("Question: 2+2?\nAnswer:")
    assert ctx + cont == model.tokenize("Question: 2+2?\nAnswer: 4")
    assert cont == model.tokenize("Question: 2+2?\nAnswer: 4")[len(ctx) :]


def test_encode_pair_across_the_boundary(scorer: Scorer) -> None:
    """The continuation's tokens are cut from the whole encoding, not encoded alone."""
    model = scorer.model
    ctx, cont = scorer.encode_pair("The capital is Par", "is.")
    assert ctx == model.tokenize("The capital is Par")
    whole = model.tokenize("The capital is Paris.")
    assert whole[: len(ctx)] != ctx  # "Par" + "is" merge into one token across the boundary
    assert cont == whole[len(ctx) :]  # lm-eval still cuts the continuation at len(enc(ctx))


def test_empty_context_uses_the_prefix_token(scorer: Scorer) -> None:
    ctx, cont = scorer.encode_pair("", " hello")
    assert ctx == [scorer.model.bos]
    assert cont == scorer.model.tokenize(" hello")


def test_add_bos(tiny_bpe_model) -> None:
    with_bos = Scorer(tiny_bpe_model, n_ctx=64, n_batch=64, add_bos=True)
    ctx, cont = with_bos.encode_pair("Hello", " world")
    assert ctx[0] == tiny_bpe_model.bos and ctx[1:] == tiny_bpe_model.tokenize("Hello")
    assert cont == tiny_bpe_model.tokenize(" world")


def test_log_softmax_by_hand() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    lls, greedy = log_softmax_at(logits, [2, 0])
    expected = [3 - np.log(np.exp(1) + np.exp(2) + np.exp(3)), 0 - np.log(2 + np.exp(5))]
    assert np.allclose(lls, expected)
    assert list(greedy) == [True, False]


def boundary_groups(data: Path) -> list[list[LoglikelihoodRequest]]:
    """Documents of real tasks, plus requests whose continuation merges with the context's end."""
    groups = []
    for task_name, folder, split in [
        ("hellaswag", "hellaswag", "validation"),
        ("winogrande", "winogrande", "validation"),
        ("arc_easy", "arc_easy", "test"),
    ]:
        task = TASKS[task_name]
        rows = [json.loads(line) for line in (data / folder / f"{split}.jsonl").open().readlines()[:6]]
        for doc in task.process_docs(rows):
            groups.append(task.requests(doc, task.context(doc, [])))
    groups.append([LoglikelihoodRequest("The capital is Par", "is."), LoglikelihoodRequest("The capital is Par", "ma.")])
    groups.append([LoglikelihoodRequest("2+2=", "4"), LoglikelihoodRequest("2+2= ", "5")])
    groups.append([LoglikelihoodRequest("", " Once upon a time")])
    return groups


def crosses_boundary(scorer: Scorer, request: LoglikelihoodRequest) -> bool:
    ctx, cont = scorer.encode_pair(request.context, request.continuation)
    return scorer.encode(request.context.rstrip()) + scorer.encode(request.continuation) != ctx + cont or (
        request.context and scorer.encode(request.context + request.continuation)[: len(ctx)] != ctx
    )


@pytest.mark.parametrize("plan_text", [None, "0,{1-2}x2,3"])
def test_batched_equals_unbatched(scorer: Scorer, shared_data: Path, plan_text: str | None) -> None:
    scorer.ctx.set_plan(None if plan_text is None else Plan.parse(plan_text))
    groups = boundary_groups(shared_data)
    assert any(crosses_boundary(scorer, r) for group in groups for r in group)
    batched: dict[int, list] = {}
    n_yields = 0
    for done, results in scorer.loglikelihoods(groups):
        n_yields += 1
        for g, result in zip(done, results, strict=True):
            assert g not in batched
            batched[g] = result
    assert sorted(batched) == list(range(len(groups)))
    assert n_yields > 1  # several decode batches, committed as they finish
    for g, group in enumerate(groups):
        for request, result in zip(group, batched[g], strict=True):
            alone = scorer.loglikelihood_unbatched(request)
            assert result.loglikelihood == pytest.approx(alone.loglikelihood, rel=1e-4, abs=1e-3)
            assert result.is_greedy == alone.is_greedy


def test_units_larger_than_a_batch(tiny_bpe_model, shared_data: Path) -> None:
    """A document larger than n_batch is decoded in chunks through the cache, same results."""
    small = Scorer(tiny_bpe_model, n_ctx=512, n_batch=32, n_seq_max=4, threads=2, flash_attn="off")
    groups = boundary_groups(shared_data)[:4]
    assert any(unit.n_tokens > 32 for unit in small.units(groups))
    for done, results in small.loglikelihoods(groups):
        for g, result in zip(done, results, strict=True):
            for request, r in zip(groups[g], result, strict=True):
                assert r.loglikelihood == pytest.approx(small.loglikelihood_unbatched(request).loglikelihood, rel=1e-4, abs=1e-3)


def test_left_truncation(tiny_bpe_model) -> None:
    """A request longer than n_ctx keeps its last n_ctx + 1 tokens, as lm-eval does."""
    short = Scorer(tiny_bpe_model, n_ctx=16, n_batch=64, threads=2)
    context = " ".join(["alpha beta gamma delta"] * 10)
    request = LoglikelihoodRequest(context, " epsilon zeta")
    ctx, cont = short.encode_pair(request.context, request.continuation)
    kept = (ctx + cont)[-17:]
    short.ctx.clear()
    logits = short.ctx.eval(kept[:-1])
    lls, _ = log_softmax_at(logits[-len(cont) :], cont)
    assert short.loglikelihood_unbatched(request).loglikelihood == pytest.approx(float(lls.sum()), rel=1e-5)
    ((result,),) = next(short.loglikelihoods([[request]]))[1]
    assert result.loglikelihood == pytest.approx(float(lls.sum()), rel=1e-4)


def test_greedy_generation_stops(tiny_bpe_model) -> None:
    gen = Scorer(tiny_bpe_model, n_ctx=128, n_batch=64, threads=2)
    text = gen.generate("Question: what is 2+2?\nAnswer:", until=("Question:",), max_tokens=12)
    assert "Question:" not in text
    tokens = tiny_bpe_model.tokenize(text)
    assert len(tokens) <= 13  # at most max_tokens (re-tokenizing may merge differently by one)
    # greedy: each generated token is the argmax given the prompt and the tokens before it
    gen.ctx.clear()
    prompt = gen.encode("Question: what is 2+2?\nAnswer:")
    logits = gen.ctx.eval(prompt)
    first = int(np.argmax(logits[-1]))
    assert text.startswith(tiny_bpe_model.detokenize([first])) or tiny_bpe_model.is_eog(first)


def test_bos_follows_lm_eval_unless_told() -> None:
    """lm-eval gives Gemma models a BOS and no other HF causal model; an explicit choice wins."""
    from painters_gguf.evaluate import Settings

    assert Settings().for_model("gemma3", 18).add_bos is True
    assert Settings().for_model("gemma2", 26).add_bos is True
    assert Settings().for_model("llama", 30).add_bos is False
    assert Settings().for_model("qwen2", 24).add_bos is False
    assert Settings(add_bos=False).for_model("gemma3", 18).add_bos is False
    assert Settings(add_bos=True).for_model("llama", 30).add_bos is True
    assert Settings().for_model("gemma3", 18).key(TASKS["arc_easy"])["add_bos"] is True


def test_gpu_layers_that_mean_the_same_are_one_key() -> None:
    """-1 and any count past the layer count (llama.cpp's n_layer blocks and the output layer) all
    offload everything: one store key; n_layer leaves a layer on the CPU and stays its own."""
    from painters_gguf.evaluate import Settings

    keys = {Settings(n_gpu_layers=n).for_model("llama", 30).key(TASKS["arc_easy"])["n_gpu_layers"] for n in (-1, 31, 99)}
    assert keys == {-1}
    assert Settings(n_gpu_layers=30).for_model("llama", 30).key(TASKS["arc_easy"])["n_gpu_layers"] == 30
    assert Settings(n_gpu_layers=0).for_model("llama", 30).key(TASKS["arc_easy"])["n_gpu_layers"] == 0


def test_flash_attention_joins_the_key_only_when_set() -> None:
    from painters_gguf.evaluate import Settings

    assert "flash_attn" not in Settings().for_model("llama", 30).key(TASKS["arc_easy"])  # stores written before keep their keys
    assert Settings(flash_attn="off").for_model("llama", 30).key(TASKS["arc_easy"])["flash_attn"] == "off"

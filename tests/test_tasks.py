"""Task prompts and targets on real rows of ../shared/data, against hand-written expectations
in lm-eval 0.4.x's formats; answer extraction and metric aggregation by hand."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from painters_gguf import metrics
from painters_gguf.data import load_split
from painters_gguf.requests import LoglikelihoodRequest, LoglikelihoodResult
from painters_gguf.tasks import TASKS, select
from painters_gguf.tasks.gsm8k import FLEXIBLE, STRICT, exact_match, extract


def docs(data: Path, name: str) -> list[dict]:
    task = TASKS[name]
    return task.process_docs(load_split(data, task.eval_split))


def requests(name: str, doc: dict, examples: list[dict] | None = None):
    task = TASKS[name]
    return task.requests(doc, task.context(doc, examples or []))


def test_arc_easy_first_row(shared_data: Path) -> None:
    doc = docs(shared_data, "arc_easy")[0]
    q = "Which statement best explains why photosynthesis is the foundation of most food webs?"
    context = f"Question: {q}\nAnswer:"
    assert requests("arc_easy", doc) == [
        LoglikelihoodRequest(context, " Sunlight is the source of energy for nearly all ecosystems."),
        LoglikelihoodRequest(context, " Most ecosystems are found on land instead of in water."),
        LoglikelihoodRequest(context, " Carbon dioxide is more available than other gases."),
        LoglikelihoodRequest(context, " The producers in all ecosystems are plants."),
    ]
    assert TASKS["arc_easy"].doc_to_target(doc) == 0
    assert len(docs(shared_data, "arc_challenge")) == 1172


def test_hellaswag_first_rows(shared_data: Path) -> None:
    first, second = docs(shared_data, "hellaswag")[:2]
    assert [r.context for r in requests("hellaswag", first)] == ["Roof shingle removal: A man is sitting on a roof. He"] * 4
    assert [r.continuation for r in requests("hellaswag", first)] == [
        " is using wrap to wrap a pair of skis.",
        " is ripping level tiles off.",
        " is holding a rubik's cube.",
        " starts pulling up roofing on a roof.",
    ]
    assert TASKS["hellaswag"].doc_to_target(first) == 3
    assert requests("hellaswag", second)[0].context == (
        "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. The lady"
    )


def test_hellaswag_preprocessing() -> None:
    from painters_gguf.tasks.hellaswag import preprocess

    assert preprocess("  How to fix [title] a bike [step] Get  tools ") == "How to fix. a bike Get tools"


def test_winogrande_partial_scoring(shared_data: Path) -> None:
    doc = docs(shared_data, "winogrande")[0]
    assert requests("winogrande", doc) == [
        LoglikelihoodRequest("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
        LoglikelihoodRequest("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."),
    ]
    assert TASKS["winogrande"].doc_to_target(doc) == 1  # answer "2"
    shot = docs(shared_data, "winogrande")[1]
    with_shot = requests("winogrande", doc, [shot])
    assert with_shot[0].context == (
        "Sarah was a much better surgeon than Maria so Sarah always got the harder cases.\n\n"
        "Sarah was a much better surgeon than Maria so Sarah"
    )


def test_lambada_last_word(shared_data: Path) -> None:
    doc = docs(shared_data, "lambada_openai")[0]
    (request,) = requests("lambada_openai", doc)
    assert request.continuation == " signs"
    assert request.context.endswith("his mouth curved in a confident grin, I don't care about")
    assert request.context + request.continuation == doc["text"]
    assert len(docs(shared_data, "lambada_openai")) == 5153


def test_mmlu_prompt_and_first_n_shots(shared_data: Path) -> None:
    task = TASKS["mmlu"]
    test_docs = docs(shared_data, "mmlu")
    pool = task.process_docs(load_split(shared_data, task.fewshot_split))
    doc = test_docs[0]
    description = "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    question = (
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert requests("mmlu", doc)[0] == LoglikelihoodRequest(description + question, " A")
    assert [r.continuation for r in requests("mmlu", doc)] == [" A", " B", " C", " D"]
    (shots,) = task.fewshot_examples([doc], pool, 2)
    context = task.context(doc, shots)
    assert (
        context
        == description
        + (
            "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
            "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
            "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
            "Answer: B\n\n"
        )
        + question
    )
    assert len({d["subject"] for d in test_docs}) == 57
    limited = task.limit_indices(test_docs, 3)
    assert len(limited) == 57 * 3


def test_gsm8k_five_shot_prompt(shared_data: Path) -> None:
    """lm-eval draws each document's 5 examples from train with one Random(1234), in order."""
    task = TASKS["gsm8k"]
    test_docs = docs(shared_data, "gsm8k")
    train = load_split(shared_data, task.fewshot_split)
    examples = task.fewshot_examples(test_docs, train, 5)
    rnd = random.Random(1234)
    first_draw, second_draw = rnd.sample(train, 5), rnd.sample(train, 5)
    assert examples[0] == first_draw and examples[1] == second_draw
    context = task.context(test_docs[1], examples[1])
    expected = "".join(f"Question: {ex['question']}\nAnswer: {ex['answer']}\n\n" for ex in second_draw)
    assert context == expected + f"Question: {test_docs[1]['question']}\nAnswer:"
    request = task.requests(test_docs[1], context)
    assert request.until == ("Question:", "</s>", "<|im_end|>") and request.max_tokens == 256


@pytest.mark.parametrize(
    ("generated", "strict", "flexible"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", "18", "18"),
        ("The answer is #### 1,234.", "1,234.", "1,234."),
        ("So it costs $1,000 in total.", "[invalid]", "$1,000"),
        ("We get -5 degrees, then 12 more: 7", "[invalid]", "7"),
        ("No idea.", "[invalid]", "[invalid]"),
        ("#### -3.5\nQuestion: next", "-3.5", "-3.5"),
        ("First 12, then 3.5, finally 42.", "[invalid]", "42."),
    ],
)
def test_gsm8k_filters(generated: str, strict: str, flexible: str) -> None:
    assert extract(STRICT, generated, 0) == strict
    assert extract(FLEXIBLE, generated, -1) == flexible


def test_gsm8k_exact_match() -> None:
    reference = "Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert exact_match("72", reference) == 1.0
    assert exact_match("$72.", reference) == 1.0
    assert exact_match("7,2", reference) == 1.0  # lm-eval drops commas on both sides
    assert exact_match("72.0", reference) == 0.0
    assert exact_match("[invalid]", reference) == 0.0
    doc = {"question": "q", "answer": "x\n#### 1,000"}
    scored = TASKS["gsm8k"].score(doc, "it is 999\n#### 1000\n")
    assert scored["exact_match,strict-match"] == 1.0 and scored["exact_match,flexible-extract"] == 1.0


def test_multiple_choice_metrics_by_hand() -> None:
    task = TASKS["arc_easy"]
    doc = {"question": "q", "choices": {"text": ["a", "bbbbbbbbbb"], "label": ["A", "B"]}, "answerKey": "B"}
    # ll/len: a = -2/1 = -2.0; b = -3/10 = -0.3 -> acc picks a (-2 > -3), acc_norm picks b
    scored = task.score(doc, [LoglikelihoodResult(-2.0, True), LoglikelihoodResult(-3.0, False)])
    assert (scored["acc"], scored["acc_norm"], scored["prediction"], scored["target"]) == (0.0, 1.0, 0, 1)
    assert task.baseline(doc) == 0.5


def test_aggregation_by_hand() -> None:
    assert metrics.aggregate("mean", [1.0, 0.0, 1.0, 1.0]) == (0.75, 0.25)
    assert metrics.aggregate("mean", [1.0]) == (1.0, None)
    value, stderr = metrics.aggregate("perplexity", [-1.0, -2.0, -3.0])
    assert value == pytest.approx(math.exp(2.0))
    # the bootstrap estimate is close to the delta-method error exp(2) * sd / sqrt(n)
    assert stderr == pytest.approx(math.exp(2.0) * 1.0 / math.sqrt(3), rel=0.35)
    assert metrics.normalized(0.5, 0.25, 0.75) == 0.5
    assert metrics.normalized(0.25, 0.25, 0.25) is None


def test_select_tasks() -> None:
    assert [t.name for t in select("all")] == list(TASKS)
    assert [t.name for t in select("winogrande, arc_easy,winogrande")] == ["winogrande", "arc_easy"]
    with pytest.raises(Exception, match="unknown task 'arc'"):
        select("arc")

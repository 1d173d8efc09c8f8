"""The search's objectives (painters_gguf.objectives) by hand: each document's value from its stored
result, each task's normalization, and the ranking they give plans on a planted case where the
accuracy of a few items cannot tell the plans apart."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from painters_gguf import metrics
from painters_gguf.evaluate import PreparedTask, Settings, TaskScores, prepare
from painters_gguf.objectives import Objective, document_value, task_value, value
from painters_gguf.tasks import TASKS


@pytest.fixture(scope="module")
def arc(shared_data: Path) -> PreparedTask:
    return prepare(TASKS["arc_easy"], shared_data, 4, Settings(add_bos=False))  # 4 choices each, acc_norm


@pytest.fixture(scope="module")
def lambada(shared_data: Path) -> PreparedTask:
    return prepare(TASKS["lambada_openai"], shared_data, 4, Settings(add_bos=False))


def arc_result(prep: PreparedTask, index: int, lls: list[float]) -> dict:
    """A stored ARC-Easy result: acc_norm ranks the choices by log-likelihood per character."""
    lengths = [len(choice) for choice in prep.task.doc_to_choice(prep.docs[index])]  # type: ignore[attr-defined]
    gold = prep.task.doc_to_target(prep.docs[index])  # type: ignore[attr-defined]
    pred = max(range(4), key=lambda i: lls[i] / lengths[i])
    return {"loglikelihoods": lls, "target": gold, "acc_norm": float(pred == gold), "acc": float(np.argmax(lls) == gold)}


def test_document_values_by_hand(arc: PreparedTask, lambada: PreparedTask) -> None:
    index = arc.indices[0]
    lls = [-10.0, -20.0, -30.0, -40.0]
    result = arc_result(arc, index, lls)
    per_char = [ll / len(c) for ll, c in zip(lls, arc.task.doc_to_choice(arc.docs[index]), strict=True)]  # type: ignore[attr-defined]
    gold = result["target"]
    assert document_value(Objective.ACCURACY, arc, index, result) == result["acc_norm"]
    expected = math.exp(per_char[gold]) / sum(math.exp(s) for s in per_char)
    assert document_value(Objective.PROBABILITY, arc, index, result) == pytest.approx(expected)
    assert document_value(Objective.LOGLIKELIHOOD, arc, index, result) == pytest.approx(per_char[gold])
    best_wrong = max(s for i, s in enumerate(per_char) if i != gold)
    assert document_value(Objective.MARGIN, arc, index, result) == pytest.approx(per_char[gold] - best_wrong)
    # LAMBADA: one answer, the target word; its probability is exp of its log-likelihood
    stored = {"loglikelihoods": [-2.5], "acc": 0.0, "perplexity": -2.5, "target": " word"}
    assert document_value(Objective.PROBABILITY, lambada, lambada.indices[0], stored) == pytest.approx(math.exp(-2.5))
    assert document_value(Objective.MARGIN, lambada, lambada.indices[0], stored) == -2.5


def scores_of(prep: PreparedTask, results: list[dict]) -> TaskScores:
    values = [r["acc_norm"] for r in results]
    by_index = dict(zip(prep.indices, results, strict=True))
    return TaskScores(prep.task, len(results), {"acc_norm": metrics.aggregate("mean", values)}, by_index)


def gold_first(prep: PreparedTask, index: int, lead: float) -> dict:
    """A result whose gold choice leads (lead > 0) or trails the others by `lead` nats per character."""
    lengths = [len(choice) for choice in prep.task.doc_to_choice(prep.docs[index])]  # type: ignore[attr-defined]
    gold = prep.task.doc_to_target(prep.docs[index])  # type: ignore[attr-defined]
    per_char = [-1.0 + (lead if i == gold else 0.0) for i in range(4)]
    return arc_result(prep, index, [s * n for s, n in zip(per_char, lengths, strict=True)])


def test_task_normalization_by_hand(arc: PreparedTask) -> None:
    full = scores_of(arc, [gold_first(arc, i, 1.0) for i in arc.indices])  # right on every document
    plan = scores_of(arc, [gold_first(arc, i, lead) for i, lead in zip(arc.indices, [0.5, 0.5, -0.5, 1.0], strict=True)])
    # accuracy: 3 of 4 right, chance 0.25, the full model 1: (0.75 - 0.25) / 0.75
    assert task_value(Objective.ACCURACY, arc, plan, full) == pytest.approx(0.5 / 0.75)

    def p(lead: float) -> float:
        return math.exp(lead) / (math.exp(lead) + 3)

    expected = (np.mean([p(0.5), p(0.5), p(-0.5), p(1.0)]) - 0.25) / (p(1.0) - 0.25)
    assert task_value(Objective.PROBABILITY, arc, plan, full) == pytest.approx(expected)
    # the full model the same on every document: nothing to scale a paired difference by
    assert task_value(Objective.MARGIN, arc, plan, full) is None
    uneven = scores_of(arc, [gold_first(arc, i, lead) for i, lead in zip(arc.indices, [1.0, 2.0, 1.0, 2.0], strict=True)])
    margins = np.array([0.5, 0.5, -0.5, 1.0]) - np.array([1.0, 2.0, 1.0, 2.0])
    assert task_value(Objective.MARGIN, arc, plan, uneven) == pytest.approx(1 + margins.mean() / 0.5)  # population sd 0.5
    assert value(Objective.MARGIN, [(arc, uneven)], {"arc_easy": uneven}) == 1.0  # the full model scores 1


def test_a_smooth_objective_ranks_plans_that_accuracy_ties(arc: PreparedTask) -> None:
    """Planted: three plans right on the same documents (equal accuracy), their gold answers ahead
    by 0.9, 0.5 and 0.1 nats per character; a fourth wrong everywhere. Accuracy ties the first three;
    the probability, log-likelihood and margin rank them as planted."""
    full = scores_of(arc, [gold_first(arc, i, lead) for i, lead in zip(arc.indices, [1.0, 1.0, 1.5, 0.5], strict=True)])
    planted = {lead: scores_of(arc, [gold_first(arc, i, lead) for i in arc.indices]) for lead in (0.9, 0.5, 0.1, -0.3)}
    for objective in Objective:
        ranked = sorted(planted, key=lambda lead: -value(objective, [(arc, planted[lead])], {"arc_easy": full}))
        values = {lead: value(objective, [(arc, planted[lead])], {"arc_easy": full}) for lead in planted}
        if objective is Objective.ACCURACY:
            assert values[0.9] == values[0.5] == values[0.1] > values[-0.3]
        else:
            assert ranked == [0.9, 0.5, 0.1, -0.3], (objective, values)

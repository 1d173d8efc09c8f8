"""What `painters-gguf search` ranks plans by on its search items: one number per plan, from the
per-document results the store holds for the plan and the full model on the same documents.

- `accuracy`: the mean normalized primary metric (0 = chance, 1 = the full model), what the final
  table reports;
- `probability`: the same normalization of the probability the plan gives the gold answer among
  the answers (a softmax over the scores the primary metric ranks them by; LAMBADA: the target
  word's probability): accuracy without its threshold, so a document counts before it flips;
- `loglikelihood`: 1 plus the mean paired difference from the full model in the gold answer's
  score, in units of the full model's spread of that score over the documents;
- `margin`: the same for the gold answer's lead over the best wrong answer (LAMBADA: its score).

Each is a mean over the tasks; the full model scores 1 on each. `bench/search_objective.py`
measures how well each, on the search items, ranks plans by their accuracy on held-out items.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

import numpy as np

from painters_gguf import metrics
from painters_gguf.evaluate import PreparedTask, TaskScores


class Objective(str, enum.Enum):
    ACCURACY = "accuracy"
    PROBABILITY = "probability"
    LOGLIKELIHOOD = "loglikelihood"
    MARGIN = "margin"


DEFAULT_OBJECTIVE = Objective.LOGLIKELIHOOD  # the best rank correlation with held-out accuracy (docs/search.md)


def document_value(objective: Objective, prep: PreparedTask, index: int, result: dict) -> float:
    """One document's value under the objective, from its stored result."""
    if objective is Objective.ACCURACY:
        return float(result[prep.task.primary_metric])
    scores, gold = prep.task.answer_scores(prep.docs[index], result)
    if objective is Objective.PROBABILITY:
        if len(scores) == 1:
            return math.exp(scores[0])
        shifted = np.exp(np.asarray(scores) - max(scores))
        return float(shifted[gold] / shifted.sum())
    if objective is Objective.LOGLIKELIHOOD:
        return scores[gold]
    others = scores[:gold] + scores[gold + 1 :]
    return scores[gold] - max(others) if others else scores[gold]


def task_value(objective: Objective, prep: PreparedTask, scores: TaskScores, full: TaskScores) -> float | None:
    """The plan's value on one task's items (prep.indices); None where nothing normalizes it (the
    full model at or below chance, or the same on every document)."""
    plan_values = [document_value(objective, prep, i, scores.results[i]) for i in prep.indices]
    full_values = [document_value(objective, prep, i, full.results[i]) for i in prep.indices]
    if objective in (Objective.ACCURACY, Objective.PROBABILITY):
        span = metrics.mean(full_values) - prep.baseline
        return (metrics.mean(plan_values) - prep.baseline) / span if span > 1e-12 else None
    spread = float(np.std(full_values))
    if spread <= 1e-12:
        return None
    return 1.0 + metrics.mean([a - b for a, b in zip(plan_values, full_values, strict=True)]) / spread


def value(objective: Objective, per_task: Sequence[tuple[PreparedTask, TaskScores]], full: dict[str, TaskScores]) -> float:
    """The mean over the tasks that have a value (NaN when none has)."""
    values = [v for prep, scores in per_task if (v := task_value(objective, prep, scores, full[prep.task.name])) is not None]
    return metrics.mean(values) if values else math.nan

"""LAMBADA, OpenAI version (lm-eval `lambada_openai`): test split; acc (greedy) and perplexity."""

from __future__ import annotations

from collections.abc import Sequence

from painters_gguf.requests import LoglikelihoodRequest, LoglikelihoodResult
from painters_gguf.tasks.base import Field, Metric, Request, RowError, Split, Task


class Lambada(Task):
    name = "lambada_openai"
    version = "1.0"
    eval_split = Split("lambada_openai", "EleutherAI/lambada_openai", "default", "test", (Field("text"),))
    metrics = (Metric("perplexity", higher_is_better=False, aggregation="perplexity"), Metric("acc"))

    def __init__(self) -> None:
        self.fewshot_split = self.eval_split  # the only split

    def check_row(self, row: dict) -> None:
        *context, word = row["text"].split(" ")
        if not context or not word.strip():
            raise RowError("text", "must be a passage ending in ' <last word>'")

    def doc_to_text(self, doc: dict) -> str:
        return " ".join(doc["text"].split(" ")[:-1])

    def fewshot_target(self, doc: dict) -> str:
        return " " + doc["text"].split(" ")[-1]

    def requests(self, doc: dict, context: str) -> Request:
        return [LoglikelihoodRequest(context, self.fewshot_target(doc))]

    def score(self, doc: dict, results: Sequence[LoglikelihoodResult] | str) -> dict:
        assert not isinstance(results, str)
        (result,) = results
        return {
            "perplexity": result.loglikelihood,  # aggregated as exp(-mean)
            "acc": float(result.is_greedy),
            "loglikelihoods": [result.loglikelihood],
            "is_greedy": [result.is_greedy],
            "target": self.fewshot_target(doc),
        }

    def answer_scores(self, doc: dict, result: dict) -> tuple[list[float], int]:
        """The target word's log-likelihood: one answer, the gold one."""
        return [float(result["loglikelihoods"][0])], 0


LAMBADA_OPENAI = Lambada()

"""WinoGrande (lm-eval `winogrande`, winogrande_xl validation): partial scoring, acc.

Each option is put in the blank, the sentence up to and including it is the context, and only
the text after the blank is scored (the same continuation for both options).
"""

from __future__ import annotations

from collections.abc import Sequence

from painters_gguf.requests import LoglikelihoodRequest
from painters_gguf.tasks.base import Field, Metric, MultipleChoiceTask, Request, RowError, Split

FIELDS = (Field("sentence"), Field("option1"), Field("option2"), Field("answer"))


class WinoGrande(MultipleChoiceTask):
    name = "winogrande"
    version = "1.0"
    eval_split = Split("winogrande", "allenai/winogrande", "winogrande_xl", "validation", FIELDS)
    fewshot_split = Split("winogrande", "allenai/winogrande", "winogrande_xl", "train", FIELDS)
    metrics = (Metric("acc"),)

    def check_row(self, row: dict) -> None:
        if "_" not in row["sentence"]:
            raise RowError("sentence", "has no blank '_' for the options")
        if row["answer"] not in ("1", "2"):
            raise RowError("answer", f"must be '1' or '2', found {row['answer']!r}")

    def doc_to_choice(self, doc: dict) -> list[str]:
        """The contexts: the sentence up to the blank, with each option in it."""
        blank = doc["sentence"].index("_")
        return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]

    def doc_to_target(self, doc: dict) -> int:
        return {"1": 0, "2": 1}[doc["answer"]]

    def continuation(self, doc: dict) -> str:
        """The text after the blank: what is scored."""
        return doc["sentence"][doc["sentence"].index("_") + 1 :].strip()

    def doc_to_text(self, doc: dict) -> str:
        return self.doc_to_choice(doc)[self.doc_to_target(doc)]

    def fewshot_target(self, doc: dict) -> str:
        return self.continuation(doc)

    def context(self, doc: dict, examples: Sequence[dict]) -> str:
        """Only the few-shot part: each option's context is appended per request."""
        return "".join(
            self.doc_to_text(ex) + self.target_delimiter + self.fewshot_target(ex) + self.fewshot_delimiter for ex in examples
        )

    def requests(self, doc: dict, context: str) -> Request:
        cont = self.target_delimiter + self.continuation(doc)
        return [LoglikelihoodRequest(context + choice, cont) for choice in self.doc_to_choice(doc)]


WINOGRANDE = WinoGrande()

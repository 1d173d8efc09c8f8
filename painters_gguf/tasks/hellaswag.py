"""HellaSwag (lm-eval `hellaswag`): validation split with its preprocessing; acc and acc_norm."""

from __future__ import annotations

import re

from painters_gguf.tasks.base import MultipleChoiceTask, Split

FIELDS = ("activity_label", "ctx_a", "ctx_b", "endings", "label")


def preprocess(text: str) -> str:
    text = text.strip()
    text = text.replace(" [title]", ". ")  # brackets are artifacts of the WikiHow part
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


class HellaSwag(MultipleChoiceTask):
    name = "hellaswag"
    version = "1.0"
    eval_split = Split("hellaswag", "Rowan/hellaswag", None, "validation", FIELDS)
    fewshot_split = Split("hellaswag", "Rowan/hellaswag", None, "train", FIELDS)

    def process_docs(self, rows: list[dict]) -> list[dict]:
        docs = []
        for row in rows:
            ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
            docs.append(
                {
                    **row,
                    "query": preprocess(row["activity_label"] + ": " + ctx),
                    "choices": [preprocess(ending) for ending in row["endings"]],
                    "gold": int(row["label"]),
                }
            )
        return docs

    def doc_to_text(self, doc: dict) -> str:
        return doc["query"]

    def doc_to_choice(self, doc: dict) -> list[str]:
        return doc["choices"]

    def doc_to_target(self, doc: dict) -> int:
        return doc["gold"]


HELLASWAG = HellaSwag()

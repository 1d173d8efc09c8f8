"""HellaSwag (lm-eval `hellaswag`): validation split with its preprocessing; acc and acc_norm."""

from __future__ import annotations

import re

from painters_gguf.tasks.base import Field, MultipleChoiceTask, RowError, Split, text_list

# the label is "0".."3" in Rowan/hellaswag; ctx_b may be empty
FIELDS = (
    Field("activity_label"),
    Field("ctx_a"),
    Field("ctx_b", may_be_empty=True),
    Field("endings", list),
    Field("label", object),
)


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

    def check_row(self, row: dict) -> None:
        endings = text_list(row["endings"], "endings", length=4)
        label = row["label"]
        if isinstance(label, bool) or str(label).strip() not in {str(i) for i in range(len(endings))}:
            raise RowError("label", f"must be 0..{len(endings) - 1} (an ending's index), found {label!r}")

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

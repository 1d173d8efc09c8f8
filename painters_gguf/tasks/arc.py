"""ARC-Easy and ARC-Challenge (lm-eval `arc_easy`, `arc_challenge`): test split, acc and acc_norm."""

from __future__ import annotations

from painters_gguf.tasks.base import Field, MultipleChoiceTask, RowError, Split, text_list

FIELDS = (Field("question"), Field("choices", dict), Field("answerKey"))


class ARC(MultipleChoiceTask):
    version = "1.0"

    def __init__(self, name: str, config: str) -> None:
        self.name = name
        self.eval_split = Split(name, "allenai/ai2_arc", config, "test", FIELDS)
        self.fewshot_split = Split(name, "allenai/ai2_arc", config, "train", FIELDS)

    def check_row(self, row: dict) -> None:
        texts = text_list(row["choices"].get("text"), "choices.text")
        labels = text_list(row["choices"].get("label"), "choices.label", length=len(texts))
        if row["answerKey"] not in labels:
            raise RowError("answerKey", f"{row['answerKey']!r} is not among the labels {labels}")

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def doc_to_choice(self, doc: dict) -> list[str]:
        return list(doc["choices"]["text"])

    def doc_to_target(self, doc: dict) -> int:
        return doc["choices"]["label"].index(doc["answerKey"])


ARC_EASY = ARC("arc_easy", "ARC-Easy")
ARC_CHALLENGE = ARC("arc_challenge", "ARC-Challenge")

"""MMLU (lm-eval `mmlu`): test split, 57 subjects, each with its description; few-shot examples
are the first rows of the subject's dev split; acc, micro-averaged over all questions.
"""

from __future__ import annotations

from collections.abc import Sequence

from painters_gguf.tasks.base import Field, Metric, MultipleChoiceTask, RowError, Sampler, Split, text_list

FIELDS = (Field("question"), Field("subject"), Field("choices", list), Field("answer", int))


class MMLU(MultipleChoiceTask):
    name = "mmlu"
    version = "1.0"
    eval_split = Split("mmlu", "cais/mmlu", "all", "test", FIELDS)
    fewshot_split = Split("mmlu", "cais/mmlu", "all", "dev", FIELDS)
    sampler = Sampler.FIRST_N
    metrics = (Metric("acc"),)

    def check_row(self, row: dict) -> None:
        text_list(row["choices"], "choices", length=4)
        if not 0 <= row["answer"] <= 3:
            raise RowError("answer", f"must be 0..3 (A..D), found {row['answer']}")

    def description(self, doc: dict) -> str:
        subject = doc["subject"].replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"

    def doc_to_text(self, doc: dict) -> str:
        a, b, c, d = doc["choices"]
        return f"{doc['question'].strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"

    def doc_to_choice(self, doc: dict) -> list[str]:
        return ["A", "B", "C", "D"]

    def doc_to_target(self, doc: dict) -> int:
        return int(doc["answer"])

    def fewshot_examples(self, docs: Sequence[dict], pool: Sequence[dict], num_fewshot: int) -> list[list[dict]]:
        """Each subject draws from its own dev rows."""
        by_subject: dict[str, list[dict]] = {}
        for row in pool:
            by_subject.setdefault(row["subject"], []).append(row)
        return [super(MMLU, self).fewshot_examples([doc], by_subject.get(doc["subject"], []), num_fewshot)[0] for doc in docs]

    def limit_indices(self, docs: Sequence[dict], limit: int | None) -> list[int]:
        """As lm-eval's --limit on the mmlu group: the first `limit` questions of each subject."""
        taken: dict[str, int] = {}
        chosen = []
        for index, doc in enumerate(docs):
            if limit is None or taken.get(doc["subject"], 0) < limit:
                taken[doc["subject"]] = taken.get(doc["subject"], 0) + 1
                chosen.append(index)
        return chosen


MMLU_TASK = MMLU()

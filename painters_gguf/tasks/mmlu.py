"""MMLU (lm-eval `mmlu`): test split, 57 subjects, each with its description; few-shot examples
are the first rows of the subject's dev split; acc, micro-averaged over all questions.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from painters_gguf.tasks.base import Field, Limit, Metric, MultipleChoiceTask, RowError, Sampler, Split, limited, text_list

FIELDS = (Field("question"), Field("subject"), Field("choices", list), Field("answer", int))

# lm-eval's four groups, in the order it lists them, and the subjects of each
CATEGORIES = ("stem", "other", "social_sciences", "humanities")
SUBJECT_CATEGORY = {
    **dict.fromkeys(
        (
            "abstract_algebra anatomy astronomy college_biology college_chemistry college_computer_science college_mathematics "
            "college_physics computer_security conceptual_physics electrical_engineering elementary_mathematics "
            "high_school_biology high_school_chemistry high_school_computer_science high_school_mathematics "
            "high_school_physics high_school_statistics machine_learning"
        ).split(),
        "stem",
    ),
    **dict.fromkeys(
        (
            "business_ethics clinical_knowledge college_medicine global_facts human_aging management marketing "
            "medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology"
        ).split(),
        "other",
    ),
    **dict.fromkeys(
        (
            "econometrics high_school_geography high_school_government_and_politics high_school_macroeconomics "
            "high_school_microeconomics high_school_psychology human_sexuality professional_psychology public_relations "
            "security_studies sociology us_foreign_policy"
        ).split(),
        "social_sciences",
    ),
    **dict.fromkeys(
        (
            "formal_logic high_school_european_history high_school_us_history high_school_world_history international_law "
            "jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy prehistory professional_law "
            "world_religions"
        ).split(),
        "humanities",
    ),
}


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

    def limit_indices(self, docs: Sequence[dict], limit: Limit) -> list[int]:
        """As lm-eval's --limit on the mmlu group: the first `limit` questions (or that fraction) of each subject."""
        sizes = collections.Counter(doc["subject"] for doc in docs)
        taken: dict[str, int] = {}
        chosen = []
        for index, doc in enumerate(docs):
            if taken.get(doc["subject"], 0) < limited(sizes[doc["subject"]], limit):
                taken[doc["subject"]] = taken.get(doc["subject"], 0) + 1
                chosen.append(index)
        return chosen


MMLU_TASK = MMLU()

"""GSM8K (lm-eval `gsm8k`): test split, 5-shot from train (seed-1234 sampler), greedy generation
until its stop strings (at most 256 new tokens); exact_match under strict-match and flexible-extract.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from painters_gguf.requests import Generation, LoglikelihoodResult
from painters_gguf.tasks.base import Field, Metric, Request, RowError, Split, Task

FIELDS = (Field("question"), Field("answer"))

# lm-eval's two filters: strict-match takes the answer after "####", flexible-extract the last number
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
FALLBACK = "[invalid]"
# exact_match: ignore_case, and these patterns removed from prediction and reference
IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")


def extract(pattern: re.Pattern[str], text: str, group_select: int) -> str:
    """lm-eval's RegexFilter followed by take_first."""
    matches = pattern.findall(text)
    if not matches:
        return FALLBACK
    match = matches[group_select]
    if isinstance(match, tuple):
        found = [m for m in match if m]
        match = found[0] if found else FALLBACK
    return match.strip()


def exact_match(prediction: str, reference: str) -> float:
    for regex in IGNORE:
        prediction = re.sub(regex, "", prediction)
        reference = re.sub(regex, "", reference)
    return float(prediction.lower() == reference.lower())


class GSM8K(Task):
    name = "gsm8k"
    version = "3.0"
    eval_split = Split("gsm8k", "openai/gsm8k", "main", "test", FIELDS)
    fewshot_split = Split("gsm8k", "openai/gsm8k", "main", "train", FIELDS)
    num_fewshot = 5
    generation = True
    metrics = (Metric("exact_match,strict-match"), Metric("exact_match,flexible-extract"))
    until = ("Question:", "</s>", "<|im_end|>")
    max_tokens = 256

    def check_row(self, row: dict) -> None:
        if "####" not in row["answer"]:
            raise RowError("answer", "has no '#### <number>' final answer")

    def doc_to_text(self, doc: dict) -> str:
        return f"Question: {doc['question']}\nAnswer:"

    def fewshot_target(self, doc: dict) -> str:
        return doc["answer"]

    def requests(self, doc: dict, context: str) -> Request:
        return Generation(context, self.until, self.max_tokens)

    def score(self, doc: dict, results: Sequence[LoglikelihoodResult] | str) -> dict:
        assert isinstance(results, str)
        strict = extract(STRICT, results, 0)
        flexible = extract(FLEXIBLE, results, -1)
        return {
            "exact_match,strict-match": exact_match(strict, doc["answer"]),
            "exact_match,flexible-extract": exact_match(flexible, doc["answer"]),
            "generated": results,
            "prediction": {"strict-match": strict, "flexible-extract": flexible},
            "target": doc["answer"],
        }


GSM8K_TASK = GSM8K()

"""What a benchmark task is: its data, its prompts, its requests and its per-document metrics.

Prompts, targets, splits and metrics follow lm-evaluation-harness 0.4.x's task definitions
(its YAML and utils files are the reference); each task is a short module over this base.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections.abc import Sequence

from painters_gguf.errors import PaintersError
from painters_gguf.requests import Generation, LoglikelihoodRequest, LoglikelihoodResult

Limit = int | float | None  # a count of documents, or (below 1) a fraction of them, as lm-eval's --limit


def limited(size: int, limit: Limit) -> int:
    """How many of `size` documents a --limit takes: all (None), a count, or a fraction rounded up (lm-eval's)."""
    if limit is None:
        return size
    return min(size, math.ceil(size * limit) if limit < 1 else int(limit))


class RowError(ValueError):
    """A data row a task cannot use: names the field and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")


@dataclasses.dataclass(frozen=True)
class Field:
    """A field every row has: its JSON type; a string must be non-empty unless `may_be_empty`."""

    name: str
    kind: type = str  # str, int, list or dict
    may_be_empty: bool = False


KIND_NAMES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def valid_text(value: object, field: str, *, may_be_empty: bool = False) -> str:
    """A string that is text: non-empty (unless allowed), encodable as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, found {type(value).__name__}")
    if not value.strip() and not may_be_empty:
        raise RowError(field, "is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RowError(field, "holds a lone surrogate (not valid Unicode text)") from None
    return value


def text_list(value: object, field: str, *, length: int | None = None) -> list[str]:
    """A non-empty list of texts (of exactly `length` where given)."""
    if not isinstance(value, list) or not value:
        raise RowError(field, "must be a non-empty list of strings")
    if length is not None and len(value) != length:
        raise RowError(field, f"must hold {length} strings, found {len(value)}")
    return [valid_text(item, f"{field}[{i}]") for i, item in enumerate(value)]


@dataclasses.dataclass(frozen=True)
class Split:
    """Where a split comes from: `<data dir>/<folder>/<split>.jsonl`, or the HF dataset."""

    folder: str
    hf_path: str
    hf_name: str | None
    split: str
    fields: tuple[Field, ...]  # every row has these; the task checks what relates them

    def check_fields(self, row: dict) -> None:
        for field in self.fields:
            if field.name not in row:
                raise RowError(field.name, "is missing")
            value = row[field.name]
            if field.kind is object:  # any JSON value: the task checks it
                continue
            if field.kind is str:
                valid_text(value, field.name, may_be_empty=field.may_be_empty)
            elif isinstance(value, bool) or not isinstance(value, field.kind):
                raise RowError(field.name, f"must be {KIND_NAMES[field.kind]}, found {type(value).__name__}")

    def describe(self) -> str:
        name = f" ({self.hf_name})" if self.hf_name else ""
        return f"{self.hf_path}{name} split {self.split!r}"


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool = True
    aggregation: str = "mean"  # "mean" or "perplexity"


class Sampler(enum.Enum):
    RANDOM = "default"  # lm-eval's ContextSampler: successive draws from one Random(1234)
    FIRST_N = "first_n"  # the first n rows of the few-shot split, in order


FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed


Request = list[LoglikelihoodRequest] | Generation


class Task:
    """A benchmark task; subclasses fill in the prompt functions and metrics."""

    name: str
    version: str
    eval_split: Split
    fewshot_split: Split | None = None
    sampler: Sampler = Sampler.RANDOM
    num_fewshot: int = 0
    metrics: tuple[Metric, ...] = ()
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    generation: bool = False  # greedy generation (else log-likelihoods)

    @property
    def primary_metric(self) -> str:
        """The metric sweeps and figures normalize: acc_norm where the task has it, else its first
        higher-is-better metric (not perplexity)."""
        names = [m.name for m in self.metrics]
        return "acc_norm" if "acc_norm" in names else next(m.name for m in self.metrics if m.higher_is_better)

    def check_row(self, row: dict) -> None:
        """Raise RowError for a row this task cannot use (before anything reads it)."""

    # prompts (lm-eval's doc_to_text / doc_to_target / doc_to_choice)

    def process_docs(self, rows: list[dict]) -> list[dict]:
        return rows

    def description(self, doc: dict) -> str:
        return ""

    def doc_to_text(self, doc: dict) -> str:
        raise NotImplementedError

    def fewshot_target(self, doc: dict) -> str:
        """The answer text shown after a few-shot example."""
        raise NotImplementedError

    def fewshot_text(self, doc: dict) -> str:
        return self.doc_to_text(doc)

    def context(self, doc: dict, examples: Sequence[dict]) -> str:
        """Description, labelled few-shot examples, then the document's own prompt."""
        shots = "".join(
            self.fewshot_text(ex) + self.target_delimiter + self.fewshot_target(ex) + self.fewshot_delimiter for ex in examples
        )
        return self.description(doc) + shots + self.doc_to_text(doc)

    def requests(self, doc: dict, context: str) -> Request:
        raise NotImplementedError

    def score(self, doc: dict, results: Sequence[LoglikelihoodResult] | str) -> dict:
        """Per-document metrics plus what the sample log shows (prediction, target)."""
        raise NotImplementedError

    def baseline(self, doc: dict) -> float:
        """Expected score of random guessing (or the majority answer) on this document."""
        return 0.0

    def answer_scores(self, doc: dict, result: dict) -> tuple[list[float], int]:
        """From a document's stored result: the scores its primary metric ranks the answers by (a
        continuous measure the search's objectives read), and the gold answer's place among them."""
        raise PaintersError(f"{self.name}: its answers are generated; it has no answer scores")

    def stored_baseline(self, result: dict) -> float:
        """`baseline` of a document known only by its stored result (report without the data)."""
        return 0.0

    def limit_indices(self, docs: Sequence[dict], limit: Limit) -> list[int]:
        """The documents a --limit run scores: the first `limit` (beyond the split size: all)."""
        return list(range(limited(len(docs), limit)))

    def fewshot_examples(self, docs: Sequence[dict], pool: Sequence[dict], num_fewshot: int) -> list[list[dict]]:
        """Few-shot examples for each document in evaluation order, as lm-eval draws them."""
        if num_fewshot == 0:
            return [[] for _ in docs]
        # none of our tasks names its test split as the few-shot split, so lm-eval draws exactly
        # num_fewshot and drops the document itself if it was drawn
        if num_fewshot > len(pool):
            raise PaintersError(f"{self.name}: {num_fewshot} few-shot examples asked, the few-shot split holds {len(pool)}")
        if self.sampler is Sampler.FIRST_N:
            return [[ex for ex in pool[:num_fewshot] if ex != doc] for doc in docs]
        rnd = random.Random(FEWSHOT_SEED)
        return [[ex for ex in rnd.sample(list(pool), num_fewshot) if ex != doc] for doc in docs]


class MultipleChoiceTask(Task):
    """Choices scored as continuations of one context; acc and acc_norm (per-character)."""

    metrics: tuple[Metric, ...] = (Metric("acc"), Metric("acc_norm"))

    def doc_to_choice(self, doc: dict) -> list[str]:
        raise NotImplementedError

    def doc_to_target(self, doc: dict) -> int:
        raise NotImplementedError

    def fewshot_target(self, doc: dict) -> str:
        return self.doc_to_choice(doc)[self.doc_to_target(doc)]

    def requests(self, doc: dict, context: str) -> Request:
        return [LoglikelihoodRequest(context, self.target_delimiter + choice) for choice in self.doc_to_choice(doc)]

    def score(self, doc: dict, results: Sequence[LoglikelihoodResult] | str) -> dict:
        assert not isinstance(results, str)
        lls = [r.loglikelihood for r in results]
        lengths = [float(len(choice)) for choice in self.doc_to_choice(doc)]
        gold = self.doc_to_target(doc)
        pred = max(range(len(lls)), key=lls.__getitem__)
        pred_norm = max(range(len(lls)), key=lambda i: lls[i] / lengths[i])
        scored = {
            "acc": float(pred == gold),
            "loglikelihoods": lls,
            "is_greedy": [r.is_greedy for r in results],
            "prediction": pred,
            "target": gold,
        }
        if any(m.name == "acc_norm" for m in self.metrics):  # per-character normalized accuracy
            scored["acc_norm"] = float(pred_norm == gold)
        return scored

    def baseline(self, doc: dict) -> float:
        return 1.0 / len(self.doc_to_choice(doc))

    def answer_scores(self, doc: dict, result: dict) -> tuple[list[float], int]:
        """Each choice's log-likelihood, per character of the choice where the primary metric is acc_norm."""
        lls = [float(ll) for ll in result["loglikelihoods"]]
        if self.primary_metric == "acc_norm":
            lls = [ll / len(choice) for ll, choice in zip(lls, self.doc_to_choice(doc), strict=True)]
        return lls, int(result["target"])

    def stored_baseline(self, result: dict) -> float:
        return 1.0 / len(result["loglikelihoods"])  # one per choice

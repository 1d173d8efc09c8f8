"""Our scores against lm-evaluation-harness 0.4.9.2's own pipeline, item by item.

lm-eval builds the requests from its own task files over the same local JSONL rows, tokenizes
them with its own `_encode_pair` (over our tokenizer) and computes its own metrics. Its model is a
TemplateLM that answers each tokenized request with the log-likelihood painters-gguf's engine
computed for the same tokens: a request lm-eval tokenizes differently finds no answer and counts
as a difference. So the table checks prompts, tokenization and metric rules to the item.

A quantized model's numbers also depend slightly on what shares a decode batch (8-bit activation
rounding), so the script reports, as information, how many items change when every request is
decoded alone, one sequence from an empty cache (lm-eval's one-request-at-a-time path).

Needs lm_eval, which needs torch, so it runs in its own environment:
    python3 -m venv .bench-venv
    .bench-venv/bin/pip install torch==2.13.0 lm_eval==0.4.9.2 'transformers<5' 'datasets<4' -e .
    .bench-venv/bin/python patches/build_wheel.py        # the patched llama_cpp, from the cache
    .bench-venv/bin/python bench/lm_eval_agreement.py [--limit 500] [--tasks arc_easy,hellaswag,...]
"""

from __future__ import annotations

import argparse
import json
import time

import datasets
import lm_eval
import lm_eval.api.task
import numpy as np
from lm_eval.api.model import TemplateLM
from rich.console import Console
from rich.table import Table

from painters_gguf.data import read_jsonl
from painters_gguf.engine.scoring import Scorer
from painters_gguf.evaluate import Settings, prepare
from painters_gguf.fetch import resolve_model
from painters_gguf.paths import data_dir
from painters_gguf.runtime import Model
from painters_gguf.tasks import TASKS

# lm-eval's dataset ids -> our folders; a split we do not have locally is stood in for by one we
# have (only the few-shot sampler would read it, and these runs are zero-shot)
FOLDERS = {
    ("allenai/ai2_arc", "ARC-Easy"): "arc_easy",
    ("allenai/ai2_arc", "ARC-Challenge"): "arc_challenge",
    ("Rowan/hellaswag", None): "hellaswag",
    ("allenai/winogrande", "winogrande_xl"): "winogrande",
    ("winogrande", "winogrande_xl"): "winogrande",  # the id lm-eval 0.4.9.2's YAML uses
    ("hellaswag", None): "hellaswag",
    ("EleutherAI/lambada_openai", "default"): "lambada_openai",
}


def local_load_dataset(path: str, name: str | None = None, **_: object) -> datasets.DatasetDict:
    folder = data_dir() / FOLDERS[(path, name)]
    splits = {f.stem: datasets.Dataset.from_list(read_jsonl(f)) for f in sorted(folder.glob("*.jsonl"))}
    first = next(iter(splits.values()))
    for split in ("train", "validation", "test"):
        splits.setdefault(split, first)
    return datasets.DatasetDict(splits)


class AnsweringLM(TemplateLM):
    """lm-eval's model interface answering from a table of (context tokens, continuation tokens)."""

    def __init__(
        self, model: Model, max_length: int, answers: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[float, bool]]
    ) -> None:
        super().__init__()
        self.model = model
        self._max_length = max_length
        self.answers = answers
        self.missing = 0

    @property
    def eot_token_id(self) -> int:
        return self.model.eos

    @property
    def prefix_token_id(self) -> int:
        return self.model.bos

    @property
    def max_length(self) -> int:
        return self._max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: object) -> list[int]:
        return self.model.tokenize(string)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        results = []
        for cache_key, context_enc, continuation_enc in requests:
            answer = self.answers.get((tuple(context_enc), tuple(continuation_enc)))
            if answer is None:  # tokenized unlike painters-gguf: a certain difference
                self.missing += 1
                answer = (float("-inf"), False)
            results.append(answer)
            self.cache_hook.add_partial("loglikelihood", cache_key, answer)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--tasks", default="arc_easy,hellaswag,winogrande,lambada_openai")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--output", default=None, help="write the per-item comparison as JSON")
    args = parser.parse_args()
    console = Console()
    names = args.tasks.split(",")

    model = Model(resolve_model(args.model))
    scorer = Scorer(model, n_ctx=args.n_ctx, threads=args.threads)
    ours: dict[str, dict[int, dict]] = {}
    alone: dict[str, dict[int, dict]] = {}
    answers: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[float, bool]] = {}
    prepared = {}
    start = time.perf_counter()
    for name in names:
        task = TASKS[name]
        prep = prepared[name] = prepare(task, data_dir(), args.limit, Settings(n_ctx=args.n_ctx))
        groups = [task.requests(prep.docs[i], prep.contexts[i]) for i in prep.indices]
        ours[name] = {}
        for done, results in scorer.loglikelihoods(groups):
            for g, res in zip(done, results, strict=True):
                ours[name][prep.indices[g]] = task.score(prep.docs[prep.indices[g]], res)
                for request, r in zip(groups[g], res, strict=True):
                    ctx, cont = scorer.encode_pair(request.context, request.continuation)
                    answers[(tuple(ctx), tuple(cont))] = (r.loglikelihood, r.is_greedy)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    for name in names:
        task, prep = TASKS[name], prepared[name]
        alone[name] = {
            i: task.score(
                prep.docs[i], [scorer.loglikelihood_unbatched(r) for r in task.requests(prep.docs[i], prep.contexts[i])]
            )
            for i in prep.indices
        }
    t_alone = time.perf_counter() - start

    lm_eval.api.task.datasets.load_dataset = local_load_dataset
    lm = AnsweringLM(model, args.n_ctx, answers)
    theirs = lm_eval.simple_evaluate(model=lm, tasks=names, limit=args.limit, log_samples=True, bootstrap_iters=0)

    table = Table(title=f"{model.path.name}: painters-gguf vs lm-eval 0.4.9.2, first {args.limit} items")
    for column in (
        "task",
        "metric",
        "painters-gguf",
        "lm-eval",
        "items differing",
        "requests differing",
        "one-by-one decode",
        "items changed",
    ):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    report: dict[str, dict] = {}
    for name in names:
        task, prep = TASKS[name], prepared[name]
        samples = {s["doc_id"]: s for s in theirs["samples"][name]}
        request_diffs = sum(
            [[r.context, r.continuation] for r in task.requests(prep.docs[i], prep.contexts[i])]
            != [list(a) for a in samples[i]["arguments"]]
            for i in prep.indices
        )
        report[name] = {"request_diffs": request_diffs, "metrics": {}}
        for metric in task.metrics:
            key = metric.name
            mine = [ours[name][i][key] for i in prep.indices]
            single = [alone[name][i][key] for i in prep.indices]
            if key == "perplexity":
                lls = [samples[i]["resps"][0][0][0] for i in prep.indices]
                differing = sum(a != float(b) for a, b in zip(mine, lls, strict=True))
                changed = sum(abs(a - b) > 1e-3 for a, b in zip(mine, single, strict=True))
                value_ours, value_alone = float(np.exp(-np.mean(mine))), float(np.exp(-np.mean(single)))
            else:
                differing = sum(ours[name][i][key] != samples[i][key] for i in prep.indices)
                changed = sum(a != b for a, b in zip(mine, single, strict=True))
                value_ours, value_alone = float(np.mean(mine)), float(np.mean(single))
            value_theirs = theirs["results"][name][f"{key},none"]
            report[name]["metrics"][key] = {
                "ours": value_ours,
                "lm_eval": value_theirs,
                "items_differing": differing,
                "one_by_one": value_alone,
                "items_changed_one_by_one": changed,
            }
            table.add_row(
                name,
                key,
                f"{value_ours:.4f}",
                f"{value_theirs:.4f}",
                str(differing),
                str(request_diffs),
                f"{value_alone:.4f}",
                str(changed),
            )
    console.print(table)
    console.print(f"requests lm-eval tokenized differently from painters-gguf: {lm.missing}")
    console.print(f"time: painters-gguf engine {t_ours:.0f} s; every request decoded alone {t_alone:.0f} s")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

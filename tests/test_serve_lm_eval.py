"""lm-eval's own `gguf` backend (HTTP, /v1/completions with echo + logprobs) pointed at
`painters-gguf serve` scores a task from ../shared/data (through a local task YAML) as
`painters-gguf eval` does under the same plan."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from serving import Server, eval_with_samples, lm_eval_run

from painters_gguf.engine.scoring import Scorer
from painters_gguf.plan import Plan
from painters_gguf.requests import LoglikelihoodRequest
from painters_gguf.runtime import Model

PLAN = "0-4,{5-25}x3,26-29"  # looped parallel on SmolLM2's 30 layers
LIMIT = 40
# `painters-gguf eval` packs several documents into a decode batch and shares their prefixes;
# on a quantized model llama.cpp's numbers for a sequence move with what shares its batch (also
# in the stock library). Measured here on 100 ARC-Easy documents: per-choice differences between a
# request scored alone (the server) and packed (eval) of median 0.17-0.19 nats, at most 1.56, for the
# full model and for plans; the same choice on 98-99 of 100 documents. Scored alone by the Python
# API, the server's numbers are the same to rounding.
PACKED_TOLERANCE = 2.0
SAME_CHOICE = 0.95

ARC_EASY_YAML = """\
task: arc_easy_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}/arc_easy/test.jsonl
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices.label.index(answerKey)}}}}"
doc_to_choice: "{{{{choices.text}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def samples(folder: Path, pattern: str) -> dict[int, list[float]]:
    """doc_id -> each choice's log-likelihood, from a samples_*.jsonl in lm-eval's format."""
    (path,) = folder.rglob(pattern)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["doc_id"]: [float(resp[0][0]) for resp in row["resps"]] for row in rows}


def test_lm_eval_gguf_backend_agrees_with_eval(smollm2_path: Path, shared_data: Path, tmp_path: Path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "arc_easy_local.yaml").write_text(ARC_EASY_YAML.format(data=shared_data))
    with Server("-m", str(smollm2_path), "-c", "2048", "--plan", f"loop={PLAN}") as server:
        base_url = server.url.removesuffix("/v1")  # the backend appends /v1/completions
        lm_eval = [str(Path(sys.executable).with_name("lm_eval")), "--model", "gguf", "--model_args", f"base_url={base_url}"]
        lm_eval_run(lm_eval, tmp_path, tasks, "arc_easy_local", LIMIT)
    eval_with_samples(tmp_path, smollm2_path, shared_data, "--plan", PLAN, "--tasks", "arc_easy", "--limit", str(LIMIT))
    served = samples(tmp_path / "lm_eval", "samples_arc_easy_local_*.jsonl")
    scored = samples(tmp_path / "ours", "samples_arc_easy_2*.jsonl")  # the plan's, not the full model's
    assert sorted(served) == sorted(scored) == list(range(LIMIT))
    assert_alone_equal(served, smollm2_path, shared_data)
    differences = [abs(a - b) for doc in scored for a, b in zip(served[doc], scored[doc], strict=True)]
    assert max(differences) < PACKED_TOLERANCE, sorted(differences)[-5:]
    same_choice = sum(np.argmax(served[doc]) == np.argmax(scored[doc]) for doc in scored)
    assert same_choice >= SAME_CHOICE * LIMIT


def assert_alone_equal(served: dict[int, list[float]], model_path: Path, data: Path) -> None:
    """What lm-eval got through the server equals the Python API's scoring of each request alone."""
    rows = [json.loads(line) for line in (data / "arc_easy" / "test.jsonl").read_text().splitlines()[:LIMIT]]
    with Model(model_path) as model:
        scorer = Scorer(model, n_ctx=2048, n_seq_max=1, threads=2)
        scorer.set_plan(Plan.parse(PLAN))
        for doc, row in enumerate(rows):
            context = f"Question: {row['question']}\nAnswer:"
            alone = [
                scorer.loglikelihood_unbatched(LoglikelihoodRequest(context, f" {c}")).loglikelihood
                for c in row["choices"]["text"]
            ]
            assert served[doc] == pytest.approx(alone, abs=1e-4), doc

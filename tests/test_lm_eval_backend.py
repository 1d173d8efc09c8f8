"""painters-gguf as an lm-eval model backend (lm-eval 0.4.13, offline: its own task YAMLs pointed
at ../shared/data through local YAMLs that include them)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import lm_eval.tasks
import numpy as np
import pytest
from serving import CLI, eval_with_samples, lm_eval_run

LIMIT = 10
LM_EVAL_TASKS = Path(lm_eval.tasks.__file__).parent
# our task name: (lm-eval's YAML, the split files it reads from ../shared/data, fields to override)
LOCAL_TASKS = {
    "arc_easy": ("arc/arc_easy.yaml", {"test": "arc_easy/test.jsonl"}, {"training_split": None, "validation_split": None}),
    "hellaswag": ("hellaswag/hellaswag.yaml", {"validation": "hellaswag/validation.jsonl"}, {"training_split": None}),
    "winogrande": ("winogrande/default.yaml", {"validation": "winogrande/validation.jsonl"}, {"training_split": None}),
    "lambada_openai": ("lambada/lambada_openai.yaml", {"test": "lambada_openai/test.jsonl"}, {}),
    "gsm8k": ("gsm8k/gsm8k.yaml", {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"}, {}),
}
LOGLIKELIHOOD_TASKS = ["arc_easy", "hellaswag", "winogrande", "lambada_openai"]
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def local_tasks(folder: Path, data: Path) -> Path:
    """A YAML per task: lm-eval's own, its dataset read from local JSONL files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (include, files, overrides) in LOCAL_TASKS.items():
        lines = [
            f"include: {LM_EVAL_TASKS / include}",
            f"task: {name}_local",
            "tag: []",
            "dataset_path: json",
            "dataset_name: null",
        ]
        lines += ["dataset_kwargs:", "  data_files:"] + [f"    {split}: {data / file}" for split, file in files.items()]
        lines += [f"{key}: {json.dumps(value)}" for key, value in overrides.items()]
        (folder / f"{name}_local.yaml").write_text("\n".join(lines) + "\n")
    return folder


def sample_logs(folder: Path, pattern: str) -> dict[int, list[list]]:
    (path,) = folder.rglob(pattern)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {row["doc_id"]: row["resps"] for row in rows}


@pytest.mark.parametrize("plan", ["full", "0-4,{5-25}x3,26-29"])
def test_lm_eval_with_our_backend_equals_eval(plan: str, smollm2_path: Path, shared_data: Path, tmp_path: Path):
    """The same per-document log-likelihoods, to the bit, and the same metrics as `painters-gguf eval`."""
    tasks = local_tasks(tmp_path / "tasks", shared_data)
    lm_eval_run(
        [CLI, "lm-eval", "--model", "painters-gguf", "--model_args", f"model={smollm2_path},plan={plan},threads=2"],
        tmp_path,
        tasks,
        ",".join(f"{name}_local" for name in LOGLIKELIHOOD_TASKS),
        LIMIT,
    )
    eval_with_samples(
        tmp_path, smollm2_path, shared_data, "--plan", plan, "--limit", str(LIMIT), "--tasks", ",".join(LOGLIKELIHOOD_TASKS)
    )
    (theirs_path,) = (tmp_path / "lm_eval").rglob("results_*.json")
    (mine_path,) = (tmp_path / "ours").rglob("results_*.json")
    theirs_results, mine_results = json.loads(theirs_path.read_text())["results"], json.loads(mine_path.read_text())["results"]
    for name in LOGLIKELIHOOD_TASKS:
        theirs = sample_logs(tmp_path / "lm_eval", f"samples_{name}_local_*.jsonl")
        mine = sample_logs(tmp_path / "ours", f"samples_{name}_2*.jsonl")  # the plan's (for full: the model's)
        assert sorted(theirs) == sorted(mine) == list(range(LIMIT)), name
        for doc in mine:
            assert responses(theirs[doc]) == responses(mine[doc]), (name, doc)
        for metric in ("acc,none", "perplexity,none", "acc_norm,none"):
            if metric in mine_results[name]:
                assert theirs_results[f"{name}_local"][metric] == mine_results[name][metric], (name, metric)


def responses(resps: list[list]) -> list[tuple[float, bool]]:
    """lm-eval's `resps` of a log-likelihood document: [[[ll, is_greedy]], ...] (strings or values)."""
    return [(float(ll), str(greedy) == "True") for [[ll, greedy]] in resps]


def test_generate_until_equals_eval_gsm8k(smollm2_path: Path, shared_data: Path, tmp_path: Path):
    """lm-eval's gsm8k (5 shots, stop at "Question:") through the backend: the same replies as eval's gsm8k."""
    tasks = local_tasks(tmp_path / "tasks", shared_data)
    lm_eval_run(
        [CLI, "lm-eval", "--model", "painters-gguf", "--model_args", f"model={smollm2_path},threads=2"],
        tmp_path,
        tasks,
        "gsm8k_local",
        2,
    )
    eval_with_samples(tmp_path, smollm2_path, shared_data, "--tasks", "gsm8k", "--limit", "2")
    theirs = sample_logs(tmp_path / "lm_eval", "samples_gsm8k_local_*.jsonl")
    mine = sample_logs(tmp_path / "ours", "samples_gsm8k_2*.jsonl")
    assert sorted(theirs) == sorted(mine) == [0, 1]
    for doc in mine:
        assert theirs[doc] == mine[doc], doc
        assert "Question:" not in theirs[doc][0][0]  # the stop sequence ends the reply


# --- a task we do not implement, perplexity, truncation: a tiny model against the numpy reference ---

YES_NO_YAML = """\
task: yes_no_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {rows}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{passage}}}}\\nQuestion: {{{{question}}}}?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["no", "yes"]
metric_list:
  - metric: acc
"""
PERPLEXITY_YAML = """\
task: perplexity_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {rows}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""
ROWS = [
    {"passage": "The painter mixed blue and yellow.", "question": "did he get green", "label": 1},
    {"passage": "Cats sleep a lot during the day.", "question": "do cats fly", "label": 0},
    {"passage": "Water boils at a high temperature.", "question": "is ice hot", "label": 0},
]
TEXTS = [{"text": "Layers of a transformer paint on a shared canvas, one stroke after another."}]


@pytest.fixture(scope="module")
def tiny(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny random llama with SmolLM2's tokenizer, and its numpy reference."""
    from tiny_llama import Reference, TinyConfig, Vocab, random_weights, write_gguf

    vocab = Vocab.from_gguf(smollm2_path)
    weights = random_weights(TinyConfig(n_vocab=len(vocab.tokens), n_layer=4), seed=1)
    path = write_gguf(weights, tmp_path_factory.mktemp("tiny-lm-eval") / "tiny.gguf", vocab=vocab)
    return path, Reference(weights)


def reference_loglikelihood(reference, tokens: list[int], n_scored: int) -> float:
    """log p of the last n_scored tokens given the ones before, by the numpy forward pass (all 4 layers)."""
    logits = reference.logits(tokens[:-1], [[layer] for layer in range(4)])
    rows = logits - logits.max(axis=1, keepdims=True)
    rows = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
    return float(sum(rows[len(tokens) - 1 - n_scored + i, token] for i, token in enumerate(tokens[-n_scored:])))


def evaluate_in_process(path: Path, folder: Path, tasks: list[str], **model_args: object) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    import painters_gguf.lm_eval_model  # noqa: F401 - registers painters-gguf

    return lm_eval.simple_evaluate(
        model="painters-gguf",
        model_args={"model": str(path), "threads": 2, **model_args},
        tasks=tasks,
        task_manager=TaskManager(include_path=str(folder)),
        log_samples=True,
    )


def test_a_task_we_do_not_implement_and_perplexity(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from painters_gguf.runtime import Model

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path, reference = tiny
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TEXTS))
    (tmp_path / "yes_no_local.yaml").write_text(YES_NO_YAML.format(rows=tmp_path / "rows.jsonl"))
    (tmp_path / "perplexity_local.yaml").write_text(PERPLEXITY_YAML.format(rows=tmp_path / "texts.jsonl"))
    n_ctx = 5  # the text spans several rolling windows
    choices = evaluate_in_process(path, tmp_path, ["yes_no_local"])["samples"]["yes_no_local"]
    (rolling,) = evaluate_in_process(path, tmp_path, ["perplexity_local"], n_ctx=n_ctx)["samples"]["perplexity_local"]
    with Model(path, vocab_only=True) as model:
        for sample in choices:
            doc = sample["doc"]
            context = f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:"
            for choice, [[ll, _]] in zip(["no", "yes"], sample["resps"], strict=True):
                whole, ctx = model.tokenize(f"{context} {choice}"), model.tokenize(context)
                assert ll == pytest.approx(
                    reference_loglikelihood(reference, whole, len(whole) - len(ctx)), rel=1e-3
                )  # float32 in llama.cpp, float64 here
        tokens = model.tokenize(TEXTS[0]["text"])
        prefix = model.bos if model.bos >= 0 else model.eos
        windows = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, prefix, n_ctx, 1)]
        assert len(windows) > 2
        expected = sum(reference_loglikelihood(reference, ctx + cont, len(cont)) for ctx, cont in windows)
    assert float(rolling["resps"][0][0]) == pytest.approx(expected, rel=1e-3)  # float32 in llama.cpp, float64 here


def test_a_request_longer_than_the_context_keeps_its_end(tiny):
    """As lm-eval's HF model: the last n_ctx + 1 tokens of context + continuation, scored."""
    from lm_eval.api.instance import Instance

    from painters_gguf.lm_eval_model import PaintersLM

    path, reference = tiny
    lm = PaintersLM(model=str(path), n_ctx=16, threads=2)
    context = "A long story about painters, their canvases, their colours and the layers they put on, again and again"
    request = Instance("loglikelihood", {}, (context, " and again."), 0, ("t", 0, 1))
    ((ll, _),) = lm.loglikelihood([request])
    whole, ctx = lm.model.tokenize(context + " and again."), lm.model.tokenize(context)
    assert len(whole) > 17
    assert ll == pytest.approx(
        reference_loglikelihood(reference, whole[-17:], len(whole) - len(ctx)), rel=1e-3
    )  # float32 in llama.cpp, float64 here


@pytest.mark.parametrize(
    ("model_args", "named"),
    [
        ("model={tiny},colour=red", "colour"),
        ("model={tiny},plan=0-99", "0-99"),
        ("model=/nowhere/missing.gguf", "missing.gguf"),
        ("model={tiny},n_ctx=0", "n_ctx"),
        ("model={tiny},threads=two", "threads"),
    ],
)
def test_bad_model_args(model_args: str, named: str, tiny, tmp_path: Path):
    path, _ = tiny
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    (tasks / "yes_no_local.yaml").write_text(YES_NO_YAML.format(rows=tmp_path / "rows.jsonl"))
    result = subprocess.run(
        [CLI, "lm-eval", "--model", "painters-gguf", "--model_args", model_args.format(tiny=path)]
        + ["--tasks", "yes_no_local", "--include_path", str(tasks)],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE, "HF_HOME": str(tmp_path / "hf")},
        timeout=600,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and last.startswith("error:") and named in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_chat_template_is_the_models_own(smollm2_path: Path):
    """lm-eval's --apply_chat_template renders with the GGUF's template (SmolLM2: ChatML)."""
    from painters_gguf.lm_eval_model import PaintersLM

    lm = PaintersLM(model=str(smollm2_path), threads=2)
    prompt = lm.apply_chat_template([{"role": "user", "content": "Name a colour."}])
    assert prompt.endswith("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n")
    assert lm.chat_template(True) == lm.model.meta("tokenizer.chat_template") and lm.chat_template(False) is None

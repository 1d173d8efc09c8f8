"""painters-gguf as an lm-eval model backend (lm-eval 0.4.13, offline: its own task YAMLs pointed
at ../shared/data through local YAMLs that include them)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import lm_eval.tasks
import pytest
from serving import CLI

LIMIT = 10
LM_EVAL_TASKS = Path(lm_eval.tasks.__file__).parent
# our task name: (lm-eval's YAML, the split files it reads from ../shared/data, fields to override)
LOCAL_TASKS = {
    "arc_easy": ("arc/arc_easy.yaml", {"test": "arc_easy/test.jsonl"}, {"training_split": None, "validation_split": None}),
    "hellaswag": ("hellaswag/hellaswag.yaml", {"validation": "hellaswag/validation.jsonl"}, {"training_split": None}),
    "winogrande": ("winogrande/default.yaml", {"validation": "winogrande/validation.jsonl"}, {"training_split": None}),
    "lambada_openai": ("lambada/lambada_openai.yaml", {"test": "lambada_openai/test.jsonl"}, {}),
}
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
    env = {**os.environ, **OFFLINE, "HF_HOME": str(tmp_path / "hf")}
    through_lm_eval = subprocess.run(
        [CLI, "lm-eval", "--model", "painters-gguf", "--model_args", f"model={smollm2_path},plan={plan},threads=2"]
        + ["--tasks", ",".join(f"{name}_local" for name in LOCAL_TASKS), "--include_path", str(tasks)]
        + ["--limit", str(LIMIT), "--log_samples", "--output_path", str(tmp_path / "lm_eval")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert through_lm_eval.returncode == 0, through_lm_eval.stderr[-4000:]
    ours = subprocess.run(
        [CLI, "--db", str(tmp_path / "store.db"), "eval", "-m", str(smollm2_path), "--plan", plan, "--limit", str(LIMIT)]
        + ["--tasks", ",".join(LOCAL_TASKS), "--data-dir", str(shared_data), "-t", "2", "-o", f"{tmp_path / 'ours'}/"]
        + ["--log-samples"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert ours.returncode == 0, ours.stderr
    (theirs_path,) = (tmp_path / "lm_eval").rglob("results_*.json")
    (mine_path,) = (tmp_path / "ours").rglob("results_*.json")
    theirs_results, mine_results = json.loads(theirs_path.read_text())["results"], json.loads(mine_path.read_text())["results"]
    for name in LOCAL_TASKS:
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

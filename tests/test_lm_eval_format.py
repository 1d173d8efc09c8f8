"""Results and sample logs in lm-evaluation-harness's layout, read back with lm-eval's own
result-reading code (lm_eval.utils; the package is installed without its model backends)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import lm_eval.utils as lm_eval_utils  # scripts/setup.sh installs lm-eval without its model backends
import pytest

CLI = str(Path(sys.executable).with_name("painters-gguf"))


@pytest.fixture(scope="module")
def run_folder(tiny_bpe_model, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lm-eval-format")
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data), COLUMNS="200")
    args = ["--db", str(folder / "r.db"), "eval", "-m", str(tiny_bpe_model.path), "--plan", "skip", "--n", "1"]
    args += ["--tasks", "arc_easy,mmlu", "--limit", "2", "-o", f"{folder / 'out'}/", "--log-samples"]
    subprocess.run([CLI, *args], env=env, check=True, capture_output=True, timeout=900)
    return folder / "out"


def files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def test_lm_eval_finds_the_results_and_the_samples(run_folder: Path) -> None:
    results = lm_eval_utils.get_results_filenames(files(run_folder))
    samples = lm_eval_utils.get_sample_results_filenames(files(run_folder))
    assert len(results) == 1 and Path(results[0]).parent.name == "tiny-bpe"
    tasks = {lm_eval_utils.get_file_task_name(Path(f).name) for f in samples}
    assert tasks == {"arc_easy", "mmlu", "arc_easy-full-model", "mmlu-full-model"}
    stamp = lm_eval_utils.get_file_datetime(lm_eval_utils.get_latest_filename(results)).replace(".json", "")
    assert {lm_eval_utils.get_file_datetime(f) for f in samples} == {stamp}


def test_lm_eval_tabulates_the_results_and_mmlu_groups(run_folder: Path) -> None:
    (path,) = lm_eval_utils.get_results_filenames(files(run_folder))
    data = json.loads(Path(path).read_text())
    assert data["model_name"] == data["model_name_sanitized"] == "tiny-bpe" and float(data["total_evaluation_time_seconds"]) > 0
    assert set(data["configs"]) == {"arc_easy", "mmlu"}
    assert data["versions"]["arc_easy"] == "1.0" and data["versions"]["mmlu"] == 2 and data["versions"]["mmlu_anatomy"] == 1.0
    assert data["configs"]["arc_easy"]["dataset_path"] == "allenai/ai2_arc" and data["configs"]["arc_easy"]["num_fewshot"] == 0
    assert [m["metric"] for m in data["configs"]["arc_easy"]["metric_list"]] == ["acc", "acc_norm"]
    groups = data["groups"]
    assert list(groups) == ["mmlu", "mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities"]
    assert len(data["group_subtasks"]["mmlu_stem"]) == 19 and data["group_subtasks"]["mmlu"] == list(groups)[1:]
    subjects = [name for name in data["results"] if name not in groups and name.startswith("mmlu_")]
    assert len(subjects) == 57
    # mmlu is the size-weighted mean of its subjects: the mean over every question
    accs = [data["results"][s]["acc,none"] for s in subjects]
    sizes = [data["results"][s]["samples"] for s in subjects]
    assert groups["mmlu"]["acc,none"] == pytest.approx(sum(a * n for a, n in zip(accs, sizes, strict=True)) / sum(sizes))
    table = lm_eval_utils.make_table(json.loads(Path(path).read_text()))
    grouped = lm_eval_utils.make_table(json.loads(Path(path).read_text()), "groups")
    assert "arc_easy" in table and "abstract_algebra" in table and "acc_norm" in table
    assert "mmlu" in grouped and "stem" in grouped and "humanities" in grouped


def test_samples_carry_the_document_and_its_filtered_responses(run_folder: Path) -> None:
    samples = lm_eval_utils.get_sample_results_filenames(files(run_folder))
    (arc,) = [f for f in samples if lm_eval_utils.get_file_task_name(Path(f).name) == "arc_easy"]
    records = [json.loads(line) for line in Path(arc).read_text().splitlines()]
    assert [r["doc_id"] for r in records] == [0, 1]
    first = records[0]
    assert first["doc"]["question"] and first["filter"] == "none" and first["metrics"] == ["acc", "acc_norm"]
    assert len(first["filtered_resps"]) == len(first["doc"]["choices"]["text"]) == len(first["arguments"])
    assert all(isinstance(ll, float) and isinstance(greedy, bool) for ll, greedy in first["filtered_resps"])
    (path,) = lm_eval_utils.get_results_filenames(files(run_folder))
    data = json.loads(Path(path).read_text())
    assert data["results"]["arc_easy"]["acc,none"] == statistics.fmean(r["acc"] for r in records)

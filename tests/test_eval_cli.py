"""`painters-gguf eval` end to end on a tiny model: results JSON, sample logs, the store's reuse
of finished work, and a run killed mid-task that resumes to the scores of an uninterrupted one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from faults import interrupt_midway, stored_documents

CLI = str(Path(sys.executable).with_name("painters-gguf"))


def run_cli(*args: str, data: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(data), COLUMNS="200")
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def doc_count(db: Path, below: int = 30) -> int:
    """Stored documents with an index under `below` (a batch may also finish a few past --limit)."""
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM docs WHERE doc_index < ?", (below,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.fixture(scope="module")
def tiny_path(tiny_bpe_model) -> Path:
    return tiny_bpe_model.path


ARGS = ["--tasks", "arc_easy,lambada_openai", "--limit", "30", "--batch-size", "64", "--threads", "2"]


def test_eval_writes_results_and_samples(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_cli(
        "--db",
        str(tmp_path / "r.db"),
        "eval",
        "-m",
        str(tiny_path),
        "--plan",
        "skip",
        "--n",
        "1",
        *ARGS,
        "-o",
        str(out),
        "--log-samples",
        data=shared_data,
    )
    assert "normalized" in result.stdout and "arc_easy" in result.stdout
    data = json.loads(out.read_text())
    block = data["results"]["arc_easy"]
    assert set(block) == {"alias", "acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"}
    assert data["config"]["plan"] == "0-1,3"
    assert data["n-samples"]["arc_easy"] == {"original": 2376, "effective": 30}
    assert data["higher_is_better"]["lambada_openai"] == {"perplexity": False, "acc": True}
    assert data["full_model_results"]["lambada_openai"]["perplexity,none"] > 1
    stamp = out.stem  # the samples sit beside the results, for the plan and the full model, per task
    logs = sorted(p.name.split("_20")[0] for p in tmp_path.glob("samples_*.jsonl"))
    assert logs == [
        "samples_arc_easy",
        "samples_arc_easy-full-model",
        "samples_lambada_openai",
        "samples_lambada_openai-full-model",
    ]
    (arc,) = tmp_path.glob("samples_arc_easy_*.jsonl")
    records = [json.loads(line) for line in arc.read_text().splitlines()]
    assert len(records) == 30 and stamp
    first = records[0]
    assert first["doc_id"] == 0 and len(first["resps"]) == 4 and len(first["filtered_resps"]) == 4
    assert first["arguments"]["gen_args_0"]["arg_1"] == " Sunlight is the source of energy for nearly all ecosystems."
    assert block["acc,none"] == pytest.approx(sum(r["acc"] for r in records) / len(records))


def test_output_without_json_suffix_is_a_folder_as_in_lm_eval(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    """`-o out_eval` (no .json, no trailing slash, not there yet) is a folder: the results and every
    sample log inside <out_eval>/<model>/, the results' name carrying the plan beside the time."""
    db, small = str(tmp_path / "r.db"), ["--tasks", "arc_easy", "--limit", "3", "--threads", "2"]
    for plan in (["--plan", "random", "--n", "0", "--seed", "3"], ["--plan", "0,{1-2}x2,3"]):
        run_cli(
            "--db",
            db,
            "eval",
            "-m",
            str(tiny_path),
            *plan,
            *small,
            "-o",
            str(tmp_path / "out_eval"),
            "--log-samples",
            data=shared_data,
        )
    folder = tmp_path / "out_eval" / tiny_path.stem
    results = sorted(p.name.rsplit("_", 1)[0] for p in folder.glob("results_*.json"))
    text_label = "plan-" + hashlib.sha256(b"0,{1-2}x2,3").hexdigest()[:8]
    assert results == [f"results_{text_label}", "results_random-n0-seed3"]
    assert len(list(folder.glob("samples_arc_easy_*.jsonl"))) == 2 and len(list(folder.glob("samples_*.jsonl"))) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_eval", "r.db"]  # nothing scattered beside it
    random_results = json.loads(next(folder.glob("results_random-*.json")).read_text())
    assert random_results["config"]["seed"] == 3
    notes = tmp_path / "notes.txt"  # an existing file not named .json: refused, not overwritten
    notes.write_text("mine")
    refused = run_cli("--db", db, "eval", "-m", str(tiny_path), *small, "-o", str(notes), data=shared_data, check=False)
    assert refused.returncode == 2 and "a name not ending in .json is a folder" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and notes.read_text() == "mine"


def test_full_model_is_computed_once(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run_cli("--db", str(db), "eval", "-m", str(tiny_path), "--plan", "skip", "--n", "1", *ARGS, data=shared_data)
    assert doc_count(db) == 4 * 30  # 2 tasks x (plan + full model)
    second = run_cli("--db", str(db), "eval", "-m", str(tiny_path), "--plan", "reverse", "--n", "0", *ARGS, data=shared_data)
    assert doc_count(db) == 6 * 30  # only the new plan's documents
    assert "60 documents to score" in second.stderr
    third = run_cli(
        "--db", str(db), "eval", "-m", str(tiny_path), "--plan", "reverse", *ARGS[:2], "--limit", "20", data=shared_data
    )
    assert "0 documents to score" in third.stderr  # a --limit subset of finished work


def test_killed_run_resumes_to_the_same_scores(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    args = ["eval", "-m", str(tiny_path), "--plan", "parallel", "--n", "0", *ARGS]
    run_cli("--db", str(tmp_path / "whole.db"), *args, "-o", str(tmp_path / "whole.json"), data=shared_data)

    db = tmp_path / "killed.db"
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data))
    total = stored_documents(tmp_path / "whole.db")
    stored, code, _ = interrupt_midway([CLI, "--db", str(db), *args], env, db, 10, total, signal.SIGKILL)
    assert code == -signal.SIGKILL and 10 <= stored < total
    assert stored_documents(db) < total  # cut short

    run_cli("--db", str(db), *args, "-o", str(tmp_path / "resumed.json"), data=shared_data)
    whole = json.loads((tmp_path / "whole.json").read_text())
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    for key in ("results", "full_model_results"):
        for task, block in whole[key].items():
            for metric, value in block.items():
                assert resumed[key][task][metric] == value
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM docs WHERE doc_index < 30").fetchone()[0] == 120
        dupes = con.execute("SELECT COUNT(*) FROM (SELECT run_id, doc_index FROM docs GROUP BY 1, 2 HAVING COUNT(*) > 1)")
        assert dupes.fetchone()[0] == 0


def test_generation_bar_counts_tokens(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    """gsm8k end to end on the tiny model: greedy generation, its bar in tokens/s, exact match scored."""
    result = run_cli(
        "--db",
        str(tmp_path / "g.db"),
        "eval",
        "-m",
        str(tiny_path),
        "--tasks",
        "gsm8k",
        "--limit",
        "2",
        "--num-fewshot",
        "0",
        "-o",
        str(tmp_path / "g.json"),
        "--log-samples",
        data=shared_data,
    )
    assert "tokens/s" in result.stderr
    block = json.loads((tmp_path / "g.json").read_text())["results"]["gsm8k"]
    assert block["exact_match,strict-match"] == 0.0  # a random model does not answer 'Question: ...#### 18'
    (log,) = tmp_path.glob("samples_gsm8k_*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]  # one per document and filter, as lm-eval
    assert [(r["doc_id"], r["filter"]) for r in records] == [(i, f) for i in (0, 1) for f in ("strict-match", "flexible-extract")]
    assert all(r["metrics"] == ["exact_match"] and len(r["filtered_resps"]) == 1 and "exact_match" in r for r in records)


def test_llama_cpp_short_flags_and_db_after_the_command(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "after.db"
    short = ["eval", "-m", str(tiny_path), "--tasks", "arc_easy", "--limit", "3", "-t", "2", "-c", "512", "-b", "128"]
    run_cli(*short, "-fa", "off", "-ngl", "0", "--db", str(db), "-o", str(tmp_path / "s.json"), data=shared_data)
    config = json.loads((tmp_path / "s.json").read_text())["config"]
    assert (config["n_ctx"], config["batch_size"]) == (512, 128)
    assert doc_count(db) == 3  # the store named after the command was used: the full model's 3 documents
    with sqlite3.connect(db) as con:
        settings = json.loads(con.execute("SELECT settings FROM runs").fetchone()[0])
    assert settings["flash_attn"] == "off" and settings["n_ctx"] == 512 and settings["batch_size"] == 128
    assert run_cli("--version", data=shared_data).stdout.startswith("painters-gguf ")


def test_tables_fit_80_columns(tiny_path: Path, shared_data: Path, tmp_path: Path) -> None:
    """At 80 columns every eval row stays on one line, the perplexity's exponent form included."""
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data), COLUMNS="80")
    args = ["--db", str(tmp_path / "w.db"), "eval", "-m", str(tiny_path), "--tasks", "arc_easy,lambada_openai", "--limit", "4"]
    result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 4 and any("perplexity" in row and "±" in row for row in rows)  # one line per metric

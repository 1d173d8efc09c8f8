"""Sweeps: plan grids as the paper defines them, hidden-state similarity against the numpy
reference, and a sweep killed mid-way that resumes to the store of an uninterrupted one."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faults import interrupt_midway, stored_documents
from tiny_llama import Reference, TinyWeights

from painters_gguf import sweeps, variants
from painters_gguf.errors import PaintersError, PlanError
from painters_gguf.outputs import RunInputs
from painters_gguf.plan import Plan
from painters_gguf.tasks import TASKS
from painters_gguf.variants import Variant

T = 32


def test_middle_grid_for_32_layers() -> None:
    points = sweeps.grid(Variant.SKIP, T)
    assert [p.n for p in points] == list(range(16))  # N from 0 to T//2 - 1
    assert [len(variants.middle(T, p.n)) for p in points][-1] == 1  # N = 15 gives M = 1
    assert points[0].plan == Plan.parse("0")  # N = 0 keeps layer 0 only: the middle is 1..31
    parallel = sweeps.grid(Variant.PARALLEL, T)
    assert list(parallel[-1].plan.executions()) == [(i,) for i in range(T)]  # parallel at N=15 is the full model
    looped = sweeps.grid(Variant.LOOPED_PARALLEL, T, iters=[3])
    assert list(looped[-1].plan.executions()) == [(i,) for i in range(16)] + [(16,)] * 3 + [(i,) for i in range(17, T)]
    assert looped[7].plan.text == "0-7,{8-24}x3,25-31"


def test_random_and_iteration_grids() -> None:
    random_points = sweeps.grid(Variant.RANDOM, T, seeds=10)
    assert len(random_points) == 16 * 10
    assert {p.seed for p in random_points} == set(range(10))
    fig10 = sweeps.grid(Variant.LOOPED_PARALLEL, T, iters=sweeps.parse_iters("1-6"))
    assert len(fig10) == 16 * 6 and {p.iters for p in fig10} == set(range(1, 7))


def test_single_layer_grids() -> None:
    assert [p.plan for p in sweeps.grid(Variant.SKIP_ONE, T)] == [variants.skip_one(T, n) for n in range(T)]
    assert len(sweeps.grid(Variant.SWAP, T)) == T - 1


def test_parse_options() -> None:
    assert sweeps.parse_variants("all") == list(variants.MIDDLE_VARIANTS)
    assert sweeps.parse_variants("skip, swap") == [Variant.SKIP, Variant.SWAP]
    with pytest.raises(PlanError, match="unknown variant 'skipp'"):
        sweeps.parse_variants("skipp")
    assert sweeps.parse_iters("3") == [3] and sweeps.parse_iters("2-4") == [2, 3, 4]
    for bad in ("0", "x", "3-1"):
        with pytest.raises(PaintersError):
            sweeps.parse_iters(bad)


@pytest.mark.parametrize("plan_text", [None, "0,{1-4}x2,5", "5-0"])
def test_similarity_matches_the_reference(tiny_model, tiny_weights: TinyWeights, plan_text: str | None) -> None:
    from painters_gguf.similarity import cosine_matrix, mean_similarity

    reference = Reference(tiny_weights)
    plan = variants.full(6) if plan_text is None else Plan.parse(plan_text)
    documents = [[3, 17, 42, 8, 96, 0, 55, 23], [5, 64, 30, 12, 88, 1, 49, 77, 9, 33, 60, 2]]
    with tiny_model.context(n_ctx=64, kv_type="f32", flash_attn="off") as ctx:
        ours = mean_similarity(ctx, None if plan_text is None else plan, documents)
    expected = np.mean([cosine_matrix(reference.hidden_states(doc, plan.executions())) for doc in documents], axis=0)
    assert ours.shape == (plan.n_steps + 1, plan.n_steps + 1)
    assert np.max(np.abs(ours - expected)) < 1e-4
    assert np.allclose(np.diag(ours), 1.0)


CLI = str(Path(sys.executable).with_name("painters-gguf"))


def store_contents(db: Path) -> dict[tuple, dict]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT r.plan, r.task, d.doc_index, d.result FROM docs d JOIN runs r ON r.id = d.run_id")
        return {(plan, task, index): json.loads(result) for plan, task, index, result in rows}


def test_killed_sweep_resumes_to_the_same_store(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    args = [
        "sweep",
        "-m",
        str(tiny_bpe_model.path),
        "--variant",
        "skip,reverse",
        "--tasks",
        "arc_easy",
        "--limit",
        "12",
        "--threads",
        "2",
        "--batch-size",
        "64",
    ]
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data), COLUMNS="200")
    whole = tmp_path / "whole.db"
    subprocess.run([CLI, "--db", str(whole), *args], env=env, check=True, capture_output=True, timeout=600)

    killed = tmp_path / "killed.db"
    total = stored_documents(whole)
    for at in (total // 4, total // 2):  # killed twice, midway, once a quarter and once half of it is stored
        stored, code, _ = interrupt_midway([CLI, "--db", str(killed), *args], env, killed, at, total, signal.SIGKILL)
        assert code == -signal.SIGKILL and at <= stored < total
        assert stored_documents(killed) < total  # cut short
    result = subprocess.run([CLI, "--db", str(killed), *args], env=env, check=True, capture_output=True, text=True, timeout=600)
    assert "skip: normalized scores" in result.stdout and "reverse: normalized scores" in result.stdout

    expected, actual = store_contents(whole), store_contents(killed)
    assert actual.keys() == expected.keys()
    # on 4 layers: full 0-3, skip 0 and 0-1,3, reverse 0,3-1; reverse at N=1 (M=1) is the full model's plan
    assert {plan for plan, _, _ in expected} == {"0-3", "0", "0-1,3", "0,3-1"}
    assert len(expected) == 12 * 4
    for key, result_a in expected.items():
        result_b = actual[key]
        assert result_b == result_a  # documents are packed the same way however the run was cut


def test_report_reads_the_store_and_plots(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data), COLUMNS="200")
    db = tmp_path / "r.db"
    common = ["-m", str(tiny_bpe_model.path), "--tasks", "arc_easy,winogrande", "--limit", "8"]

    def cli(*args: str, store: Path = db, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, "--db", str(store), *args], env=env, capture_output=True, text=True, check=check)

    before = cli("report", *common, "--variant", "skip,parallel")
    # nothing stored yet: no scores, and nothing written (report computes and writes nothing)
    assert "1.000" not in before.stdout
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    cli("sweep", *common, "--variant", "skip,parallel", "--threads", "2")
    plots = tmp_path / "figs"
    after = cli("report", *common, "--variant", "skip,parallel", "--plot", str(plots))
    # after the sweep: parallel at N=1 on 4 layers (M=1) is the full model
    shown = " ".join(after.stdout.split())  # titles wrap to their table's width
    assert "all variants" in shown and "1.000" in shown and "2 of 2 points scored" in shown
    for stem in ("fig-skip", "fig-parallel", "fig-variants"):
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (plots / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
    # other flags than the sweep's: the store's settings, and a word why
    other = cli("report", *common, "--variant", "skip", "--batch-size", "128")
    assert "no results with the settings given; showing those the store holds: " in other.stderr
    assert "batch_size=256" in other.stderr and "2 of 2 points scored" in " ".join(other.stdout.split())
    # without the sweep's --limit: what the store holds at the limit it holds, and a word why
    unlimited = cli("report", *common[:4], "--variant", "skip")
    held = re.search(r"the store holds the first (\d+) of every task: showing those \(as --limit \1\)", unlimited.stderr)
    assert held is not None and int(held.group(1)) >= 8, unlimited.stderr
    assert "nothing complete on all documents" in unlimited.stderr and "2 of 2 points scored" in " ".join(
        unlimited.stdout.split()
    )
    # from the store alone: no benchmark files, the same tables (each document's baseline from its stored result)
    with_data = cli("report", *common, "--variant", "skip,parallel")
    (tmp_path / "no-data").mkdir()
    alone = cli("report", *common, "--variant", "skip,parallel", "--data-dir", str(tmp_path / "no-data"))
    assert alone.stdout == with_data.stdout and "1.000" in alone.stdout
    assert "arc_easy, winogrande: no benchmark file in" in " ".join(alone.stderr.split())
    refused = cli("report", *common[:2], "--tasks", "lambada_openai", "--data-dir", str(tmp_path / "no-data"), check=False)
    assert refused.returncode == 2 and "lambada_openai: no benchmark file here and nothing in the store" in refused.stderr
    # what the store holds, without a model or data (the store command's own --db); an empty store is one line
    listing = subprocess.run([CLI, "store", "--db", str(db)], env=env, capture_output=True, text=True, check=True)
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.startswith("│")}
    assert "tiny-bpe.gguf" in listing.stdout and set(rows) == {"0-3 (full model)", "0-1,3", "0", "0,{1-3}"}
    assert all(cell.strip().isdigit() and int(cell) >= 8 for row in rows.values() for cell in row.split("│")[2:4])
    empty = cli("report", *common, "--variant", "skip", store=tmp_path / "empty.db", check=False)
    assert (
        empty.returncode == 0
        and len(empty.stdout.strip().splitlines()) == 1
        and "holds nothing for tiny-bpe.gguf" in empty.stdout
    )
    # a variant never swept is not ranked
    partial = cli("report", *common, "--variant", "skip,reverse")
    assert "reverse: 1 of 2 points scored on every task; left out of the summary" in " ".join(partial.stderr.split())
    assert "all variants" not in partial.stdout


def test_similarity_command_saves_the_matrix(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    from painters_gguf.similarity import mean_similarity

    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data), COLUMNS="200")
    target = tmp_path / "sim.npy"
    result = subprocess.run(
        [
            CLI,
            "similarity",
            "-m",
            str(tiny_bpe_model.path),
            "--plan",
            "reverse",
            "--n",
            "0",
            "--docs",
            "3",
            "--threads",
            "2",
            "-o",
            str(target),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "plan 0,3-1" in result.stdout and "over 3 LAMBADA documents" in result.stdout
    saved = np.load(target)
    csv_lines = target.with_suffix(".csv").read_text().splitlines()
    assert csv_lines[0] == "emb,0,1,2,3" and len(csv_lines) == 6
    assert np.allclose(np.loadtxt(target.with_suffix(".csv"), delimiter=",", skiprows=1), saved, atol=1e-6)
    # the command averages the first 3 LAMBADA documents under the reversed middle
    with (shared_data / "lambada_openai" / "test.jsonl").open() as f:
        texts = [json.loads(next(f))["text"] for _ in range(3)]
    documents = [tiny_bpe_model.tokenize(text) for text in texts]
    with tiny_bpe_model.context(n_ctx=max(map(len, documents)), n_batch=512, threads=2) as ctx:
        expected = mean_similarity(ctx, Plan.parse("0,3-1"), documents)
    assert saved.shape == (5, 5) and np.allclose(saved, expected, atol=1e-5)
    record = json.loads(target.with_suffix(".json").read_text())  # what it was computed from, beside it
    assert record == {
        "model": "tiny-bpe.gguf",
        "model_name": tiny_bpe_model.meta("general.name") or "tiny-bpe.gguf",
        "model_sha256": tiny_bpe_model.sha256,
        "n_layer": 4,
        "plan": "0,3-1",
        "documents": 3,
    }
    other_model = subprocess.run(
        [CLI, "--db", str(tmp_path / "r.db"), "report", "--tasks", "arc_easy", "--limit", "2", "--similarity", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # -m: the default model, SmolLM2, not the matrix's
    assert other_model.returncode == 2 and f"--similarity {target} was computed on tiny-bpe.gguf, not on" in other_model.stderr
    record = target.with_suffix(".json")
    for damaged in ("[1, 2]", '{"model": "m.gguf"}', "not json"):  # a record edited or written by something else
        record.write_text(damaged)
        refused = subprocess.run(
            [CLI, "--db", str(tmp_path / "r.db"), "report", "-m", str(tiny_bpe_model.path), "--similarity", str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert refused.returncode == 2 and f"{record}: not the record of a similarity matrix" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    store_named_like_the_record = subprocess.run(  # the record beside the matrix may not replace an input
        [CLI, "--db", str(record), "similarity", "-m", str(tiny_bpe_model.path), "--docs", "1", "-o", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (
        store_named_like_the_record.returncode == 2 and "is sim.json, an input of this run" in store_named_like_the_record.stderr
    )
    assert record.read_text() == "not json"
    bad = subprocess.run(
        [CLI, "similarity", "-m", str(tiny_bpe_model.path), "--docs", "0"], env=env, capture_output=True, text=True, timeout=600
    )
    assert bad.returncode == 2 and "--docs" in bad.stderr and "Traceback" not in bad.stderr


def test_near_chance_flags_a_full_model_at_its_baseline(shared_data: Path) -> None:
    from painters_gguf.evaluate import Settings, TaskScores, prepare
    from painters_gguf.tasks import TASKS

    prep = prepare(TASKS["winogrande"], shared_data, 10, Settings())
    assert prep.baseline == 0.5
    at_chance = TaskScores(prep.task, 200, {"acc": (0.515, 0.0354)}, {})  # WinoGrande on SmolLM2-135M
    above = TaskScores(prep.task, 200, {"acc": (0.62, 0.0344)}, {})
    warning = sweeps.near_chance(prep, at_chance)
    assert warning is not None and "0.5150 ± 0.0354" in warning and "baseline 0.5000" in warning
    assert sweeps.near_chance(prep, above) is None and sweeps.near_chance(prep, None) is None


def test_a_task_without_a_normalized_score_is_left_out_of_the_mean_and_the_figure(shared_data: Path, tmp_path: Path) -> None:
    """WinoGrande whose full model scores exactly its baseline 0.5: no normalized score; the mean
    is over the other tasks, a note says why, and the figure's legend names it."""
    from painters_gguf import figures
    from painters_gguf.evaluate import Settings, TaskScores, prepare
    from painters_gguf.tasks import TASKS

    prep = prepare(TASKS["winogrande"], shared_data, 10, Settings())
    note = sweeps.undefined_note(prep, TaskScores(prep.task, 10, {"acc": (0.5, 0.17)}, {}))
    assert note == (
        "winogrande: the full model's acc 0.5000 equals the baseline 0.5000, so it has no normalized score: "
        "left out of the mean and the figures"
    )
    assert sweeps.undefined_note(prep, TaskScores(prep.task, 10, {"acc": (0.6, 0.16)}, {})) is None
    points = sweeps.grid(Variant.SKIP, 6)
    both = {"arc_easy": 0.5, "winogrande": 0.5}
    cells = [
        sweeps.Cell(
            p, {"arc_easy": 0.2 * p.n, "winogrande": None}, both, {"arc_easy": 0.1, "winogrande": None}, dict.fromkeys(both, 10)
        )
        for p in points
    ]
    assert [c.mean for c in cells] == [0.0, 0.2, 0.4]  # arc_easy's alone
    incomplete = sweeps.Cell(points[0], {"arc_easy": 0.3, "winogrande": None}, {"arc_easy": 0.5, "winogrande": None})
    assert incomplete.mean is None  # winogrande not scored: no mean yet
    tasks = [TASKS["arc_easy"], TASKS["winogrande"]]
    written, _ = figures.variant_figure(tmp_path, RunInputs(), "tiny", Variant.SKIP, cells, tasks)
    svg = next(path for path in written if path.suffix == ".svg").read_text()
    assert "winogrande: left out (the full model at chance: no normalized score)" in svg


def test_the_similarity_figure_names_its_matrix_and_labels_its_scale(tmp_path: Path) -> None:
    from painters_gguf import figures

    record = figures.SimilarityRecord("m.gguf", "Tiny Model", "ab" * 32, 4, "0,3-1", 7)
    written = figures.similarity_figure(tmp_path, RunInputs(), "-m's model", figures.Similarity(np.eye(5), record))
    svg = next(path for path in written if path.suffix == ".svg").read_text()
    assert "Tiny Model" in svg and "mean over 7 LAMBADA documents" in svg and "mean cosine similarity" in svg
    assert "-m's model" not in svg


# points on a 6-layer model with 2 seeds and iterations 2-3: N runs 0..2, single layers 0..5 (swap: 0..4)
GRID_SIZES = {
    Variant.FULL: 1,
    Variant.SKIP: 3,
    Variant.MIDDLE_REPEAT: 3,
    Variant.REVERSE: 3,
    Variant.RANDOM: 3 * 2,
    Variant.PARALLEL: 3,
    Variant.LOOPED_PARALLEL: 3 * 2,
    Variant.SKIP_ONE: 6,
    Variant.SWAP: 5,
    Variant.PLANS: 2,  # the two texts given
}


@pytest.mark.parametrize("variant", list(Variant))
def test_every_variant_has_a_grid_a_help_line_and_a_figure(variant: Variant, tmp_path: Path) -> None:
    from painters_gguf import figures

    if variant == Variant.PLANS:
        points = sweeps.plan_grid(["0-5", "0,{1-4}x2,5"], 6)
    else:
        points = sweeps.grid(variant, 6, seeds=2, iters=(2, 3))
    assert len(points) == GRID_SIZES[variant] and {p.variant for p in points} == {variant}
    assert f"{variant.value} ({variants.VARIANTS[variant].help})" in variants.names_help(with_plans=True)
    cells = [sweeps.Cell(p, {"arc_easy": 0.5}, {"arc_easy": 0.6}, {"arc_easy": 0.1}, {"arc_easy": 20}) for p in points]
    written, note = figures.variant_figure(tmp_path, RunInputs(), "tiny", variant, cells, [TASKS["arc_easy"]])
    if len({p.n for p in points}) < figures.MIN_POINTS:  # the full model: one point, nothing to draw
        assert written == [] and note is not None and "no figure written" in note
    else:
        assert note is None
        assert [p.suffix for p in written] == [".png", ".svg"] and all(p.stat().st_size > 0 for p in written)


def cells_of(variant: Variant, scored_ns: set[int], n_layer: int = 6) -> list[sweeps.Cell]:
    """Cells of a variant's grid with arc_easy scored at the given N only."""
    return [
        sweeps.Cell(p, {"arc_easy": 0.5 if p.n in scored_ns else None}, {"arc_easy": 0.6 if p.n in scored_ns else None})
        for p in sweeps.grid(variant, n_layer, seeds=2)
    ]


def test_summary_ranks_only_complete_grids() -> None:
    """A variant with one stored point (at M=1 the full model's own plan) is not ranked at 1.0."""
    complete = cells_of(Variant.SKIP, {0, 1, 2})
    one_point = [
        dataclasses.replace(c, normalized={"arc_easy": 1.0}, raw={"arc_easy": 0.6}) if c.raw["arc_easy"] else c
        for c in cells_of(Variant.REVERSE, {2})
    ]
    summary, notes = sweeps.summarize(complete + one_point)
    assert set(summary) == {Variant.SKIP}
    assert summary[Variant.SKIP] == sweeps.Summary(mean=0.5, median=0.5, points=3, values=3)
    assert notes == ["reverse: 1 of 3 points scored on every task; left out of the summary (run sweep)"]


def test_summary_leaves_out_a_variant_with_no_normalized_score() -> None:
    cells = [dataclasses.replace(c, normalized={"arc_easy": None}) for c in cells_of(Variant.SKIP, {0, 1, 2})]
    summary, notes = sweeps.summarize(cells)
    assert summary == {} and notes == [
        "skip: no normalized score is defined (the full model is at chance); left out of the summary"
    ]


def test_report_shows_the_seeds_the_store_holds() -> None:
    cells = cells_of(Variant.RANDOM, {0, 1, 2})
    cells = [
        c if c.point.seed == 0 else dataclasses.replace(c, normalized={"arc_easy": None}, raw={"arc_easy": None}) for c in cells
    ]
    kept, note = sweeps.stored_seeds(cells, 10)
    assert {c.point.seed for c in kept} == {0} and len(kept) == 3
    assert note == "random: seeds 0 are scored at every N (asked 10); showing those"
    assert sweeps.stored_seeds(cells_of(Variant.SKIP, {0}), 10) == (cells_of(Variant.SKIP, {0}), None)


def test_compact_heatmaps_read_without_color() -> None:
    from rich.console import Console

    from painters_gguf.cli.render import heatmap

    console = Console(color_system=None, width=80, record=True)
    console.print(heatmap(np.array([[0.0, 0.5], [1.0, np.nan]]), ["a", "b"], ["x", "y"], None, compact=True))
    lines = [line.strip() for line in console.export_text().splitlines()]
    assert "a  ▒▒" in lines and "b██··" in lines  # low is blank, mid a half shade, high full, missing dotted


def test_sweep_compares_plan_texts_given(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(shared_data), COLUMNS="200")
    common = ["--db", str(tmp_path / "p.db"), "-m", str(tiny_bpe_model.path), "--tasks", "arc_easy", "--limit", "6"]
    plans = ["--plan", "0,3", "--plan", "0,{1-2}x2,3"]
    swept = subprocess.run([CLI, "sweep", *common, *plans], env=env, capture_output=True, text=True, check=True)
    shown = " ".join(swept.stdout.split())
    assert "plans: normalized scores, 2 of 2 points scored" in shown
    assert "0,{1-2}x2,3" in shown and "skip:" not in shown  # --plan alone: only the plans
    again = subprocess.run([CLI, "report", *common, *plans], env=env, capture_output=True, text=True, check=True)
    assert swept.stdout == again.stdout  # report reads the same cells back
    refused = subprocess.run([CLI, "sweep", *common, "--variant", "plans"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "give plans of your own with --plan TEXT" in refused.stderr

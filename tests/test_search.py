"""Plan search: the search space, the proxy and the scores by hand; on a tiny model whose scores are
known (the benchmark's answers are what a planted plan predicts), the search finds the planted plan;
its search and held-out items never overlap; a second run reads everything from the store."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from faults import interrupt_midway, stored_documents
from test_eval_cli import CLI, run_cli
from tiny_llama import TinyConfig, Vocab, random_weights, write_gguf

from painters_gguf import variants
from painters_gguf.candidates import Candidate, block_influence, last_token_angles, measure_proxies
from painters_gguf.engine.scoring import Scorer
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import Evaluator, PreparedTask, Settings, TaskScores, prepare
from painters_gguf.objectives import Objective
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model
from painters_gguf.search import Entry, Found, Scores, Search, _normalized, _rungs, paired_difference
from painters_gguf.store import Store
from painters_gguf.tasks import TASKS

N_LAYER = 8
WORDS = "apple river stone cloud music paper garden window silver orange forest candle bridge winter yellow rabbit".split()


def test_candidates_as_plans() -> None:
    assert Candidate(dropped=frozenset({2, 5})).plan(N_LAYER).text == "0-1,3-4,6-7"
    assert Candidate(repeat=(3, 4)).plan(N_LAYER).text == "0-4,3-7"
    assert Candidate(dropped=frozenset({4}), repeat=(2, 5)).plan(N_LAYER).text == "0-3,5,2-3,5-7"
    assert Candidate(parallel=frozenset({1})).plan(N_LAYER).text == "0,{1-2},3-7"
    assert Candidate(dropped=frozenset({2}), parallel=frozenset({1})).plan(N_LAYER).text == "0,{1,3},4-7"
    assert Candidate(dropped=frozenset({4}), repeat=(2, 5)).n_slots(N_LAYER) == 7 + 3
    assert not Candidate(dropped=frozenset({1, 2})).valid(N_LAYER, 5)  # over the budget
    assert not Candidate(parallel=frozenset({1, 2})).valid(N_LAYER, 8)  # overlapping pairs
    assert not Candidate(parallel=frozenset({7})).valid(N_LAYER, 8)  # no next layer
    assert not Candidate(dropped=frozenset({3}), repeat=(3, 4)).valid(N_LAYER, 9)  # repeats a dropped layer


def test_neighbours_are_one_change_away_and_within_the_budget() -> None:
    start = Candidate(dropped=frozenset({2, 5}))
    found = start.neighbours(N_LAYER, 6)
    dropped = {c.dropped for c in found if c.repeat is None and not c.parallel}
    kept = (0, 1, 3, 4, 6, 7)
    assert dropped == {frozenset({k, 5}) for k in kept} | {frozenset({2, k}) for k in kept}  # keeping one more is over 6
    assert all(c.valid(N_LAYER, 6) and c != start for c in found)
    assert {c.parallel for c in found if c.parallel} == {
        frozenset({a}) for a in (0, 1, 3, 4, 6)
    }  # the kept pairs 0-1, 1-3, ..., 6-7
    grown = Candidate(repeat=(3, 4)).neighbours(N_LAYER, 11)
    assert {c.repeat for c in grown if not c.dropped and not c.parallel} == {(2, 4), (4, 4), (3, 3), (3, 5), (2, 3), (4, 5)}


def test_paper_skip_and_influence_pruning_at_the_budget() -> None:
    search = Search.__new__(Search)
    search.n_layer, search.max_slots = 30, 22  # budget 0.75 of 30: drop 8
    assert search.paper_skip().plan(30) == variants.skip(30, 10)  # N=10 drops the 9 middle layers 11..19
    influence = np.array([5.0] * 30)
    influence[[3, 7, 8, 12, 20, 21, 25, 27]] = 1.0
    assert search.influence_pruning(influence).dropped == {3, 7, 8, 12, 20, 21, 25, 27}
    search.max_slots = 37  # above 1: nothing to drop, the paper's variants never beat the full model
    assert search.paper_skip() == Candidate()


@pytest.mark.parametrize("budget", [1.5, 2.0, 2.5, 4.0])
def test_random_candidates_fit_the_model_at_any_budget(budget: float) -> None:
    """Above 2 the room for repeats is larger than the model: the one repeated block is at most
    every layer again (a block past the last layer was a traceback)."""
    search = Search.__new__(Search)
    search.n_layer, search.max_slots = N_LAYER, int(budget * N_LAYER)
    rng = random.Random(0)
    for _ in range(200):
        candidate = search.random_candidate(rng)
        assert candidate.repeat is not None and 0 <= candidate.repeat[0] <= candidate.repeat[1] < N_LAYER
        assert candidate.valid(N_LAYER, search.max_slots)


def test_rungs() -> None:
    assert _rungs(8, 60) == [8, 24, 60]
    assert _rungs(8, 72) == [8, 24, 72]
    assert _rungs(4, 4) == [4]


def test_angular_distance_and_its_block_by_hand() -> None:
    """Gromov et al.: the contiguous block of n layers whose input and output are closest in angle
    at the last token is the one to drop."""
    e0, e1 = np.array([[9.0, 9.0], [1.0, 0.0]]), np.array([[9.0, 9.0], [0.0, 1.0]])
    angles = last_token_angles([e0, e1, e0])  # last tokens: x, y (90 degrees from x), x
    assert np.allclose(angles, [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]], atol=1e-6)  # arccos near 1: sqrt of rounding
    search = Search.__new__(Search)
    search.n_layer, search.max_slots = 6, 4  # drop 2
    angular = np.full((7, 7), 0.4)
    angular[3, 5] = angular[1, 3] = 0.1  # layers 3-4 and 1-2 equally close: the first wins
    assert search.angular_pruning(angular).dropped == {1, 2}
    angular[1, 3] = 0.2
    assert search.angular_pruning(angular).dropped == {3, 4}
    search.max_slots = 6
    assert search.angular_pruning(angular) == Candidate()


def test_block_influence_by_hand() -> None:
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([[1.0, 1.0], [0.0, 3.0]])  # token 0 turns 45 degrees, token 1 not at all
    z = -y
    assert np.allclose(block_influence([x, y, z]), [(1 - np.sqrt(0.5)) / 2, 2.0])


def task_scores(prep: PreparedTask, values: list[float]) -> TaskScores:
    from painters_gguf import metrics

    results = {i: {"acc_norm": v} for i, v in zip(prep.indices, values, strict=True)}
    return TaskScores(prep.task, len(values), {"acc_norm": metrics.aggregate("mean", values)}, results)


def test_normalized_scores_by_hand(shared_data: Path) -> None:
    prep = prepare(TASKS["arc_easy"], shared_data, 4, Settings(add_bos=False))  # 4 choices each: chance 0.25
    full = task_scores(prep, [1.0, 1.0, 0.0, 0.0])  # 0.5: the span over chance is 0.25
    plan = task_scores(prep, [1.0, 0.0, 1.0, 1.0])  # 0.75
    score = _normalized([(prep, plan)], {"arc_easy": full}, Objective.ACCURACY)
    assert score.mean == pytest.approx((0.75 - 0.25) / 0.25) and score.objective == pytest.approx(score.mean)
    assert score.stderr == pytest.approx(0.25 / 0.25)  # sample sd 0.5 over sqrt(4), divided by the span
    differences = np.array([0.0, -1.0, 1.0, 1.0])  # paired with the full model's documents
    assert score.vs_full == pytest.approx(differences.mean() / 0.25)
    assert score.vs_full_stderr == pytest.approx(differences.std(ddof=1) / 2 / 0.25)
    for below in ([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]):  # the full model at chance, or below: no ranking
        with pytest.raises(PaintersError, match="at or below chance"):
            _normalized([(prep, plan)], {"arc_easy": task_scores(prep, below)}, Objective.ACCURACY)


# --- a tiny model whose scores are known ---


@pytest.fixture(scope="module")
def tiny8(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    vocab = Vocab.from_gguf(smollm2_path)
    weights = random_weights(TinyConfig(n_vocab=len(vocab.tokens), n_layer=N_LAYER), seed=4)
    path = write_gguf(weights, tmp_path_factory.mktemp("tiny8") / "tiny8.gguf", vocab=vocab)
    with Model(path) as model:
        yield model


def evaluator(model: Model, db: Path) -> Evaluator:
    settings = Settings(batch_size=256).for_model(model.arch, model.n_layer)
    return Evaluator(Scorer(model, n_batch=256, n_ctx=2048, threads=2), Store(db), settings)


def planted_data(model: Model, planted: Plan, folder: Path, n_rows: int = 40) -> Path:
    """ARC-Easy rows of random words whose answer is the choice the planted plan prefers (acc_norm):
    the planted plan scores 1 on every item, and no plan can score more."""
    rng = random.Random(7)
    rows = [
        {
            "id": f"planted-{i}",
            "question": " ".join(rng.choices(WORDS, k=6)) + "?",
            "choices": {"text": [" ".join(rng.choices(WORDS, k=rng.randint(1, 3))) for _ in range(4)], "label": list("ABCD")},
            "answerKey": "A",
        }
        for i in range(n_rows)
    ]
    split = folder / "arc_easy" / "test.jsonl"
    split.parent.mkdir(parents=True)
    split.write_text("".join(json.dumps(row) + "\n" for row in rows))
    labelling = evaluator(model, folder / "labelling.db")  # its own store: these scores are for answer A
    prep = prepare(TASKS["arc_easy"], folder, None, labelling.settings)
    results = labelling.run(planted, prep).results
    labelling.store.close()
    for i, row in enumerate(rows):
        per_char = [ll / len(choice) for ll, choice in zip(results[i]["loglikelihoods"], row["choices"]["text"], strict=True)]
        row["answerKey"] = "ABCD"[max(range(4), key=per_char.__getitem__)]
    split.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "labelling.db").unlink()
    return folder


def run_search(
    model: Model,
    data: Path,
    db: Path,
    budget: float,
    read: list[int] | None = None,
    exportable: bool = False,
    surrogate_rounds: int = 0,
    phases: list[str] | None = None,
    confirm_items: int = 0,
) -> tuple[Found, Scores]:
    ev = evaluator(model, db)
    prepared = [prepare(TASKS["arc_easy"], data, None, ev.settings)]
    progress = read.append if read is not None else lambda n: None
    scores = Scores(  # the planted plan: best in accuracy
        ev, prepared, 16, 16, confirm_items=confirm_items, objective=Objective.ACCURACY, progress=progress
    )
    search = Search(
        scores,
        model.n_layer,
        budget,
        candidates=8,
        beam=2,
        rounds=4,
        first_items=4,
        seed=1,
        exportable=exportable,
        surrogate_rounds=surrogate_rounds,
        leaderboard=lambda phase, ranking: phases.append(phase) if phases is not None else None,
    )
    try:
        return search.run(measure_proxies(ev, prepared)), scores
    finally:
        ev.store.close()


@pytest.mark.parametrize(
    ("budget", "planted"),
    [(0.75, Candidate(dropped=frozenset({2, 5}))), (1.25, Candidate(repeat=(3, 4)))],
    ids=["skips", "repeat"],
)
def test_search_finds_the_planted_plan(tiny8: Model, tmp_path: Path, budget: float, planted: Candidate) -> None:
    plan = planted.plan(N_LAYER)
    data = planted_data(tiny8, plan, tmp_path / "data")
    found, scores = run_search(tiny8, data, tmp_path / "search.db", budget)
    held = {label: score for label, (_, score) in found.held_out.items()}
    # the planted plan scores 1 on every item: its normalized score is (1 - chance) / (full - chance)
    full = found.held_out["full model"][1]
    assert 0.3 < 0.25 + 0.75 / held["search #1"].mean < 0.9, "the full model should be between chance and the plan"
    assert found.search[0].plan == plan
    assert found.held_out["search #1"][0] == plan
    assert held["search #1"].mean == max(score.mean for score in held.values())
    assert full.mean == pytest.approx(1.0) and full.vs_full == 0.0
    # the verdict: the planted plan is best, ahead of the full model by its paired difference from it
    assert found.best == "search #1" and found.verdict()[0].startswith(f"best on held-out items: search #1, {plan.text}")
    assert found.versus["full model"] == pytest.approx((held["search #1"].vs_full, held["search #1"].vs_full_stderr))
    for label, (difference, stderr) in found.versus.items():  # ahead or behind only beyond two standard errors
        standing = "ahead of" if difference > 2 * stderr else "behind" if difference < -2 * stderr else "tied with"
        assert any(line.startswith(f"search #1 is {standing} ") and label in line for line in found.verdict()[1:])
    # not found by enumeration: the first halving started from 8 of the 28 (or 15) candidates
    assert found.documents["search"] > 0 and found.documents["random search"] > 0
    # SLEB drops layers one at a time: at 0.75 of 8 (2 dropped), 8 + 7 plans on the first rung's 4 items
    assert found.documents["SLEB"] == ((8 + 7) * 4 if budget < 1 else 0)

    # search and held-out items are disjoint, and every score read stayed on its side
    search_items = set(range(16))
    held_items = set(scores.held_out_sets["arc_easy"])
    assert held_items == set(range(16, 32))
    on_search = {i for phase, _, _, items in scores.evaluated if phase == "search" for i in items}
    on_held = {i for phase, _, _, items in scores.evaluated if phase == "held-out" for i in items}
    assert on_search <= search_items and on_held == held_items


def test_a_second_search_reads_everything_from_the_store(tiny8: Model, tmp_path: Path) -> None:
    """The rerun scores nothing; the overall progress counts the same documents (from the store at
    once), and the estimate the bar starts from is of their size."""
    data = planted_data(tiny8, Candidate(dropped=frozenset({1, 6})).plan(N_LAYER), tmp_path / "data")
    read: list[int] = []
    first, scores = run_search(tiny8, data, tmp_path / "search.db", 0.75, read)
    stored = stored_documents(tmp_path / "search.db")
    read_again: list[int] = []
    again, _ = run_search(tiny8, data, tmp_path / "search.db", 0.75, read_again)
    assert stored_documents(tmp_path / "search.db") == stored  # nothing left to score
    assert again == first
    assert sum(read_again) == sum(read) > 0
    estimate = Search(scores, N_LAYER, 0.75, candidates=8, beam=2, rounds=4, first_items=4).estimated_documents()
    assert 0.5 < sum(read) / estimate < 1.5, (sum(read), estimate)


def test_surrogate_rounds_run_after_the_beam_and_keep_the_planted_plan(tiny8: Model, tmp_path: Path) -> None:
    plan = Candidate(dropped=frozenset({2, 5})).plan(N_LAYER)
    data = planted_data(tiny8, plan, tmp_path / "data")
    plain, _ = run_search(tiny8, data, tmp_path / "search.db", 0.75)
    phases: list[str] = []
    found, _ = run_search(tiny8, data, tmp_path / "search.db", 0.75, surrogate_rounds=1, phases=phases)
    assert found.search[0].plan == plan
    assert any(phase.startswith("surrogate round 1, rung") for phase in phases)
    assert phases.index("beam after surrogate round 1") > max(i for i, p in enumerate(phases) if p.startswith("beam after round"))
    assert found.documents["search"] > plain.documents["search"]  # its candidates were new plans


def test_confirmation_items_rerank_the_final_beam_and_stay_apart(tiny8: Model, tmp_path: Path) -> None:
    """--confirm-items: the final beam is scored on the items after the search items and before the
    held-out ones, and re-ranked by them; those documents count as the search's."""
    plan = Candidate(dropped=frozenset({2, 5})).plan(N_LAYER)
    data = planted_data(tiny8, plan, tmp_path / "data")
    plain, _ = run_search(tiny8, data, tmp_path / "search.db", 0.75)
    phases: list[str] = []
    found, scores = run_search(tiny8, data, tmp_path / "search.db", 0.75, phases=phases, confirm_items=8)
    after_beam = max(i for i, p in enumerate(phases) if p.startswith("beam after round"))
    assert phases[after_beam + 1] == "the final beam on 8 confirmation items"  # then the baselines
    assert found.search[0].plan == plan and found.held_out["search #1"][0] == plan  # best on every item
    assert {e.plan for e in found.search} == {e.plan for e in plain.search}  # the same beam, items 0..15 alike
    assert [e.items for e in found.search] == [8, 8]
    assert found.documents["search"] == plain.documents["search"] + 2 * 8  # the beam of 2 on 8 more items, one task
    assert scores.confirm_sets["arc_easy"] == list(range(16, 24))
    assert scores.held_out_sets["arc_easy"] == list(range(24, 40))
    by_phase: dict[str, set[int]] = {}
    for phase, _, _, items in scores.evaluated:
        by_phase.setdefault(phase, set()).update(items)
    assert by_phase["search"] <= set(range(16)) and by_phase["confirmation"] == set(range(16, 24))
    assert by_phase["held-out"] == set(range(24, 40))


def test_confirmation_orders_the_beam_by_the_fresh_items_alone() -> None:
    """The beam's order on the search items is replaced by its order on the confirmation items
    (the first of equals keeps its place); without confirmation items it is left as it is."""
    plans = [Candidate(dropped=frozenset({k})) for k in (1, 2, 3)]
    beam = [Entry(c, c.plan(N_LAYER), score, 16) for c, score in zip(plans, (0.9, 0.8, 0.7), strict=True)]
    fresh = {plans[0]: 0.2, plans[1]: 0.5, plans[2]: 0.2}
    seen: list[str] = []

    class Confirming:
        confirm_items = 8

        def on_confirmation_items(self, asked: list[Plan]) -> dict[Plan, SimpleNamespace]:
            return {c.plan(N_LAYER): SimpleNamespace(objective=fresh[c]) for c in plans if c.plan(N_LAYER) in asked}

    search = Search.__new__(Search)
    search.scores, search.leaderboard = Confirming(), lambda phase, ranking: seen.append(phase)  # type: ignore[assignment]
    ranked = search.confirm(beam)
    assert [e.candidate for e in ranked] == [plans[1], plans[0], plans[2]]
    assert [(e.score, e.items) for e in ranked] == [(0.5, 8), (0.2, 8), (0.2, 8)]
    assert seen == ["the final beam on 8 confirmation items"]
    Confirming.confirm_items = 0
    assert search.confirm(beam) == beam


def test_exportable_search_stays_sequential(tiny8: Model, tmp_path: Path) -> None:
    """--exportable: no plan with a parallel step is scored, in any phase, and the planted plan is still found."""
    plan = Candidate(dropped=frozenset({2, 5})).plan(N_LAYER)
    data = planted_data(tiny8, plan, tmp_path / "data")
    found, scores = run_search(tiny8, data, tmp_path / "search.db", 0.75, exportable=True)
    assert found.search[0].plan == plan
    assert scores.evaluated and not [text for _, text, _, _ in scores.evaluated if "{" in text]
    every = run_search(tiny8, data, tmp_path / "search.db", 0.75)[1].evaluated
    assert [text for _, text, _, _ in every if "{" in text], "without --exportable, parallel pairs are searched too"


def test_sleb_drops_the_best_layer_at_each_step() -> None:
    """Each step scores every one-more removal from the current plan and keeps the best (the lowest
    layer of equals); its documents count as SLEB's, not the search's."""
    search = Search.__new__(Search)
    search.n_layer, search.max_slots, search.rungs, search.known = N_LAYER, 5, [4, 12], {}  # drop 3
    harm = {0: 9.0, 1: 1.0, 2: 5.0, 3: 0.5, 4: 0.5, 5: 4.0, 6: 2.0, 7: 9.0}
    seen: list[tuple[int, str]] = []

    def score(candidates: list[Candidate], n: int, phase: str) -> dict[Candidate, float]:
        seen.append((len(candidates), phase))  # 3 and 4 dropped together cost 3 more
        return {c: -sum(harm[layer] for layer in c.dropped) - (3.0 if {3, 4} <= c.dropped else 0.0) for c in candidates}

    search.score = score  # type: ignore[method-assign]
    # step 1: 3 and 4 tie at -0.5, the lower wins; step 2: 4 would cost 0.5 + 3, 1 costs 1; step 3: 4 (-4.5) vs 6 (-3.5)
    assert search.sleb_pruning() == Candidate(dropped=frozenset({3, 1, 6}))
    assert seen == [(8, "SLEB"), (7, "SLEB"), (6, "SLEB")]
    search.max_slots = N_LAYER
    assert search.sleb_pruning() == Candidate()


@pytest.mark.parametrize("exportable", [False, True])
def test_the_surrogate_proposes_unseen_plans_within_the_budget_and_learns_a_planted_objective(exportable: bool) -> None:
    """Trained on random plans whose objective is planted (dropping layers 6 and 7 costs nothing,
    any other layer 1 each), its best proposal is the planted plan; every proposal fits the budget
    (sequential when --exportable) and none was scored before."""
    search = Search.__new__(Search)
    search.n_layer, search.max_slots, search.seed, search.exportable, search.known = N_LAYER, 6, 0, exportable, {}
    search.rng = random.Random(0)
    rng = random.Random(1)
    for _ in range(60):
        candidate = search.random_candidate(rng)
        if rng.random() < 0.3 and not exportable:
            candidate = search.with_parallel_pair(rng, candidate)
        if search.allowed(candidate):
            search.known[(candidate, 8)] = -float(len(candidate.dropped - {6, 7}))
    planted = Candidate(dropped=frozenset({6, 7}))
    seen = {c for c, _ in search.known} - {planted}
    proposed = search.surrogate_candidates(seen, 10, beam=[])
    assert proposed and len(proposed) <= 10 and len(set(proposed)) == len(proposed)
    assert all(c.valid(N_LAYER, 6) and c not in seen for c in proposed)
    assert not exportable or not any(c.parallel for c in proposed)
    assert proposed[0].dropped == planted.dropped


def test_paired_difference_by_hand(shared_data: Path) -> None:
    prep = prepare(TASKS["arc_easy"], shared_data, 4, Settings(add_bos=False))
    full = task_scores(prep, [1.0, 1.0, 0.0, 0.0])  # span over chance 0.25
    a, b = task_scores(prep, [1.0, 1.0, 1.0, 0.0]), task_scores(prep, [0.0, 1.0, 0.0, 0.0])
    differences = np.array([1.0, 0.0, 1.0, 0.0])
    mean, stderr = paired_difference([(prep, full)], [a], [b])
    assert mean == pytest.approx(differences.mean() / 0.25)
    assert stderr == pytest.approx(differences.std(ddof=1) / 2 / 0.25)


def test_budgets_and_items_are_checked(tiny8: Model, tmp_path: Path, shared_data: Path) -> None:
    ev = evaluator(tiny8, tmp_path / "s.db")
    prepared = [prepare(TASKS["arc_easy"], shared_data, None, ev.settings)]
    with pytest.raises(PaintersError, match="fewer than the 2000 search items and 1000 held-out"):
        Scores(ev, prepared, 2000, 1000)
    with pytest.raises(PaintersError, match="fewer than the 10 search items, 3000 confirmation items and 10 held-out"):
        Scores(ev, prepared, 10, 10, confirm_items=3000)
    scores = Scores(ev, prepared, 10, 10)
    with pytest.raises(PaintersError, match="less than one block"):
        Search(scores, N_LAYER, 0.1)
    with pytest.raises(PaintersError, match="above 0, at most 4"):
        Search(scores, N_LAYER, 4.5)
    ev.store.close()


# --- the command ---

# the planted plan is the best in accuracy by construction (its probability of the gold answer need not be)
SEARCH = ["--tasks", "arc_easy", "--search-items", "16", "--held-out", "16", "--candidates", "8", "--beam", "2"]
SEARCH += ["--rounds", "2", "--first-items", "4", "--threads", "2", "--objective", "accuracy"]


@pytest.fixture(scope="module")
def planted_folder(tiny8: Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_data(tiny8, Candidate(dropped=frozenset({3, 4})).plan(N_LAYER), tmp_path_factory.mktemp("planted"))


def test_cli_search_killed_and_rerun_gives_the_same_result(tiny8: Model, planted_folder: Path, tmp_path: Path) -> None:
    """The search's JSON after a SIGKILL midway and a rerun equals that of a run never stopped
    (with a confirmation rung: the final beam re-ranked on 4 items after the search items)."""
    args = ["search", "-m", str(tiny8.path), "--budget", "0.75", *SEARCH, "--confirm-items", "4"]
    whole = run_cli("--db", str(tmp_path / "whole.db"), *args, "-o", f"{tmp_path / 'found'}/", data=planted_folder)
    (whole_json,) = (tmp_path / "found" / tiny8.path.stem).glob("search_0.75_*.json")  # a folder: as eval's -o
    whole_json.rename(tmp_path / "whole.json")
    assert "search #1" in whole.stdout and "0-2,5-7" in whole.stdout  # the planted plan, in the final table
    assert "best on held-out items: search #1, 0-2,5-7" in whole.stdout and "search #1 is ahead of full model" in whole.stdout
    total = stored_documents(tmp_path / "whole.db")
    db = tmp_path / "killed.db"
    env = dict(os.environ, PAINTERS_GGUF_DATA=str(planted_folder))
    stored, code, _ = interrupt_midway([CLI, "--db", str(db), *args], env, db, total // 2, total, signal.SIGKILL)
    assert code == -signal.SIGKILL and total // 2 <= stored < total
    run_cli("--db", str(db), *args, "-o", str(tmp_path / "resumed.json"), data=planted_folder)
    resumed, expected = (json.loads((tmp_path / name).read_text()) for name in ("resumed.json", "whole.json"))
    assert resumed == expected
    assert expected["held_out"]["search #1"]["plan"] == "0-2,5-7"
    assert (expected["search_items"], expected["confirm_items"], expected["held_out_items"]) == (16, 4, 16)
    assert [e["items"] for e in expected["search"]] == [4, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--budget", "0"], "--budget 0.0: give a fraction of the full model's block executions, above 0"),
        (["--budget", "9"], "Invalid value for '--budget'"),
        (["--budget", "0.05"], "less than one block of the model's 8"),
        (["--budget", "0.75", "--limit", "5"], "--limit: a search picks its items itself"),
        (["--budget", "0.75", "--tasks", "gsm8k"], "search scores log-likelihood tasks"),
        (["--budget", "0.75", "--search-items", "30"], "fewer than the 30 search items and 16 held-out items"),
        (["--budget", "0.75", "--candidates", "1"], "Invalid value for '--candidates'"),
        ([], "give --budget B, or --budgets B1,B2,..."),
        (["--budget", "0.75", "--budgets", "0.5,0.75"], "give --budget B, or --budgets B1,B2,..."),
        (["--budgets", "0.5,x"], "--budgets 0.5,x: 'x' is not a number"),
        (["--budgets", "0.5,9"], "--budget 9.0: give a fraction of the full model's block executions"),
        (["--budgets", "0.75,0.75"], "--budgets 0.75,0.75: a budget given twice"),
        (["--budget", "0.75", "--plot", "figures"], "--plot draws the frontier across budgets: give --budgets"),
        (["--budget", "0.75", "--objective", "kl"], "Invalid value for '--objective'"),
        (["--budget", "0.75", "--surrogate-rounds", "-1"], "Invalid value for '--surrogate-rounds'"),
        (["--budget", "0.75", "--confirm-items", "9"], "fewer than the 16 search items, 9 confirmation items and 16 held-out"),
        (["--budget", "0.75", "--confirm-items", "-1"], "Invalid value for '--confirm-items'"),
    ],
)
def test_cli_search_refusals(tiny8: Model, planted_folder: Path, tmp_path: Path, options: list[str], message: str) -> None:
    """One line and exit 2, nothing scored."""
    db = tmp_path / "s.db"
    args = ["--db", str(db), "search", "-m", str(tiny8.path), *SEARCH, *options]
    result = run_cli(*args, data=planted_folder, check=False)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert stored_documents(db) == 0


def test_cli_search_output_may_not_land_in_the_data(tiny8: Model, planted_folder: Path, tmp_path: Path) -> None:
    out = planted_folder / "arc_easy" / "found.json"
    args = ["--db", str(tmp_path / "s.db"), "search", "-m", str(tiny8.path), "--budget", "0.75", *SEARCH, "-o", str(out)]
    result = run_cli(*args, data=planted_folder, check=False)
    assert result.returncode == 2 and "inside the benchmark data folder" in result.stderr and not out.exists()


def test_cli_search_at_several_budgets_draws_the_frontier(tiny8: Model, planted_folder: Path, tmp_path: Path) -> None:
    """--budgets: one search per budget into one store, a table across budgets with the search
    against the best baseline, the frontier figure, and one JSON with every search."""
    args = ["--db", str(tmp_path / "s.db"), "search", "-m", str(tiny8.path), "--budgets", "1.25,0.75", *SEARCH]
    result = run_cli(*args, "--plot", str(tmp_path / "figures"), "-o", str(tmp_path / "found.json"), data=planted_folder)
    assert "held-out mean normalized score ± se by budget" in result.stdout
    assert "budget 0.75: at most 6 of 8" in result.stdout and "budget 1.25: at most 10 of 8" in result.stdout
    record = json.loads((tmp_path / "found.json").read_text())
    assert [s["budget"] for s in record["searches"]] == [0.75, 1.25] and record["objective"] == "accuracy"
    low = record["searches"][0]
    assert low["held_out"]["search #1"]["plan"] == "0-2,5-7" and low["documents"]["SLEB"] == (8 + 7) * 4
    gap = low["search_versus_best_baseline"]
    best_baseline = max(
        (
            label
            for label, row in low["held_out"].items()
            if not label.startswith("search") and label != "full model" and row["blocks"] <= 6
        ),
        key=lambda label: low["held_out"][label]["mean"],
    )
    assert gap["search"] == "search #1" and gap["baseline"] == best_baseline
    assert gap["ahead"] == (gap["difference"] > 2 * gap["stderr"])
    svg = (tmp_path / "figures" / "search-frontier.svg").read_text()
    assert (tmp_path / "figures" / "search-frontier.png").stat().st_size > 0 and "search − best baseline" in svg

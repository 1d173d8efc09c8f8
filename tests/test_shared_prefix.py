"""Sweeps that compute the layers plans share with the full model once per batch: the store they
write equals, document for document, the store of scoring plan by plan (tiny model and SmolLM2;
every middle variant; small windows; the full model already stored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from test_sweeps import store_contents
from tiny_llama import TinyConfig, Vocab, random_weights, write_gguf

from painters_gguf import sweeps, variants
from painters_gguf.engine import Compute, Engine, shared_prefix
from painters_gguf.engine.scoring import Scorer
from painters_gguf.engine.shared_prefix import remainder, shared_steps
from painters_gguf.evaluate import Evaluator, Settings, prepare
from painters_gguf.plan import Plan
from painters_gguf.runtime import Context, Model
from painters_gguf.store import Store
from painters_gguf.tasks import TASKS
from painters_gguf.variants import Variant

Grids = Mapping[Variant, Sequence[sweeps.Point]]


def test_donors_share_the_most_steps() -> None:
    """Each plan starts from the plan before it that shares the most leading steps with it: looped
    parallel from parallel (N layers and the parallel middle), the rest from the full model."""
    full = variants.full(30)
    parallel, looped, skip = Plan.parse("0-4,{5-24},25-29"), Plan.parse("0-4,{5-24}x3,25-29"), Plan.parse("0-4,25-29")
    runs = shared_prefix.plan_runs({looped: [1], skip: [1], parallel: [1]}, full, [[]] * 2)
    by_plan = {run.plan: run for run in runs}
    assert [run.plan for run in runs] == [full, skip, parallel, looped]  # the full model's run is added, first
    assert by_plan[full].donor is None and not by_plan[full].todo
    assert (by_plan[skip].donor, by_plan[skip].start) == (by_plan[full], 5)
    assert (by_plan[parallel].donor, by_plan[parallel].start) == (by_plan[full], 5)
    assert (by_plan[looped].donor, by_plan[looped].start) == (by_plan[parallel], 6)
    assert by_plan[looped].source == (by_plan[parallel], 0)  # the output of parallel's first step of its own
    assert by_plan[looped].graph_plan.text == "{5-24},{5-24},25-29"
    # a sweep of all middle variants: 30 + every plan's own steps
    assert shared_prefix.computed_blocks([parallel, looped, skip], 30) == 30 + 25 + 45 + 5


def test_shared_steps_and_remainder() -> None:
    assert shared_steps(Plan.parse("0-3,28-29"), 30) == 4
    assert remainder(Plan.parse("0-3,28-29"), 4) == Plan.parse("28-29")
    assert shared_steps(Plan.parse("0-2,{3-26}x3,27-29"), 30) == 3
    assert remainder(Plan.parse("0-2,{3-26}x2,29"), 3).text == "{3-26},{3-26},29"  # repeats unrolled
    assert shared_steps(Plan.parse("0-1,0,2-29"), 30) == 2
    assert shared_steps(Plan.parse("0x3,1-29"), 30) == 1  # layer 0 once, then layer 0 again: not layer 1
    assert shared_steps(Plan.parse("1-29"), 30) == 0 and shared_steps(Plan.parse("{0-1},2-29"), 30) == 0
    assert shared_steps(Plan.parse("0"), 30) == 0  # the plan keeps a step of its own
    assert shared_steps(Plan.parse("0-5"), 30) == 5
    # the full model's last layer computes only the output rows: its output is never shared
    assert shared_steps(Plan.parse("0-29,15"), 30) == 29


def sweep_store(
    model: Model,
    data: Path,
    db: Path,
    grids: Grids,
    tasks: Mapping[str, int],
    *,
    share: bool,
    batch_size: int = 256,
    n_ctx: int = 2048,
) -> dict[tuple, dict]:
    """Score the grids on the tasks (name -> limit) into a new store; its documents."""
    settings = Settings(batch_size=batch_size, n_ctx=n_ctx).for_model(model.arch, model.n_layer)
    prepared = [prepare(TASKS[name], data, limit, settings) for name, limit in tasks.items()]
    store = Store(db)
    try:
        scorer = Scorer(model, n_batch=batch_size, n_ctx=n_ctx, threads=2)
        evaluator = Evaluator(scorer, store, settings)
        sweeps.run(Engine(evaluator), grids, prepared, compute=Compute(share_prefix=share))
    finally:
        store.close()
    return store_contents(db)


def middle_grids(n_layer: int) -> dict[Variant, list[sweeps.Point]]:
    """Every middle variant at every N (random over 2 seeds, looped parallel x2)."""
    return {variant: sweeps.grid(variant, n_layer, seeds=2, iters=[2]) for variant in variants.MIDDLE_VARIANTS}


def spy_on_plans(monkeypatch: pytest.MonkeyPatch) -> list[Plan | None]:
    """Record every plan set on a context."""
    plans: list[Plan | None] = []
    set_plan = Context.set_plan

    def recording(ctx: Context, plan: Plan | None) -> None:
        plans.append(plan)
        set_plan(ctx, plan)

    monkeypatch.setattr(Context, "set_plan", recording)
    return plans


def assert_shared(grids: Grids, set_plans: Sequence[Plan | None], n_layer: int) -> None:
    """Every plan that shares layers ran only from a kept state: a remainder of it was set (from
    the full model's state or a later one), never the plan itself."""
    for point in (p for points in grids.values() for p in points):
        k = shared_steps(point.plan, n_layer)
        if k > 0 and not point.plan.is_identity(n_layer):
            assert point.plan not in set_plans, point.label
            steps = point.plan.n_steps
            assert any(remainder(point.plan, j) in set_plans for j in range(k, steps)), point.label


@pytest.fixture(scope="module")
def tiny8(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny random llama of 8 layers with SmolLM2's vocabulary: grids of 4 points per variant."""
    weights = random_weights(TinyConfig(n_vocab=len(Vocab.from_gguf(smollm2_path).tokens), n_layer=8), seed=2)
    path = write_gguf(weights, tmp_path_factory.mktemp("tiny8") / "tiny8.gguf", vocab=Vocab.from_gguf(smollm2_path))
    with Model(path) as model:
        yield model


# hellaswag documents are longer than a 64-token batch: their units are decoded in several chunks
TINY_TASKS = {"arc_easy": 10, "hellaswag": 6, "lambada_openai": 10}


@pytest.mark.parametrize(
    ("budget", "n_ctx"),
    [(shared_prefix.STATE_BUDGET, 2048), (1, 2048), (1, 64)],
    ids=["one-window", "a-window-per-batch", "documents-across-batches"],
)
def test_tiny_sweep_stores_what_plan_by_plan_stores(
    tiny8: Model, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int, n_ctx: int
) -> None:
    """With 64 cells of context, a hellaswag document is too long to share its prefix: one unit
    per request, and its requests land in several batches (and windows)."""
    grids = middle_grids(tiny8.n_layer)
    options = {"batch_size": 64, "n_ctx": n_ctx}
    plain = sweep_store(tiny8, shared_data, tmp_path / "plain.db", grids, TINY_TASKS, share=False, **options)
    monkeypatch.setattr(shared_prefix, "STATE_BUDGET", budget)
    set_plans = spy_on_plans(monkeypatch)
    shared = sweep_store(tiny8, shared_data, tmp_path / "shared.db", grids, TINY_TASKS, share=True, **options)
    assert_shared(grids, set_plans, tiny8.n_layer)
    assert shared.keys() == plain.keys()
    assert len(plain) == (len({p.plan for ps in grids.values() for p in ps} | {variants.full(8)})) * sum(TINY_TASKS.values())
    for key, result in plain.items():
        assert shared[key] == result, key


def test_plans_added_to_a_stored_full_model(tiny8: Model, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    """With the full model's documents stored, the kept states come from a pass over only the layers
    up to the last boundary needed; the plans' documents are the same."""
    grids = {Variant.SKIP: sweeps.grid(Variant.SKIP, 8)[:2]}  # N = 0, 1: states after layers 0 and 1 at most
    plain = sweep_store(tiny8, shared_data, tmp_path / "plain.db", grids, TINY_TASKS, share=False, batch_size=64)
    db = tmp_path / "resumed.db"
    sweep_store(tiny8, shared_data, db, {}, TINY_TASKS, share=False, batch_size=64)  # the full model alone
    set_plans = spy_on_plans(monkeypatch)
    resumed = sweep_store(tiny8, shared_data, db, grids, TINY_TASKS, share=True, batch_size=64)
    assert variants.full(8) not in set_plans and Plan.parse("0-2") in set_plans
    assert resumed == plain


def test_smollm2_sweep_stores_what_plan_by_plan_stores(
    smollm2: Model, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the real quantized model, whose numbers depend on every rounding: one N per variant, a
    short shared prefix (N=3) or a long one (N=12); parallel and looped parallel at the same N (the
    looped plan starts from the parallel plan's state)."""
    ns = {Variant.SKIP: 3, Variant.MIDDLE_REPEAT: 12, Variant.REVERSE: 3, Variant.RANDOM: 12}
    grids = {
        variant: [p for p in points if p.seed in (None, 0) and p.n == ns.get(variant, 5)]
        for variant, points in middle_grids(smollm2.n_layer).items()
    }
    tasks = {"arc_easy": 5, "lambada_openai": 4}
    plain = sweep_store(smollm2, shared_data, tmp_path / "plain.db", grids, tasks, share=False)
    set_plans = spy_on_plans(monkeypatch)
    shared = sweep_store(smollm2, shared_data, tmp_path / "shared.db", grids, tasks, share=True)
    assert_shared(grids, set_plans, smollm2.n_layer)
    assert shared == plain


def test_windows_keep_states_within_the_budget(tiny8: Model, monkeypatch: pytest.MonkeyPatch) -> None:
    """The states kept at once fit STATE_BUDGET, however many documents: memory does not grow."""
    from painters_gguf.requests import LoglikelihoodRequest

    scorer = Scorer(tiny8, n_batch=64)  # packing only: no context is made
    groups = [[LoglikelihoodRequest("a" + " word" * (i % 9), " end")] for i in range(200)]
    batches = scorer.batches(groups)
    runs = shared_prefix.plan_runs({p.plan: range(200) for p in sweeps.grid(Variant.SKIP, 8)}, variants.full(8), groups)
    needs = {b: shared_prefix._active(runs, units) for b, units in enumerate(batches)}

    def cost(b: int) -> int:
        kept = {(run.donor, run.start) for run in needs[b] if run.donor is not None}
        return sum(unit.n_tokens for unit in batches[b]) * tiny8.n_embd * 4 * len(kept)

    budget = 3 * max(cost(b) for b in needs)
    monkeypatch.setattr(shared_prefix, "STATE_BUDGET", budget)
    windows = list(shared_prefix._windows(scorer, batches, needs))
    assert [b for window in windows for b in window] == list(range(len(batches)))
    assert len(windows) >= len(batches) // 3 and all(sum(cost(b) for b in window) <= budget for window in windows)
    assert "ctx" not in vars(scorer)

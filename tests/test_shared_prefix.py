"""Sweeps that compute the layers plans share with the full model once per batch: the store they
write equals, document for document, the store of scoring plan by plan (tiny model and SmolLM2;
every middle variant; small windows; the full model already stored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from test_sweeps import store_contents
from tiny_llama import TinyConfig, Vocab, random_weights, write_gguf

from painters_gguf import shared_prefix, sweeps, variants
from painters_gguf.evaluate import Evaluator, Settings, prepare
from painters_gguf.plan import Plan
from painters_gguf.runtime import Context, Model
from painters_gguf.scoring import Scorer
from painters_gguf.shared_prefix import remainder, shared_steps
from painters_gguf.store import Store
from painters_gguf.tasks import TASKS
from painters_gguf.variants import Variant

Grids = Mapping[Variant, Sequence[sweeps.Point]]


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
    model: Model, data: Path, db: Path, grids: Grids, tasks: Mapping[str, int], *, share: bool, batch_size: int = 256
) -> dict[tuple, dict]:
    """Score the grids on the tasks (name -> limit) into a new store; its documents."""
    settings = Settings(batch_size=batch_size).for_model(model.arch, model.n_layer)
    prepared = [prepare(TASKS[name], data, limit, settings) for name, limit in tasks.items()]
    store = Store(db)
    try:
        evaluator = Evaluator(Scorer(model, n_batch=batch_size, threads=2), store, settings)
        sweeps.run(evaluator, grids, prepared, compute=True, share_prefix=share)
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
    """Every plan that shares layers ran only from its kept state: its remainder was set, never itself."""
    for point in (p for points in grids.values() for p in points):
        k = shared_steps(point.plan, n_layer)
        if k > 0 and not point.plan.is_identity(n_layer):
            assert remainder(point.plan, k) in set_plans, point.label
            assert point.plan not in set_plans, point.label


@pytest.fixture(scope="module")
def tiny8(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny random llama of 8 layers with SmolLM2's vocabulary: grids of 4 points per variant."""
    weights = random_weights(TinyConfig(n_vocab=len(Vocab.from_gguf(smollm2_path).tokens), n_layer=8), seed=2)
    path = write_gguf(weights, tmp_path_factory.mktemp("tiny8") / "tiny8.gguf", vocab=Vocab.from_gguf(smollm2_path))
    with Model(path) as model:
        yield model


# hellaswag documents are longer than a 64-token batch: their units are decoded in several chunks
TINY_TASKS = {"arc_easy": 10, "hellaswag": 6, "lambada_openai": 10}


@pytest.mark.parametrize("budget", [shared_prefix.STATE_BUDGET, 1], ids=["one-window", "a-window-per-batch"])
def test_tiny_sweep_stores_what_plan_by_plan_stores(
    tiny8: Model, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    grids = middle_grids(tiny8.n_layer)
    plain = sweep_store(tiny8, shared_data, tmp_path / "plain.db", grids, TINY_TASKS, share=False, batch_size=64)
    monkeypatch.setattr(shared_prefix, "STATE_BUDGET", budget)
    set_plans = spy_on_plans(monkeypatch)
    shared = sweep_store(tiny8, shared_data, tmp_path / "shared.db", grids, TINY_TASKS, share=True, batch_size=64)
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
    """On the real quantized model, whose numbers depend on every rounding: one N per variant,
    a short shared prefix (N=3) and a long one (N=12) in turn."""
    grids = {
        variant: [p for p in points if p.seed in (None, 0) and p.n == (3, 12)[i % 2]]
        for i, (variant, points) in enumerate(middle_grids(smollm2.n_layer).items())
    }
    tasks = {"arc_easy": 5, "lambada_openai": 4}
    plain = sweep_store(smollm2, shared_data, tmp_path / "plain.db", grids, tasks, share=False)
    set_plans = spy_on_plans(monkeypatch)
    shared = sweep_store(smollm2, shared_data, tmp_path / "shared.db", grids, tasks, share=True)
    assert_shared(grids, set_plans, smollm2.n_layer)
    assert shared == plain

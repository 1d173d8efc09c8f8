"""Score many plans on the same documents, computing the layers they share with the full model once.

Every middle variant at N begins with layers 0..N, as the full model does: for one decode batch the
residual stream after layer k is the same for the full model and for every plan that begins with
layers 0..k. So, batch by batch, the full model runs once and keeps the hidden state at each layer
boundary the plans need; each plan then starts from its boundary's state, given to llama.cpp as
embeddings input, under the rest of the plan. The numbers are those of scoring plan by plan: the
same batches, the same float32 state at the boundary, the same operations after it.

Batches are taken in windows whose kept states fit `STATE_BUDGET` bytes (memory does not grow with
the documents), and in each window every plan is set once. Every batch's documents are committed
to the store as they finish, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import numpy as np

from painters_gguf.evaluate import Evaluator, PreparedTask, Progress
from painters_gguf.hidden_states import HiddenStates, step_output
from painters_gguf.plan import Plan, Step
from painters_gguf.scoring import GroupResults, Layout, Unit, holds_any

# hidden states kept for one window of batches, at most (one batch is always taken)
STATE_BUDGET = 256 * 2**20


def shared_steps(plan: Plan, n_layer: int) -> int:
    """How many of the plan's first steps are the full model's layers 0, 1, .. one by one: k steps
    whose output is the full model's state after layer k-1. The plan keeps at least one step of
    its own, and the full model's last layer is never shared (it computes only the output rows)."""
    executions = list(plan.executions())
    limit = min(len(executions) - 1, n_layer - 1)
    k = 0
    while k < limit and executions[k] == (k,):
        k += 1
    return k


def remainder(plan: Plan, k: int) -> Plan:
    """The plan after its first k steps (repeats unrolled, as llama.cpp runs them)."""
    return Plan(tuple(Step(layers) for layers in list(plan.executions())[k:]))


@dataclasses.dataclass(eq=False)  # each run is its own: compared and hashed by identity
class _Run:
    """One plan's run on the task being scored."""

    plan: Plan
    run_id: int
    todo: set[int]
    shared: int  # steps shared with the full model (0: the full model itself)
    collected: GroupResults
    rest: Plan | None = None  # what runs after the shared steps (None: the full model)


def score_plans(evaluator: Evaluator, plans: Sequence[Plan], prepared: Sequence[PreparedTask], progress: Progress) -> None:
    """Score the plans that share leading layers with the full model on every log-likelihood task,
    with the full model, through the store. Plans sharing nothing and generation tasks are left to
    `Evaluator.run`, plan by plan."""
    n_layer = evaluator.model.n_layer
    sharing = [p for p in dict.fromkeys(plans) if p != evaluator.full_plan and shared_steps(p, n_layer) > 0]
    if not sharing:
        return
    for prep in prepared:
        if not prep.task.generation:
            _score_task(evaluator, sharing, prep, progress)


def _score_task(evaluator: Evaluator, plans: Sequence[Plan], prep: PreparedTask, progress: Progress) -> None:
    n_layer = evaluator.model.n_layer
    runs = []
    for plan in [evaluator.full_plan, *plans]:
        run_id, _, todo = evaluator.open_run(plan, prep)
        k = shared_steps(plan, n_layer) if plan != evaluator.full_plan else 0
        runs.append(_Run(plan, run_id, set(todo), k, GroupResults([]), remainder(plan, k) if k else None))
    if not any(run.todo for run in runs):
        return
    groups = evaluator.requests(prep, sorted(set().union(*(run.todo for run in runs))))
    for run in runs:
        run.collected = GroupResults(groups)
    batches = evaluator.scorer.batches(groups)
    needs = [[run for run in runs if holds_any(units, run.todo)] for units in batches]
    for window in _windows(evaluator, batches, needs):
        _score_window(evaluator, prep, [(Layout.of(batches[b]), batches[b], needs[b]) for b in window], progress)


def _boundaries(runs: Sequence[_Run]) -> set[int]:
    """The full model's steps whose output the runs start from."""
    return {run.shared - 1 for run in runs if run.shared}


def _windows(evaluator: Evaluator, batches: Sequence[Sequence[Unit]], needs: Sequence[list[_Run]]) -> Iterator[list[int]]:
    """Needed batches, consecutive ones together while their kept states fit STATE_BUDGET."""
    n_embd = evaluator.model.n_embd
    window: list[int] = []
    size = 0
    for b, runs in enumerate(needs):
        if not runs:
            continue
        tokens = sum(unit.n_tokens for unit in batches[b])
        cost = tokens * n_embd * 4 * len(_boundaries(runs))
        if window and size + cost > STATE_BUDGET:
            yield window
            window, size = [], 0
        window.append(b)
        size += cost
    if window:
        yield window


def _score_window(
    evaluator: Evaluator, prep: PreparedTask, window: Sequence[tuple[Layout, Sequence[Unit], list[_Run]]], progress: Progress
) -> None:
    """One pass of the full model over the window's batches, keeping the states the plans need
    (and storing the full model's documents where it needs them); then each plan from its state."""
    scorer, ctx = evaluator.scorer, evaluator.scorer.ctx
    boundaries = _boundaries([run for _, _, runs in window for run in runs])
    full_needed = any(run.shared == 0 for _, _, runs in window for run in runs)
    # the full model, or, when its documents are all stored, only the layers up to the last boundary
    last = max(boundaries, default=-1)
    source = evaluator.full_plan if full_needed or last + 2 >= evaluator.model.n_layer else Plan.sequential(range(last + 2))
    evaluator.set_plan(source, named_states=True)
    hidden = HiddenStates(evaluator.model.n_embd, {step_output(b) for b in boundaries})
    states: list[list[dict[str, np.ndarray]]] = []  # per batch, per chunk
    ctx.set_eval_callback(hidden.callback)
    try:
        for layout, units, runs in window:
            start = time.perf_counter()
            ctx.clear()
            rows, chunk_states = [], []
            for lo, hi in scorer.chunks(layout):
                rows.append(ctx.decode(layout.batch(lo, hi)))
                chunk_states.append(hidden.take())
            states.append(chunk_states)
            full = next((run for run in runs if run.shared == 0), None)
            if full is not None:
                _collect(evaluator, prep, full, layout, units, np.concatenate(rows), time.perf_counter() - start, progress)
    finally:
        ctx.set_eval_callback(None)
    plans = [run for _, _, runs in window for run in runs if run.shared]
    for run in dict.fromkeys(plans):  # each plan once, in the window's order
        assert run.rest is not None
        evaluator.set_plan(run.rest)
        name = step_output(run.shared - 1)
        for (layout, units, runs), chunk_states in zip(window, states, strict=True):
            if run in runs:
                start = time.perf_counter()
                logits = scorer.decode(layout, [chunk[name] for chunk in chunk_states])
                _collect(evaluator, prep, run, layout, units, logits, time.perf_counter() - start, progress)


def _collect(
    evaluator: Evaluator,
    prep: PreparedTask,
    run: _Run,
    layout: Layout,
    units: Sequence[Unit],
    logits: np.ndarray,
    seconds: float,
    progress: Progress,
) -> None:
    """Store the documents a batch finishes for a run."""
    run.collected.add(evaluator.scorer.results(layout, logits))
    finished = run.collected.finished(units)
    evaluator.store_results(run.run_id, prep, finished, [run.collected.of(g) for g in finished], seconds)
    progress(sum(1 for g in finished if g in run.todo))

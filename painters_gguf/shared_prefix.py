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
from collections.abc import Collection, Iterator, Mapping, Sequence

import numpy as np

from painters_gguf.evaluate import Evaluator, PreparedTask, Progress
from painters_gguf.hidden_states import HiddenStates, step_output
from painters_gguf.plan import Plan, Step
from painters_gguf.requests import LoglikelihoodResult
from painters_gguf.scoring import GroupResults, Layout, Scorer, Unit, holds_any

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
class PlanRun:
    """A plan to score on one task's batches: the documents it still needs, and how it runs."""

    plan: Plan
    todo: set[int]
    shared: int  # leading steps taken from the full model's kept state (0: from the tokens)
    is_full: bool  # the full model, whose pass keeps the states
    collected: GroupResults

    @property
    def graph_plan(self) -> Plan:
        return remainder(self.plan, self.shared) if self.shared else self.plan


# (run, the documents a batch finished for it, their requests' results, seconds)
Finished = tuple[PlanRun, list[int], list[list[LoglikelihoodResult]], float]


def plan_runs(
    todo: Mapping[Plan, Collection[int]], full_plan: Plan, groups: Sequence[Sequence[object]], *, share: bool = True
) -> list[PlanRun]:
    """A run per plan with documents to do (`share=False`: every plan from the tokens)."""
    n_layer = full_plan.n_steps
    return [
        PlanRun(
            plan,
            set(docs),
            shared_steps(plan, n_layer) if share and plan != full_plan else 0,
            plan == full_plan,
            GroupResults(groups),
        )
        for plan, docs in todo.items()
        if docs
    ]


def needed_batches(batches: Sequence[Sequence[Unit]], runs: Sequence[PlanRun]) -> list[int]:
    """The batches holding a document some run still needs."""
    return [b for b, units in enumerate(batches) if any(holds_any(units, run.todo) for run in runs)]


def score_batches(
    scorer: Scorer, runs: Sequence[PlanRun], batches: Sequence[Sequence[Unit]], indices: Sequence[int]
) -> Iterator[Finished]:
    """Score the runs on the batches at `indices`, window by window; yields what each decoded batch
    finishes for each run, as it finishes."""
    needs = {b: [run for run in runs if holds_any(batches[b], run.todo)] for b in indices}
    for window in _windows(scorer, batches, needs):
        yield from _score_window(scorer, [(Layout.of(batches[b]), batches[b], needs[b]) for b in window])


def score_plans(evaluator: Evaluator, plans: Sequence[Plan], prepared: Sequence[PreparedTask], progress: Progress) -> None:
    """Score the plans and the full model on every log-likelihood task through the store, each plan
    going on from the state it shares with the full model. Generation tasks are left to
    `Evaluator.run`, plan by plan."""
    for prep in prepared:
        if prep.task.generation:
            continue
        run_ids, todo = {}, {}
        for plan in dict.fromkeys([evaluator.full_plan, *plans]):
            run_ids[plan], _, todo[plan] = evaluator.open_run(plan, prep)
        if not any(todo.values()):
            continue
        groups = evaluator.requests(prep, sorted(set().union(*todo.values())))
        runs = plan_runs(todo, evaluator.full_plan, groups)
        batches = evaluator.scorer.batches(groups)
        for run, finished, results, seconds in score_batches(evaluator.scorer, runs, batches, needed_batches(batches, runs)):
            evaluator.store_results(run_ids[run.plan], prep, finished, results, seconds)
            progress(sum(1 for g in finished if g in run.todo))


def _boundaries(runs: Sequence[PlanRun]) -> set[int]:
    """The full model's steps whose output the runs start from."""
    return {run.shared - 1 for run in runs if run.shared}


def _windows(scorer: Scorer, batches: Sequence[Sequence[Unit]], needs: Mapping[int, list[PlanRun]]) -> Iterator[list[int]]:
    """The batches in order, consecutive ones together while their kept states fit STATE_BUDGET."""
    window: list[int] = []
    size = 0
    for b, runs in needs.items():
        tokens = sum(unit.n_tokens for unit in batches[b])
        cost = tokens * scorer.model.n_embd * 4 * len(_boundaries(runs))
        if window and size + cost > STATE_BUDGET:
            yield window
            window, size = [], 0
        window.append(b)
        size += cost
    if window:
        yield window


def _score_window(scorer: Scorer, window: Sequence[tuple[Layout, Sequence[Unit], list[PlanRun]]]) -> Iterator[Finished]:
    """One pass of the full model over the window's batches, keeping the states the plans need
    (and scoring the full model where it is needed); then each other plan, from its state or, if it
    shares nothing, from the tokens."""
    runs = list(dict.fromkeys(run for _, _, needing in window for run in needing))  # in the window's order
    boundaries = _boundaries(runs)
    full = next((run for run in runs if run.is_full), None)
    if full is not None or boundaries:
        # the full model, or, when it needs nothing here, only the layers up to the last boundary
        n_layer = scorer.model.n_layer
        last = max(boundaries, default=n_layer)
        source = full.plan if full is not None or last + 2 >= n_layer else Plan.sequential(range(last + 2))
        yield from _keep_states(scorer, source, full, window, boundaries)
    for run in runs:
        if run.is_full:
            continue
        scorer.set_plan(run.graph_plan)
        for layout, units, needing in window:
            if run in needing:
                start = time.perf_counter()
                inputs = [chunk[step_output(run.shared - 1)] for chunk in layout.states] if run.shared else None
                logits = scorer.decode(layout, inputs)
                yield _finished(scorer, run, layout, units, logits, time.perf_counter() - start)
    for layout, _, _ in window:
        layout.states = []  # the window's memory goes


def _keep_states(
    scorer: Scorer,
    source: Plan,
    full: PlanRun | None,
    window: Sequence[tuple[Layout, Sequence[Unit], list[PlanRun]]],
    boundaries: set[int],
) -> Iterator[Finished]:
    """Run `source` over the window's batches, keeping each chunk's states at the boundaries on its
    layout; the full model's documents are scored where it needs them."""
    scorer.set_plan(source, named_states=True)
    hidden = HiddenStates(scorer.model.n_embd, {step_output(b) for b in boundaries})
    ctx = scorer.ctx
    ctx.set_eval_callback(hidden.callback)
    try:
        for layout, units, needing in window:
            start = time.perf_counter()
            ctx.clear()
            rows = []
            for lo, hi in scorer.chunks(layout):
                rows.append(ctx.decode(layout.batch(lo, hi)))
                layout.states.append(hidden.take())
            if full is not None and full in needing:
                yield _finished(scorer, full, layout, units, np.concatenate(rows), time.perf_counter() - start)
    finally:
        ctx.set_eval_callback(None)


def _finished(
    scorer: Scorer, run: PlanRun, layout: Layout, units: Sequence[Unit], logits: np.ndarray, seconds: float
) -> Finished:
    run.collected.add(scorer.results(layout, logits))
    finished = run.collected.finished(units)
    return run, finished, [run.collected.of(g) for g in finished], seconds

"""Score many plans on the same documents, computing the steps they have in common once.

Every middle variant at N begins with layers 0..N, as the full model does, and looped parallel
begins as parallel does (0..N, then the parallel middle): for one decode batch, the residual
stream after those common steps is the same for every plan that begins with them. So each plan
takes a donor, the plan before it with which it shares the most leading steps (the full model
first, then plans with fewer steps); batch by batch a donor runs first and keeps the hidden states
its recipients start from (read out of the graph by name); each recipient then runs the rest of its
plan from its state, given to llama.cpp as embeddings input. The numbers are those of scoring plan
by plan: the same batches, the same float32 state, the same operations after it.

Batches are taken in windows whose kept states fit `STATE_BUDGET` bytes (memory does not grow with
the documents), and in each window every plan is set once. Every batch's documents are committed
to the store as they finish, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

import numpy as np

from painters_gguf.engine.hidden_states import HiddenStates, step_output
from painters_gguf.engine.scoring import GroupResults, Layout, Scorer, Unit, holds_any
from painters_gguf.evaluate import Evaluator, PreparedTask, Progress
from painters_gguf.plan import Plan, Step
from painters_gguf.requests import LoglikelihoodRequest, LoglikelihoodResult

# hidden states kept for one window of batches, at most (one batch is always taken)
STATE_BUDGET = 256 * 2**20


def common_steps(plan: Plan, donor: Plan) -> int:
    """How many leading steps a plan can take from a donor's state: the steps they share, but the
    plan keeps a step of its own, and the donor's last step (which computes only the output
    rows) is never shared."""
    mine, theirs = list(plan.executions()), list(donor.executions())
    limit = min(len(mine) - 1, len(theirs) - 1)
    k = 0
    while k < limit and mine[k] == theirs[k]:
        k += 1
    return k


def shared_steps(plan: Plan, n_layer: int) -> int:
    """The leading steps a plan shares with the full model of n_layer layers (`common_steps`)."""
    return common_steps(plan, Plan.sequential(range(n_layer)))


def remainder(plan: Plan, k: int) -> Plan:
    """The plan after its first k steps (repeats unrolled, as llama.cpp runs them)."""
    return _unrolled(plan, k, None)


def _unrolled(plan: Plan, start: int, stop: int | None) -> Plan:
    """Steps start..stop-1 of the plan, repeats unrolled."""
    return Plan(tuple(Step(layers) for layers in list(plan.executions())[start:stop]))


@dataclasses.dataclass(eq=False)  # each run is its own: compared and hashed by identity
class PlanRun:
    """A plan to score on one task's batches: the documents it still needs, and where it starts."""

    plan: Plan
    todo: set[int]
    collected: GroupResults
    start: int = 0  # leading steps taken from the donor's state (0: from the tokens)
    donor: PlanRun | None = None

    @property
    def graph_plan(self) -> Plan:
        return remainder(self.plan, self.start) if self.start else self.plan

    @property
    def source(self) -> tuple[PlanRun, int] | None:
        """(donor, the step of the donor's graph whose output this run starts from)."""
        return None if self.donor is None else (self.donor, self.start - 1 - self.donor.start)


# (run, the documents a batch finished for it, their requests' results, seconds)
Finished = tuple[PlanRun, list[int], list[list[LoglikelihoodResult]], float]


def plan_runs(
    todo: Mapping[Plan, Collection[int]], full_plan: Plan, groups: Sequence[Sequence[object]], *, share: bool = True
) -> list[PlanRun]:
    """A run per plan with documents to do and, when sharing, the full model's (which the others
    start from, needed or not), in the order they run: each donor before its recipients."""
    runs = [PlanRun(plan, set(docs), GroupResults(groups)) for plan, docs in todo.items() if docs or plan == full_plan]
    if not share:
        return [run for run in runs if run.todo]
    if full_plan not in todo:
        runs.append(PlanRun(full_plan, set(), GroupResults(groups)))
    runs.sort(key=lambda run: (run.plan != full_plan, run.plan.n_steps))  # donors first: the full model, then short plans
    for i, run in enumerate(runs):
        candidates = [(common_steps(run.plan, donor.plan), -j, donor) for j, donor in enumerate(runs[:i])]
        k, _, donor = max(candidates, key=lambda c: c[:2], default=(0, 0, None))
        while donor is not None and k <= donor.start:  # that state is computed by the donor's own donor
            donor = donor.donor
        if donor is not None and k > 0:
            run.donor, run.start = donor, k
    return runs


def computed_blocks(plans: Sequence[Plan], n_layer: int) -> int:
    """Block executions per token to score the plans and the full model with shared steps."""
    full = Plan.sequential(range(n_layer))
    return sum(run.graph_plan.n_slots for run in plan_runs({plan: [0] for plan in [full, *plans]}, full, [[]]))


def packed(
    evaluator: Evaluator, prepared: PreparedTask, todo: Mapping[Plan, Collection[int]]
) -> tuple[list[list[LoglikelihoodRequest]], list[list[Unit]], list[int]]:
    """The task's requests packed as a full run packs them, up to the last batch a plan needs
    (`todo`: each plan's documents still to do, some), and the batches that hold one of them:
    (requests per document, batches, the needed batches)."""
    groups = evaluator.requests(prepared, sorted(set().union(*todo.values())))
    batches = evaluator.scorer.batches(groups)
    return groups, batches, needed_batches(batches, [set(docs) for docs in todo.values()])


def needed_batches(batches: Sequence[Sequence[Unit]], todo: Iterable[Collection[int]]) -> list[int]:
    """The batches holding a document one of the `todo` sets (a plan's each) still needs."""
    todo = list(todo)
    return [b for b, units in enumerate(batches) if any(holds_any(units, docs) for docs in todo)]


def score_batches(
    scorer: Scorer, runs: Sequence[PlanRun], batches: Sequence[Sequence[Unit]], indices: Sequence[int]
) -> Iterator[Finished]:
    """Score the runs (in `plan_runs` order) on the batches at `indices`, window by window; yields
    what each decoded batch finishes for each run, as it finishes."""
    active = {b: _active(runs, batches[b]) for b in indices}
    for window in _windows(scorer, batches, active):
        yield from _score_window(scorer, runs, {b: (Layout.of(batches[b]), batches[b], active[b]) for b in window})


def score_plans(
    evaluator: Evaluator,
    plans: Sequence[Plan],
    prepared: Sequence[PreparedTask],
    progress: Callable[[Plan, PreparedTask], Progress],
) -> None:
    """Score the plans and the full model on every log-likelihood task through the store, each plan
    going on from the state of its donor. Generation tasks are left to `Evaluator.run`, plan by plan."""
    for prep in prepared:
        if prep.task.generation:
            continue
        opened = evaluator.open_runs(plans, prep)
        todo = {plan: docs for plan, (_, docs) in opened.items()}
        if not any(todo.values()):
            continue
        groups, batches, needed = packed(evaluator, prep, todo)
        runs = plan_runs(todo, evaluator.full_plan, groups)
        for run, finished, results, seconds in score_batches(evaluator.scorer, runs, batches, needed):
            evaluator.store_results(opened[run.plan][0], prep, finished, results, seconds)
            progress(run.plan, prep)(sum(1 for g in finished if g in run.todo))


def _active(runs: Sequence[PlanRun], units: Sequence[Unit]) -> list[PlanRun]:
    """The runs that decode a batch: those needing one of its documents, and their donors."""
    active = {run for run in runs if holds_any(units, run.todo)}
    for run in reversed(runs):  # recipients come after their donors
        if run in active and run.donor is not None:
            active.add(run.donor)
    return [run for run in runs if run in active]


def _kept(active: Sequence[PlanRun]) -> set[tuple[PlanRun, int]]:
    """The states a batch keeps: (donor, step of its graph) of every active recipient."""
    return {run.source for run in active if run.source is not None}


def _windows(scorer: Scorer, batches: Sequence[Sequence[Unit]], active: Mapping[int, list[PlanRun]]) -> Iterator[list[int]]:
    """The batches in order, consecutive ones together while their kept states fit STATE_BUDGET."""
    window: list[int] = []
    size = 0
    for b, runs in active.items():
        cost = sum(unit.n_tokens for unit in batches[b]) * scorer.model.n_embd * 4 * len(_kept(runs))
        if window and size + cost > STATE_BUDGET:
            yield window
            window, size = [], 0
        window.append(b)
        size += cost
    if window:
        yield window


def _score_window(
    scorer: Scorer, runs: Sequence[PlanRun], window: Mapping[int, tuple[Layout, Sequence[Unit], list[PlanRun]]]
) -> Iterator[Finished]:
    """Each run over the window's batches where it is active, donors first; a donor keeps the
    states its recipients start from, a recipient starts from its state."""
    states: dict[tuple[PlanRun, int, int], list[np.ndarray]] = {}  # (donor, step, batch) -> per chunk
    for run in runs:
        mine = [b for b, (_, _, active) in window.items() if run in active]
        if not mine:
            continue
        wanted = {b: {step for donor, step in _kept(window[b][2]) if donor is run} for b in mine}
        steps = set().union(*wanted.values())
        graph = run.graph_plan
        if steps and not any(holds_any(window[b][1], run.todo) for b in mine):  # a donor only: up to its last kept state
            graph = _unrolled(graph, 0, max(steps) + 2)
        scorer.set_plan(graph, named_states=bool(steps))
        hidden = HiddenStates(scorer.model.n_embd, {step_output(step) for step in steps}) if steps else None
        scorer.ctx.set_eval_callback(hidden.observe if hidden else None)
        try:
            for b in mine:
                layout, units, _ = window[b]
                inputs = states.get((*run.source, b)) if run.source is not None else None
                start = time.perf_counter()
                logits, kept = _decode(scorer, layout, inputs, hidden)
                for step in wanted[b]:
                    states[run, step, b] = [chunk[step_output(step)] for chunk in kept]
                if holds_any(units, run.todo):
                    yield _finished(scorer, run, layout, units, logits, time.perf_counter() - start)
        finally:
            scorer.ctx.set_eval_callback(None)


def _decode(
    scorer: Scorer, layout: Layout, inputs: list[np.ndarray] | None, hidden: HiddenStates | None
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """A layout decoded from an empty cache, chunk by chunk, from the tokens or `inputs` (a state
    per chunk); the logits of its output rows, and each chunk's named states."""
    kept: list[dict[str, np.ndarray]] = []
    logits = scorer.decode(layout, inputs, after_chunk=lambda: kept.append(hidden.take() if hidden is not None else {}))
    return logits, kept


def _finished(
    scorer: Scorer, run: PlanRun, layout: Layout, units: Sequence[Unit], logits: np.ndarray, seconds: float
) -> Finished:
    run.collected.add(scorer.results(layout, logits))
    finished = run.collected.finished(units)
    return run, finished, [run.collected.of(g) for g in finished], seconds

"""The one entry point for scoring plans: `Engine.score(plans, prepared)`.

    engine = Engine(evaluator)
    scores = engine.score([plan], prepared)            # the plan and the full model, every task
    scores[plan][0].scores["acc"], scores[engine.full_plan][0]

It chooses how the documents still missing from the results store are computed (`Compute`):
sharing the steps plans have in common (`shared_prefix`, the default), plan after plan, or on Ray
workers (`distributed`). However they are computed, every score is committed to the store as its
document finishes and read back from it, so the numbers are the same and an interrupted run
resumes. eval, sweep, search (and whatever serves plans next) call this, not the ways beneath it.

Beneath it, the engine's own modules:
    scoring        requests packed into decode batches (`Scorer`), log-likelihoods, greedy generation
    packing        the packing's constants (batch width, name), which the store keys carry
    shared_prefix  donors, decode windows and the hidden states kept between plans
    hidden_states  the states read out of the graph through the eval callback
    distributed    work units and workers on Ray; the driver alone writes the store
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from painters_gguf.plan import Plan

if TYPE_CHECKING:  # evaluate imports engine.packing, which runs this file first
    from painters_gguf.evaluate import Evaluator, PreparedTask, Progress, TaskScores

# which progress callback each (plan, task) reports to
ProgressFor = Callable[[Plan, "PreparedTask"], "Progress"]


def no_progress(plan: Plan, prepared: PreparedTask) -> Progress:
    return lambda n: None


@dataclasses.dataclass(frozen=True)
class RayCompute:
    """Where a sweep runs on Ray and what each worker needs to set up as the driver is."""

    address: str  # local (a new instance here), auto (the running cluster), HOST:PORT or ray://HOST:PORT
    workers: int | None  # None: as many as the cluster has room for
    model: str | None  # a catalog name each worker fetches, or a path every worker can read
    data: Path
    limit: int | float | None  # a count, or below 1 a fraction (lm-eval's --limit)
    threads: int
    n_gpu_layers: int
    log: Callable[[str], None] = dataclasses.field(default=lambda line: None, compare=False)  # where the cluster is said


@dataclasses.dataclass(frozen=True)
class Compute:
    """How the missing documents are computed: locally, sharing prefixes between plans or plan by
    plan (the same numbers), or on a Ray cluster (`ray`: where and how many workers)."""

    share_prefix: bool = True
    ray: RayCompute | None = None


class Engine:
    """Scores plans on prepared tasks through one model's evaluator and its results store."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    @property
    def full_plan(self) -> Plan:
        return self.evaluator.full_plan

    def with_full_model(self, plans: Sequence[Plan]) -> list[Plan]:
        """The full model first, then the plans, each once."""
        return list(dict.fromkeys([self.full_plan, *plans]))

    def check(self, plans: Sequence[Plan]) -> None:
        """Refuse, before any work, the largest of the plans if the model cannot run it or its KV
        cache does not fit (every plan is checked again, in Python and C, when it is set)."""
        self.evaluator.scorer.ctx.check_plan(max(plans, key=lambda plan: plan.n_slots))

    def todo(self, plans: Sequence[Plan], prepared: Sequence[PreparedTask]) -> int:
        """Documents the store still lacks for the plans and the full model on the tasks."""
        return sum(self.evaluator.todo(plan, prep) for plan in self.with_full_model(plans) for prep in prepared)

    def score(
        self,
        plans: Sequence[Plan],
        prepared: Sequence[PreparedTask],
        *,
        compute: Compute = Compute(),
        progress: ProgressFor = no_progress,
    ) -> dict[Plan, list[TaskScores]]:
        """The scores of each plan and of the full model on every task (in `prepared`'s order),
        computing first what the store lacks. `progress(plan, task)` is told of each document
        scored for that plan on that task."""
        every = self.with_full_model(plans)
        if compute.ray is not None:
            from painters_gguf.engine import distributed

            distributed.score_on_ray(self.evaluator, every, prepared, compute.ray, progress)
        elif compute.share_prefix:
            from painters_gguf.engine import shared_prefix

            shared_prefix.score_plans(self.evaluator, every, prepared, progress)
        # what is left (generation tasks, or everything plan by plan) is computed here; the rest read
        return {plan: [self.evaluator.run(plan, prep, progress(plan, prep)) for prep in prepared] for plan in every}

    def stored(self, plans: Sequence[Plan], prepared: Sequence[PreparedTask]) -> dict[Plan, list[TaskScores | None]]:
        """The scores the store holds whole (None where a document is missing); computes nothing."""
        return {plan: [self.evaluator.stored(plan, prep) for prep in prepared] for plan in self.with_full_model(plans)}

"""Plan search under a compute budget: the plan with the best mean normalized score that runs at
most budget x the full model's block executions per token (above 1, repeats are allowed).

Candidates are skips of any layer set, one repeated contiguous block, and pairs of adjacent layers
run in parallel. The search ranks them by an objective on its items (`objectives.Objective`:
accuracy, or a smoother measure of the gold answer). The strategy, every score read from (and
written to) the results store:
1. one-pass proxies from the full model, block influence (ShortGPT: 1 - cos(input, output) of
   each layer, averaged over tokens) and the angular distance of hidden states (Gromov et al.),
   seed the first candidates with the paper's skip, contiguous drops and random drops;
2. successive halving over items: every candidate on a few search items, the best third on three
   times as many, and so on up to all search items;
3. a beam search around the best: each plan's neighbours (a dropped layer moved by one, the
   repeated block grown, shrunk or shifted, a parallel pair toggled) halved the same way;
4. optionally (RYS-II), rounds whose candidates a gradient-boosted surrogate of the objective,
   trained on every plan scored so far, picks from thousands of plans within the budget;
5. optionally, the final beam re-ranked on confirmation items it has not seen (the winner's
   curse: each plan's score on the search items is the best of many draws).
Baselines at the same budget: the paper's skip at the matching N, block-influence pruning, the
contiguous block of the smallest angular distance, SLEB (layers dropped one at a time, each
removal scored on the first rung's items), and random search given the documents the search
scored. The finalists and baselines are then scored on held-out items, disjoint from the
search items, with standard errors.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from painters_gguf import metrics, objectives, variants
from painters_gguf.candidates import Candidate, Proxies
from painters_gguf.engine import Engine
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import Evaluator, PreparedTask, Progress, TaskScores
from painters_gguf.objectives import DEFAULT_OBJECTIVE, Objective
from painters_gguf.plan import Plan

ETA = 3  # successive halving keeps the best 1/ETA of a rung, on ETA times the items
SURROGATE_POOL = 4000  # random plans the surrogate ranks in each of its rounds (with the beam's neighbours)
SEARCH, RANDOM_SEARCH, SLEB = "search", "random search", "SLEB"  # the phases whose documents are counted
Predictor = Callable[[Sequence[Candidate]], np.ndarray]  # the surrogate: plans -> their predicted objective


@dataclasses.dataclass(frozen=True)
class Score:
    """A plan's mean normalized score over the tasks, with its standard error and the paired
    difference from the full model on the same items (and that difference's standard error)."""

    mean: float
    stderr: float
    vs_full: float
    vs_full_stderr: float
    per_task: dict[str, float]
    objective: float  # what the search ranks by (objectives.Objective; accuracy: the mean)


class Scores:
    """Plans scored on the first n search items (or on the confirmation or held-out items, which
    follow them in that order) through the store."""

    def __init__(
        self,
        evaluator: Evaluator,
        prepared: Sequence[PreparedTask],
        search_items: int,
        held_out: int,
        *,
        confirm_items: int = 0,
        objective: Objective = DEFAULT_OBJECTIVE,
        progress: Progress = lambda n: None,
    ) -> None:
        self.evaluator = evaluator
        self.objective = objective
        self.engine = Engine(evaluator)
        self.prepared = list(prepared)
        self.search_items = search_items
        self.confirm_items = confirm_items  # after the search items: the final beam re-ranked on them
        self.progress = progress
        self.items_scored: dict[str, dict[Plan, int]] = {}  # phase -> search items each plan was scored on (the first n)
        self.evaluated: list[tuple[str, str, str, tuple[int, ...]]] = []  # (phase, plan, task, items) of every score read
        self.held_out_sets: dict[str, list[int]] = {}  # task -> its held-out items
        self.confirm_sets: dict[str, list[int]] = {}  # task -> its confirmation items
        self.held_out_scores: dict[Plan, list[TaskScores]] = {}  # per plan, each task's scores on its held-out items
        self.held_out_reference: list[tuple[PreparedTask, TaskScores]] = []  # each task on them, with the full model's
        for prep in self.prepared:
            search = prep.task.limit_indices(prep.docs, search_items)
            confirm = _items_after(prep, search_items, confirm_items)
            held = _items_after(prep, search_items + confirm_items, held_out)
            if len(search) < search_items or len(confirm) < confirm_items or len(held) < held_out:
                asked = (
                    f"{search_items} search items, {confirm_items} confirmation items"
                    if confirm_items
                    else f"{search_items} search items"
                )
                raise PaintersError(
                    f"{prep.task.name}: {len(prep.docs)} documents, fewer than the {asked} "
                    f"and {held_out} held-out items asked; give smaller --search-items, --confirm-items or --held-out"
                )
            self.confirm_sets[prep.task.name] = confirm
            self.held_out_sets[prep.task.name] = held

    def documents(self, phase: str = SEARCH) -> int:
        """Documents a phase read: each plan's search items times the tasks (stored ones included)."""
        return sum(self.items_scored.get(phase, {}).values()) * len(self.prepared)

    def count(self, plans: Iterable[Plan], n: int, phase: str) -> None:
        """Count the plans' first n search items as read by `phase` (the search, or a baseline)."""
        counted = self.items_scored.setdefault(phase, {})
        for plan in plans:
            counted[plan] = max(counted.get(plan, 0), n)

    def on_search_items(self, plans: Sequence[Plan], n: int, phase: str = SEARCH) -> dict[Plan, Score]:
        """The plans on the first n search items, counted as read by `phase`."""
        prepared = [dataclasses.replace(prep, indices=prep.task.limit_indices(prep.docs, n)) for prep in self.prepared]
        self.count(plans, n, phase)
        return self._score(plans, prepared, "search")

    def on_confirmation_items(self, plans: Sequence[Plan]) -> dict[Plan, Score]:
        """The plans on the confirmation items alone (none of them ranked a plan before), counted
        as read by the search: each plan's first search + confirmation items."""
        prepared = [dataclasses.replace(prep, indices=self.confirm_sets[prep.task.name]) for prep in self.prepared]
        self.count(plans, self.search_items + self.confirm_items, SEARCH)
        return self._score(plans, prepared, "confirmation")

    def on_held_out(self, plans: Sequence[Plan]) -> dict[Plan, Score]:
        prepared = [dataclasses.replace(prep, indices=self.held_out_sets[prep.task.name]) for prep in self.prepared]
        return self._score(plans, prepared, "held-out")

    def _score(self, plans: Sequence[Plan], prepared: list[PreparedTask], phase: str) -> dict[Plan, Score]:
        todo = self.engine.todo(plans, prepared)
        every = len(self.engine.with_full_model(plans)) * sum(len(prep.indices) for prep in prepared)
        self.progress(every - todo)  # the documents the store holds count as done at once
        found = self.engine.score(plans, prepared, progress=lambda plan, prep: self.progress)
        full = {prep.task.name: scores for prep, scores in zip(prepared, found[self.engine.full_plan], strict=True)}
        if phase == "held-out":
            self.held_out_scores |= {plan: list(found[plan]) for plan in plans}
            self.held_out_reference = [(prep, full[prep.task.name]) for prep in prepared]
        scores = {}
        for plan in plans:
            self.evaluated += [(phase, plan.text, prep.task.name, tuple(prep.indices)) for prep in prepared]
            per_task = list(zip(prepared, found[plan], strict=True))
            scores[plan] = _normalized(per_task, full, self.objective)
        return scores


def _items_after(prep: PreparedTask, first: int, count: int) -> list[int]:
    """The task's items among its first first + count that are not among its first `first`."""
    before = frozenset(prep.task.limit_indices(prep.docs, first))
    return [i for i in prep.task.limit_indices(prep.docs, first + count) if i not in before]


def _normalized(per_task: Sequence[tuple[PreparedTask, TaskScores]], full: dict[str, TaskScores], objective: Objective) -> Score:
    """Mean over tasks of the normalized primary metric (0 = chance, 1 = the full model) and the
    per-document paired difference from the full model, each with its standard error; and the
    objective the search ranks by."""
    values, errors, by_task = [], [], {}
    for prep, scores in per_task:
        span = _span(prep, full[prep.task.name])
        if span is None:
            continue  # the full model at or below chance on these items: nothing to normalize by
        value, stderr = scores.scores[prep.task.primary_metric]
        by_task[prep.task.name] = (value - prep.baseline) / span
        values.append(by_task[prep.task.name])
        errors.append(abs((stderr or 0.0) / span))
    if not values:
        raise PaintersError("on these items the full model scores at or below chance on every task: nothing to normalize by")
    reference = [(prep, full[prep.task.name]) for prep, _ in per_task]
    vs_full, vs_full_stderr = paired_difference(reference, [scores for _, scores in per_task], [full for _, full in reference])
    ranked_by = objectives.value(objective, per_task, full)
    return Score(metrics.mean(values), _combined(errors), vs_full, vs_full_stderr, by_task, ranked_by)


def paired_difference(
    reference: Sequence[tuple[PreparedTask, TaskScores]], a: Sequence[TaskScores], b: Sequence[TaskScores]
) -> tuple[float, float]:
    """Plan a minus plan b in mean normalized score, from per-document differences on the same
    items (paired), with its standard error; `reference` is each task with the full model's scores."""
    deltas, errors = [], []
    for (prep, full), scores_a, scores_b in zip(reference, a, b, strict=True):
        span = _span(prep, full)
        if span is None:
            continue
        metric = prep.task.primary_metric
        differences = [scores_a.results[i][metric] - scores_b.results[i][metric] for i in prep.indices]
        deltas.append(metrics.mean(differences) / span)
        errors.append(abs(metrics.mean_stderr(differences) / span) if len(differences) > 1 else 0.0)
    return (metrics.mean(deltas), _combined(errors)) if deltas else (math.nan, math.nan)


def _span(prep: PreparedTask, full: TaskScores) -> float | None:
    """The full model's distance above the baseline: what normalizes a score; None at or below chance."""
    span = full.scores[prep.task.primary_metric][0] - prep.baseline
    return span if span > 1e-12 else None


def _combined(errors: list[float]) -> float:
    """The standard error of a mean over tasks of independent estimates."""
    return math.sqrt(sum(e * e for e in errors)) / len(errors)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A plan with its score on the search items (and the number of items per task behind it)."""

    candidate: Candidate
    plan: Plan
    score: float
    items: int


Leaderboard = Callable[[str, Sequence[Entry]], None]  # told (phase, ranking) after each phase


@dataclasses.dataclass(frozen=True)
class Gap:
    """The search's choice (its best plan on the search items, or on the confirmation items when
    it has them) minus the baseline best on the held-out items, on those items (paired): the
    baselines get the benefit of the choice."""

    search: str  # its label, "search #1"
    baseline: str
    difference: float
    stderr: float

    @property
    def ahead(self) -> bool:
        """Ahead by more than two standard errors of the paired difference."""
        return self.difference > 2 * self.stderr


@dataclasses.dataclass
class Found:
    """What a search returns: the finalists and baselines on held-out items, and its costs."""

    budget: float
    max_slots: int
    influence: list[float]
    search: list[Entry]  # the final beam, best first (on the confirmation items when there are some)
    baselines: dict[str, Plan]  # name -> plan: paper skip, block/angular pruning, SLEB, random search, full model
    held_out: dict[str, tuple[Plan, Score]]  # label -> (plan, held-out score), finalists and baselines
    documents: dict[str, int]  # documents each phase read: the search, random search, SLEB (stored ones included)
    best: str  # the label with the best held-out mean within the budget
    versus: dict[str, tuple[float, float]]  # label -> best minus it (paired, held-out), and its standard error
    gap: Gap | None  # the search against the best baseline within the budget (None: no baseline within it)

    def frontier(self) -> dict[str, Score]:
        """Each method's held-out score within the budget: the search (its choice, search #1) and
        every baseline that fits (the full model left out: it is 1 by definition)."""
        within = {label: score for label, (plan, score) in self.held_out.items() if plan.n_slots <= self.max_slots}
        methods = {"search": within["search #1"]}
        return methods | {label: s for label, s in within.items() if not label.startswith("search #") and label != "full model"}

    def verdict(self) -> list[str]:
        """In words: which plan is best on held-out items, and whether it is ahead of each other
        plan (and the full model) by more than two standard errors of the paired difference."""
        plan, score = self.held_out[self.best]
        lines = [f"best on held-out items: {self.best}, {plan.text}: mean {score.mean:.3f} ± {score.stderr:.3f}"]
        for label, (difference, stderr) in self.versus.items():
            if not math.isfinite(difference):
                continue
            if abs(difference) > 2 * stderr:
                standing = "ahead of" if difference > 0 else "behind"
            else:
                standing = "tied with (within two standard errors of)"
            lines.append(f"{self.best} is {standing} {label}: {difference:+.3f} ± {stderr:.3f}")
        return lines


class Search:
    def __init__(
        self,
        scores: Scores,
        n_layer: int,
        budget: float,
        *,
        candidates: int = 24,
        beam: int = 3,
        rounds: int = 2,
        first_items: int = 8,
        seed: int = 0,
        exportable: bool = False,
        surrogate_rounds: int = 0,
        leaderboard: Leaderboard = lambda phase, ranking: None,
    ) -> None:
        check_budget(budget)
        self.scores = scores
        self.n_layer = n_layer
        self.budget = budget
        self.max_slots = math.floor(budget * n_layer + 1e-9)
        if self.max_slots < 1:
            raise PaintersError(f"--budget {budget}: less than one block of the model's {n_layer}")
        self.n_candidates = candidates
        self.beam = beam
        self.rounds = rounds
        self.rungs = _rungs(min(first_items, scores.search_items), scores.search_items)
        self.rng = random.Random(seed)
        self.leaderboard = leaderboard
        self.exportable = exportable  # sequential plans only: what `painters-gguf export` writes
        self.surrogate_rounds = surrogate_rounds  # rounds of candidates a surrogate model proposes, after the beam
        self.seed = seed
        self.known: dict[tuple[Candidate, int], float] = {}

    def allowed(self, candidate: Candidate) -> bool:
        """Within the budget and the model, and sequential if asked."""
        return candidate.valid(self.n_layer, self.max_slots) and not (self.exportable and candidate.parallel)

    def estimated_documents(self) -> int:
        """About how many documents the whole search reads (scored, or taken from the store), for an
        overall progress bar: halving and beam rounds, random search as many, the held-out table."""

        def halving(count: int) -> int:
            documents, alive = 0, count
            for n in self.rungs:
                documents += (alive + 1) * n  # the full model is read with every call
                alive = min(alive, max(self.beam, math.ceil(alive / ETA)))
            return documents

        search = halving(self.n_candidates) * (1 + self.rounds + self.surrogate_rounds) + self.beam * self.scores.confirm_items
        sleb = sum(self.n_layer - k for k in range(self.n_dropped)) * self.rungs[0]
        held_out = (self.beam + 5) * len(next(iter(self.scores.held_out_sets.values()), []))
        return (2 * search + sleb + held_out) * len(self.scores.prepared)

    # --- candidates ---

    @property
    def n_dropped(self) -> int:
        return max(0, self.n_layer - self.max_slots)

    @property
    def repeat_room(self) -> int:
        """Layers the one repeated block may hold: what the budget leaves, at most every layer again."""
        return min(max(0, self.max_slots - self.n_layer), self.n_layer)

    def paper_skip(self) -> Candidate:
        """The paper's skip at the smallest N whose middle covers the layers the budget must drop
        (the full model when nothing must be dropped: the paper's variants never beat it)."""
        if self.n_dropped == 0:
            return Candidate()
        n = (self.n_layer - 1 - self.n_dropped) // 2
        return Candidate(dropped=frozenset(variants.middle(self.n_layer, n)))

    def angular_pruning(self, angular: np.ndarray) -> Candidate:
        """Drop the contiguous block whose input and output are closest in angle at the last token
        (Gromov et al.: the smallest d(l, l + n) over l; the first of equals)."""
        n = self.n_dropped
        if n == 0:
            return Candidate()
        first = min(range(self.n_layer - n + 1), key=lambda layer: (float(angular[layer, layer + n]), layer))
        return Candidate(dropped=frozenset(range(first, first + n)))

    def influence_pruning(self, influence: np.ndarray) -> Candidate:
        """Drop the layers whose output is most like their input (the lowest block influence)."""
        order = sorted(range(self.n_layer), key=lambda layer: (influence[layer], layer))
        return Candidate(dropped=frozenset(order[: self.n_dropped]))

    def random_candidate(self, rng: random.Random, weights: Sequence[float] | None = None) -> Candidate:
        layers = list(range(self.n_layer))
        if weights is None:
            dropped = frozenset(rng.sample(layers, self.n_dropped))
        else:
            dropped = frozenset()
            while len(dropped) < self.n_dropped:
                dropped |= {rng.choices(layers, weights=weights)[0]}
        repeat = None
        if self.repeat_room:
            length = rng.randint(1, self.repeat_room)
            first = rng.randint(0, self.n_layer - length)
            repeat = (first, first + length - 1)
        return Candidate(dropped=dropped, repeat=repeat)

    def first_candidates(self, proxies: Proxies) -> list[Candidate]:
        """Baselines, contiguous drops (or repeats), proxy-weighted and uniform random drops, and a
        few with a parallel pair; every subset when the space is smaller than the pool."""
        influence = proxies.influence
        pool = [self.paper_skip(), self.influence_pruning(influence), self.angular_pruning(proxies.angular), Candidate()]
        d, room = self.n_dropped, self.repeat_room
        if d and math.comb(self.n_layer, d) <= self.n_candidates:
            pool += [Candidate(dropped=frozenset(c)) for c in itertools.combinations(range(self.n_layer), d)]
        elif d:
            pool += [Candidate(dropped=frozenset(range(first, first + d))) for first in range(1, self.n_layer - d)]
        if room:
            pool += [
                Candidate(repeat=(first, last))
                for first in range(self.n_layer)
                for last in range(first, min(first + room, self.n_layer))
            ]
        unique = {c: None for c in pool if self.allowed(c)}  # a dict keeps the order
        weights = [math.exp(-8 * float(value) / max(float(influence.max()), 1e-12)) for value in influence]
        for tries in range(1, 50 * self.n_candidates + 1):
            if len(unique) >= self.n_candidates:
                break
            candidate = self.random_candidate(self.rng, weights if tries % 2 else None)
            if tries % 5 == 0 and not self.exportable:  # some with a parallel pair
                candidate = self.with_parallel_pair(self.rng, candidate)
            if self.allowed(candidate):
                unique.setdefault(candidate)
        chosen = list(unique)
        if len(chosen) > self.n_candidates:  # keep the baselines, sample the rest
            chosen = chosen[:4] + self.rng.sample(chosen[4:], self.n_candidates - 4)
        return chosen

    # --- scoring ---

    def score(self, candidates: Sequence[Candidate], n: int, phase: str = SEARCH) -> dict[Candidate, float]:
        plans = {c: c.plan(self.n_layer) for c in candidates}
        self.scores.count(plans.values(), n, phase)  # known from another phase: read by this one too
        missing = [c for c in candidates if (c, n) not in self.known]
        if missing:
            scored = self.scores.on_search_items([plans[c] for c in missing], n, phase)
            for c in missing:
                self.known[(c, n)] = _rankable(scored[plans[c]].objective)
        return {c: self.known[(c, n)] for c in candidates}

    def rank(self, candidates: Iterable[Candidate], n: int, phase: str = SEARCH) -> list[Entry]:
        scores = self.score(list(candidates), n, phase)
        ranked = sorted(scores, key=lambda c: (-scores[c], c.plan(self.n_layer).text))
        return [Entry(c, c.plan(self.n_layer), scores[c], n) for c in ranked]

    def halving(self, candidates: Sequence[Candidate], phase: str) -> list[Entry]:
        """Successive halving over the rungs: the best 1/ETA (at least the beam width) go on."""
        alive = list(dict.fromkeys(candidates))
        for depth, n in enumerate(self.rungs):
            ranked = self.rank(alive, n)
            self.leaderboard(f"{phase}, rung {depth + 1} of {len(self.rungs)}: {len(alive)} plans on {n} items", ranked)
            if n == self.rungs[-1]:
                return ranked
            alive = [e.candidate for e in ranked[: max(self.beam, math.ceil(len(ranked) / ETA))]]
        raise AssertionError("no rungs")

    def explore(self, proxies: Proxies) -> tuple[list[Entry], set[Candidate]]:
        """The search proper: halving of the first candidates, the beam rounds, the surrogate
        rounds; the final beam and every candidate tried."""
        ranked = self.halving(self.first_candidates(proxies), "halving")
        beam = ranked[: self.beam]
        seen = {e.candidate for e in ranked}
        for round_ in range(self.rounds):
            around = self.neighbour_candidates(beam, seen)
            if not around:
                break
            seen |= set(around)
            beam = self.beam_round(beam, around, f"beam round {round_ + 1}", f"beam after round {round_ + 1}")
        for round_ in range(self.surrogate_rounds):
            proposed = self.surrogate_candidates(seen, self.n_candidates, beam)
            if not proposed:
                break
            seen |= set(proposed)
            beam = self.beam_round(beam, proposed, f"surrogate round {round_ + 1}", f"beam after surrogate round {round_ + 1}")
        return beam, seen

    def neighbour_candidates(self, beam: Sequence[Entry], seen: set[Candidate]) -> list[Candidate]:
        """A beam round's candidates: the beam's neighbours not tried yet (a sample of them, at most
        the candidate count)."""
        around = [
            n for e in beam for n in e.candidate.neighbours(self.n_layer, self.max_slots) if n not in seen and self.allowed(n)
        ]
        around = list(dict.fromkeys(around))
        return self.rng.sample(around, self.n_candidates) if len(around) > self.n_candidates else around

    def confirm(self, beam: list[Entry]) -> list[Entry]:
        """The final beam re-ranked by the objective on the confirmation items alone: its order on
        the search items is biased towards the plans whose luck those items favoured (each plan there
        is the best of many), and fresh items are not (the first of equals keeps its place)."""
        n = self.scores.confirm_items
        if not n:
            return beam
        scored = self.scores.on_confirmation_items([e.plan for e in beam])
        value = {e.plan: _rankable(scored[e.plan].objective) for e in beam}
        ranked = [dataclasses.replace(e, score=value[e.plan], items=n) for e in sorted(beam, key=lambda e: -value[e.plan])]
        self.leaderboard(f"the final beam on {n} confirmation items", ranked)
        return ranked

    def run(self, proxies: Proxies) -> Found:
        beam, _ = self.explore(proxies)
        beam = self.confirm(beam)
        search_documents = self.scores.documents(SEARCH)
        random_best = self.random_search(search_documents)
        baselines = {
            "paper skip": self.paper_skip().plan(self.n_layer),
            "block influence": self.influence_pruning(proxies.influence).plan(self.n_layer),
            "angular distance": self.angular_pruning(proxies.angular).plan(self.n_layer),
            "SLEB": self.sleb_pruning().plan(self.n_layer),
            "random search": random_best.plan,
            "full model": Candidate().plan(self.n_layer),
        }
        labelled = {f"search #{i + 1}": e.plan for i, e in enumerate(beam)}
        full = baselines["full model"]  # always shown: the reference, over the budget or not
        labelled |= {name: plan for name, plan in baselines.items() if plan.n_slots <= self.max_slots and plan != full}
        labelled["full model"] = full
        held = self.scores.on_held_out(list(dict.fromkeys(labelled.values())))
        within = [label for label, plan in labelled.items() if plan.n_slots <= self.max_slots]
        best = max(within, key=lambda label: held[labelled[label]].mean)  # the first of equals: a search plan
        by_plan, reference = self.scores.held_out_scores, self.scores.held_out_reference
        versus = {
            label: paired_difference(reference, by_plan[labelled[best]], by_plan[plan])
            for label, plan in labelled.items()
            if plan != labelled[best]
        }
        others = [label for label in within if not label.startswith("search #") and label != "full model"]
        gap = None
        if others:  # the search's choice (its best on search items) against the baseline best on held-out items
            baseline = max(others, key=lambda label: held[labelled[label]].mean)  # the first of equals
            gap = Gap(
                "search #1", baseline, *paired_difference(reference, by_plan[labelled["search #1"]], by_plan[labelled[baseline]])
            )
        return Found(
            self.budget,
            self.max_slots,
            [float(v) for v in proxies.influence],
            beam,
            baselines,
            {label: (plan, held[plan]) for label, plan in labelled.items()},
            {phase: self.scores.documents(phase) for phase in (SEARCH, RANDOM_SEARCH, SLEB)},
            best,
            versus,
            gap,
        )

    def beam_round(self, beam: list[Entry], candidates: Sequence[Candidate], phase: str, after: str) -> list[Entry]:
        """The candidates halved, and the beam kept from the old beam and their best (unchanged when
        none is better: the next round tries candidates not tried yet)."""
        found = self.halving(candidates, phase)
        merged = self.rank([e.candidate for e in beam] + [e.candidate for e in found[: self.beam]], self.rungs[-1])
        self.leaderboard(after, merged)
        return merged[: self.beam]

    def surrogate_candidates(
        self, seen: set[Candidate], count: int, beam: Sequence[Entry], predict: Predictor | None = None
    ) -> list[Candidate]:
        """RYS-II's step: a gradient-boosted model of the objective, trained on every plan scored so
        far (each on the items it was scored on, weighted by their number), ranks a pool of plans
        within the budget (random ones, and the beam's neighbours); the best `count` not yet seen.
        `predict`: that model when the caller has fitted it (`surrogate()`), else it is fitted here."""
        predict = predict or self.surrogate()
        if predict is None:
            return []
        rng = random.Random(f"surrogate {self.seed} {len(seen)}")
        pool = [n for e in beam for n in e.candidate.neighbours(self.n_layer, self.max_slots)]
        pool += [self.random_candidate(rng) for _ in range(SURROGATE_POOL)]
        if not self.exportable:  # some with a parallel pair, as the first candidates
            pool += [self.with_parallel_pair(rng, c) for c in pool[-SURROGATE_POOL // 5 :]]
        unique = [c for c in dict.fromkeys(pool) if self.allowed(c) and c not in seen]
        if not unique:
            return []
        predicted = predict(unique)
        return [unique[i] for i in np.argsort(-predicted, kind="stable")[:count]]

    def surrogate(self) -> Predictor | None:
        """The objective predicted from a plan's features, by a gradient-boosted model trained on
        every plan scored so far (each on the items it was scored on, weighted by their number);
        None before two plans have a finite score."""
        try:
            from sklearn.ensemble import GradientBoostingRegressor
        except ImportError:
            raise PaintersError("--surrogate-rounds needs scikit-learn: pip install 'painters-gguf[search]'") from None
        known = [(c, n, value) for (c, n), value in self.known.items() if math.isfinite(value)]
        if len(known) < 2:
            return None
        model = GradientBoostingRegressor(n_estimators=200, max_depth=3, learning_rate=0.05, random_state=self.seed)
        model.fit(
            np.array([self.features(c) for c, _, _ in known]),
            np.array([value for _, _, value in known]),
            sample_weight=np.array([n for _, n, _ in known], dtype=float),
        )
        return lambda candidates: model.predict(np.array([self.features(c) for c in candidates]))

    def features(self, candidate: Candidate) -> list[float]:
        """A plan for the surrogate: per layer, dropped, run again, first of a parallel pair."""
        repeated = set(candidate.repeated(self.n_layer))
        return [
            float(flag)
            for layer in range(self.n_layer)
            for flag in (layer in candidate.dropped, layer in repeated, layer in candidate.parallel)
        ]

    def with_parallel_pair(self, rng: random.Random, candidate: Candidate) -> Candidate:
        kept = candidate.kept(self.n_layer)
        return dataclasses.replace(candidate, parallel=frozenset({rng.choice(kept[:-1])}) if len(kept) > 1 else frozenset())

    def random_search(self, documents: int) -> Entry:
        """Random candidates, each on every search item, until they have scored `documents`."""
        per_plan = self.rungs[-1] * len(self.scores.prepared)
        count = max(1, documents // per_plan)
        picked: list[Candidate] = []
        rng = random.Random(f"random search {self.budget}")  # a stream of its own: the same plans whatever the search did
        for _ in range(50 * count):
            if len(picked) == count:
                break
            candidate = self.random_candidate(rng)
            if self.allowed(candidate) and candidate not in picked:
                picked.append(candidate)
        ranked = self.rank(picked, self.rungs[-1], RANDOM_SEARCH)
        self.leaderboard(f"random search: {len(picked)} plans on {self.rungs[-1]} items", ranked)
        return ranked[0]

    def sleb_pruning(self) -> Candidate:
        """SLEB (Song et al., 2024): drop layers one at a time, each time the one whose removal
        leaves the best objective on the first rung's search items, until the budget is met (the
        lowest layer of equals). Its path is the same at every budget: a smaller budget goes on
        from a larger one's plan, whose scores the store holds."""
        current = Candidate()
        while len(current.dropped) < self.n_dropped:
            options = [dataclasses.replace(current, dropped=current.dropped | {layer}) for layer in current.kept(self.n_layer)]
            scores = self.score(options, self.rungs[0], SLEB)
            current = max(options, key=lambda c: (scores[c], -max(c.dropped - current.dropped)))
        return current


def _rankable(objective: float) -> float:
    """An objective to rank by: an undefined one (nothing to normalize by on these items) ranks last."""
    return objective if math.isfinite(objective) else -math.inf


def frontier_methods(founds: Sequence[Found]) -> list[str]:
    """The methods of a frontier across budgets, the search first, each once."""
    return list(dict.fromkeys(method for found in founds for method in found.frontier()))


def check_budget(budget: float) -> None:
    if not 0 < budget <= 4:  # also NaN
        raise PaintersError(f"--budget {budget}: give a fraction of the full model's block executions, above 0, at most 4")


def _rungs(first: int, last: int) -> list[int]:
    """Items per rung: first, first x ETA, ... up to last (always ending at last)."""
    rungs = [first]
    while rungs[-1] * ETA < last:
        rungs.append(rungs[-1] * ETA)
    if rungs[-1] != last:
        rungs.append(last)
    return rungs

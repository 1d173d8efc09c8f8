"""The paper's sweeps as grids of plans, scored through the results store.

Figs. 4-9: every N from 0 to T//2 - 1 for a middle variant (random: over seeds);
Fig. 10: looped parallel over N (so M) x iterations; Fig. 2: skip or swap single layers;
Fig. 11: every middle variant summarized by the mean and median of its normalized scores.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence

import numpy as np

from painters_gguf import metrics, variants
from painters_gguf.abi import MAX_SLOTS
from painters_gguf.engine import Compute, Engine
from painters_gguf.errors import PlanError
from painters_gguf.evaluate import PreparedTask, Progress, TaskScores
from painters_gguf.plan import Plan
from painters_gguf.variants import Variant


@dataclasses.dataclass(frozen=True)
class Point:
    """One plan of a sweep and where it sits in its figure."""

    variant: Variant
    n: int  # the paper's N, or the layer for skip-one / swap
    seed: int | None
    iters: int | None
    plan: Plan

    @property
    def label(self) -> str:
        extra = f" seed {self.seed}" if self.seed is not None else f" x{self.iters}" if self.iters is not None else ""
        return f"{self.variant.value} n={self.n}{extra}"


def parse_variants(spec: str) -> list[Variant]:
    """'all' (the six middle variants), a comma list, or '' (none)."""
    if spec == "all":
        return list(variants.MIDDLE_VARIANTS)
    chosen: list[Variant] = []
    for name in (part.strip() for part in spec.split(",") if part.strip()):
        try:
            chosen.append(Variant(name))
        except ValueError:
            names = ", ".join(v.value for v in Variant if v not in (Variant.FULL, Variant.PLANS))
            raise PlanError(f"unknown variant {name!r}: use {names} or all (and --plan TEXT for plans of your own)") from None
        if chosen[-1] == Variant.PLANS:
            raise PlanError("give plans of your own with --plan TEXT (repeatable), not as a variant")
    return chosen


def grid(variant: Variant, n_layer: int, *, seeds: int = 10, iters: Sequence[int] = (3,)) -> list[Point]:
    """The variant's points: every value of its axis, over seeds or iteration counts where it takes them."""
    spec = variants.VARIANTS[variant]
    points = []
    for n in spec.n_values(n_layer):
        if spec.seeded:
            points += [Point(variant, n, s, None, spec.build(n_layer, n, s, 0)) for s in range(seeds)]
        elif spec.looped:
            points += [Point(variant, n, None, k, spec.build(n_layer, n, 0, k)) for k in iters]
        else:
            points.append(Point(variant, n, None, None, spec.build(n_layer, n, 0, 0)))
    return points


def plan_grid(texts: Sequence[str], n_layer: int) -> list[Point]:
    """Plan texts given to sweep or report: one point each, in the order given."""
    return [Point(Variant.PLANS, i, None, None, Plan.parse(text).check(n_layer)) for i, text in enumerate(texts)]


def parse_iters(spec: str) -> list[int]:
    """`3` or a range `1-6`."""
    from painters_gguf.errors import PaintersError

    try:
        low, _, high = spec.partition("-")
        first, last = int(low), int(high or low)
    except ValueError:
        raise PaintersError(f"--iters {spec!r}: write a count like 3 or a range like 1-6") from None
    if not 1 <= first <= last <= MAX_SLOTS:
        raise PaintersError(f"--iters {spec!r}: iterations go from 1 to {MAX_SLOTS} (a plan's most executions), low to high")
    return list(range(first, last + 1))


@dataclasses.dataclass
class Cell:
    """A point's normalized scores (primary metric) per task; None where the store has no result.
    `stderr` is the normalized score's standard error (the plan's, divided by the full model's
    distance from the baseline); `n` the documents each score rests on."""

    point: Point
    normalized: dict[str, float | None]
    raw: dict[str, float | None]
    stderr: dict[str, float | None] = dataclasses.field(default_factory=dict)
    n: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        """The mean over the tasks with a normalized score, once every task is scored (a task whose
        full model scores its baseline has none: `undefined_note` says so)."""
        values = [v for v in self.normalized.values() if v is not None]
        return statistics.fmean(values) if values and self.complete else None

    @property
    def complete(self) -> bool:
        """Every task is scored (its normalized score may still be undefined: a full model at chance)."""
        return all(v is not None for v in self.raw.values())


def stored_seeds(cells: list[Cell], asked: int) -> tuple[list[Cell], str | None]:
    """A seeded variant's cells restricted to the seeds scored at every point, when fewer than
    asked are (report shows what the store holds and says so); other variants unchanged."""
    seeds = sorted({c.point.seed for c in cells if c.point.seed is not None})
    if not seeds:
        return cells, None
    complete = [s for s in seeds if all(c.complete for c in cells if c.point.seed == s)]
    if not complete or len(complete) == len(seeds):
        return cells, None
    kept = [c for c in cells if c.point.seed in complete]
    scored = ", ".join(map(str, complete))
    return kept, f"{cells[0].point.variant.value}: seeds {scored} are scored at every N (asked {asked}); showing those"


def coverage(cells: Sequence[Cell]) -> tuple[int, int]:
    """(points with every task scored, points in the grid)."""
    return sum(cell.complete for cell in cells), len(cells)


def run(
    engine: Engine,
    grids: Mapping[Variant, Sequence[Point]],
    prepared: Sequence[PreparedTask],
    *,
    compute: Compute | None,
    progress: Progress = lambda n: None,
) -> tuple[dict[Variant, list[Cell]], dict[str, TaskScores | None]]:
    """Score every point on every task (compute=None: only read what the store has); returns the
    cells per variant and the full model's scores per task, the reference of every normalized score.
    A plan shared by several points is scored (or read) once."""
    plans = [point.plan for points in grids.values() for point in points]
    found: Mapping[Plan, Sequence[TaskScores | None]]
    if compute is None:
        found = engine.stored(plans, prepared)
    else:
        found = engine.score(plans, prepared, compute=compute, progress=lambda plan, prep: progress)
    full = {prep.task.name: scores for prep, scores in zip(prepared, found[engine.full_plan], strict=True)}

    cells: dict[Variant, list[Cell]] = {}
    for variant, points in grids.items():
        cells[variant] = []
        for point in points:
            cell = Cell(point, {}, {})
            for prep, scores in zip(prepared, found[point.plan], strict=True):
                name = prep.task.name
                cell.raw[name], cell.normalized[name], cell.stderr[name] = _primary(prep, scores, full[name])
                cell.n[name] = scores.n_docs if scores is not None else 0
            cells[variant].append(cell)
    return cells, full


def _primary(
    prep: PreparedTask, scores: TaskScores | None, full: TaskScores | None
) -> tuple[float | None, float | None, float | None]:
    """(the primary metric, normalized, the normalized score's standard error)."""
    if scores is None:
        return None, None, None
    value, stderr = scores.scores[prep.task.primary_metric]
    if full is None:
        return value, None, None
    full_value = full.scores[prep.task.primary_metric][0]
    span = full_value - prep.baseline
    normalized_stderr = abs(stderr / span) if stderr is not None and span != 0 else None
    return value, metrics.normalized(value, prep.baseline, full_value), normalized_stderr


def undefined_note(prep: PreparedTask, full: TaskScores | None) -> str | None:
    """A note when the task has no normalized score: the full model scores exactly its baseline
    (e.g. WinoGrande at 0.5 on a few documents), so the task is left out of means and figures."""
    if full is None:
        return None
    value = full.scores[prep.task.primary_metric][0]
    if metrics.normalized(value, prep.baseline, value) is not None:  # None: the full model at its baseline
        return None
    return (
        f"{prep.task.name}: the full model's {prep.task.primary_metric} {value:.4f} equals the baseline "
        f"{prep.baseline:.4f}, so it has no normalized score: left out of the mean and the figures"
    )


def full_model_note(prep: PreparedTask, full: TaskScores | None) -> str | None:
    """What a table of normalized scores should say of the task's full model: no normalized score
    at all, or one that is noise (`undefined_note`, else `near_chance`)."""
    return undefined_note(prep, full) or near_chance(prep, full)


def near_chance(prep: PreparedTask, full: TaskScores | None) -> str | None:
    """A warning when the full model is within two standard errors of the task's baseline: its
    normalized scores then divide by about zero and are noise (e.g. WinoGrande on a 135M model)."""
    if full is None:
        return None
    value, stderr = full.scores[prep.task.primary_metric]
    if stderr is None or value - prep.baseline > 2 * stderr:
        return None
    return (
        f"{prep.task.name}: the full model's {prep.task.primary_metric} {value:.4f} ± {stderr:.4f} is within two "
        f"standard errors of the baseline {prep.baseline:.4f}: its normalized scores are noise"
    )


@dataclasses.dataclass(frozen=True)
class Summary:
    """Fig. 11's entry for a variant: mean and median of its normalized scores (points x tasks)."""

    mean: float
    median: float
    points: int  # grid points (for random: N values x seeds)
    values: int  # scores the mean rests on (points x tasks)


def summarize(cells: Sequence[Cell]) -> tuple[dict[Variant, Summary], list[str]]:
    """Fig. 11 over the variants whose grid is complete; a note for each one left out (a variant
    with a few stored points, e.g. the one at M=1 that is the full model's plan, would rank at 1.0)."""
    by_variant: dict[Variant, list[Cell]] = {}
    for cell in cells:
        by_variant.setdefault(cell.point.variant, []).append(cell)
    summary: dict[Variant, Summary] = {}
    notes = []
    for variant, group in by_variant.items():
        done, total = coverage(group)
        if done < total:
            notes.append(f"{variant.value}: {done} of {total} points scored on every task; left out of the summary (run sweep)")
            continue
        values = [v for cell in group for v in cell.normalized.values() if v is not None]
        if not values:  # every task's full model at its baseline: nothing to normalize by
            notes.append(
                f"{variant.value}: no normalized score is defined (the full model is at chance); left out of the summary"
            )
            continue
        summary[variant] = Summary(statistics.fmean(values), statistics.median(values), total, len(values))
    return summary, notes


def iteration_grid(cells: Sequence[Cell]) -> tuple[np.ndarray, list[int], list[int]]:
    """Fig. 10: the mean normalized score by N (rows) and iterations (columns); NaN where missing."""
    ns = sorted({c.point.n for c in cells})
    ks = sorted({c.point.iters or 1 for c in cells})
    matrix = np.full((len(ns), len(ks)), np.nan)
    for cell in cells:
        if cell.mean is not None:
            matrix[ns.index(cell.point.n), ks.index(cell.point.iters or 1)] = cell.mean
    return matrix, ns, ks

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
from painters_gguf.errors import PlanError
from painters_gguf.evaluate import Evaluator, PreparedTask, Progress, TaskScores
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
    if spec == "all":
        return list(variants.MIDDLE_VARIANTS)
    chosen = []
    for name in (part.strip() for part in spec.split(",")):
        try:
            chosen.append(Variant(name))
        except ValueError:
            names = ", ".join(v.value for v in Variant if v != Variant.FULL)
            raise PlanError(f"unknown variant {name!r}: use {names} or all") from None
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
    """A point's normalized scores (primary metric) per task; None where the store has no result."""

    point: Point
    normalized: dict[str, float | None]
    raw: dict[str, float | None]

    @property
    def mean(self) -> float | None:
        values = [v for v in self.normalized.values() if v is not None]
        return statistics.fmean(values) if values and len(values) == len(self.normalized) else None


def run(
    evaluator: Evaluator,
    grids: Mapping[Variant, Sequence[Point]],
    prepared: Sequence[PreparedTask],
    *,
    compute: bool,
    progress: Progress = lambda n: None,
) -> tuple[dict[Variant, list[Cell]], dict[str, TaskScores | None]]:
    """Score every point on every task (compute=False: only read what the store has); returns the
    cells per variant and the full model's scores per task, the reference of every normalized score."""
    full = {
        prep.task.name: evaluator.run(evaluator.full_plan, prep, progress)
        if compute
        else evaluator.stored(evaluator.full_plan, prep)
        for prep in prepared
    }
    cells: dict[Variant, list[Cell]] = {}
    for variant, points in grids.items():
        cells[variant] = []
        for point in points:
            normalized: dict[str, float | None] = {}
            raw: dict[str, float | None] = {}
            for prep in prepared:
                scores = evaluator.run(point.plan, prep, progress) if compute else evaluator.stored(point.plan, prep)
                raw[prep.task.name], normalized[prep.task.name] = _primary(prep, scores, full[prep.task.name])
            cells[variant].append(Cell(point, normalized, raw))
    return cells, full


def _primary(prep: PreparedTask, scores: TaskScores | None, full: TaskScores | None) -> tuple[float | None, float | None]:
    if scores is None:
        return None, None
    value = scores.scores[prep.task.primary_metric][0]
    if full is None:
        return value, None
    return value, metrics.normalized(value, prep.baseline, full.scores[prep.task.primary_metric][0])


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


def summarize(cells: Sequence[Cell]) -> dict[Variant, tuple[float | None, float | None]]:
    """Fig. 11: per variant, the mean and median of all its normalized scores (points x tasks)."""
    by_variant: dict[Variant, list[float]] = {}
    for cell in cells:
        by_variant.setdefault(cell.point.variant, []).extend(v for v in cell.normalized.values() if v is not None)
    return {v: (statistics.fmean(xs), statistics.median(xs)) if xs else (None, None) for v, xs in by_variant.items()}


def iteration_grid(cells: Sequence[Cell]) -> tuple[np.ndarray, list[int], list[int]]:
    """Fig. 10: the mean normalized score by N (rows) and iterations (columns); NaN where missing."""
    ns = sorted({c.point.n for c in cells})
    ks = sorted({c.point.iters or 1 for c in cells})
    matrix = np.full((len(ns), len(ks)), np.nan)
    for cell in cells:
        if cell.mean is not None:
            matrix[ns.index(cell.point.n), ks.index(cell.point.iters or 1)] = cell.mean
    return matrix, ns, ks

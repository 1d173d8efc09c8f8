"""Figures shaped like the paper's, as PNG and SVG (matplotlib: `pip install 'painters-gguf[plot]'`)."""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from painters_gguf import outputs
from painters_gguf.errors import PaintersError
from painters_gguf.search import Found, frontier_methods
from painters_gguf.sweeps import Cell, Summary, iteration_grid, summarize
from painters_gguf.tasks.base import Task
from painters_gguf.variants import MIDDLE_VARIANTS, VARIANTS, Axis, Variant


def _pyplot():  # noqa: ANN202
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PaintersError("figures need matplotlib: pip install 'painters-gguf[plot]'") from None
    return plt


def _literal(text: str) -> str:
    """Untrusted text (a file name) for a matplotlib title: `$` would start mathtext."""
    return text.replace("$", r"\$")


def _save(fig, folder: Path, stem: str, inputs: outputs.RunInputs) -> list[Path]:  # noqa: ANN001
    """The figure as PNG and SVG in folder, each written whole or not at all, and neither over an
    input of the run."""
    paths = [inputs.check(folder / f"{stem}.{kind}", "figure") for kind in ("png", "svg")]
    for path, options in zip(paths, ({"dpi": 110}, {}), strict=True):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], bbox_inches="tight", **options)
        outputs.write_bytes(path, buffer.getvalue())
    return paths


# a curve needs this many points to mean anything; fewer and the figure is not written
MIN_POINTS = 2


def variant_figure(
    folder: Path, inputs: outputs.RunInputs, model: str, variant: Variant, cells: Sequence[Cell], tasks: Sequence[Task]
) -> tuple[list[Path], str | None]:
    """Figs. 2, 4-9: normalized score against N (or the layer) for each task, with a band of one
    standard error (random: the spread over seeds). Returns the files, or a note why none."""
    looped = VARIANTS[variant].looped  # drawn at 3 iterations, as the paper's Figs. 4-9
    kept = [c for c in cells if c.point.iters in (None, 3) or not looped]
    xs = sorted({c.point.n for c in kept})
    curves: list[tuple[Task, np.ndarray, np.ndarray, int]] = []
    left_out: list[str] = []
    for task in tasks:
        means, bands, counts = [], [], []
        for x in xs:
            at_x = [c for c in kept if c.point.n == x and c.normalized[task.name] is not None]
            values = [v for c in at_x if (v := c.normalized[task.name]) is not None]
            errors = [e for c in at_x if (e := c.stderr.get(task.name)) is not None]
            if VARIANTS[variant].seeded:
                bands.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            else:
                bands.append(errors[0] if errors else 0.0)
            means.append(statistics.fmean(values) if values else np.nan)
            counts.append(at_x[0].n[task.name] if at_x else 0)
        if sum(np.isfinite(means)) >= MIN_POINTS:
            curves.append((task, np.array(means), np.array(bands), max(counts)))
        elif any(c.raw[task.name] is not None for c in kept):  # scored, but with no normalized score
            left_out.append(task.name)
    if not curves:
        return [], f"{variant.value}: fewer than {MIN_POINTS} scored points per task; no figure written"
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for task, curve, band, n in curves:
        line = ax.plot(xs, curve, marker="o", ms=3, label=f"{task.name} ({task.primary_metric}, n={n})")[0]
        ax.fill_between(xs, curve - band, curve + band, color=line.get_color(), alpha=0.2, lw=0)
    for name in left_out:  # a legend entry without a line, saying why
        ax.plot([], [], " ", label=f"{name}: left out (the full model at chance: no normalized score)")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    if VARIANTS[variant].axis == Axis.LIST:  # the plans given: their texts under the points
        ax.set_xticks(xs, [next(c.point.plan.text for c in kept if c.point.n == x) for x in xs], rotation=30, fontsize=7)
        ax.set_xlabel("plan")
    else:
        ax.set_xlabel("layer n" if VARIANTS[variant].axis == Axis.LAYER else "N (layers 0..N and T-N..T-1 kept)")
    spread = "the spread over seeds" if VARIANTS[variant].seeded else "± one standard error"
    ax.set_ylabel(f"normalized score (0 = chance, 1 = full model)\nband: {spread}", fontsize=9)
    ax.set_title(f"{VARIANTS[variant].title} · {_literal(model)}")
    ax.legend(fontsize=8)
    paths = _save(fig, folder, f"fig-{variant.value}", inputs)
    plt.close(fig)
    return paths, None


def looped_figure(folder: Path, inputs: outputs.RunInputs, model: str, cells: Sequence[Cell], n_layer: int) -> list[Path]:
    """Fig. 10: mean normalized score by middle width M and iterations; the best per M marked."""
    plt = _pyplot()
    matrix, ns, ks = iteration_grid(cells)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(ks), 1.0 + 0.3 * len(ns)))
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    for r in range(len(ns)):
        if np.isfinite(matrix[r]).any():
            ax.scatter([int(np.nanargmax(matrix[r]))], [r], marker="*", color="red", s=40)
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_yticks(range(len(ns)), [str(n_layer - 2 * n - 1) for n in ns])
    ax.set_xlabel("iterations")
    ax.set_ylabel("M (middle layers)")
    ax.set_title(f"Looped parallel · {_literal(model)}")
    fig.colorbar(image, ax=ax, label="mean normalized score")
    paths = _save(fig, folder, "fig-looped-parallel-iterations", inputs)
    plt.close(fig)
    return paths


FRONTIER_FIGURE = "search-frontier"


def frontier_figure(folder: Path, inputs: outputs.RunInputs, model: str, founds: Sequence[Found]) -> list[Path]:
    """Searches at several budgets: each method's held-out mean normalized score against the budget
    (one standard error as bars), and below, the search minus the best baseline (paired, two
    standard errors as bars)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True, height_ratios=(2, 1))
    budgets = [found.budget for found in founds]
    series = [(found.budget, found.frontier()) for found in founds]
    for method in frontier_methods(founds):
        points = [(budget, methods[method]) for budget, methods in series if method in methods]
        xs, scores = [x for x, _ in points], [s for _, s in points]
        style = {"linewidth": 2.2, "zorder": 3} if method == "search" else {"linewidth": 1.0, "alpha": 0.8}
        top.errorbar(xs, [s.mean for s in scores], yerr=[s.stderr for s in scores], marker="o", capsize=3, label=method, **style)
    top.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    top.set_ylabel("held-out mean normalized score")
    top.set_title(f"Plan search across budgets · {_literal(model)}")
    top.legend(fontsize=8)
    gaps = [(found.budget, found.gap) for found in founds if found.gap is not None]
    bottom.errorbar(
        [x for x, _ in gaps], [g.difference for _, g in gaps], yerr=[2 * g.stderr for _, g in gaps], marker="o", capsize=3
    )
    for x, gap in gaps:
        bottom.annotate(gap.baseline, (x, gap.difference), textcoords="offset points", xytext=(4, 4), fontsize=7)
    bottom.axhline(0.0, color="grey", linestyle="--", linewidth=0.8)
    bottom.set_ylabel("search − best baseline\n(± 2 se, paired)")
    bottom.set_xlabel("budget (block executions per token / the full model's)")
    bottom.set_xticks(budgets, [f"{b:g}" for b in budgets])
    paths = _save(fig, folder, FRONTIER_FIGURE, inputs)
    plt.close(fig)
    return paths


def summary_figure(folder: Path, inputs: outputs.RunInputs, model: str, summary: dict[Variant, Summary]) -> list[Path]:
    """Fig. 11: every variant's mean and median normalized score (complete grids only)."""
    plt = _pyplot()
    order = sorted(summary, key=lambda v: -summary[v].median)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(len(order))
    ax.bar(x - 0.2, [summary[v].median for v in order], 0.4, label="median")
    ax.bar(x + 0.2, [summary[v].mean for v in order], 0.4, label="mean")
    ax.set_xticks(x, [f"{v.value}\n({summary[v].points} points)" for v in order], rotation=20, fontsize=8)
    ax.set_ylabel("normalized score")
    ax.set_title(f"All variants · {_literal(model)}")
    ax.legend()
    paths = _save(fig, folder, "fig-variants", inputs)
    plt.close(fig)
    return paths


def similarity_figure(folder: Path, inputs: outputs.RunInputs, model: str, similarity: Similarity) -> list[Path]:
    """Fig. 3: the mean cosine similarity of hidden states, embedding output first, titled with
    the model, plan and documents the matrix was computed from."""
    plt = _pyplot()
    matrix, record = similarity.matrix, similarity.record
    fig, ax = plt.subplots(figsize=(5.6, 4.8), layout="constrained")  # title, axes and colour bar laid out apart
    image = ax.imshow(matrix, cmap="viridis", vmax=1.0)
    ticks = list(range(0, len(matrix), max(1, len(matrix) // 8)))
    ax.set_xticks(ticks, ["emb" if t == 0 else str(t - 1) for t in ticks])
    ax.set_yticks(ticks, ["emb" if t == 0 else str(t - 1) for t in ticks])
    ax.set_xlabel("layer")
    ax.set_ylabel("layer")
    if record is not None:
        model = record.model_name
        detail = f"plan {record.plan}, mean over {record.documents} LAMBADA documents"
    else:
        detail = "saved without its record: documents not known"
    ax.set_title(f"Hidden-state cosine similarity · {_literal(model)}\n{_literal(detail)}", fontsize=9)
    fig.colorbar(image, ax=ax, label="mean cosine similarity", shrink=0.85)
    paths = _save(fig, folder, "fig-similarity", inputs)
    plt.close(fig)
    return paths


def write_all(
    folder: Path,
    inputs: outputs.RunInputs,
    model: str,
    n_layer: int,
    cells: dict[Variant, list[Cell]],
    tasks: Sequence[Task],
    similarity: Similarity | None = None,
) -> tuple[list[Path], list[str]]:
    """Every figure the cells support; returns the files and notes on the figures not written."""
    written: list[Path] = []
    notes: list[str] = []
    for variant, variant_cells in cells.items():
        paths, note = variant_figure(folder, inputs, model, variant, variant_cells, tasks)
        written += paths
        notes += [note] if note else []
        if VARIANTS[variant].looped and len({c.point.iters for c in variant_cells}) > 1:
            written += looped_figure(folder, inputs, model, variant_cells, n_layer)
    middle = [c for v, group in cells.items() for c in group if v in MIDDLE_VARIANTS]
    summary, _ = summarize(middle)  # the left-out variants are noted with the table
    if len(summary) > 1:
        written += summary_figure(folder, inputs, model, summary)
    elif len({c.point.variant for c in middle}) > 1:
        notes.append("fewer than two variants with complete grids: no summary figure written")
    if similarity is not None:
        written += similarity_figure(folder, inputs, model, similarity)
    return written, notes


@dataclasses.dataclass(frozen=True)
class SimilarityRecord:
    """What a saved similarity matrix was computed from: written beside it as <name>.json."""

    model: str  # the file's name
    model_name: str  # general.name, as its card gives it
    model_sha256: str
    n_layer: int
    plan: str
    documents: int

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


@dataclasses.dataclass(frozen=True)
class Similarity:
    matrix: np.ndarray
    record: SimilarityRecord | None  # None: saved before the record was written, or without it


def record_path(npy: Path) -> Path:
    return npy.with_suffix(".json")


def load_similarity(path: Path) -> Similarity:
    """A matrix saved by `painters-gguf similarity` (square, finite numbers) and its record beside
    it when there is one; else one clear error."""
    path = outputs.expand(path)
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise PaintersError(f"{path}: not a saved similarity matrix ({err})") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.issubdtype(matrix.dtype, np.number):
        raise PaintersError(f"{path}: not a similarity matrix (a square array of numbers), found shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise PaintersError(f"{path}: the similarity matrix holds NaN or infinite values")
    record = None
    if record_path(path).is_file():
        try:
            record = SimilarityRecord(**json.loads(record_path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            raise PaintersError(f"{record_path(path)}: not the record of a similarity matrix ({err})") from None
    return Similarity(matrix, record)


def check_similarity_model(similarity: Similarity, path: Path, model_file: str, sha256: str, n_layer: int) -> None:
    """The matrix belongs to the model the report is about (-m): its record names it, or without
    one its size fits (embedding + one row per layer, for the full model)."""
    record = similarity.record
    if record is not None and record.model_sha256 != sha256:
        raise PaintersError(
            f"--similarity {path} was computed on {record.model}, not on {model_file} (-m): give -m for that model"
        )
    if record is None and len(similarity.matrix) != n_layer + 1:
        raise PaintersError(
            f"--similarity {path} has {len(similarity.matrix)} rows; {model_file} (-m) has {n_layer} layers "
            f"({n_layer + 1} rows with the embedding): a matrix of another model"
        )

"""Rich tables and terminal heatmaps for sweeps and similarity matrices."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from rich.table import Table
from rich.text import Text

from painters_gguf.sweeps import Cell, Summary, coverage, iteration_grid
from painters_gguf.variants import VARIANTS, Axis, Variant


def number(value: float | None) -> str:
    """Three decimals, or three significant digits with an exponent past 10^4 and below 10^-3
    (2751464570.76 -> 2.75e9); the same everywhere in tables."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.3f}"


def fmt(value: float | None, spread: float | None = None) -> str:
    """A value, and its standard error or spread after ±."""
    return number(value) + (f" ± {number(spread)}" if value is not None and spread is not None else "")


def shade(value: float | None, low: float = 0.0, high: float = 1.0) -> str:
    """A background from red (low) to green (high), for heatmap cells."""
    if value is None or not np.isfinite(value):
        return "on grey23"
    t = min(max((value - low) / (high - low or 1.0), 0.0), 1.0)
    return f"on rgb({int(200 * (1 - t))},{int(170 * t)},60)"


def sweep_table(variant: Variant, cells: Sequence[Cell], task_names: Sequence[str], n_layer: int) -> Table:
    """Figs. 2, 4-9: a row per N (or layer), normalized primary metric per task and their mean."""
    done, total = coverage(cells)
    seeds = len({c.point.seed for c in cells if c.point.seed is not None})
    over = f", {seeds} seeds per N" if seeds else ""
    title = f"{variant.value}: normalized scores, {done} of {total} points scored{over}"
    table = Table(title=title, caption="0 = chance, 1 = the full model")
    axis = VARIANTS[variant].axis
    first = {Axis.LAYER: "layer n", Axis.LIST: "plan"}.get(axis, "N (M)")  # M: the middle layers
    table.add_column(first, justify="right", overflow="fold")
    for name in task_names:
        table.add_column(name, justify="right")
    table.add_column("mean", justify="right")
    by_n: dict[tuple[int, int | None], list[Cell]] = {}
    for cell in cells:
        by_n.setdefault((cell.point.n, cell.point.iters), []).append(cell)
    for (n, iters), group in by_n.items():
        if axis == Axis.LIST:
            label = group[0].point.plan.text
        else:
            label = str(n) if axis == Axis.LAYER else f"{n} ({n_layer - 2 * n - 1})"
        if iters is not None:
            label += f" x{iters}"
        row = [label]
        columns: list[str | None] = [*task_names, None]  # None: the mean
        for task in columns:
            values = [c.mean if task is None else c.normalized[task] for c in group]
            known = [v for v in values if v is not None]
            if len(known) < len(values) or not known:
                row.append("-")
            elif len(known) > 1:  # random: the mean over seeds, and their spread (no spaces: 80 columns)
                row.append(fmt(statistics.fmean(known), statistics.stdev(known)).replace(" ± ", "±"))
            else:
                row.append(fmt(known[0]))
        table.add_row(*row)
    return table


SHADES = " ░▒▓█"


def block(value: float, low: float, high: float) -> str:
    """One shade character for a value between low and high (· where there is none)."""
    if not np.isfinite(value):
        return "·"
    t = min(max((value - low) / (high - low or 1.0), 0.0), 1.0)
    return SHADES[min(int(t * len(SHADES)), len(SHADES) - 1)]


def shade_scale(low: float, high: float) -> str:
    """The legend of a compact heatmap, printed below it (a caption would wrap to its narrow width)."""
    return f"scale: {low:.2f} (red, {SHADES[1]}) to {high:.2f} (green, {SHADES[-1]}); · no value"


def heatmap(
    matrix: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    title: str | None,
    low: float = 0.0,
    high: float = 1.0,
    best_per_row: bool = False,
    compact: bool = False,
) -> Table:
    """A terminal heatmap: one colored cell per value (NaN: no result); optionally star each row's best.

    compact: two-character cells without numbers, for large matrices (a 33 x 33 similarity
    matrix), drawn in shades (░▒▓█) as well as colors, so that they read without color too;
    column labels wider than a cell should be left blank by the caller.
    """
    table = Table(
        title=title,
        show_lines=False,
        pad_edge=False,
        box=None if compact else Table().box,
        padding=0 if compact else (0, 1),
        caption=None if compact else f"color scale: {low:.2f} (red) to {high:.2f} (green)",
    )
    table.add_column("", justify="right")
    for column in columns:
        table.add_column(column, justify="left" if compact else "center", min_width=2 if compact else None)
    for r, label in enumerate(rows):
        values = matrix[r]
        best = int(np.nanargmax(values)) if best_per_row and np.isfinite(values).any() else -1
        cells = []
        for c, value in enumerate(values):
            if compact:
                text = block(value, low, high) * 2
            else:
                text = "  -  " if not np.isfinite(value) else f"{value:5.2f}" + ("*" if c == best else " ")
            cells.append(Text(text, style=shade(value if np.isfinite(value) else None, low, high)))
        table.add_row(label + (" " if compact else ""), *cells)
    return table


def looped_heatmap(cells: Sequence[Cell], n_layer: int) -> Table:
    """Fig. 10: looped parallel, mean normalized score by M (rows) and iterations (columns)."""
    matrix, ns, ks = iteration_grid(cells)
    rows = [f"M={n_layer - 2 * n - 1}" for n in ns]
    return heatmap(
        matrix, rows, [f"x{k}" for k in ks], "looped parallel: mean normalized score (* best per M)", best_per_row=True
    )


def summary_table(summary: dict[Variant, Summary]) -> Table:
    """Fig. 11: every variant's mean and median normalized score, and the grid it rests on."""
    table = Table(title="all variants: normalized scores over every N and task")
    table.add_column("variant")
    table.add_column("mean", justify="right")
    table.add_column("median", justify="right")
    table.add_column("points", justify="right")
    table.add_column("scores", justify="right")
    for variant, entry in sorted(summary.items(), key=lambda kv: -kv[1].median):
        table.add_row(variant.value, fmt(entry.mean), fmt(entry.median), str(entry.points), str(entry.values))
    return table

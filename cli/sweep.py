"""`painters-gguf sweep` (score the paper's sweeps) and `painters-gguf report` (show them from the store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from painters_gguf import sweeps, variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out
from painters_gguf.cli.render import looped_heatmap, summary_table, sweep_table
from painters_gguf.cli.session import Session, open_session, progress_bar
from painters_gguf.evaluate import Settings, TaskScores
from painters_gguf.variants import Variant

VariantOption = Annotated[str, typer.Option("--variant", "-v", help="skip, middle-repeat, reverse, random, parallel, looped-parallel, skip-one, swap (comma list), or all (the six middle variants).")]
Seeds = Annotated[int, typer.Option("--seeds", help="Seeds of the random variant, averaged (the paper: 10).")]
IterRange = Annotated[str, typer.Option("--iters", help="Looped-parallel iterations: a count (3) or a range (1-6) for Fig. 10.")]
DEFAULT_TASKS = "arc_easy,hellaswag,winogrande,lambada_openai"
TaskNames = Annotated[str, typer.Option("--tasks", "-t", help="Comma list of tasks, or all.")]


Cells = dict[Variant, list[sweeps.Cell]]
FullScores = dict[str, TaskScores | None]


def _cells(session: Session, variant_spec: str, seeds: int, iters: str, compute: bool) -> tuple[Cells, FullScores]:
    n_layer = session.model.n_layer
    grids = {v: sweeps.grid(v, n_layer, seeds=seeds, iters=sweeps.parse_iters(iters)) for v in sweeps.parse_variants(variant_spec)}
    evaluator = session.evaluator
    if not compute:
        return sweeps.run(evaluator, grids, session.prepared, compute=False)
    plans = {evaluator.full_plan, *(p.plan for points in grids.values() for p in points)}
    evaluator.scorer.ctx.check_plan(max(plans, key=lambda plan: plan.n_slots))  # the largest, up front
    total = sum(evaluator.todo(plan, prep) for plan in plans for prep in session.prepared)
    err.print(f"{escape(session.path.name)}: {len(plans)} plans x {len(session.prepared)} tasks, {total} documents to score")
    with progress_bar() as bar:
        job = bar.add_task("sweep", total=total)
        return sweeps.run(evaluator, grids, session.prepared, compute=True, progress=lambda k: bar.advance(job, k))


def _show(session: Session, cells: Cells, full: FullScores) -> None:
    names = [prep.task.name for prep in session.prepared]
    n_layer = session.model.n_layer
    for variant, variant_cells in cells.items():
        out.print(sweep_table(variant, variant_cells, names, n_layer))
        if variant == Variant.LOOPED_PARALLEL and len({c.point.iters for c in variant_cells}) > 1:
            out.print(looped_heatmap(variant_cells, n_layer))
    middle = {v: group for v, group in cells.items() if v in variants.MIDDLE_VARIANTS}  # Fig. 11 compares these
    if len(middle) > 1:
        out.print(summary_table(sweeps.summarize([c for group in middle.values() for c in group])))
    for prep in session.prepared:
        warning = sweeps.near_chance(prep, full[prep.task.name])
        if warning is not None:
            err.print(f"[yellow]note:[/] {escape(warning)}")


def sweep(
    ctx: typer.Context,
    model: options.Model = None,
    variant: VariantOption = "all",
    task_names: TaskNames = DEFAULT_TASKS,
    limit: options.Limit = None,
    seeds: Seeds = 10,
    iters: IterRange = "3",
    num_fewshot: options.NumFewshot = None,
    add_bos: options.AddBos = None,
    threads: options.Threads = None,
    n_ctx: options.NCtx = 2048,
    batch_size: options.BatchSize = 256,
    n_gpu_layers: options.NGpuLayers = 0,
    data: options.DataDir = None,
) -> None:
    """Score the paper's sweeps (every N; random over seeds; looped parallel over iterations) through the store."""
    settings = Settings(num_fewshot=num_fewshot, max_length=n_ctx, add_bos=add_bos, batch_size=batch_size,
                        n_gpu_layers=n_gpu_layers)  # fmt: skip
    session = open_session(db=ctx.obj.db, model=model, task_names=task_names, limit=limit, settings=settings, data=data,
                           threads=threads)  # fmt: skip
    _show(session, *_cells(session, variant, seeds, iters, compute=True))


def report(
    ctx: typer.Context,
    model: options.Model = None,
    variant: VariantOption = "all",
    task_names: TaskNames = DEFAULT_TASKS,
    limit: options.Limit = None,
    seeds: Seeds = 10,
    iters: IterRange = "3",
    num_fewshot: options.NumFewshot = None,
    add_bos: options.AddBos = None,
    n_ctx: options.NCtx = 2048,
    batch_size: options.BatchSize = 256,
    n_gpu_layers: options.NGpuLayers = 0,
    data: options.DataDir = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write PNG and SVG figures shaped like the paper's into this folder (needs matplotlib).")] = None,
    similarity: Annotated[Optional[Path], typer.Option("--similarity", help="A matrix saved by `painters-gguf similarity` (.npy) to draw as Fig. 3.")] = None,
) -> None:
    """Show sweeps from the results store as tables and terminal heatmaps; --plot writes figures. Computes nothing."""
    settings = Settings(num_fewshot=num_fewshot, max_length=n_ctx, add_bos=add_bos, batch_size=batch_size,
                        n_gpu_layers=n_gpu_layers)  # fmt: skip
    session = open_session(db=ctx.obj.db, model=model, task_names=task_names, limit=limit, settings=settings, data=data,
                           threads=None)  # fmt: skip
    cells, full = _cells(session, variant, seeds, iters, compute=False)
    _show(session, cells, full)
    if plot is not None:
        from painters_gguf import figures

        written = figures.write_all(plot, session.path.name, session.model.n_layer, cells,
                                    [prep.task.name for prep in session.prepared], similarity)  # fmt: skip
        for path in written:
            err.print(f"wrote {escape(str(path))}")

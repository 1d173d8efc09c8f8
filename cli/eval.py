"""`painters-gguf eval`: score a plan on benchmarks next to the unmodified model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from painters_gguf import metrics, tasks, variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out
from painters_gguf.cli.session import open_session, progress_bar
from painters_gguf.evaluate import PreparedTask, Settings, TaskScores
from painters_gguf.report import results_json, sample_records, write_json, write_samples

DEFAULT_TASKS = "arc_easy,hellaswag,winogrande,lambada_openai"


def fmt(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")


def scores_table(title: str, prepared: list[PreparedTask], plan_scores: list[TaskScores], full_scores: list[TaskScores]) -> Table:
    table = Table(title=title)
    table.add_column("task")
    table.add_column("metric")
    table.add_column("n", justify="right")
    table.add_column("score ± stderr", justify="right")
    table.add_column("full model", justify="right")
    table.add_column("normalized", justify="right")
    for prep, plan_s, full_s in zip(prepared, plan_scores, full_scores):
        for metric in prep.task.metrics:
            value, stderr = plan_s.scores[metric.name]
            full_value = full_s.scores[metric.name][0]
            norm = metrics.normalized(value, prep.baseline, full_value) if metric.higher_is_better else None
            arrow = "↑" if metric.higher_is_better else "↓"
            table.add_row(prep.task.name, f"{metric.name} {arrow}", str(plan_s.n_docs), fmt(value, stderr), fmt(full_value), fmt(norm))
    return table


def eval_command(
    ctx: typer.Context,
    model: options.Model = None,
    plan: Annotated[str, typer.Option("--plan", "-p", help="A variant (skip, middle-repeat, reverse, random, parallel, looped-parallel, skip-one, swap, full) or a plan text.")] = "full",
    n: options.N = 0,
    seed: options.Seed = 0,
    iters: options.Iters = 3,
    task_names: Annotated[str, typer.Option("--tasks", "-t", help=f"Comma list of {', '.join(tasks.TASKS)}, or all.")] = DEFAULT_TASKS,
    limit: options.Limit = None,
    num_fewshot: options.NumFewshot = None,
    add_bos: options.AddBos = None,
    threads: options.Threads = None,
    n_ctx: options.NCtx = 2048,
    batch_size: options.BatchSize = 256,
    n_gpu_layers: options.NGpuLayers = 0,
    data: options.DataDir = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write lm-eval-style results JSON here.")] = None,
    log_samples: Annotated[Optional[Path], typer.Option("--log-samples", help="Write one JSON record per document here (JSONL).")] = None,
) -> None:
    """Score a plan on benchmarks, next to the unmodified model and normalized (0 = chance, 1 = full model)."""
    settings = Settings(num_fewshot=num_fewshot, max_length=n_ctx, add_bos=add_bos, batch_size=batch_size,
                        n_gpu_layers=n_gpu_layers)  # fmt: skip
    session = open_session(db=ctx.obj.db, model=model, task_names=task_names, limit=limit, settings=settings, data=data,
                           threads=threads)  # fmt: skip
    path, llm, prepared, evaluator = session.path, session.model, session.prepared, session.evaluator
    layer_plan = variants.resolve(plan, llm.n_layer, n, seed=seed, iters=iters)
    evaluator.scorer.ctx.check_plan(layer_plan)  # refused up front: before any work starts
    plans = [layer_plan] if layer_plan == evaluator.full_plan else [layer_plan, evaluator.full_plan]
    todo = {(p.text, prep.task.name): evaluator.todo(p, prep) for p in plans for prep in prepared}
    total = sum(todo.values())
    err.print(f"{escape(path.name)} ({llm.arch}, {llm.n_layer} layers), plan [bold cyan]{escape(layer_plan.text)}[/]; "
              f"{total} documents to score, the rest from {escape(str(evaluator.store.path))}")  # fmt: skip
    by_plan: dict[str, list[TaskScores]] = {}
    with progress_bar() as bar:
        for p in plans:
            label = "full model" if p == evaluator.full_plan else "plan"
            for prep in prepared:
                job = bar.add_task(f"{prep.task.name} ({label})", total=todo[p.text, prep.task.name])
                by_plan.setdefault(p.text, []).append(evaluator.run(p, prep, lambda k, job=job: bar.advance(job, k)))
    plan_scores, full_scores = by_plan[layer_plan.text], by_plan[evaluator.full_plan.text]
    out.print(scores_table(f"{path.name} · plan {layer_plan.text}", prepared, plan_scores, full_scores))
    if output is not None:
        config = {
            "model": str(path), "model_sha256": llm.sha256, "plan": layer_plan.text, "plan_spec": plan,
            "n": n, "seed": seed, "iters": iters, "limit": limit, "n_ctx": n_ctx, "add_bos": evaluator.settings.add_bos,
            "batch_size": batch_size, "num_fewshot": {p.task.name: settings.shots(p.task) for p in prepared},
        }  # fmt: skip
        write_json(output, results_json(prepared, plan_scores, full_scores, config))
        err.print(f"wrote {escape(str(output))}")
    if log_samples is not None:
        write_samples(log_samples, [r for prep, s in zip(prepared, plan_scores) for r in sample_records(prep, s)])
        err.print(f"wrote {escape(str(log_samples))}")

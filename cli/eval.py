"""`painters-gguf eval`: score a plan on benchmarks next to the unmodified model."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from painters_gguf import metrics, outputs, sweeps, variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out, untrusted
from painters_gguf.cli.render import fmt
from painters_gguf.cli.session import open_session, progress_bar, run_inputs
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import PreparedTask, Progress, TaskScores
from painters_gguf.plan import Plan
from painters_gguf.report import results_json, sample_records, write_json, write_samples


def scores_table(title: str, prepared: list[PreparedTask], plan_scores: list[TaskScores], full_scores: list[TaskScores]) -> Table:
    table = Table(title=title, caption="± the standard error; norm.: normalized, 0 = chance, 1 = the full model")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("n", justify="right")
    table.add_column("score ± se", justify="right")
    table.add_column("full", justify="right")
    table.add_column("norm.", justify="right")
    for prep, plan_s, full_s in zip(prepared, plan_scores, full_scores, strict=True):
        for metric in prep.task.metrics:
            value, stderr = plan_s.scores[metric.name]
            full_value = full_s.scores[metric.name][0]
            norm = metrics.normalized(value, prep.baseline, full_value) if metric.higher_is_better else None
            arrow = "↑" if metric.higher_is_better else "↓"
            table.add_row(
                prep.task.name, f"{metric.name} {arrow}", str(plan_s.n_docs), fmt(value, stderr), fmt(full_value), fmt(norm)
            )
    return table


@options.with_scoring_options()
def eval_command(
    ctx: typer.Context,
    plan: Annotated[
        str,
        typer.Option("--plan", "-p", help=f"A variant: {variants.names_help()}; or a plan text like 0-3,{{4-27}}x3,28-29."),
    ] = "full",
    n: options.N = 0,
    seed: options.Seed = 0,
    iters: options.Iters = 3,
    output: Annotated[
        str | None,  # a str: a trailing / (a folder to create) must survive
        typer.Option("--output", "-o", help="Write lm-eval-style results JSON to this file, or into this folder (as lm-eval)."),
    ] = None,
    log_samples: Annotated[
        bool,
        typer.Option(
            "--log-samples",
            metavar="",
            help="Also write every document, as lm-eval does: samples_<task>_<time>.jsonl beside the results, "
            "for the plan and (samples_<task>-full-model_<time>.jsonl) the full model. Needs -o.",
        ),
    ] = False,
    *,
    scoring: options.Scoring,
) -> None:
    """Score a plan on benchmarks, next to the unmodified model and normalized (0 = chance, 1 = full model)."""
    session = open_session(default_db=ctx.obj.db, scoring=scoring)
    path, llm, prepared, evaluator = session.path, session.model, session.prepared, session.evaluator
    # every output checked before any scoring: none may be an input of this run
    inputs = run_inputs(evaluator.store.path, model=path, data=scoring.data)
    if log_samples and output is None:
        raise PaintersError("--log-samples writes beside the results: give -o FILE or -o FOLDER/ too")
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
    results_path = samples = None
    if output is not None:
        results_path = inputs.check(outputs.file_in_folder(output, path.stem, f"results_{stamp}.json"), "--output")
    if log_samples and results_path is not None:
        beside = dataclasses.replace(inputs, files=(*inputs.files, results_path))
        samples = {
            (prep.task.name, full): beside.check(
                results_path.parent / f"samples_{prep.task.name}{'-full-model' if full else ''}_{stamp}.jsonl",
                "--log-samples",
            )
            for prep in prepared
            for full in (False, True)
        }
    layer_plan = variants.resolve(plan, llm.n_layer, n, seed=seed, iters=iters)
    evaluator.scorer.ctx.check_plan(layer_plan)  # refused up front: before any work starts
    total = sum(evaluator.todo(p, prep) for p in evaluator.with_full_model(layer_plan) for prep in prepared)
    err.print(
        f"{untrusted(path.name)} ({untrusted(llm.arch)}, {llm.n_layer} layers), plan [bold cyan]{escape(layer_plan.text)}[/]; "
        f"{total} documents to score, the rest from {escape(str(evaluator.store.path))}"
    )
    with progress_bar() as bar:

        def progress_for(p: Plan, prep: PreparedTask) -> Progress:
            todo = evaluator.todo(p, prep)
            if todo == 0:  # all from the store: no bar
                return lambda n: None
            label = "full model" if p == evaluator.full_plan else "plan"
            job = bar.add_task(f"{prep.task.name} ({label})", total=todo)
            if not prep.task.generation:
                return functools.partial(bar.advance, job)
            start = evaluator.scorer.generated_tokens

            def advance(n: int) -> None:  # a generation task's bar also counts the tokens generated
                bar.update(job, advance=n, tokens=evaluator.scorer.generated_tokens - start)

            return advance

        started = time.time()
        plan_scores, full_scores = evaluator.run_with_full_model(layer_plan, prepared, progress_for)
        ended = time.time()
    for prep, full_s in zip(prepared, full_scores, strict=True):
        warning = sweeps.near_chance(prep, full_s)
        if warning is not None:
            evaluator.notes.append(warning)
    for note in evaluator.notes:
        err.print(f"[yellow]note:[/] {untrusted(note)}", soft_wrap=True)
    out.print(scores_table(f"{untrusted(path.name)} · plan {layer_plan.text}", prepared, plan_scores, full_scores))
    if results_path is not None:
        config = {
            "model": str(path),
            "model_sha256": llm.sha256,
            "plan": layer_plan.text,
            "plan_spec": plan,
            "n": n,
            "seed": seed,
            "iters": iters,
            "limit": scoring.limit,
            "n_ctx": scoring.n_ctx,
            "add_bos": evaluator.settings.add_bos,
            "batch_size": scoring.batch_size,
            "num_fewshot": {p.task.name: evaluator.settings.shots(p.task) for p in prepared},
        }
        results = results_json(
            prepared, plan_scores, full_scores, config, model_name=path.stem, start_time=started, end_time=ended
        )
        write_json(results_path, results)
        err.print(f"wrote {escape(str(results_path))}")
    if samples is not None:
        for prep, plan_s, full_s in zip(prepared, plan_scores, full_scores, strict=True):
            for full, task_scores in ((False, plan_s), (True, full_s)):
                write_samples(samples[prep.task.name, full], sample_records(prep, task_scores))
        err.print(f"wrote {len(samples)} sample logs beside it")

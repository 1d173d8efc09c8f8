"""`painters-gguf eval`: score a plan on benchmarks next to the unmodified model."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress as Bars
from rich.table import Table

from painters_gguf import metrics, outputs, sweeps, tasks, variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out, print_notes, untrusted
from painters_gguf.cli.render import fmt
from painters_gguf.cli.session import Session, open_session, progress_bar, run_inputs, store_path
from painters_gguf.engine import Compute, ProgressFor
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import PreparedTask, TaskScores
from painters_gguf.fetch import locate_model
from painters_gguf.lm_eval_format import eval_config, results_json, sample_records, write_json, write_samples
from painters_gguf.plan import Plan


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
        typer.Option(
            "--output",
            "-o",
            help="Write lm-eval-style results JSON to this .json file, or into this folder (any other name; as lm-eval's "
            "--output_path: <folder>/<model>/results_<plan>_<time>.json).",
        ),
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
    if log_samples and output is None:
        raise PaintersError("--log-samples writes beside the results: give -o FILE.json or -o FOLDER too")
    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
    label = variants.label(plan, n, seed=seed, iters=iters)
    results_path, samples = _outputs(ctx.obj.db, scoring, output, log_samples, label, stamp)  # before the model loads
    session = open_session(default_db=ctx.obj.db, scoring=scoring)
    layer_plan = variants.resolve(plan, session.model.n_layer, n, seed=seed, iters=iters)
    engine = session.engine
    engine.check([layer_plan])  # refused up front: before any work starts
    llm, path = session.model, session.path
    err.print(
        f"{untrusted(path.name)} ({untrusted(llm.arch)}, {llm.n_layer} layers), plan [bold cyan]{escape(layer_plan.text)}[/]; "
        f"{engine.todo([layer_plan], session.prepared)} documents to score, the rest from "
        f"{escape(str(session.evaluator.store.path))}"
    )
    started = time.time()
    with progress_bar() as bar:
        found = engine.score([layer_plan], session.prepared, compute=PLAN_BY_PLAN, progress=_bars(bar, session))
    ended = time.time()
    plan_scores, full_scores = found[layer_plan], found[engine.full_plan]
    prepared = session.prepared
    notes = session.evaluator.notes
    notes += [w for prep, full_s in zip(prepared, full_scores, strict=True) if (w := sweeps.near_chance(prep, full_s))]
    print_notes(notes)
    out.print(scores_table(f"{untrusted(path.name)} · plan {layer_plan.text}", prepared, plan_scores, full_scores))
    if results_path is not None:
        settings = session.evaluator.settings
        config = eval_config(path, llm.sha256, layer_plan, plan, n, seed, iters, scoring.limit, settings, prepared)
        write_json(
            results_path,
            results_json(prepared, plan_scores, full_scores, config, model_name=path.stem, start_time=started, end_time=ended),
        )
        err.print(f"wrote {escape(str(results_path))}")
    if samples is not None:
        _write_samples(samples, prepared, plan_scores, full_scores)


def _write_samples(
    samples: dict[tuple[str, bool], Path],
    prepared: list[PreparedTask],
    plan_scores: list[TaskScores],
    full_scores: list[TaskScores],
) -> None:
    for prep, plan_s, full_s in zip(prepared, plan_scores, full_scores, strict=True):
        for full, task_scores in ((False, plan_s), (True, full_s)):
            write_samples(samples[prep.task.name, full], sample_records(prep, task_scores))
    err.print(f"wrote {len(samples)} sample logs beside it")


# eval shows a bar per plan and task, so it scores them one after the other (the numbers are the same)
PLAN_BY_PLAN = Compute(share_prefix=False)


def _outputs(
    default_db: Path, scoring: options.Scoring, output: str | None, log_samples: bool, label: str, stamp: str
) -> tuple[Path | None, dict[tuple[str, bool], Path] | None]:
    """The results file (results_<plan label>_<time>.json in a folder) and the sample logs (task,
    full model?) -> path (samples_<task>_<time>.jsonl: lm-eval's names, which its tools parse),
    checked against every input of the run."""
    if output is None:
        return None, None
    inputs = run_inputs(store_path(default_db, scoring), model=scoring.model, data=scoring.data)
    stem = locate_model(scoring.model)[0].stem
    results_path = outputs.results_file(output, stem, f"results_{label}_{stamp}.json", inputs, "--output")
    if not log_samples:
        return results_path, None
    beside = dataclasses.replace(inputs, files=(*inputs.files, results_path))
    samples = {
        (task.name, full): beside.check(
            results_path.parent / f"samples_{task.name}{'-full-model' if full else ''}_{stamp}.jsonl", "--log-samples"
        )
        for task in tasks.select(scoring.task_names)
        for full in (False, True)
    }
    return results_path, samples


def _bars(bar: Bars, session: Session) -> ProgressFor:
    """A bar per (plan, task) with documents to score; a generation task's also counts tokens/s."""
    evaluator = session.evaluator
    bars: dict[tuple[Plan, str], Callable[[int], None]] = {}

    def progress_for(plan: Plan, prep: PreparedTask) -> Callable[[int], None]:
        key = (plan, prep.task.name)
        if key not in bars:
            bars[key] = _bar(bar, session, plan, prep, evaluator.todo(plan, prep))
        return bars[key]

    return progress_for


def _bar(bar: Bars, session: Session, plan: Plan, prep: PreparedTask, todo: int) -> Callable[[int], None]:
    if todo == 0:  # all from the store: no bar
        return lambda n: None
    scorer = session.evaluator.scorer
    label = "full model" if plan == session.engine.full_plan else "plan"
    job = bar.add_task(f"{prep.task.name} ({label})", total=todo)
    if not prep.task.generation:
        return functools.partial(bar.advance, job)
    start = scorer.generated_tokens

    def advance(n: int) -> None:  # a generation task's bar also counts the tokens generated
        bar.update(job, advance=n, tokens=scorer.generated_tokens - start)

    return advance

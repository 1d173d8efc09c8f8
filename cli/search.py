"""`painters-gguf search`: the best plan within a compute budget, and baselines at the same budget."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from painters_gguf import outputs, sweeps, tasks
from painters_gguf.candidates import measure_proxies
from painters_gguf.cli.console import err, out, print_notes, untrusted
from painters_gguf.cli.options import Scoring, with_scoring_options
from painters_gguf.cli.render import fmt, number
from painters_gguf.cli.session import open_session, progress_bar, run_inputs, store_path
from painters_gguf.errors import PaintersError
from painters_gguf.fetch import locate_model
from painters_gguf.search import Entry, Found, Scores, Search, check_budget

LEADERBOARD_ROWS = 5


def leaderboard(bar: Progress, n_layer: int) -> Callable[[str, Sequence[Entry]], None]:
    def show(phase: str, ranking: Sequence[Entry]) -> None:
        table = Table(caption="score: mean normalized score on the search items so far (0 = chance, 1 = the full model)")
        table.add_column("#", justify="right")
        table.add_column("plan", overflow="fold")
        table.add_column("blocks", justify="right")
        table.add_column("score", justify="right")
        for place, entry in enumerate(ranking[:LEADERBOARD_ROWS], 1):
            table.add_row(str(place), entry.plan.text, f"{entry.plan.n_slots}/{n_layer}", number(entry.score))
        bar.console.print(f"[bold]{phase}[/]")
        bar.console.print(table)

    return show


def found_table(found: Found, n_layer: int, task_names: Sequence[str], held_out: int) -> Table:
    table = Table(
        title=f"budget {found.budget}: at most {found.max_slots} of {n_layer} block executions per token; "
        f"held-out items: {held_out} per task",
        caption="normalized: 0 = chance, 1 = the full model; Δ full: paired difference from the full model on the same items",
    )
    table.add_column("")
    table.add_column("plan", overflow="fold")
    table.add_column("blocks", justify="right")
    for name in task_names:
        table.add_column(name, justify="right")
    table.add_column("mean ± se", justify="right")
    table.add_column("Δ full ± se", justify="right")
    for label, (plan, score) in sorted(found.held_out.items(), key=lambda item: -item[1][1].mean):
        cells = [number(score.per_task.get(name)) for name in task_names]
        table.add_row(
            label, plan.text, f"{plan.n_slots}", *cells, fmt(score.mean, score.stderr), fmt(score.vs_full, score.vs_full_stderr)
        )
    return table


def as_json(found: Found, n_layer: int) -> dict:
    return {
        "budget": found.budget,
        "max_blocks": found.max_slots,
        "n_layer": n_layer,
        "block_influence": found.influence,
        "search": [{"plan": e.plan.text, "score": e.score, "items": e.items} for e in found.search],
        "baselines": {name: plan.text for name, plan in found.baselines.items()},
        "held_out": {
            label: {
                "plan": plan.text,
                "blocks": plan.n_slots,
                "mean": score.mean,
                "stderr": score.stderr,
                "vs_full": score.vs_full,
                "vs_full_stderr": score.vs_full_stderr,
                "per_task": score.per_task,
            }
            for label, (plan, score) in found.held_out.items()
        },
        "documents": {"search": found.search_documents, "random_search": found.random_documents},
        "best": found.best,
        "best_versus": {label: {"difference": d, "stderr": se} for label, (d, se) in found.versus.items()},
    }


@with_scoring_options()
def search(
    ctx: typer.Context,
    budget: Annotated[
        float,
        typer.Option(
            "--budget", min=0.0, max=4.0, help="Block executions per token, as a fraction of the full model's (above 1: repeats)."
        ),
    ],
    search_items: Annotated[int, typer.Option("--search-items", min=1, help="Items per task the search scores on.")] = 32,
    held_out: Annotated[
        int, typer.Option("--held-out", min=1, help="Items per task after the search items, for the final table.")
    ] = 120,
    candidates: Annotated[
        int, typer.Option("--candidates", min=4, max=4096, help="Plans in the first halving and in each beam round.")
    ] = 24,
    beam: Annotated[int, typer.Option("--beam", min=1, max=64, help="Plans kept between beam rounds (and finalists).")] = 3,
    rounds: Annotated[int, typer.Option("--rounds", min=0, max=100, help="Beam-search rounds.")] = 2,
    first_items: Annotated[int, typer.Option("--first-items", min=1, help="Items per task of the first rung.")] = 8,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the random candidates.")] = 0,
    exportable: Annotated[
        bool, typer.Option("--exportable", help="Search sequential plans only (no parallel steps): what `export` writes.")
    ] = False,
    output: Annotated[
        str | None,  # a str: a trailing / (a folder to create) must survive
        typer.Option(
            "--output",
            "-o",
            help="Write the result as JSON to this .json file, or into this folder (any other name; as eval's -o).",
        ),
    ] = None,
    *,
    scoring: Scoring,
) -> None:
    """Search the plan with the best mean normalized score within a compute budget; baselines and held-out scores."""
    if scoring.limit is not None:
        raise PaintersError("--limit: a search picks its items itself; give --search-items and --held-out")
    json_path = None
    if output is not None:  # checked before the model loads: no input of this run may be the output
        inputs = run_inputs(store_path(ctx.obj.db, scoring), model=scoring.model, data=scoring.data)
        stem = locate_model(scoring.model)[0].stem
        stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
        json_path = outputs.results_file(output, stem, f"search_{budget:g}_{stamp}.json", inputs, "--output")
    check_budget(budget)
    if any(task.generation for task in tasks.select(scoring.task_names)):
        raise PaintersError("search scores log-likelihood tasks; leave gsm8k out of --tasks")
    session = open_session(default_db=ctx.obj.db, scoring=scoring)
    n_layer = session.model.n_layer
    scores = Scores(session.evaluator, session.prepared, search_items, held_out)
    runner = Search(
        scores,
        n_layer,
        budget,
        candidates=candidates,
        beam=beam,
        rounds=rounds,
        first_items=first_items,
        seed=seed,
        exportable=exportable,
    )
    with err.status("block influence and angular distances of the layers (one pass of the full model) ..."):
        proxies = measure_proxies(session.evaluator, session.prepared)
    with progress_bar() as bar:
        job = bar.add_task("search (documents, estimated total)", total=runner.estimated_documents())

        def advance(k: int) -> None:  # the total is an estimate: never below what is done
            task = bar.tasks[job]
            bar.update(job, advance=k, total=max(task.total or 0, task.completed + k))

        scores.progress = advance
        runner.leaderboard = leaderboard(bar, n_layer)
        found = runner.run(proxies)
        bar.update(job, total=bar.tasks[job].completed)
    names = [prep.task.name for prep in session.prepared]
    out.print(found_table(found, n_layer, names, held_out))
    out.print(
        f"documents scored: search {found.search_documents}, random search {found.random_documents} "
        f"(items x tasks per plan; the store kept every one)"
    )
    for line in found.verdict():
        out.print(untrusted(line), soft_wrap=True)
    notes = session.evaluator.notes
    for prep, full in scores.held_out_reference:  # the held-out items' full model near chance: its rows are noise
        notes += [note] if (note := sweeps.full_model_note(prep, full)) else []
    print_notes(notes)
    if json_path is not None:
        outputs.write_text(json_path, [outputs.dumps(as_json(found, n_layer), indent=2)])
        err.print(f"wrote {untrusted(json_path)}")

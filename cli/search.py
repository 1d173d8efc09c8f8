"""`painters-gguf search`: the best plan within a compute budget, and baselines at the same budget."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from painters_gguf import figures, outputs, sweeps, tasks
from painters_gguf.candidates import measure_proxies
from painters_gguf.cli.console import err, out, print_notes, untrusted
from painters_gguf.cli.options import Scoring, with_scoring_options
from painters_gguf.cli.render import fmt, number
from painters_gguf.cli.session import open_session, progress_bar, run_inputs, store_path
from painters_gguf.errors import PaintersError
from painters_gguf.fetch import locate_model
from painters_gguf.figures import FRONTIER_FIGURE
from painters_gguf.objectives import DEFAULT_OBJECTIVE, Objective
from painters_gguf.search import Entry, Found, Scores, Search, check_budget, frontier_methods

LEADERBOARD_ROWS = 5


def leaderboard(bar: Progress, n_layer: int, objective: Objective, prefix: str) -> Callable[[str, Sequence[Entry]], None]:
    def show(phase: str, ranking: Sequence[Entry]) -> None:
        table = Table(caption=f"score: the objective ({objective.value}) on the items named above (the full model: 1)")
        table.add_column("#", justify="right")
        table.add_column("plan", overflow="fold")
        table.add_column("blocks", justify="right")
        table.add_column("score", justify="right")
        for place, entry in enumerate(ranking[:LEADERBOARD_ROWS], 1):
            table.add_row(str(place), entry.plan.text, f"{entry.plan.n_slots}/{n_layer}", number(entry.score))
        bar.console.print(f"[bold]{prefix}{phase}[/]")
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


def frontier_table(founds: Sequence[Found]) -> Table:
    """One row per budget: each method's held-out mean, and the search against the best baseline."""
    methods = frontier_methods(founds)
    table = Table(
        title="held-out mean normalized score ± se by budget",
        caption="search − best baseline: paired difference on the same held-out items; ahead: by more than two standard errors",
    )
    table.add_column("budget", justify="right")
    for method in methods:
        table.add_column(method, justify="right")
    table.add_column("search − best baseline", justify="right")
    for found in founds:
        series = found.frontier()
        cells = [fmt(series[m].mean, series[m].stderr) if m in series else "" for m in methods]
        gap = found.gap
        verdict = (
            ""
            if gap is None
            else f"{fmt(gap.difference, gap.stderr)} vs {gap.baseline} ({'ahead' if gap.ahead else 'not ahead'})"
        )
        table.add_row(f"{found.budget:g}", *cells, verdict)
    return table


def as_json(found: Found, n_layer: int) -> dict:
    gap = found.gap
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
        "documents": found.documents,
        "best": found.best,
        "best_versus": {label: {"difference": d, "stderr": se} for label, (d, se) in found.versus.items()},
        "search_versus_best_baseline": None if gap is None else dataclasses.asdict(gap) | {"ahead": gap.ahead},
    }


def parse_budgets(budget: float | None, budgets: str | None) -> list[float]:
    """--budget B, or --budgets B1,B2,...: each checked, in increasing order, no repeats."""
    if (budget is None) == (budgets is None):
        raise PaintersError("give --budget B, or --budgets B1,B2,... (one store, shared documents)")
    if budget is not None:
        check_budget(budget)
        return [budget]
    assert budgets is not None
    chosen = []
    for text in budgets.split(","):
        try:
            value = float(text)
        except ValueError:
            raise PaintersError(f"--budgets {budgets}: {text.strip()!r} is not a number") from None
        check_budget(value)
        chosen.append(value)
    if len(set(chosen)) != len(chosen):
        raise PaintersError(f"--budgets {budgets}: a budget given twice")
    return sorted(chosen)


@with_scoring_options()
def search(
    ctx: typer.Context,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget", min=0.0, max=4.0, help="Block executions per token, as a fraction of the full model's (above 1: repeats)."
        ),
    ] = None,
    budgets: Annotated[
        str | None,
        typer.Option("--budgets", help="Several budgets, comma-separated (e.g. 0.6,0.75,0.9): one search each, one store."),
    ] = None,
    objective: Annotated[
        Objective, typer.Option("--objective", help="What the search ranks plans by on its items (the final table: accuracy).")
    ] = DEFAULT_OBJECTIVE,
    search_items: Annotated[int, typer.Option("--search-items", min=1, help="Items per task the search scores on.")] = 32,
    confirm_items: Annotated[
        int,
        typer.Option(
            "--confirm-items",
            min=0,
            help="Items per task after the search items on which the final beam is re-ranked (0: ranked on the search items).",
        ),
    ] = 0,
    held_out: Annotated[
        int,
        typer.Option("--held-out", min=1, help="Items per task after the search (and confirmation) items, for the final table."),
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
    surrogate_rounds: Annotated[
        int,
        typer.Option(
            "--surrogate-rounds",
            min=0,
            max=100,
            help="Rounds after the beam whose candidates a gradient-boosted model of the objective picks (needs scikit-learn).",
        ),
    ] = 0,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="With --budgets: write the frontier figure (PNG and SVG) into this folder (needs matplotlib)."
        ),
    ] = None,
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
    chosen = parse_budgets(budget, budgets)
    if plot is not None and len(chosen) < 2:
        raise PaintersError("--plot draws the frontier across budgets: give --budgets with two or more")
    inputs = run_inputs(store_path(ctx.obj.db, scoring), model=scoring.model, data=scoring.data)
    json_path = None
    if output is not None:  # checked before the model loads: no input of this run may be the output
        stem = locate_model(scoring.model)[0].stem
        stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
        name = f"search_{'+'.join(f'{b:g}' for b in chosen)}_{stamp}.json"
        json_path = outputs.results_file(output, stem, name, inputs, "--output")
    if plot is not None:
        plot = outputs.expand(plot)
        inputs.check(plot / f"{FRONTIER_FIGURE}.png", "--plot")  # the folder: made, writable, not one the run reads
    if any(task.generation for task in tasks.select(scoring.task_names)):
        raise PaintersError("search scores log-likelihood tasks; leave gsm8k out of --tasks")
    session = open_session(default_db=ctx.obj.db, scoring=scoring)
    n_layer = session.model.n_layer
    runners = [
        Search(
            Scores(session.evaluator, session.prepared, search_items, held_out, confirm_items=confirm_items, objective=objective),
            n_layer,
            each,
            candidates=candidates,
            beam=beam,
            rounds=rounds,
            first_items=first_items,
            seed=seed,
            exportable=exportable,
            surrogate_rounds=surrogate_rounds,
        )
        for each in chosen
    ]
    with err.status("block influence and angular distances of the layers (one pass of the full model) ..."):
        proxies = measure_proxies(session.evaluator, session.prepared)
    founds = []
    with progress_bar() as bar:
        job = bar.add_task("search (documents, estimated total)", total=sum(r.estimated_documents() for r in runners))

        def advance(k: int) -> None:  # the total is an estimate: never below what is done
            task = bar.tasks[job]
            bar.update(job, advance=k, total=max(task.total or 0, task.completed + k))

        for runner in runners:
            runner.scores.progress = advance
            prefix = f"budget {runner.budget:g}: " if len(runners) > 1 else ""
            runner.leaderboard = leaderboard(bar, n_layer, objective, prefix)
            founds.append(runner.run(proxies))
        bar.update(job, total=bar.tasks[job].completed)
    names = [prep.task.name for prep in session.prepared]
    for found in founds:
        out.print(found_table(found, n_layer, names, held_out))
        out.print(
            "documents read: "
            + ", ".join(f"{phase} {count}" for phase, count in found.documents.items())
            + " (items x tasks per plan, stored ones included; the store kept every one)"
        )
        for line in found.verdict():
            out.print(untrusted(line), soft_wrap=True)
    if len(founds) > 1:
        out.print(frontier_table(founds))
    notes = session.evaluator.notes
    for prep, full in runners[-1].scores.held_out_reference:  # the held-out items' full model near chance: its rows are noise
        notes += [note] if (note := sweeps.full_model_note(prep, full)) else []
    print_notes(notes)
    if json_path is not None:
        record: dict = (
            as_json(founds[0], n_layer)
            if len(founds) == 1
            else {
                "n_layer": n_layer,
                "searches": [as_json(found, n_layer) for found in founds],
            }
        )
        items = {"search_items": search_items, "confirm_items": confirm_items, "held_out_items": held_out}
        outputs.write_text(json_path, [outputs.dumps(record | {"objective": objective.value} | items, indent=2)])
        err.print(f"wrote {untrusted(json_path)}")
    if plot is not None:
        for path in figures.frontier_figure(plot, inputs, session.path.name, founds):
            err.print(f"wrote {untrusted(path)}")

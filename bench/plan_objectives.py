"""Each search objective, per task, for given plans on given items: why a search chose a plan. When
a baseline's plan beats the search's choice on held-out items, its objective on the search's own
items tells whether the search ranked it lower (the objective's failure) or never met it (the
optimizer's). Every score goes through the results store: what a search scored is read.

  .venv/bin/python bench/plan_objectives.py -m gemma3-270m --items 0:32 0-1,3,5,7,9-10,12-13,16 0-1,3,5,10-12,14-15,17
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from painters_gguf import metrics, objectives, tasks
from painters_gguf.engine import Engine
from painters_gguf.engine.scoring import Scorer
from painters_gguf.evaluate import Evaluator, Settings, prepare
from painters_gguf.fetch import resolve_model
from painters_gguf.objectives import Objective
from painters_gguf.paths import data_dir, default_store
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model
from painters_gguf.store import Store


def item_range(text: str) -> tuple[int, int]:
    """FIRST:END, the items each task is scored on (as the search numbers them: its first 32 are 0:32)."""
    first, _, end = text.partition(":")
    if not (first.isdigit() and end.isdigit() and int(first) < int(end)):
        raise argparse.ArgumentTypeError(f"{text!r}: give FIRST:END, e.g. 0:32 (the search items) or 32:152")
    return int(first), int(end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plans", nargs="+", type=Plan.parse, help="plan texts, e.g. 0-11,20-29")
    parser.add_argument("-m", "--model", default=None, help="a GGUF path or catalog name (default: the catalog's default)")
    parser.add_argument("--tasks", default="arc_easy,hellaswag,lambada_openai")
    parser.add_argument("--items", type=item_range, default=(0, 32), help="FIRST:END items of each task (default 0:32)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--db", default=None, help="results store (default: the usual one)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    model = Model(resolve_model(args.model))
    settings = Settings().for_model(model.arch, model.n_layer)
    first, end = args.items
    prepared = [prepare(task, data_dir(args.data_dir), None, settings) for task in tasks.select(args.tasks)]
    prepared = [dataclasses.replace(prep, indices=prep.task.limit_indices(prep.docs, end)[first:]) for prep in prepared]
    store = Store(Path(args.db) if args.db else default_store())
    engine = Engine(Evaluator(Scorer(model, threads=args.threads), store, settings))
    found = engine.score(args.plans, prepared)
    full = found[engine.full_plan]

    table = Table(title=f"{model.path.name}: each objective per task on items {first}..{end - 1} (the full model: 1)")
    table.add_column("plan", overflow="fold")
    table.add_column("objective")
    for prep in prepared:
        table.add_column(prep.task.name, justify="right")
    table.add_column("mean", justify="right")
    for plan in args.plans:
        for objective in Objective:
            values = [objectives.task_value(objective, p, s, f) for p, s, f in zip(prepared, found[plan], full, strict=True)]
            known = [v for v in values if v is not None]
            cells = ["-" if v is None else f"{v:+.3f}" for v in values]
            table.add_row(plan.text, objective.value, *cells, f"{metrics.mean(known):+.3f}" if known else "-")
        table.add_section()
    Console().print(table)


if __name__ == "__main__":
    main()

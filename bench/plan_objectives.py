"""Each search objective, per task, for given plans on given items: why a search chose a plan. When
a baseline's plan beats the search's choice on held-out items, its objective on the search's own
items tells whether the search ranked it lower (the objective's failure) or never met it (the
optimizer's). Every score goes through the results store: what a search scored is read.

  .venv/bin/python bench/plan_objectives.py -m gemma3-270m --items 0:32 0-1,3,5,7,9-10,12-13,16 0-1,3,5,10-12,14-15,17
"""

from __future__ import annotations

import argparse
import dataclasses

import search_setup
from rich.console import Console
from rich.table import Table

from painters_gguf import metrics, objectives
from painters_gguf.engine import Engine
from painters_gguf.objectives import Objective
from painters_gguf.plan import Plan


def item_range(text: str) -> tuple[int, int]:
    """FIRST:END, the items each task is scored on (as the search numbers them: its first 32 are 0:32)."""
    first, _, end = text.partition(":")
    if not (first.isdigit() and end.isdigit() and int(first) < int(end)):
        raise argparse.ArgumentTypeError(f"{text!r}: give FIRST:END, e.g. 0:32 (the search items) or 32:152")
    return int(first), int(end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    search_setup.add_options(parser)
    parser.add_argument("plans", nargs="+", type=Plan.parse, help="plan texts, e.g. 0-11,20-29")
    parser.add_argument("--items", type=item_range, default=(0, 32), help="FIRST:END items of each task (default 0:32)")
    args = parser.parse_args()
    opened = search_setup.open_evaluator(args)
    model, (first, end) = opened.model, args.items
    prepared = [dataclasses.replace(prep, indices=prep.task.limit_indices(prep.docs, end)[first:]) for prep in opened.prepared]
    engine = Engine(opened.evaluator)
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

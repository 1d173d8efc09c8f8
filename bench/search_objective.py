"""Which objective on the search items ranks plans best by their accuracy on held-out items.

Plans like the ones a search meets (the first candidates of `painters-gguf search` at each of
--budgets: the baselines, contiguous drops, proxy-weighted and uniform random drops and repeats,
some with a parallel pair) are scored on the first --search-items items per task and on --held-out
items after them, through one results store (a rerun reads it). Each objective of
`painters_gguf.objectives`, on the first n search items (n = each of --items), is compared with
the held-out mean normalized accuracy: Spearman's rank correlation over all plans and within each
budget, and the held-out accuracy of the plan each objective puts first within each budget next to
the best any plan reaches there. The overall correlation comes with a 95% bootstrap interval
(plans resampled).

  .venv/bin/python bench/search_objective.py --threads 2
  .venv/bin/python bench/search_objective.py -m gemma3-270m --plans 48 --held-out 100 -o objective.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import search_setup
from rich.console import Console
from rich.table import Table
from scipy.stats import bootstrap, spearmanr

from painters_gguf.candidates import measure_proxies
from painters_gguf.objectives import Objective
from painters_gguf.plan import Plan
from painters_gguf.search import Scores, Search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    search_setup.add_options(parser)
    parser.add_argument("--budgets", default="0.6,0.75,0.9", help="the plans come from searches at these budgets")
    parser.add_argument("--plans", type=int, default=60, help="plans in all (split over the budgets)")
    parser.add_argument("--search-items", type=int, default=32)
    parser.add_argument("--items", default="8,32", help="search items per task each objective is measured on")
    parser.add_argument("--held-out", type=int, default=100)
    parser.add_argument("-o", "--output", default=None, help="write the measurements as JSON")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    item_counts = [int(n) for n in args.items.split(",")]
    opened = search_setup.open_evaluator(args)
    model, prepared, evaluator = opened.model, opened.prepared, opened.evaluator
    path = model.path
    scores = Scores(evaluator, prepared, args.search_items, args.held_out)

    start = time.perf_counter()
    proxies = measure_proxies(evaluator, prepared)
    by_budget: dict[float, list[Plan]] = {}
    for budget in budgets:
        search = Search(scores, model.n_layer, budget, candidates=max(4, args.plans // len(budgets)))
        by_budget[budget] = [c.plan(model.n_layer) for c in search.first_candidates(proxies)]
    plans = list(dict.fromkeys(plan for found in by_budget.values() for plan in found))
    scores.on_search_items(plans, args.search_items)
    held = scores.on_held_out(plans)
    seconds = time.perf_counter() - start
    truth = {plan: held[plan].mean for plan in plans}

    measured: dict[str, dict] = {}
    for objective in Objective:
        scores.objective = objective
        for n in item_counts:
            value = {plan: s.objective for plan, s in scores.on_search_items(plans, n).items()}
            per_budget = {}
            for budget, found in by_budget.items():
                first = max(found, key=lambda plan: value[plan])
                per_budget[budget] = {
                    "spearman": float(spearmanr([value[p] for p in found], [truth[p] for p in found]).statistic),
                    "chosen_held_out": truth[first],
                    "best_held_out": max(truth[p] for p in found),
                }
            values = [value[p] for p in plans]
            truths = [truth[p] for p in plans]
            interval = bootstrap(
                (values, truths), lambda v, t: spearmanr(v, t).statistic, paired=True, vectorized=False, n_resamples=2000, rng=0
            ).confidence_interval
            measured[f"{objective.value}@{n}"] = {
                "objective": objective.value,
                "items": n,
                "spearman": float(spearmanr(values, truths).statistic),
                "spearman_95": [float(interval.low), float(interval.high)],
                "budgets": per_budget,
                "values": values,
            }

    console = Console()
    table = Table(
        title=f"{path.name}: {len(plans)} plans from searches at budgets {args.budgets}; "
        f"held-out: {args.held_out} items per task of {args.tasks}",
        caption="ρ: Spearman rank correlation of the objective on the first n search items with the held-out mean "
        "normalized accuracy; chosen: the held-out accuracy of the plan the objective ranks first (best: the best plan's)",
    )
    table.add_column("objective")
    table.add_column("items", justify="right")
    table.add_column("ρ, all plans (95%)", justify="right")
    for budget in budgets:
        table.add_column(f"{budget:g}: ρ / chosen (best)", justify="right")
    for row in measured.values():
        cells = [f"{b['spearman']:.3f} / {b['chosen_held_out']:.3f} ({b['best_held_out']:.3f})" for b in row["budgets"].values()]
        low, high = row["spearman_95"]
        table.add_row(row["objective"], str(row["items"]), f"{row['spearman']:.3f} ({low:.2f}–{high:.2f})", *cells)
    console.print(table)
    console.print(
        f"documents: {scores.documents()} on search items, held-out {len(plans) * args.held_out * len(prepared)}; {seconds:.0f} s"
    )
    if args.output:
        record = {"model": path.name, "tasks": args.tasks, "plans": [p.text for p in plans], "held_out": args.held_out}
        record |= {"held_out_accuracy": [truth[p] for p in plans]}
        Path(args.output).write_text(json.dumps(record | {"measured": measured}, indent=2))


if __name__ == "__main__":
    main()

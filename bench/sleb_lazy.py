"""Can SLEB be had for fewer documents? A lazy SLEB scans every kept layer once, then at each later
removal rescans only the k layers whose removal scored best when last scanned (the others keep
their stale scores). Printed: for each k, the documents it reads and whether it ends at SLEB's
plan. SLEB's own scans are read from the store (run the search first); a path that leaves SLEB's
is scored, through the store.

  .venv/bin/python bench/sleb_lazy.py -m gemma3-270m --budget 0.6 --k 3,4,6,8
"""

from __future__ import annotations

import argparse
import dataclasses

import search_setup
from rich.console import Console
from rich.table import Table

from painters_gguf.candidates import Candidate
from painters_gguf.search import SLEB, Scores, Search


def lazy_sleb(search: Search, k: int) -> tuple[Candidate, int]:
    """The lazy variant of `Search.sleb_pruning`: the plan it ends at and the plans it scored."""
    current, scanned = Candidate(), 0
    stale: dict[int, float] = {}  # layer -> the objective after its removal, when it was last scanned
    while len(current.dropped) < search.n_dropped:
        kept = current.kept(search.n_layer)
        pool = sorted(kept, key=lambda layer: (-stale[layer], layer))[:k] if stale else kept
        options = {layer: dataclasses.replace(current, dropped=current.dropped | {layer}) for layer in pool}
        scores = search.score(list(options.values()), search.rungs[0], SLEB)
        stale |= {layer: scores[option] for layer, option in options.items()}
        scanned += len(options)
        current = options[min(pool, key=lambda layer: (-stale[layer], layer))]  # the lowest layer of equals, as SLEB
    return current, scanned


def rescan_counts(text: str) -> list[int]:
    """--k: a comma list of counts, each at least 1."""
    counts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) >= 1 for part in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: give counts of at least 1, comma-separated, e.g. 3,4,6,8")
    return [int(part) for part in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    search_setup.add_options(parser)
    parser.add_argument("--budget", type=float, default=0.6)
    parser.add_argument(
        "--k", type=rescan_counts, default="3,4,6,8", help="comma list: layers rescanned at each removal after the first"
    )
    args = parser.parse_args()
    opened = search_setup.open_evaluator(args)
    model, prepared = opened.model, opened.prepared
    search = Search(Scores(opened.evaluator, prepared, 32, 1), model.n_layer, args.budget)
    per_plan = search.rungs[0] * len(prepared)

    sleb = search.sleb_pruning()
    sleb_documents = search.scores.documents(SLEB)
    table = Table(title=f"{model.path.name}, budget {args.budget}: SLEB and lazy SLEB on {search.rungs[0]} items per task")
    table.add_column("rescanned")
    table.add_column("plan", overflow="fold")
    table.add_column("documents", justify="right")
    table.add_column("SLEB's plan")
    table.add_row("every kept layer (SLEB)", sleb.plan(model.n_layer).text, str(sleb_documents), "yes")
    for k in args.k:
        plan, scanned = lazy_sleb(search, k)
        table.add_row(f"the best {k}", plan.plan(model.n_layer).text, str(scanned * per_plan), "yes" if plan == sleb else "no")
    Console().print(table)


if __name__ == "__main__":
    main()

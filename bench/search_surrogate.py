"""Does the surrogate help the search per document spent? One more round after the search's beam
rounds, either way, from the same beam: the beam's neighbours (what `--rounds` adds) or the plans
a gradient-boosted surrogate of the objective picks (what `--surrogate-rounds` adds). Both halve
the same number of candidates over the same rungs: the same documents by construction (a plan
both rounds try is scored once, through the store); compared: the
best plan each finds on the search items, and on held-out items (paired), and how well the
surrogate, trained on the plans scored before the round, ranks the neighbours' scores it never saw
(Spearman). Every score goes through the results store: a rerun reads it.

  .venv/bin/python bench/search_surrogate.py --budget 0.75 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import search_setup
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr

from painters_gguf.candidates import measure_proxies
from painters_gguf.search import SEARCH, Scores, Search, paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    search_setup.add_options(parser)
    parser.add_argument("--budget", type=float, default=0.75)
    parser.add_argument("--rounds", type=int, default=2, help="beam rounds before the compared round (search's default)")
    parser.add_argument("--search-items", type=int, default=32)
    parser.add_argument("--held-out", type=int, default=120)
    parser.add_argument("-o", "--output", default=None, help="write the measurements as JSON")
    args = parser.parse_args()
    opened = search_setup.open_evaluator(args)
    model, prepared, evaluator = opened.model, opened.prepared, opened.evaluator
    scores = Scores(evaluator, prepared, args.search_items, args.held_out)
    search = Search(scores, model.n_layer, args.budget, rounds=args.rounds)

    start = time.perf_counter()
    beam, seen = search.explore(measure_proxies(evaluator, prepared))
    before = scores.documents(SEARCH)
    predict = search.surrogate()
    assert predict is not None, "the search scored fewer than two plans"
    proposed = search.surrogate_candidates(seen, search.n_candidates, beam, predict)  # from the state before either round
    surrogate_beam = search.beam_round(beam, proposed, "surrogate round", "beam after the surrogate round")
    around = search.neighbour_candidates(beam, seen)  # what the next beam round would try (the same random stream)
    beam_beam = search.beam_round(beam, around, "beam round", "beam after the beam round")
    first = search.rungs[0]
    truth = [search.known[(c, first)] for c in around]
    rho = float(spearmanr(predict(around), truth).statistic)
    rho_proposed = float(spearmanr(predict(proposed), [search.known[(c, first)] for c in proposed]).statistic)

    arms = {"before the round": beam[0], "beam round": beam_beam[0], "surrogate round": surrogate_beam[0]}
    held = scores.on_held_out([entry.plan for entry in arms.values()])
    reference = scores.held_out_reference
    gap, gap_se = paired_difference(
        reference, scores.held_out_scores[arms["surrogate round"].plan], scores.held_out_scores[arms["beam round"].plan]
    )
    seconds = time.perf_counter() - start

    table = Table(title=f"{model.path.name}: one more round at budget {args.budget}, from the same beam")
    for column in ("", "best plan", "objective (search items)", "held-out mean ± se"):
        table.add_column(column)
    for label, entry in arms.items():
        score = held[entry.plan]
        table.add_row(label, entry.plan.text, f"{entry.score:.3f}", f"{score.mean:.3f} ± {score.stderr:.3f}")
    console = Console()
    console.print(table)
    console.print(
        f"surrogate − beam round, held-out (paired): {gap:+.3f} ± {gap_se:.3f}; candidates each: {len(proposed)} and "
        f"{len(around)}, the same rungs {search.rungs}; documents before the round: {before}\n"
        f"the surrogate's ranking of the beam round's {len(around)} plans (never trained on): Spearman {rho:.2f} with "
        f"their objective on {first} items; of its own {len(proposed)} proposals: {rho_proposed:.2f}; {seconds:.0f} s"
    )
    if args.output:
        result = {
            "model": model.path.name,
            "budget": args.budget,
            "documents_before": before,
            "rungs": search.rungs,
            "arms": {
                label: {"plan": e.plan.text, "objective": e.score, "held_out": held[e.plan].mean, "stderr": held[e.plan].stderr}
                for label, e in arms.items()
            },
            "surrogate_minus_beam": {"difference": gap, "stderr": gap_se},
            "spearman_on_beam_candidates": rho,
            "spearman_on_proposals": rho_proposed,
            "seconds": seconds,
        }
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

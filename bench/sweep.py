"""A sweep scored both ways, side by side in one run, on the same model, data and threads:

1. plan by plan (`sweep --plan-by-plan`): every plan from the tokens up;
2. shared prefix (the default): per batch, the layers the plans share with the full model once.

Each way runs as its own `painters-gguf sweep` process into a fresh store: wall time, peak
resident memory (the process's, from wait4), block executions per token summed over the plans,
and whether the two stores hold the same documents, to the bit. With --half, the shared way runs
once more on half the documents: its peak memory should not grow with the documents.

  .venv/bin/python bench/sweep.py --variant skip --tasks arc_easy,hellaswag,lambada_openai --limit 100
  .venv/bin/python bench/sweep.py --variant all --seeds 1 --limit 10
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from painters_gguf import sweeps, variants
from painters_gguf.engine.shared_prefix import computed_blocks
from painters_gguf.fetch import resolve_model
from painters_gguf.runtime import Model

CLI = str(Path(sys.executable).with_name("painters-gguf"))


def run_sweep(args: argparse.Namespace, db: Path, limit: int, *, plan_by_plan: bool) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one sweep process."""
    command = [CLI, "--db", str(db), "sweep", "-m", args.model, "--variant", args.variant, "--tasks", args.tasks]
    command += ["--limit", str(limit), "--seeds", str(args.seeds), "--threads", str(args.threads)]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    command += ["--plan-by-plan"] if plan_by_plan else []
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            sys.exit(f"sweep failed: {' '.join(command)}\n{stderr.read().decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def documents(db: Path) -> dict[tuple, object]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT r.plan, r.task, d.doc_index, d.result FROM docs d JOIN runs r ON r.id = d.run_id")
        return {(plan, task, index): json.loads(result) for plan, task, index, result in rows}


def block_counts(model_path: str, variant: str, seeds: int) -> tuple[int, int, int]:
    """(plans with the full model, blocks per token plan by plan, blocks per token when shared)."""
    with Model(model_path, vocab_only=True) as model:
        n_layer = model.n_layer
    plans = {variants.full(n_layer)}
    for chosen in sweeps.parse_variants(variant):
        plans |= {point.plan for point in sweeps.grid(chosen, n_layer, seeds=seeds)}
    plain = sum(plan.n_slots for plan in plans)
    shared = computed_blocks(list(plans), n_layer)
    return len(plans), plain, shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a GGUF path or catalog name (default: the catalog's default)")
    parser.add_argument("--variant", default="skip")
    parser.add_argument("--tasks", default="arc_easy,hellaswag,lambada_openai")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--half", action="store_true", help="also the shared way on half the documents (memory)")
    args = parser.parse_args()
    args.model = str(resolve_model(args.model))

    n_plans, plain_blocks, shared_blocks = block_counts(args.model, args.variant, args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        plain_db, shared_db = Path(tmp) / "plain.db", Path(tmp) / "shared.db"
        plain = run_sweep(args, plain_db, args.limit, plan_by_plan=True)
        shared = run_sweep(args, shared_db, args.limit, plan_by_plan=False)
        same = documents(plain_db) == documents(shared_db)
        half = run_sweep(args, Path(tmp) / "half.db", max(1, args.limit // 2), plan_by_plan=False) if args.half else None

    table = Table(title=f"{Path(args.model).name}: sweep --variant {args.variant} --tasks {args.tasks} --limit {args.limit}")
    for column in ("way", "wall s", "ratio", "peak RSS MiB", "blocks per token"):
        table.add_column(column, justify="left" if column == "way" else "right")
    table.add_row("plan by plan", f"{plain[0]:.1f}", "1.00", f"{plain[1]:.0f}", str(plain_blocks))
    table.add_row("shared prefix", f"{shared[0]:.1f}", f"{plain[0] / shared[0]:.2f}", f"{shared[1]:.0f}", str(shared_blocks))
    if half is not None:
        table.add_row(f"shared, --limit {max(1, args.limit // 2)}", f"{half[0]:.1f}", "", f"{half[1]:.0f}", "")
    Console().print(table)
    print(f"{n_plans} plans; block ratio {plain_blocks / shared_blocks:.2f}; stores identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

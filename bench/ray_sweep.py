"""A sweep on a local Ray cluster vs the same sweep locally, side by side in one run, and how its
units would spread over K workers.

1. local: `painters-gguf sweep` with --threads WORKERS, into a fresh store;
2. Ray: the same sweep on a local Ray instance of WORKERS workers of one thread each (Ray's start
   and the workers' model loads included), into another store; the stores must be identical;
3. the units' measured times (worker seconds) list-scheduled in order onto K = 2..64 workers, as
   the driver hands them out: the wall time, speed-up and efficiency each K would give.

  .venv/bin/python bench/ray_sweep.py --variant skip --tasks arc_easy,lambada_openai --limit 50
"""

from __future__ import annotations

import argparse
import heapq
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
from rich.console import Console
from rich.table import Table
from sweep import documents  # bench/sweep.py: a store's documents

from painters_gguf import sweeps, tasks
from painters_gguf.engine import distributed
from painters_gguf.engine.scoring import Scorer
from painters_gguf.evaluate import Evaluator, Settings, prepare
from painters_gguf.fetch import resolve_model
from painters_gguf.paths import data_dir
from painters_gguf.runtime import Model
from painters_gguf.store import Store

CLI = str(Path(sys.executable).with_name("painters-gguf"))


def makespan(times: list[float], workers: int) -> float:
    """Units handed out in order to the first free worker: when the last one finishes."""
    free = [0.0] * workers
    for seconds in times:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--variant", default="skip")
    parser.add_argument("--tasks", default="arc_easy,lambada_openai")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    path = resolve_model(args.model)
    data = data_dir(args.data_dir)

    with tempfile.TemporaryDirectory() as tmp:
        local_db, ray_db = Path(tmp) / "local.db", Path(tmp) / "ray.db"
        command = [CLI, "--db", str(local_db), "sweep", "-m", str(path), "--variant", args.variant, "--tasks", args.tasks]
        command += ["--limit", str(args.limit), "--threads", str(args.workers), "--data-dir", str(data)]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        local_seconds = time.perf_counter() - start

        start = time.perf_counter()
        model = Model(path, vocab_only=True)
        settings = Settings().for_model(model.arch, model.n_layer)
        prepared = [prepare(task, data, args.limit, settings) for task in tasks.select(args.tasks)]
        store = Store(ray_db)
        evaluator = Evaluator(Scorer(model, threads=1), store, settings)
        plans = list(
            {evaluator.full_plan} | {p.plan for v in sweeps.parse_variants(args.variant) for p in sweeps.grid(v, model.n_layer)}
        )
        tasks_digests = tuple((prep.task.name, distributed.docs_digest(prep)) for prep in prepared)
        job = distributed.Job(str(path), model.sha256, str(data), tasks_digests, args.limit, settings, 1)
        unit_seconds: list[float] = []
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            distributed.run(
                evaluator,
                plans,
                prepared,
                job,
                workers=args.workers,
                on_unit=lambda u, r: unit_seconds.append(sum(r.seconds.values())),
            )
        finally:
            ray.shutdown()
            store.close()
        ray_seconds = time.perf_counter() - start
        same = documents(local_db) == documents(ray_db)

    console = Console()
    table = Table(title=f"{path.name}: sweep --variant {args.variant} --tasks {args.tasks} --limit {args.limit}")
    for column in ("way", "wall s", "ratio to local"):
        table.add_column(column, justify="left" if column == "way" else "right")
    table.add_row(f"local, --threads {args.workers}", f"{local_seconds:.1f}", "1.00")
    table.add_row(f"Ray, {args.workers} workers x 1 thread", f"{ray_seconds:.1f}", f"{ray_seconds / local_seconds:.2f}")
    console.print(table)
    total = sum(unit_seconds)
    print(f"{len(unit_seconds)} units: {total:.1f} worker seconds, {min(unit_seconds):.2f} to {max(unit_seconds):.2f} s each")
    print(f"stores identical: {same}")
    spread = Table(title="the same units over K workers (list scheduling of the measured unit times)")
    for column in ("K", "wall s", "speed-up", "efficiency"):
        spread.add_column(column, justify="right")
    for k in (2, 4, 8, 16, 32, 64):
        wall = makespan(unit_seconds, k)
        spread.add_row(str(k), f"{wall:.1f}", f"{total / wall:.1f}", f"{total / wall / k:.0%}")
    console.print(spread)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

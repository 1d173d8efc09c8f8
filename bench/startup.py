"""eval's fixed cost, side by side in one run: what a command spends before its first decode.

Each row is a real `painters-gguf` process, timed wall-clock (median of --runs):

1. `--version`: the interpreter and the CLI's imports;
2. `eval --tasks TASK --limit 1` with every score already in the store (no decode at all): the
   whole fixed cost, the model check remembered (as on every run after the first);
3. the same with what was learned about the model file forgotten (a file seen for the first
   time: the model check's child process and the sha256 run);

then, in this process, the parts of row 2 one by one (the imports, the model check, reading and
preparing the task, loading the model, opening the store).

  .venv/bin/python bench/startup.py [--task hellaswag] [--runs 5] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("painters-gguf"))


def timed(command: list[str], env: dict[str, str], runs: int, before: list[str] | None = None) -> float:
    """Median wall seconds of `command` (after running `before`, untimed, each time)."""
    seconds = []
    for _ in range(runs):
        if before is not None:
            subprocess.run(before, env=env, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def parts(model: str, task_name: str, data: Path, db: Path) -> list[tuple[str, float]]:
    """Row 2's steps in this process, in the order eval takes them."""
    found = []
    start = time.perf_counter()
    import painters_gguf.cli.app  # noqa: F401
    from painters_gguf.evaluate import Settings, prepare
    from painters_gguf.fetch import resolve_model
    from painters_gguf.gguf_check import check_model_file
    from painters_gguf.runtime import Model
    from painters_gguf.store import Store
    from painters_gguf.tasks import TASKS

    found.append(("imports (the CLI and the runtime)", time.perf_counter() - start))
    start = time.perf_counter()
    path = resolve_model(model, log=lambda line: None)
    check_model_file(path)
    found.append(("model file checks (remembered)", time.perf_counter() - start))
    start = time.perf_counter()
    with Model(path, vocab_only=True) as info:
        found.append(("the model's metadata", time.perf_counter() - start))
        start = time.perf_counter()
        info.sha256  # noqa: B018 - the store's key
        found.append(("the model's sha256 (remembered)", time.perf_counter() - start))
    start = time.perf_counter()
    prepare(TASKS[task_name], data, 1, Settings())
    found.append((f"reading and preparing {task_name}", time.perf_counter() - start))
    start = time.perf_counter()
    with Model(path):
        found.append(("loading the model", time.perf_counter() - start))
    start = time.perf_counter()
    Store(db).close()
    found.append(("opening the store", time.perf_counter() - start))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="hellaswag")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, db = Path(tmp) / "home", Path(tmp) / "results.db"
        env = dict(os.environ, PAINTERS_GGUF_DATA=str(args.data_dir))
        eval_command = [CLI, "--db", str(db), "eval", "-m", args.model, "--tasks", args.task, "--limit", "1"]
        subprocess.run(eval_command, env=env, check=True, capture_output=True)  # scores stored; the check remembered
        forget = ["rm", "-f", str(home / "file-facts.json")]
        cold_env = dict(env, PAINTERS_GGUF_HOME=str(home))  # the model cache is not there: give a path
        from painters_gguf.fetch import resolve_model

        model_file = str(resolve_model(args.model, log=lambda line: None))
        cold_command = [c if c != args.model else model_file for c in eval_command]
        rows = [
            ("painters-gguf --version", timed([CLI, "--version"], env, args.runs)),
            (f"eval --tasks {args.task} --limit 1, all stored", timed(eval_command, env, args.runs)),
            ("the same, the model file seen for the first time", timed(cold_command, cold_env, args.runs, before=forget)),
        ]
        steps = parts(args.model, args.task, args.data_dir, db)
    console = Console()
    table = Table(title=f"fixed cost of a command ({args.model}, median of {args.runs} processes)")
    table.add_column("process")
    table.add_column("seconds", justify="right")
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.2f}")
    console.print(table)
    table = Table(title="row 2's steps, in one process")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for name, seconds in steps:
        table.add_row(name, f"{seconds:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()

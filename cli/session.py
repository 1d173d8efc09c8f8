"""What eval, sweep and report share: load the model once, read the tasks, open the store."""

from __future__ import annotations

import atexit
import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from painters_gguf import tasks
from painters_gguf.cli.console import err
from painters_gguf.data import held_here
from painters_gguf.engine import Engine
from painters_gguf.evaluate import Evaluator, PreparedTask, prepare
from painters_gguf.fetch import locate_model, resolve_model
from painters_gguf.gguf_check import check_model_file
from painters_gguf.outputs import RunInputs, expand
from painters_gguf.paths import data_dir, default_store, model_cache
from painters_gguf.store import Store

if TYPE_CHECKING:
    from painters_gguf.cli.options import Scoring
    from painters_gguf.runtime import Model


@dataclasses.dataclass
class Session:
    path: Path
    evaluator: Evaluator
    prepared: list[PreparedTask]
    scoring: Scoring
    data: Path
    from_store: bool = False  # a task without its benchmark files is read from the store (report)

    @property
    def model(self) -> Model:
        return self.evaluator.model

    @functools.cached_property
    def engine(self) -> Engine:
        return Engine(self.evaluator)

    def set_limit(self, limit: int | float | None) -> None:
        """Score (or show) the first `limit` documents of each task from now on."""
        self.prepared = [self.prepare(prep.task, limit) for prep in self.prepared]

    def prepare(self, task: tasks.base.Task, limit: int | float | None) -> PreparedTask:
        """The task from its benchmark files; from the store alone where they are not here and the
        command computes nothing (report), with a note."""
        if self.from_store and not held_here(self.data, task.eval_split):
            return self.evaluator.prepared_from_store(task, limit)
        return prepare(task, self.data, limit, self.evaluator.settings)


def open_session(*, default_db: Path, scoring: Scoring, vocab_only: bool = False, from_store: bool = False) -> Session:
    """Load the model once, read the tasks, open the store (--db after the command, else the
    one before it, else the default). With `vocab_only`, only the tokenizer is loaded; with
    `from_store` (a command that computes nothing), a task whose benchmark files are not here is
    read from the store: the documents it holds."""
    from painters_gguf.engine.scoring import Scorer

    chosen = tasks.select(scoring.task_names)
    path, llm = load_model(scoring.model, n_gpu_layers=scoring.n_gpu_layers, vocab_only=vocab_only)
    settings = scoring.settings().for_model(llm.arch, llm.n_layer)
    scorer = Scorer(
        llm,
        n_ctx=settings.n_ctx,
        n_batch=settings.batch_size,
        threads=scoring.threads,
        add_bos=bool(settings.add_bos),
        flash_attn=settings.flash_attn,
    )
    store = Store(store_path(default_db, scoring))
    atexit.register(store.close)  # its `writers` row goes with the process
    session = Session(path, Evaluator(scorer, store, settings), [], scoring, data_dir(scoring.data), from_store)
    with err.status("reading the tasks ..."):
        session.prepared = [session.prepare(task, scoring.limit) for task in chosen]
    absent = [p.task.name for p in session.prepared if p.stored_baselines is not None]
    if absent:
        session.evaluator.notes.append(
            f"{', '.join(absent)}: no benchmark file in {session.data}: shown from the store alone (the documents it holds)"
        )
    return session


def store_path(default_db: Path, scoring: Scoring) -> Path:
    """The results store: --db after the command, else the one before it (or the default)."""
    return expand(scoring.db) if scoring.db is not None else default_db


def run_inputs(
    store: Path | None, *, model: str | Path | None, data: str | Path | None, more: tuple[Path, ...] = ()
) -> RunInputs:
    """What a command reads, against which every file it writes is checked: the model (a catalog
    name: its place in the cache, fetched or not), the store it uses and the default one, `more`
    files it reads, the benchmark data folder and the model cache."""
    model_file = model if isinstance(model, Path) else locate_model(model)[0]
    files = (model_file, *([store] if store is not None else []), default_store(), *more)
    folders = (("the benchmark data folder", data_dir(data)), ("the model cache", model_cache()))
    return RunInputs(tuple(files), folders)


def load_model(spec: str | None, *, n_gpu_layers: int = 0, vocab_only: bool = False) -> tuple[Path, Model]:
    """Resolve --model, check the file (a crash in llama.cpp stays in a child process), load it once."""
    from painters_gguf.runtime import Model

    with err.status("loading the model ..."):
        path = resolve_model(spec, log=lambda line: err.print(escape(line)))
        check_model_file(path)
        return path, Model(path, n_gpu_layers=n_gpu_layers, vocab_only=vocab_only)


class RateColumn(ProgressColumn):
    """items/s; for a generation task (a `tokens` field), generated tokens/s as well."""

    def render(self, task: Task) -> Text:
        rate = f"{task.speed:.2f} items/s" if task.speed else "- items/s"
        tokens, elapsed = task.fields.get("tokens"), task.elapsed
        if tokens is not None and elapsed:
            rate += f", {tokens / elapsed:.1f} tokens/s"
        return Text(rate, style="progress.data.speed")


def progress_bar() -> Progress:
    """An M/N bar with items/s and ETA, on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
    )

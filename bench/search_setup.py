"""What the search bench scripts share: the options that name a model, its tasks, the results
store and the threads, and the evaluator they open (every score through that store)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from painters_gguf import tasks
from painters_gguf.engine.scoring import Scorer
from painters_gguf.evaluate import Evaluator, PreparedTask, Settings, prepare
from painters_gguf.fetch import resolve_model
from painters_gguf.paths import data_dir, default_store
from painters_gguf.runtime import Model
from painters_gguf.store import Store


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", default=None, help="a GGUF path or catalog name (default: the catalog's default)")
    parser.add_argument("--tasks", default="arc_easy,hellaswag,lambada_openai")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--db", default=None, help="results store (default: the usual one; a rerun reads what it holds)")
    parser.add_argument("--data-dir", default=None)


@dataclasses.dataclass
class Opened:
    model: Model
    prepared: list[PreparedTask]
    evaluator: Evaluator


def open_evaluator(args: argparse.Namespace) -> Opened:
    """The model the options name, its tasks prepared, and an evaluator on the results store."""
    model = Model(resolve_model(args.model))
    settings = Settings().for_model(model.arch, model.n_layer)
    prepared = [prepare(task, data_dir(args.data_dir), None, settings) for task in tasks.select(args.tasks)]
    store = Store(Path(args.db) if args.db else default_store())
    return Opened(model, prepared, Evaluator(Scorer(model, threads=args.threads), store, settings))

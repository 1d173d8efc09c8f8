"""Options shared by several commands: one meaning per flag everywhere."""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from painters_gguf.abi import MAX_CELLS, MAX_SLOTS
from painters_gguf.engine.packing import SEQUENCES_PER_BATCH
from painters_gguf.evaluate import Settings

Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="A catalog name, a .gguf path, or an HF owner/repo/file.gguf. Default: smollm2-135m."),
]
N = Annotated[
    int, typer.Option("--n", min=0, help="The paper's N: layers 0..N and T-N..T-1 run as usual (for skip-one/swap: the layer).")
]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed of the random variant.")]
Iters = Annotated[int, typer.Option("--iters", min=1, max=MAX_SLOTS, help="Iterations of looped-parallel.")]


def _whole_or_fraction(value: float | None) -> int | float | None:
    """lm-eval's --limit: a count of documents (a whole number), or a fraction of them below 1."""
    if value is None or 0 < value < 1:
        return value
    if value >= 1 and value == int(value):
        return int(value)
    raise typer.BadParameter(f"{value:g}: give a number of documents (1, 2, ...) or a fraction of them (0 < L < 1)")


Limit = Annotated[
    float | None,
    typer.Option(
        "--limit",
        "-l",
        callback=_whole_or_fraction,
        help="Score only the first L documents of each task (mmlu: of each subject); below 1, that fraction (as lm-eval).",
    ),
]
Threads = Annotated[int | None, typer.Option("--threads", "-t", min=1, max=4096, help="CPU threads (default: all cores).")]
NCtx = Annotated[
    int,
    typer.Option(
        "--n-ctx",
        "-c",
        min=16,
        max=MAX_CELLS,
        help="Longest request in tokens; longer ones are truncated from the left, as lm-eval does.",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "-b",
        min=SEQUENCES_PER_BATCH,
        max=MAX_CELLS,
        help=f"Tokens per decode batch (up to {SEQUENCES_PER_BATCH} requests are packed into each).",
    ),
]
NGpuLayers = Annotated[
    int, typer.Option("--n-gpu-layers", "-ngl", min=-1, help="Layers to offload to the GPU (CUDA builds; -1: all).")
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Benchmark JSONL folder (default: $PAINTERS_GGUF_DATA or the user data dir).")
]
NumFewshot = Annotated[
    int | None,
    typer.Option("--num-fewshot", min=0, help="Few-shot examples (default: lm-eval's per task: 5 for gsm8k, else 0)."),
]


class FlashAttention(str, enum.Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


AddBos = Annotated[
    bool | None,
    typer.Option(
        "--add-bos/--no-add-bos",
        metavar="",
        help="Start every request with BOS (default, as lm-eval: yes for Gemma models, no otherwise).",
    ),
]


FlashAttn = Annotated[
    FlashAttention,
    typer.Option("--flash-attn", "-fa", case_sensitive=False, help="Flash attention: on, off or auto (llama.cpp decides)."),
]
Db = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Results store (SQLite); also accepted before the command. Default: $PAINTERS_GGUF_DB or the user data dir."
    ),
]

DEFAULT_TASKS = "arc_easy,hellaswag,winogrande,lambada_openai"
TaskNames = Annotated[
    str,
    typer.Option(
        "--tasks", help="Comma list of arc_easy, arc_challenge, hellaswag, winogrande, lambada_openai, gsm8k, mmlu; or all."
    ),
]


@dataclasses.dataclass(frozen=True)
class Scoring:
    """The options eval, sweep and report share: the model, the tasks and how they are scored."""

    model: str | None
    task_names: str
    limit: int | float | None  # a count, or below 1 a fraction (lm-eval's --limit)
    num_fewshot: int | None
    add_bos: bool | None
    threads: int | None
    n_ctx: int
    batch_size: int
    n_gpu_layers: int
    flash_attn: FlashAttention
    data: Path | None
    db: Path | None  # --db after the command; None: the one before it, or the default

    def settings(self) -> Settings:
        return Settings(
            num_fewshot=self.num_fewshot,
            n_ctx=self.n_ctx,
            add_bos=self.add_bos,
            batch_size=self.batch_size,
            n_gpu_layers=self.n_gpu_layers,
            flash_attn=self.flash_attn.value,
        )


def _scoring_options(
    model: Model = None,
    task_names: TaskNames = DEFAULT_TASKS,
    limit: Limit = None,
    num_fewshot: NumFewshot = None,
    add_bos: AddBos = None,
    threads: Threads = None,
    n_ctx: NCtx = 2048,
    batch_size: BatchSize = 256,
    n_gpu_layers: NGpuLayers = 0,
    flash_attn: FlashAttn = FlashAttention.AUTO,
    data: DataDir = None,
    db: Db = None,
) -> None:
    """The CLI form of Scoring's fields (a signature only)."""


def with_scoring_options(*, computes: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a Typer command the shared scoring options after its own; it receives them as one
    `scoring: Scoring` argument. A command that computes nothing (report) has no --threads."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(_scoring_options, include_extras=True)
        shared = [
            p.replace(annotation=hints[p.name])
            for p in inspect.signature(_scoring_options).parameters.values()
            if computes or p.name != "threads"
        ]
        own_hints = typing.get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=own_hints.get(p.name, p.annotation), kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(command).parameters.values()
            if p.name != "scoring"
        ]
        parameters = [*own, *shared]

        @functools.wraps(command)
        def wrapper(**kwargs: object) -> None:
            values = {p.name: kwargs.pop(p.name) for p in shared}
            command(**kwargs, scoring=Scoring(**{"threads": None, **values}))  # type: ignore[arg-type]

        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate

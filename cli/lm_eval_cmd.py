"""`painters-gguf lm-eval ...`: lm-eval's own command line, with the `painters-gguf` model registered."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import typer


def lm_eval_command(ctx: typer.Context) -> None:
    """Run lm-eval's command line (`lm_eval ARGS`) with `--model painters-gguf` available:
    `--model_args model=NAME,plan=PLAN[,n=N,seed=S,iters=K,n_ctx=C,threads=T,n_gpu_layers=G,add_bos=B]`.
    Every argument after `lm-eval` goes to lm-eval unchanged (`painters-gguf lm-eval --help`: its help)."""
    from lm_eval.__main__ import cli_evaluate

    from painters_gguf.lm_eval_model import ModelArgs  # registers the model with lm-eval

    sys.argv = ["lm_eval", *as_json(ctx.args, ModelArgs.from_text)]
    cli_evaluate()


def as_json(argv: list[str], parse: Callable[[str], dict[str, object]]) -> list[str]:
    """The arguments with a `key=value` --model_args as JSON: lm-eval splits key=value pairs at every
    comma and takes a brace for broken JSON, so a plan text (0-4,{5-25}x3,26-29) cannot pass as it is."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name not in ("--model_args", "--model-args"):
            continue
        if eq and not value.lstrip().startswith("{"):
            argv[i] = f"{name}={json.dumps(parse(value))}"
        elif not eq and i + 1 < len(argv) and not argv[i + 1].lstrip().startswith("{"):
            argv[i + 1] = json.dumps(parse(argv[i + 1]))
    return argv

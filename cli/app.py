"""The painters-gguf command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from painters_gguf.cli import eval as eval_cmd
from painters_gguf.cli import export, lm_eval_cmd, models, plan, search, serve, similarity, store, sweep
from painters_gguf.cli.examples import epilog
from painters_gguf.outputs import expand
from painters_gguf.paths import default_store

app = typer.Typer(
    help="Transformer Layers as Painters on GGUF models: run layer plans and score them on benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: nothing cut, no markup eaten, no <bool>
    epilog=epilog(""),
)
app.add_typer(models.app, name="models")
app.command("eval", epilog=epilog("eval"))(eval_cmd.eval_command)
COMMANDS = (
    sweep.sweep,
    sweep.report,
    store.store,
    similarity.similarity,
    plan.plan,
    export.export,
    search.search,
    serve.serve,
    serve.chat,
)
for command in COMMANDS:
    app.command(epilog=epilog(command.__name__))(command)
app.command(
    "lm-eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)(lm_eval_cmd.lm_eval_command)


@dataclasses.dataclass
class Globals:
    db: Path


def show_version(value: bool) -> None:
    if value:
        from painters_gguf import __version__

        typer.echo(f"painters-gguf {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=show_version, metavar="", help="Print the version and exit.")
    ] = False,
    db: Annotated[
        Path | None, typer.Option("--db", help="Results store (SQLite). Default: $PAINTERS_GGUF_DB or the user data dir.")
    ] = None,
) -> None:
    ctx.obj = Globals(db=expand(db) if db is not None else default_store())

"""The painters-gguf command line."""

from __future__ import annotations

import sys

import typer

from painters_gguf.cli import models, plan
from painters_gguf.cli.console import err
from painters_gguf.errors import PaintersError

app = typer.Typer(
    help="Transformer Layers as Painters on GGUF models: run layer plans and score them on benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.command()(plan.plan)


def main() -> None:
    """Entry point: a PaintersError is one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except PaintersError as error:
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)

"""Shared rich consoles: results to stdout, progress and errors to stderr."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """One line on stderr (markup in the message prints literally), then exit code 2."""
    import typer

    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)

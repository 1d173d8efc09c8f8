"""Shared rich consoles: results to stdout, progress and errors to stderr."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


def visible(text: str, keep: str = "") -> str:
    """Control characters (an ESC sequence in GGUF metadata or a model's reply, a newline in a file
    name) shown as escapes instead of reaching the terminal; those in `keep` pass as they are."""
    return "".join(ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii") for ch in text)


def untrusted(text: object) -> str:
    """Text from outside (metadata, file names, data) for rich: control characters visible, markup literal."""
    return escape(visible(str(text)))


def fail(message: str) -> None:
    """One line on stderr (markup in the message prints literally), then exit code 2."""
    import typer

    err.print(f"[bold red]error:[/] {untrusted(message)}", soft_wrap=True)
    raise typer.Exit(2)


def print_notes(notes: Iterable[str]) -> None:
    """What a user should hear about besides the results (damaged documents scored again, scores
    near chance), a line each on stderr."""
    for note in notes:
        err.print(f"[yellow]note:[/] {untrusted(note)}", soft_wrap=True)

"""`painters-gguf models`: the catalog of known models, and fetching them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from painters_gguf.cli.console import err, fail, out
from painters_gguf.cli.examples import epilog
from painters_gguf.errors import PaintersError
from painters_gguf.fetch import fetch, locate_model, model_path
from painters_gguf.models import CATALOG, DEFAULT_MODEL, find

app = typer.Typer(help="The catalog of known models: list them, fetch one.", no_args_is_help=True, rich_markup_mode=None)


@app.command("list", epilog=epilog("models list"))
def list_models() -> None:
    """List the catalog: name, model, architecture, layers, size, source, and whether it is downloaded."""
    from painters_gguf.runtime import plan_architectures

    covered = set(plan_architectures())
    table = Table(title="Known models", caption="pass the name (bold) to -m/--model, or a .gguf path", show_lines=True)
    names = [model.name + (" (default)" if model.name == DEFAULT_MODEL else "") for model in CATALOG]
    # the name never wraps or is cut (the column is at least as wide); the model and its source wrap below it
    table.add_column("name: model, source", min_width=max(map(len, names)), ratio=1, overflow="fold")
    for column in ("arch", "plans", "layers", "size", "downloaded"):
        table.add_column(column, justify="right" if column in ("layers", "size") else "left")
    for model, name in zip(CATALOG, names, strict=True):
        table.add_row(
            f"[bold]{escape(name)}[/]\n{escape(model.description)}\n[dim]{escape(model.source.describe())}[/]",
            model.arch,
            "yes" if model.arch in covered else "no",
            str(model.n_layer),
            f"{model.size_mb} MB",
            "yes" if model_path(model).exists() else "no",
        )
    out.print(table)
    out.print(f"Downloaded models are kept in {escape(str(model_path(CATALOG[0]).parent.parent))}", soft_wrap=True)
    out.print(f"Layer plans run on: {', '.join(sorted(covered))}")


@app.command("fetch", epilog=epilog("models fetch"))
def fetch_model(
    name: Annotated[
        str, typer.Argument(help="A catalog name, e.g. smollm2-135m, or an HF owner/repo/file.gguf.")
    ] = DEFAULT_MODEL,
) -> None:
    """Download a catalog model once (checking its size and sha256) and print its path; a downloaded copy
    that is damaged is downloaded again."""
    entry = find(name) or (locate_model(name)[1] if name.count("/") == 2 and name.endswith(".gguf") else None)
    if entry is None:
        fail(f"unknown model {name!r}: the catalog has {', '.join(m.name for m in CATALOG)}, or give an HF owner/repo/file.gguf")
        return
    try:
        path = fetch(entry, log=lambda line: err.print(escape(line)), replace_damaged=True)
    except PaintersError as error:
        fail(str(error))
        return
    out.print(escape(str(path)), soft_wrap=True)

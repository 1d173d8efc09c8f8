"""`painters-gguf models`: the catalog of known models, and fetching them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from painters_gguf.cli.console import err, fail, out
from painters_gguf.errors import PaintersError
from painters_gguf.fetch import fetch, locate_model, model_path
from painters_gguf.models import CATALOG, DEFAULT_MODEL, find

app = typer.Typer(help="The catalog of known models: list them, fetch one.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """List the catalog: name, architecture, layers, size, source, and whether it is downloaded."""
    from painters_gguf.runtime import plan_architectures

    covered = set(plan_architectures())
    table = Table(title="Known models")
    for column in ("name", "arch", "plans", "layers", "size", "source", "downloaded"):
        table.add_column(column, justify="right" if column in ("layers", "size") else "left")
    for model in CATALOG:
        path = model_path(model)
        name = model.name + (" (default)" if model.name == DEFAULT_MODEL else "")
        plans = "yes" if model.arch in covered else "no"
        downloaded = escape(str(path)) if path.exists() else "no"
        table.add_row(
            escape(name),
            model.arch,
            plans,
            str(model.n_layer),
            f"{model.size_mb} MB",
            escape(model.source.describe()),
            downloaded,
        )
    out.print(table)
    out.print(f"Layer plans run on: {', '.join(sorted(covered))}")


@app.command("fetch")
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

"""`painters-gguf export`: a sequential plan as a GGUF file that stock llama.cpp runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from painters_gguf import variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out, untrusted
from painters_gguf.cli.session import load_model, run_inputs
from painters_gguf.memory import human_bytes
from painters_gguf.plan import Plan


def export(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            metavar="PLAN",
            help="A plan text like 0-9,9,10-29 (skips, reorders, repeats), or a variant: skip, reverse, random, "
            "middle-repeat, skip-one, swap (with --n, --seed).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The GGUF file to write.")],
    model: options.Model = None,
    n: options.N = 0,
    seed: options.Seed = 0,
    data: options.DataDir = None,
) -> None:
    """Write the model under a sequential plan as a GGUF that stock llama.cpp (llama-cli, llama-server) runs."""
    from painters_gguf.export import export as write_export
    from painters_gguf.export import sequential_layers

    path, llm = load_model(model)
    layer_plan = variants.resolve(spec, llm.n_layer, n, seed=seed)
    sequential_layers(layer_plan)  # a parallel plan is refused before anything is written
    target = run_inputs(ctx.obj.db, model=path, data=data).check(output, "--output")
    with err.status(f"writing {untrusted(target.name)} ..."):
        exported = write_export(llm, layer_plan, target)
    source = Plan.sequential(exported.source_layers)
    origin = exported.provenance
    composed = list(origin.plan.executions()) != list(source.executions())  # an export of an export
    out.print(
        f"wrote {untrusted(str(exported.path))}: {exported.n_layer} blocks (source layers {source.text}) of "
        f"{llm.n_layer}, {human_bytes(exported.n_bytes)}"
        + (f"; of the original {untrusted(os.fsdecode(origin.source))}: {origin.plan.text}" if composed else "")
    )

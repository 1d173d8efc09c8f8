"""`painters-gguf plan`: what a plan does on a model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from painters_gguf import variants
from painters_gguf.cli import options
from painters_gguf.cli.console import out, untrusted
from painters_gguf.cli.session import load_model
from painters_gguf.plan import Plan


def plan(
    spec: Annotated[
        str, typer.Argument(help=f"A variant: {variants.names_help()}; or a plan text like 0-3,{{4-27}}x3,28-29.")
    ] = "full",
    model: options.Model = None,
    n: options.N = 0,
    seed: options.Seed = 0,
    iters: options.Iters = 3,
) -> None:
    """Show a plan for a model: its text form, its steps, KV slots and compute vs the full model."""
    from painters_gguf.runtime import plan_architectures

    _, info = load_model(model, vocab_only=True)
    layer_plan = variants.resolve(spec, info.n_layer, n, seed=seed, iters=iters)
    name = info.meta("general.name") or "?"  # untrusted text: printed literally, never as markup
    out.print(
        f"[bold]{untrusted(info.path.name)}[/] ({untrusted(info.arch)}, {info.n_layer} layers), name {untrusted(repr(name))}"
    )
    if not info.runs_plans:
        supported = ", ".join(plan_architectures())
        out.print(f"[yellow]architecture {untrusted(repr(info.arch))} does not run layer plans[/] (supported: {supported})")
    out.print(f"plan: [bold cyan]{escape(layer_plan.text)}[/]")
    table = Table()
    table.add_column("step", justify="right")
    table.add_column("layers")
    table.add_column("kind")
    table.add_column("repeat", justify="right")
    table.add_column("KV slots", justify="right")
    for index, step in enumerate(layer_plan.steps, 1):
        kind = f"parallel ({len(step.layers)}, averaged)" if step.is_parallel else "block"
        members = Plan.sequential(step.layers).text
        table.add_row(str(index), members, kind, str(step.repeat), str(len(step.layers) * step.repeat))
    out.print(table)
    ratio = layer_plan.n_slots / info.n_layer
    out.print(
        f"{layer_plan.n_slots} block executions and KV slots per token, {ratio:.2f}x the full model's "
        f"{info.n_layer}; {layer_plan.n_steps} hidden states"
    )

"""Options shared by several commands: one meaning per flag everywhere."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Model = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="A catalog name, a .gguf path, or an HF owner/repo/file.gguf. Default: smollm2-135m."),
]
N = Annotated[int, typer.Option("--n", help="The paper's N: layers 0..N and T-N..T-1 run as usual (for skip-one/swap: the layer).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the random variant.")]
Iters = Annotated[int, typer.Option("--iters", help="Iterations of looped-parallel.")]

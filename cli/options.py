"""Options shared by several commands: one meaning per flag everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Model = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="A catalog name, a .gguf path, or an HF owner/repo/file.gguf. Default: smollm2-135m."),
]
N = Annotated[int, typer.Option("--n", help="The paper's N: layers 0..N and T-N..T-1 run as usual (for skip-one/swap: the layer).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the random variant.")]
Iters = Annotated[int, typer.Option("--iters", help="Iterations of looped-parallel.")]
Limit = Annotated[Optional[int], typer.Option("--limit", "-l", help="Score only the first L documents of each task (mmlu: of each subject).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: all cores).")]
NCtx = Annotated[int, typer.Option("--n-ctx", help="Longest request in tokens; longer ones are truncated from the left, as lm-eval does.")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Tokens per decode batch (several documents are packed into each).")]
NGpuLayers = Annotated[int, typer.Option("--n-gpu-layers", help="Layers to offload to the GPU (CUDA builds; -1: all).")]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", help="Benchmark JSONL folder (default: $PAINTERS_GGUF_DATA or the user data dir).")]
NumFewshot = Annotated[Optional[int], typer.Option("--num-fewshot", help="Few-shot examples (default: lm-eval's per task: 5 for gsm8k, else 0).")]
AddBos = Annotated[
    Optional[bool],
    typer.Option("--add-bos/--no-add-bos", help="Start every request with BOS (default, as lm-eval: yes for Gemma models, no otherwise)."),
]

"""`painters-gguf similarity` (Fig. 3): mean cosine similarity of the hidden states of every pair of layers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from painters_gguf import outputs, variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out, untrusted
from painters_gguf.cli.render import heatmap, shade_scale
from painters_gguf.cli.session import load_model, progress_bar, run_inputs
from painters_gguf.data import load_split
from painters_gguf.evaluate import default_add_bos
from painters_gguf.figures import SimilarityRecord, record_path
from painters_gguf.paths import data_dir
from painters_gguf.tasks import TASKS


def similarity(
    typer_ctx: typer.Context,
    model: options.Model = None,
    plan: Annotated[str, typer.Option("--plan", "-p", help="A variant or plan text (default: the full model).")] = "full",
    n: options.N = 0,
    seed: options.Seed = 0,
    iters: options.Iters = 3,
    docs: Annotated[int, typer.Option("--docs", min=1, help="LAMBADA documents to average over (the paper: 100).")] = 100,
    n_ctx: options.NCtx = 2048,
    add_bos: options.AddBos = None,
    threads: options.Threads = None,
    n_gpu_layers: options.NGpuLayers = 0,
    data: options.DataDir = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Save the matrix as .npy, with a .csv and a .json (its model, plan, documents) beside it."
        ),
    ] = None,
) -> None:
    """Fig. 3: mean cosine similarity between the hidden states of every pair of layers (embedding + each output)."""
    from painters_gguf.similarity import mean_similarity

    path, llm = load_model(model, n_gpu_layers=n_gpu_layers)
    npy = csv = record = None
    if output is not None:  # checked before any work: no file written may be an input of this run
        inputs = run_inputs(typer_ctx.obj.db, model=path, data=data)
        npy = inputs.check(output.with_suffix(".npy"), "--output")
        csv = inputs.check(npy.with_suffix(".csv"), "--output (its .csv)")
        record = inputs.check(record_path(npy), "--output (its record, .json)")
    layer_plan = variants.resolve(plan, llm.n_layer, n, seed=seed, iters=iters)
    task = TASKS["lambada_openai"]
    rows = load_split(data_dir(data), task.eval_split, task.check_row)[:docs]
    bos = default_add_bos(llm.arch) if add_bos is None else add_bos
    documents = [llm.tokenize(row["text"], add_bos=bos)[-n_ctx:] for row in rows]
    with llm.context(n_ctx=max(len(d) for d in documents), n_batch=512, threads=threads) as ctx, progress_bar() as bar:
        job = bar.add_task("documents", total=len(documents))
        matrix = mean_similarity(ctx, layer_plan, documents, progress=lambda k: bar.advance(job, k))
    labels = ["emb", *(str(s) for s in range(layer_plan.n_steps))]
    title = f"{untrusted(path.name)} · plan {layer_plan.text}: mean cosine similarity over {len(documents)} LAMBADA documents"
    columns = ["e", *(str(s) if s % 5 == 0 else "" for s in range(layer_plan.n_steps))]  # a cell is 2 characters wide
    out.print(title)  # above the table: a small matrix's table is narrower than the title
    out.print(heatmap(matrix, labels, columns, None, low=float(np.min(matrix)), high=1.0, compact=True))
    out.print(shade_scale(float(np.min(matrix)), 1.0))
    if npy is not None and csv is not None and record is not None:
        header = ",".join(labels) + "\n"
        lines = (",".join(f"{value:.6f}" for value in row) + "\n" for row in matrix)
        buffer = io.BytesIO()
        np.save(buffer, matrix)
        outputs.write_bytes(npy, buffer.getvalue())
        outputs.write_text(csv, [header, *lines])
        name = llm.meta("general.name") or path.name
        facts = SimilarityRecord(path.name, name, llm.sha256, llm.n_layer, layer_plan.text, len(documents))
        outputs.write_text(record, [facts.to_json()])
        err.print(f"wrote {escape(str(npy))}, {escape(str(csv))} and {escape(str(record))} (what it was computed from)")

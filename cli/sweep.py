"""`painters-gguf sweep` (score the paper's sweeps) and `painters-gguf report` (show them from the store)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Annotated

import typer

from painters_gguf import outputs, sweeps, variants
from painters_gguf.cli import options
from painters_gguf.cli.console import err, out, print_notes, untrusted
from painters_gguf.cli.render import looped_heatmap, summary_table, sweep_table
from painters_gguf.cli.session import Session, open_session, progress_bar, run_inputs
from painters_gguf.engine import Compute, RayCompute
from painters_gguf.errors import PaintersError
from painters_gguf.evaluate import TaskScores
from painters_gguf.variants import VARIANTS, Variant

VariantOption = Annotated[
    str | None,
    typer.Option(
        "--variant",
        "-v",
        help=f"A comma list of {variants.names_help(with_full=False)}; or all (the six middle variants). "
        "Default: all, or none when --plan is given.",
    ),
]
PlanTexts = Annotated[
    list[str] | None,
    typer.Option("--plan", "-p", help="A plan text to compare (repeatable), e.g. --plan 0-9,20-29 --plan '0-4,{5-25}x3,26-29'."),
]
Seeds = Annotated[int, typer.Option("--seeds", min=1, max=1000, help="Seeds of the random variant, averaged (the paper: 10).")]
IterRange = Annotated[str, typer.Option("--iters", help="Looped-parallel iterations: a count (3) or a range (1-6) for Fig. 10.")]
PlanByPlan = Annotated[
    bool,
    typer.Option(
        "--plan-by-plan",
        help="Run every plan from the tokens up. By default the layers a plan shares with the full model "
        "(e.g. 0..N) are computed once per batch and the plan goes on from there: the same scores, faster.",
    ),
]


Cells = dict[Variant, list[sweeps.Cell]]
FullScores = dict[str, TaskScores | None]


RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Score on Ray workers (pip install 'painters-gguf[ray]'): local (a Ray instance on this machine), "
        "auto (the running cluster) or an address (ray://head:10001). The store stays here.",
    ),
]
REACH_TIMEOUT = 10  # seconds for a Ray head given by address to answer
# a Ray head (its GCS server; the Ray Client server for ray://) speaks gRPC, so HTTP/2: to a client's
# preface and empty SETTINGS frame it answers first with a SETTINGS frame of its own (RFC 9113, 3.4)
H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])

RayWorkers = Annotated[
    int | None,
    typer.Option("--ray-workers", min=1, max=4096, help="Ray workers, each with the model loaded (default: CPUs / --threads)."),
]


def _cells(
    session: Session,
    variant_spec: str | None,
    plans: list[str] | None,
    seeds: int,
    iters: str,
    compute: Compute | None,
) -> tuple[Cells, FullScores]:
    """The sweep's cells from the store, computing first what it lacks (compute=None: nothing)."""
    n_layer = session.model.n_layer
    chosen = sweeps.parse_variants(variant_spec or ("all" if not plans else ""))
    grids = {v: sweeps.grid(v, n_layer, seeds=seeds, iters=sweeps.parse_iters(iters)) for v in chosen}
    if plans:
        grids[Variant.PLANS] = sweeps.plan_grid(plans, n_layer)
    evaluator, engine = session.evaluator, session.engine
    if compute is None:
        adopted = evaluator.adopt_stored_settings(session.prepared)
        if adopted is not None:
            evaluator.notes.append(adopted)
        cells, full = sweeps.run(engine, grids, session.prepared, compute=None)
        for variant in cells:
            cells[variant], note = sweeps.stored_seeds(cells[variant], seeds)
            if note is not None:
                evaluator.notes.append(note)
        return cells, full
    every = engine.with_full_model([p.plan for points in grids.values() for p in points])
    if compute.ray is None:  # a worker checks its plans on Ray
        engine.check(every)  # the largest, up front
    total = engine.todo(every, session.prepared)
    err.print(f"{untrusted(session.path.name)}: {len(every)} plans x {len(session.prepared)} tasks, {total} documents to score")
    with progress_bar() as bar:
        job = bar.add_task("sweep", total=total, visible=total > 0)  # all from the store: no bar
        return sweeps.run(engine, grids, session.prepared, compute=compute, progress=lambda k: bar.advance(job, k))


def _check_reachable(address: str) -> None:
    """`local`, `auto`, or a Ray head at HOST:PORT (ray://HOST:PORT): checked within REACH_TIMEOUT,
    where Ray itself would retry for minutes on a port that is closed or is not a Ray head."""
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PaintersError(f"--ray {address!r}: give local, auto, HOST:PORT or ray://HOST:PORT")
    deadline = time.monotonic() + REACH_TIMEOUT
    try:
        conn = socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT)
    except OSError as error:
        raise PaintersError(f"--ray {address}: no Ray head answers there ({error.strerror or error})") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return  # as Ray reads it: the head speaks TLS first, so its answering is what is checked
        try:
            conn.sendall(H2_HELLO)
            frame = _receive(conn, 9, deadline)
        except OSError:
            frame = b""
    if not _is_settings(frame):
        raise PaintersError(f"--ray {address}: not a Ray head (no gRPC handshake there within {REACH_TIMEOUT} s)")


def _is_settings(header: bytes) -> bool:
    """A frame header of SETTINGS (type 4), no ACK, on stream 0, of whole 6-byte settings."""
    length, stream = int.from_bytes(header[:3], "big"), int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
    return len(header) == 9 and header[3] == 4 and not header[4] & 1 and stream == 0 and length % 6 == 0


def _receive(conn: socket.socket, size: int, deadline: float) -> bytes:
    """Up to `size` bytes, fewer where the peer closes first; TimeoutError past the deadline."""
    data = b""
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        conn.settimeout(left)
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _ray_compute(session: Session, address: str, workers: int | None) -> RayCompute:
    """What Ray workers need: the model as a catalog name (each worker fetches and checks it) or as
    the file's path (which every worker must see), the data and the scoring options."""
    scoring = session.scoring
    spec = scoring.model
    model = spec if spec is None or not Path(spec).expanduser().exists() else str(session.path.resolve())

    def say(line: str) -> None:
        err.print(untrusted(line), soft_wrap=True)

    return RayCompute(address, workers, model, session.data, scoring.limit, scoring.threads or 1, scoring.n_gpu_layers, say)


def _stored_limit(session: Session) -> int | None:
    """The largest limit under which the store holds the full model on every task, where that is
    less than what was asked (the sweep was run with a --limit the report was not given)."""
    full_plan = session.engine.full_plan
    limit = min(session.evaluator.stored_prefix(full_plan, prep) for prep in session.prepared)
    short = any(len(prep.task.limit_indices(prep.docs, limit)) < len(prep.indices) for prep in session.prepared)
    return limit if limit > 0 and short else None


def _show(session: Session, cells: Cells, full: FullScores) -> None:
    names = [prep.task.name for prep in session.prepared]
    n_layer = session.model.n_layer
    for variant, variant_cells in cells.items():
        out.print(sweep_table(variant, variant_cells, names, n_layer))
        if VARIANTS[variant].looped and len({c.point.iters for c in variant_cells}) > 1:
            out.print(looped_heatmap(variant_cells, n_layer))
    middle = {v: group for v, group in cells.items() if v in variants.MIDDLE_VARIANTS}  # Fig. 11 compares these
    notes = session.evaluator.notes
    if len(middle) > 1:
        summary, left_out = sweeps.summarize([c for group in middle.values() for c in group])
        notes += left_out
        if len(summary) > 1:  # a comparison needs two complete grids
            out.print(summary_table(summary))
    for prep in session.prepared:
        if (warning := sweeps.full_model_note(prep, full[prep.task.name])) is not None:
            notes.append(warning)
    print_notes(notes)


@options.with_scoring_options()
def sweep(
    ctx: typer.Context,
    variant: VariantOption = None,
    plan: PlanTexts = None,
    seeds: Seeds = 10,
    iters: IterRange = "3",
    plan_by_plan: PlanByPlan = False,
    ray: RayAddress = None,
    ray_workers: RayWorkers = None,
    *,
    scoring: options.Scoring,
) -> None:
    """Score the paper's sweeps (every N; random over seeds; looped parallel over iterations) through the store."""
    if ray_workers is not None and ray is None:
        raise PaintersError("--ray-workers goes with --ray")
    if plan_by_plan and ray is not None:
        raise PaintersError("--plan-by-plan is a local way of computing; Ray workers share prefixes")
    if ray is not None:
        _check_reachable(ray)
    # on Ray the workers load the model; here its tokenizer packs the documents as they will
    session = open_session(default_db=ctx.obj.db, scoring=scoring, vocab_only=ray is not None)
    compute = Compute(share_prefix=not plan_by_plan, ray=_ray_compute(session, ray, ray_workers) if ray else None)
    _show(session, *_cells(session, variant, plan, seeds, iters, compute))


@options.with_scoring_options(computes=False)
def report(
    ctx: typer.Context,
    variant: VariantOption = None,
    plan: PlanTexts = None,
    seeds: Seeds = 10,
    iters: IterRange = "3",
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write PNG and SVG figures shaped like the paper's into this folder (needs matplotlib)."),
    ] = None,
    similarity: Annotated[
        Path | None, typer.Option("--similarity", help="A matrix saved by `painters-gguf similarity` (.npy) to draw as Fig. 3.")
    ] = None,
    *,
    scoring: options.Scoring,
) -> None:
    """Show sweeps from the results store as tables and terminal heatmaps; --plot writes figures. Computes nothing."""
    matrix = None
    if similarity is not None:  # checked before anything else
        from painters_gguf.figures import load_similarity

        matrix = load_similarity(similarity)
    session = open_session(default_db=ctx.obj.db, scoring=scoring, from_store=True)
    if similarity is not None and matrix is not None:
        from painters_gguf.figures import check_similarity_model

        check_similarity_model(matrix, similarity, session.path.name, session.model.sha256, session.model.n_layer)
    inputs = run_inputs(
        session.evaluator.store.path, model=session.path, data=scoring.data, more=(*([similarity] if similarity else []),)
    )
    if plot is not None:  # before anything else: a folder for the figures that can be written
        plot = outputs.expand(plot)
        inputs.check(plot / "fig-variants.png", "--plot")  # the folder: made, writable, not one the run reads
    cells, full = _cells(session, variant, plan, seeds, iters, None)  # also checks the options
    if not any(holding.model_sha256 == session.model.sha256 for holding in session.evaluator.store.holdings()):
        out.print(
            f"the results store {untrusted(session.evaluator.store.path)} holds nothing for {untrusted(session.path.name)}: "
            "score it first (painters-gguf sweep or eval); `painters-gguf store` lists what it holds",
            soft_wrap=True,
        )
        return
    if not any(cell.complete for group in cells.values() for cell in group) and (limit := _stored_limit(session)):
        session.evaluator.notes.append(
            f"nothing complete on {'all documents' if scoring.limit is None else f'the first {scoring.limit}'} of each "
            f"task; the store holds the first {limit} of every task: showing those (as --limit {limit})"
        )
        session.set_limit(limit)
        cells, full = _cells(session, variant, plan, seeds, iters, None)
    _show(session, cells, full)
    if plot is not None:
        from painters_gguf import figures

        name = session.model.meta("general.name") or session.path.name  # the model's name, as its card gives it
        tasks = [prep.task for prep in session.prepared]
        written, notes = figures.write_all(plot, inputs, name, session.model.n_layer, cells, tasks, matrix)
        for path in written:
            err.print(f"wrote {untrusted(path)}")
        print_notes(notes)

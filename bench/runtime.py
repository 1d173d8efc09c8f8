"""Runtime overheads of layer plans, measured side by side in one process.

    .venv/bin/python bench/runtime.py [--model smollm2-135m] [--tokens 512] [--reps 5]

Prints:
  - prompt processing: identity plan vs no plan (the upstream graph) on the same tokens;
  - skip plans vs the full model, against the fraction of blocks they execute;
  - the time to set a plan, and of the first decode after it (graph and buffers re-reserved);
  - resident memory of a 3x looped-parallel plan vs the full model, against the KV growth
    (split between the global and the sliding-window cache where the model has both).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from painters_gguf import variants
from painters_gguf.fetch import resolve_model
from painters_gguf.plan import Plan
from painters_gguf.runtime import Context, Model


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def time_prompt(ctx: Context, plan: Plan | None, tokens: list[int], reps: int) -> float:
    """Median seconds of one prompt pass from an empty cache, last token's logits only (after a warm-up)."""
    ctx.set_plan(plan)
    last_only = [False] * (len(tokens) - 1) + [True]
    times = []
    for rep in range(reps + 1):
        ctx.clear()
        start = time.perf_counter()
        ctx.eval(tokens, outputs=last_only)
        if rep:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    console = Console()

    model = Model(resolve_model(args.model))
    T = model.n_layer
    rng = np.random.default_rng(0)
    tokens = [int(t) for t in rng.integers(100, model.n_vocab - 100, args.tokens)]
    ctx = model.context(n_ctx=args.tokens, n_batch=args.tokens, threads=args.threads)

    # identity vs the upstream graph, interleaved so drift hits both
    base, ident = [], []
    for _ in range(3):
        base.append(time_prompt(ctx, None, tokens, args.reps))
        ident.append(time_prompt(ctx, variants.full(T), tokens, args.reps))
    t_base, t_ident = statistics.median(base), statistics.median(ident)

    table = Table(title=f"{model.path.name}: {args.tokens}-token prompt, median of {args.reps} x 3")
    for column in ("plan", "blocks/token", "seconds", "tokens/s", "time vs full", "blocks vs full"):
        table.add_column(column, justify="right" if column != "plan" else "left")
    table.add_row("no plan (upstream graph)", str(T), f"{t_base:.3f}", f"{args.tokens / t_base:.0f}", "1.000", "1.000")
    table.add_row("identity plan", str(T), f"{t_ident:.3f}", f"{args.tokens / t_ident:.0f}", f"{t_ident / t_base:.3f}", "1.000")
    for n in (T // 4, T // 3, T // 2 - 1):
        plan = variants.skip(T, n)
        t = time_prompt(ctx, plan, tokens, args.reps)
        table.add_row(
            f"skip N={n}", str(plan.n_slots), f"{t:.3f}", f"{args.tokens / t:.0f}", f"{t / t_base:.3f}", f"{plan.n_slots / T:.3f}"
        )
    looped = variants.looped_parallel(T, 4, 3)
    t = time_prompt(ctx, looped, tokens, args.reps)
    table.add_row(
        "looped parallel N=4 x3",
        str(looped.n_slots),
        f"{t:.3f}",
        f"{args.tokens / t:.0f}",
        f"{t / t_base:.3f}",
        f"{looped.n_slots / T:.3f}",
    )
    console.print(table)

    # setting a plan: the call (new KV cache, re-reserve) and the first decode after it
    set_times, first_times = [], []
    for plan in [looped, variants.full(T)] * args.reps:
        start = time.perf_counter()
        ctx.set_plan(plan)
        set_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ctx.eval(tokens[:8])
        first_times.append(time.perf_counter() - start)
        ctx.clear()
    console.print(
        f"set_plan: median {statistics.median(set_times) * 1000:.1f} ms; the first 8-token decode after it: "
        f"median {statistics.median(first_times) * 1000:.1f} ms (n_ctx={args.tokens})"
    )
    ctx.close()

    # memory: a fresh context per plan, RSS after a pass
    n_ctx = 2048
    kv_per_slot = model.kv_bytes(1, n_ctx) / 2**20
    rows = []
    for name, plan in [("full", None), ("looped parallel N=4 x3", looped)]:
        before = rss_mib()
        with model.context(n_ctx=n_ctx, n_batch=512, threads=args.threads) as mem_ctx:
            mem_ctx.set_plan(plan)
            mem_ctx.logits(tokens[:256])
            rows.append((name, mem_ctx.n_slots, rss_mib() - before))
    mem = Table(title=f"resident memory of a context (n_ctx={n_ctx}, f16 KV: {kv_per_slot:.2f} MiB per slot)")
    for column in ("plan", "KV slots", "RSS growth MiB", "KV estimate MiB"):
        mem.add_column(column, justify="right" if column != "plan" else "left")
    for name, slots, growth in rows:
        mem.add_row(name, str(slots), f"{growth:.1f}", f"{slots * kv_per_slot:.1f}")
    console.print(mem)
    extra = rows[1][2] - rows[0][2]
    expected = (rows[1][1] - rows[0][1]) * kv_per_slot
    console.print(f"looped vs full: +{extra:.1f} MiB resident, +{expected:.1f} MiB of KV expected ({extra / expected:.2f}x)")
    swa = set(model.swa_layers())
    if swa:  # both caches hold n_ctx cells (llama.cpp's default swa_full), so a slot costs the same in either
        executions = [layer for step in looped.executions() for layer in step]
        in_swa = sum(layer in swa for layer in executions)
        console.print(
            f"  looped plan's {len(executions)} slots: {len(executions) - in_swa} in the global cache, {in_swa} in the "
            f"sliding-window cache (full model: {T - len(swa)} and {len(swa)})"
        )
    console.print(f"identity / no plan prompt time ratio: {t_ident / t_base:.4f}")


if __name__ == "__main__":
    main()

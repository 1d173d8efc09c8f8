"""The GPU benchmark: every layer on a CUDA GPU, measured side by side in one run.

1. HellaSwag throughput: painters-gguf's engine against llama.cpp's own `llama-perplexity -ngl 99
   --hellaswag` on the same GPU, model and items (bench/hellaswag.py's comparison, on the GPU),
   each timed from the model load on; llama-perplexity is compiled against the CUDA build's own
   libraries, so no second CUDA build is needed;
2. the time to set a plan (a new KV cache in GPU memory), and of the first decode after it;
3. the wall time of a skip sweep (`painters-gguf sweep --variant skip`: every N, ARC-Easy and
   LAMBADA, as the README's CPU sweeps).

    .venv-cuda/bin/python bench/gpu.py [--model qwen2.5-0.5b] [--items 1000] [--sweep-limit 100]

CMAKE_ARGS must be what the CUDA wheel was built with (it names the build tree);
scripts/gpu-check.sh builds that wheel and runs this. Without a GPU it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import hellaswag  # bench/hellaswag.py: llama-perplexity's item file, and patches/build_wheel.py
from rich.console import Console

from painters_gguf import variants
from painters_gguf.bindings import C
from painters_gguf.data import load_split
from painters_gguf.engine.scoring import Scorer
from painters_gguf.fetch import resolve_model
from painters_gguf.memory import Device, backend_devices, human_bytes
from painters_gguf.paths import data_dir
from painters_gguf.runtime import Model
from painters_gguf.sweeps import grid
from painters_gguf.tasks import TASKS
from painters_gguf.variants import Variant

build_wheel = hellaswag.build_wheel
SWEEP_TASKS = "arc_easy,lambada_openai"


def fail(message: str) -> NoReturn:
    print(f"bench/gpu.py: {message}", file=sys.stderr)
    sys.exit(2)


def require_gpus() -> list[Device]:
    """The GPUs ggml sees, or one line and exit 2."""
    if not C.llama_supports_gpu_offload():
        fail("no GPU: this llama.cpp build has no GPU offload (scripts/gpu-check.sh builds the CUDA one and runs this)")
    gpus = [device for device in backend_devices() if device.kind == "gpu"]
    if not gpus:
        fail("no GPU: the CUDA build of llama.cpp finds no device (see nvidia-smi and CUDA_VISIBLE_DEVICES)")
    return gpus


def llama_common_flags(compile_commands: Path) -> list[str]:
    """The compiler and flags (defines, include paths) the build tree compiled llama-common with."""
    for entry in json.loads(compile_commands.read_text()):
        if entry["file"].endswith("/common/common.cpp"):
            args = shlex.split(entry["command"])
            drop = {i for i, arg in enumerate(args) if arg in ("-o", "-c")}
            drop |= {i + 1 for i in drop}  # and the object and source they name
            return [arg for i, arg in enumerate(args) if i not in drop and not arg.endswith("_EXPORTS")]
    fail(f"{compile_commands} does not compile common/common.cpp")


def compile_perplexity() -> Path:
    """llama-perplexity (two source files) compiled against the CUDA wheel's libraries in its CMake
    build tree, with the flags that tree compiled llama-common with; kept beside the tree."""
    tree = build_wheel.source_tree(build_wheel.cache_root(), build_wheel.cmake_args())
    libs = tree.dir / "cmake" / "bin"
    if not any(libs.glob("libggml-cuda.so*")):
        fail(f"no CUDA build in {tree.dir} for CMAKE_ARGS={os.environ.get('CMAKE_ARGS', '')!r}: run scripts/gpu-check.sh")
    binary = tree.dir / "llama-perplexity"
    if not binary.exists():
        tool = tree.src / "vendor" / "llama.cpp" / "tools" / "perplexity"
        flags = llama_common_flags(tree.dir / "cmake" / "compile_commands.json")
        build_wheel.run(
            [
                *flags,
                "-std=c++17",
                str(tool / "main.cpp"),
                str(tool / "perplexity.cpp"),
                f"-L{libs}",
                "-lllama-common",
                "-lllama",
                "-lggml",
                "-lggml-base",
                "-pthread",
                f"-Wl,-rpath,{libs}",
                "-Wl,--allow-shlib-undefined",  # CUDA's own libraries resolve when ggml-cuda loads, as in Python
                "-o",
                str(binary),
            ]
        )
    return binary


def hellaswag_docs(items: int, data: Path) -> list[dict]:
    task = TASKS["hellaswag"]
    return task.process_docs(load_split(data, task.eval_split, task.check_row))[:items]


def time_painters_gguf(path: Path, docs: list[dict], batch_size: int) -> tuple[Model, float, float]:
    """(the model on the GPU, seconds from its load to the last item scored, acc_norm)."""
    task = TASKS["hellaswag"]
    groups = [task.requests(doc, task.context(doc, [])) for doc in docs]
    start = time.perf_counter()
    model = Model(path, n_gpu_layers=-1)
    scorer = Scorer(model, n_batch=batch_size)
    results = scorer.score_all(groups)
    seconds = time.perf_counter() - start
    scorer.ctx.close()
    acc_norm = sum(task.score(doc, res)["acc_norm"] for doc, res in zip(docs, results, strict=True)) / len(docs)
    return model, seconds, acc_norm


def time_perplexity(binary: Path, path: Path, docs: list[dict], console: Console) -> float | None:
    """Seconds of `llama-perplexity -ngl 99 --hellaswag` over the same items (model load included)."""
    items = hellaswag.perplexity_file(docs, binary.parent / "hellaswag_items.txt")
    cmd = [str(binary), "-m", str(path), "-f", str(items), "--hellaswag", "--hellaswag-tasks", str(len(docs))]
    cmd += ["-ngl", "99", "--no-warmup"]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        console.print(f"llama-perplexity failed ({result.returncode}): {result.stderr[-2000:]}", markup=False)
        return None
    final = re.findall(r"^(\d+)\t([\d.]+)", result.stdout, re.M)
    if final:
        console.print(f"llama-perplexity acc_norm-like score after {final[-1][0]} items: {final[-1][1]}")
    return seconds


def time_plan_switch(model: Model, reps: int) -> tuple[float, float]:
    """Median seconds to set a plan, and of the first 8-token decode after it (buffers re-reserved)."""
    looped, full = variants.looped_parallel(model.n_layer, 4, 3), variants.full(model.n_layer)
    tokens = list(range(100, 108))
    set_times, first_times = [], []
    with model.context(n_ctx=2048) as ctx:
        for plan in [looped, full] * reps:
            start = time.perf_counter()
            ctx.set_plan(plan)
            set_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            ctx.eval(tokens)  # returns logits: the GPU has finished
            first_times.append(time.perf_counter() - start)
            ctx.clear()
    return statistics.median(set_times), statistics.median(first_times)


def time_skip_sweep(path: Path, limit: int, batch_size: int, data: Path) -> float:
    """Wall seconds of `painters-gguf sweep --variant skip` on the GPU, into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        cli = Path(sys.executable).parent / "painters-gguf"
        cmd = [str(cli), "--db", f"{tmp}/sweep.db", "sweep", "--model", str(path), "--variant", "skip"]
        cmd += ["--tasks", SWEEP_TASKS, "--limit", str(limit), "-ngl", "-1", "-b", str(batch_size), "--data-dir", str(data)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="qwen2.5-0.5b", help="a catalog name or a .gguf path (default: the largest catalog model)"
    )
    parser.add_argument("--items", type=int, default=1000, help="HellaSwag items")
    parser.add_argument(
        "--batch-size", type=int, default=2048, help="painters-gguf's tokens per decode (as llama-perplexity's default)"
    )
    parser.add_argument("--reps", type=int, default=5, help="plan switches, each way")
    parser.add_argument("--sweep-limit", type=int, default=100, help="items per task in the skip sweep")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    console = Console()

    gpus = require_gpus()
    console.print(", ".join(f"{gpu.name}: {human_bytes(gpu.free)} free of {human_bytes(gpu.total)}" for gpu in gpus))
    path = resolve_model(args.model)
    data = data_dir(args.data_dir)
    docs = hellaswag_docs(args.items, data)

    model, t_ours, acc_norm = time_painters_gguf(path, docs, args.batch_size)
    console.print(f"painters-gguf acc_norm over {len(docs)} items: {acc_norm:.4f}")
    set_s, first_s = time_plan_switch(model, args.reps)
    n_layer = model.n_layer
    model.close()
    console.print(
        f"set_plan (looped parallel N=4 x3 <-> full, n_ctx=2048): median {set_s * 1000:.1f} ms; "
        f"the first 8-token decode after it: median {first_s * 1000:.1f} ms"
    )

    t_sweep = time_skip_sweep(path, args.sweep_limit, args.batch_size, data)
    documents = (len(grid(Variant.SKIP, n_layer)) + 1) * len(SWEEP_TASKS.split(",")) * args.sweep_limit
    console.print(
        f"skip sweep (every N and the full model, {SWEEP_TASKS}, {args.sweep_limit} items each): "
        f"{documents} documents in {t_sweep:.1f} s ({documents / t_sweep:.1f} documents/s)"
    )

    rows = [("painters-gguf (shared prefix, packed)", t_ours)]
    try:
        t_ppl = time_perplexity(compile_perplexity(), path, docs, console)
    except subprocess.CalledProcessError as error:
        console.print(f"llama-perplexity could not be compiled: {error}", markup=False)
        t_ppl = None
    if t_ppl is not None:
        rows.append(("llama-perplexity --hellaswag -ngl 99", t_ppl))
    title = f"HellaSwag, {len(docs)} items, {path.name}, every layer on the GPU, model load included"
    console.print(hellaswag.throughput_table(title, rows, len(docs)))


if __name__ == "__main__":
    main()

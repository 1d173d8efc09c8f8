"""HellaSwag throughput, side by side in one run, same model, data and threads:

1. painters-gguf's engine (shared prefixes, packed batches, logits only where scored);
2. the same requests one per choice, no prefix sharing (the plain path);
3. llama.cpp's own `llama-perplexity --hellaswag`, built from the same pinned source, outside
   the repo (in the build cache), fed the same preprocessed items.

  .venv/bin/python bench/hellaswag.py [--items 200] [--threads 2] [--skip-perplexity]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "patches"))

import build_wheel  # noqa: E402

from painters_gguf.data import load_split  # noqa: E402
from painters_gguf.engine.scoring import Scorer  # noqa: E402
from painters_gguf.fetch import resolve_model  # noqa: E402
from painters_gguf.paths import data_dir  # noqa: E402
from painters_gguf.runtime import Model  # noqa: E402
from painters_gguf.tasks import TASKS  # noqa: E402


def build_perplexity() -> Path:
    """llama-perplexity from the cached, pinned llama.cpp source tree (CPU, static)."""
    tree = build_wheel.source_tree(build_wheel.cache_root(), build_wheel.cmake_args())
    tree.prepare(build_wheel.fetch_sdist(build_wheel.cache_root()), build_wheel.PATCH.read_bytes())
    out = build_wheel.cache_root() / "bench" / "llama-perplexity"
    binary = out / "bin" / "llama-perplexity"
    if not binary.exists():
        source = tree.src / "vendor" / "llama.cpp"
        build_wheel.run(
            [
                "cmake",
                "-S",
                str(source),
                "-B",
                str(out),
                "-G",
                "Ninja",
                "-DCMAKE_BUILD_TYPE=Release",
                "-DBUILD_SHARED_LIBS=OFF",
                "-DLLAMA_CURL=OFF",
                "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF",
                "-DLLAMA_BUILD_SERVER=OFF",
                "-DLLAMA_BUILD_TOOLS=ON",
            ]
        )
        build_wheel.run(["cmake", "--build", str(out), "--target", "llama-perplexity", "-j"])
    return binary


def perplexity_file(docs: list[dict], path: Path) -> Path:
    """llama.cpp's 6-lines-per-item layout, with lm-eval's preprocessing (context, gold, 4 endings)."""
    lines = []
    for doc in docs:
        lines += [doc["query"], str(doc["gold"]), *doc["choices"]]
    path.write_text("\n".join(lines) + "\n")
    return path


def throughput_table(title: str, rows: list[tuple[str, float]], items: int) -> Table:
    """(path, seconds) rows side by side: items/s and each one's time against the first row's."""
    table = Table(title=title)
    for column in ("path", "seconds", "items/s", "vs painters-gguf"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.1f}", f"{items / seconds:.2f}", f"{seconds / rows[0][1]:.2f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-perplexity", action="store_true")
    args = parser.parse_args()
    console = Console()

    path = resolve_model(args.model)
    task = TASKS["hellaswag"]
    docs = task.process_docs(load_split(data_dir(), task.eval_split, task.check_row))[: args.items]
    groups = [task.requests(doc, task.context(doc, [])) for doc in docs]
    model = Model(path)
    scorer = Scorer(model, threads=args.threads)
    rows = []

    start = time.perf_counter()
    batched = scorer.score_all(groups)
    t_batched = time.perf_counter() - start
    rows.append(("painters-gguf (shared prefix, packed)", t_batched))

    start = time.perf_counter()
    for group in groups:
        for request in group:
            scorer.loglikelihood_unbatched(request)
    rows.append(("one request per choice, no sharing", time.perf_counter() - start))

    acc_norm = sum(task.score(doc, res)["acc_norm"] for doc, res in zip(docs, batched, strict=True)) / len(docs)
    if not args.skip_perplexity:
        binary = build_perplexity()
        data = perplexity_file(docs, Path(build_wheel.cache_root() / "bench" / "hellaswag_items.txt"))
        cmd = [
            str(binary),
            "-m",
            str(path),
            "-f",
            str(data),
            "--hellaswag",
            "--hellaswag-tasks",
            str(len(docs)),
            "-t",
            str(args.threads),
            "--no-warmup",
        ]
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        t_ppl = time.perf_counter() - start
        if result.returncode != 0:
            console.print(result.stderr[-2000:])
            raise SystemExit("llama-perplexity failed")
        rows.append(("llama-perplexity --hellaswag", t_ppl))
        final = re.findall(r"^(\d+)\t([\d.]+)", result.stdout, re.M)
        if final:
            console.print(f"llama-perplexity acc_norm-like score after {final[-1][0]} items: {final[-1][1]}")

    console.print(throughput_table(f"HellaSwag, {len(docs)} items, {path.name}, {args.threads} threads", rows, len(docs)))
    console.print(f"painters-gguf acc_norm over these items: {acc_norm:.4f}")
    if shutil.which("nproc"):
        console.print(f"cores: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()

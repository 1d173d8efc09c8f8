"""lm-eval through painters-gguf's own backend vs lm-eval's `gguf` backend over HTTP, in one run.

The same model file, plan and threads for each; lm-eval 0.4.13's own hellaswag and arc_easy task
YAMLs, their data read from ../shared/data (or $PAINTERS_GGUF_DATA) through local YAMLs that include
them (as tests/test_lm_eval_backend.py does), offline, zero-shot, the first --limit documents of each:

a. ours: `painters-gguf lm-eval --model painters-gguf --model_args model=PATH,plan=PLAN,threads=T`:
   scored in-process, a document's choices sharing their prefix, documents packed into decode batches;
b. `lm_eval --model gguf --model_args base_url=URL` against `painters-gguf serve -m PATH --plan PLAN -t T`:
   one HTTP request per choice (echo + logprobs, 10 top logprobs), each evaluated alone;
c. once, the same `gguf` backend against llama-cpp-python's stock server (`python -m llama_cpp.server`,
   its defaults but n_ctx 2048 and T threads), on the first --stock-limit documents only (for echo +
   logprobs it sorts the whole vocabulary in Python for every prompt token: minutes per hundred
   documents). It serves the full model only, and its echoed logprobs are shifted by one token
   (llama-cpp-python issue #1983): it is compared with (a) under plan full, on the documents both
   scored, which runs a second time when --plan is another.

Wall seconds of each run, model loading included: for (a) the lm-eval process from start to end (its
imports, tasks and datasets, the model's loading, the scoring); for (b) and (c) from the server's start
to lm-eval's end (the server's start-up shown too), and per document scored. Each run's line is printed
as it ends. Per task: each run's acc and, against ours under the
same plan, the fraction of documents whose chosen answer (the argmax of the per-choice log-likelihoods in
lm-eval's samples_*.jsonl `resps`) is the same, and the mean absolute per-choice log-likelihood difference.

    .venv/bin/python bench/lm_eval_backend.py [--model smollm2-135m] [--plan full] [--limit 200] [--stock-limit 20]
        [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from serve import CLI, Server  # bench/serve.py: a server process, its output drained, stopped safely

from painters_gguf.fetch import resolve_model

REPO = Path(__file__).resolve().parent.parent
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))
RUN_TIMEOUT = 6 * 3600  # a bound on one lm-eval run, not a wait
# our task name: (lm-eval's YAML, the split files it reads from the data folder, fields to override)
TASKS = {
    "hellaswag": ("hellaswag/hellaswag.yaml", {"validation": "hellaswag/validation.jsonl"}, {"training_split": None}),
    "arc_easy": ("arc/arc_easy.yaml", {"test": "arc_easy/test.jsonl"}, {"training_split": None, "validation_split": None}),
}


def local_tasks(folder: Path, data: Path) -> Path:
    """A YAML per task: lm-eval's own (found without importing lm-eval), its dataset read from local JSONL files."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise RuntimeError("lm-eval is not installed: pip install 'painters-gguf[lm-eval]'")
    lm_eval_tasks = Path(spec.origin).parent / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (include, files, overrides) in TASKS.items():
        lines = [f"include: {lm_eval_tasks / include}", f"task: {name}_local", "tag: []"]
        lines += ["dataset_path: json", "dataset_name: null"]
        lines += ["dataset_kwargs:", "  data_files:"] + [f"    {split}: {data / file}" for split, file in files.items()]
        lines += [f"{key}: {json.dumps(value)}" for key, value in overrides.items()]
        (folder / f"{name}_local.yaml").write_text("\n".join(lines) + "\n")
    return folder


def lm_eval(backend: list[str], out: Path, tasks: Path, limit: int) -> None:
    """One lm-eval run over the local tasks, offline, its samples logged under `out`."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(out / "hf")}
    command = [*backend, "--tasks", ",".join(f"{name}_local" for name in TASKS), "--include_path", str(tasks)]
    command += ["--limit", str(limit), "--log_samples", "--output_path", str(out / "lm_eval")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}):\n{done.stderr[-4000:]}")


def collected(out: Path) -> dict[str, dict[str, Any]]:
    """Per task: acc, and doc_id -> each choice's log-likelihood, from lm-eval's results and samples files."""
    (results_path,) = (out / "lm_eval").rglob("results_*.json")
    results = json.loads(results_path.read_text())["results"]
    found = {}
    for name in TASKS:
        (samples_path,) = (out / "lm_eval").rglob(f"samples_{name}_local_*.jsonl")
        rows = [json.loads(line) for line in samples_path.read_text().splitlines()]
        lls = {row["doc_id"]: [float(resp[0][0]) for resp in row["resps"]] for row in rows}
        found[name] = {"acc": results[f"{name}_local"]["acc,none"], "lls": lls}
    return found


def compared(mine: dict[int, list[float]], theirs: dict[int, list[float]]) -> dict[str, float]:
    """Over the documents `theirs` scored: the fraction with the same chosen answer, the mean |difference| of a choice's ll."""
    if not set(theirs) <= set(mine):
        raise RuntimeError(f"documents not scored by the reference: {sorted(set(theirs) - set(mine))[:10]}")
    mine = {doc: mine[doc] for doc in theirs}

    def choice(lls: list[float]) -> int:
        return max(range(len(lls)), key=lls.__getitem__)

    differences = [abs(a - b) for doc in mine for a, b in zip(mine[doc], theirs[doc], strict=True)]
    return {
        "same_choice": sum(choice(mine[doc]) == choice(theirs[doc]) for doc in mine) / len(mine),
        "mean_abs_ll_difference": sum(differences) / len(differences),
    }


def free_port() -> int:
    with socket.socket() as sock:  # llama-cpp-python's server takes no port 0
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="A catalog name or a .gguf path.")
    parser.add_argument("--plan", default="full", help="A plan text or a variant name, for ours and our server.")
    parser.add_argument("--limit", type=int, default=200, help="Documents per task (lm-eval's --limit).")
    parser.add_argument("--stock-limit", type=int, default=20, help="Documents per task for llama-cpp-python's server.")
    parser.add_argument("--threads", "-t", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers to this JSON file.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a SIGTERM stops the servers and lm-eval too
    console, started = Console(), time.monotonic()
    data = Path(os.environ.get("PAINTERS_GGUF_DATA") or REPO.parent / "shared" / "data")
    if not (data / "arc_easy" / "test.jsonl").exists():
        parser.error(f"benchmark data not found at {data}: set PAINTERS_GGUF_DATA")

    def say(line: str) -> None:
        console.print(f"[{time.monotonic() - started:5.0f} s] {line}", highlight=False, markup=False)

    path, T = resolve_model(args.model, log=lambda line: console.print(line, highlight=False)), str(args.threads)
    found: dict[str, Any] = {"model": path.name, "plan": args.plan, "threads": args.threads, "limit": args.limit}
    found |= {"stock_limit": args.stock_limit, "runs": {}}
    runs: dict[str, dict[str, Any]] = found["runs"]
    scores: dict[str, dict[str, dict[str, Any]]] = {}  # per run, per task: acc and the log-likelihoods
    with tempfile.TemporaryDirectory(prefix="bench-lm-eval-") as tmp_name:
        tmp = Path(tmp_name)
        tasks = local_tasks(tmp / "tasks", data)

        def ours(name: str, plan: str) -> None:
            say(f"{name}: painters-gguf lm-eval --model painters-gguf, plan {plan} ...")
            start = time.perf_counter()
            model_args = f"model={path},plan={plan},threads={T}"
            lm_eval([CLI, "lm-eval", "--model", "painters-gguf", "--model_args", model_args], tmp / name, tasks, args.limit)
            ended(name, {"wall_s": time.perf_counter() - start})

        def served(name: str, command: list[str], marker: str, limit: int, url: str | None = None) -> None:
            say(f"{name}: lm_eval --model gguf against {Path(command[0]).name} {' '.join(command[1:3])} ...")
            start = time.perf_counter()
            with Server(command, marker, url=url) as server:  # stopped (SIGTERM, then a kill) whatever happens
                up = time.perf_counter() - start
                base_url = server.url.removesuffix("/v1")  # the backend appends /v1/completions
                lm_eval([LM_EVAL, "--model", "gguf", "--model_args", f"base_url={base_url}"], tmp / name, tasks, limit)
                ended(name, {"wall_s": time.perf_counter() - start, "server_start_s": up})

        def ended(name: str, run: dict[str, Any]) -> None:
            scores[name] = collected(tmp / name)
            run["documents"] = sum(len(task["lls"]) for task in scores[name].values())
            run["s_per_document"] = run["wall_s"] / run["documents"]
            runs[name] = run
            accs = ", ".join(f"{task} acc {score['acc']:.3f}" for task, score in scores[name].items())
            say(f"{name}: {run['wall_s']:.1f} s for {run['documents']} documents ({accs})")

        ours("ours", args.plan)
        full = "ours" if args.plan == "full" else "ours_full"  # what the stock server's full model is compared with
        if full != "ours":
            ours(full, "full")
        # the gguf backend sends no model id: the server's first (here only) plan answers
        serve = [CLI, "serve", "-m", str(path), f"--plan={args.plan}", "--port", "0", "-c", "2048", "-t", T]
        served("gguf_serve", serve, " at http://", args.limit)
        port = free_port()
        stock = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1", "--port", str(port)]
        stock += ["--n_ctx", "2048", "--n_threads", T, "--n_threads_batch", T, "--verbose", "False"]
        served("gguf_stock", stock, "Uvicorn running on", args.stock_limit, url=f"http://127.0.0.1:{port}/v1")
    say("done")

    references = {"ours": None, full: None, "gguf_serve": "ours", "gguf_stock": full}  # compared with which
    for name, reference in references.items():
        runs[name]["tasks"] = {task: {"acc": s["acc"], "documents": len(s["lls"])} for task, s in scores[name].items()}
        if reference is not None:
            runs[name]["compared_with"] = reference
            runs[name]["time_ratio"] = runs[name]["s_per_document"] / runs[reference]["s_per_document"]
            for task in TASKS:
                runs[name]["tasks"][task].update(compared(scores[reference][task]["lls"], scores[name][task]["lls"]))
    report(console, found)
    if args.json is not None:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
        console.print(f"wrote {args.json}")


def report(console: Console, found: dict[str, Any]) -> None:
    runs = found["runs"]
    labels = {"ours": f"ours, {found['plan']}", "ours_full": "ours, full"}
    labels |= {"gguf_serve": "gguf → serve", "gguf_stock": "gguf → stock, full"}
    table = Table(
        title=f"lm-eval on {found['model']}: plan {found['plan']}, {found['threads']} threads, "
        f"--limit {found['limit']} (stock server: {found['stock_limit']})",
        caption="wall s: model loading included (ours: the whole lm-eval process; gguf: from the server's start). "
        "time ratio (s per document) and comparisons: against ours under the same plan (stock: full), "
        "on the documents both scored. "
        "same choice: argmax of the per-choice log-likelihoods (ll)",
    )
    table.add_column("measurement")
    for name in runs:
        table.add_column(labels[name], justify="right")

    def row(measurement: str, key: str, form: str, task: str | None = None) -> None:
        def shown(run: dict[str, Any]) -> str:
            value = (run["tasks"][task] if task else run).get(key)
            return "" if value is None else format(value, form)

        table.add_row(measurement, *(shown(run) for run in runs.values()))

    row("wall s", "wall_s", ".1f")
    row("  server start-up, s", "server_start_s", ".1f")
    row("documents", "documents", "d")
    row("s per document", "s_per_document", ".3f")
    row("time ratio (gguf / ours)", "time_ratio", ".2f")
    for task in TASKS:
        table.add_section()
        row(f"{task} acc", "acc", ".3f", task)
        row("  same choice as ours", "same_choice", ".3f", task)
        row("  mean |Δ choice ll|, nats", "mean_abs_ll_difference", ".4f", task)
    console.print(table)
    console.print("The stock server's echoed logprobs are shifted by a token (llama-cpp-python issue #1983).", highlight=False)


if __name__ == "__main__":
    main()

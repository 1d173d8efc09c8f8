"""`painters-gguf serve` against llama-cpp-python's stock server, and its memory per plan, in one run.

Every server is a real process on 127.0.0.1, same model file, threads and context size:

1. throughput: `serve --plan full` vs `python -m llama_cpp.server` (the same installed, patched
   llama_cpp; it sets no plan: the stock graph; flash attention on and logits of the last token
   only, as ours), the same requests to each, the servers taking turns request
   by request after
   a warm-up: prompt processing (a long prompt, --paragraphs 4: ~300 tokens; max_tokens=1:
   usage.prompt_tokens / wall time) and generation (a short prompt, max_tokens=--max-tokens,
   greedy: completion_tokens / wall time, its short prompt's pass included); medians.
   Our server evaluates every request from an empty cache, llama-cpp-python's reuses the prefix
   it shares with the previous request: each prompt starts with another word, so neither reuses one;
2. memory (VmRSS and its peak VmHWM): `serve` with 1, 2 and 4 copies of the looped-parallel plan
   0-4,{5-(T-5)}x3,(T-4)-(T-1) under different names, after start-up and after one request to each
   plan, and the extra per added plan; then the same depth written out as copies: the sequential
   plan 0-4,5-(T-5),5-(T-5),5-(T-5),(T-4)-(T-1) served as a plan over the original file vs
   `painters-gguf export`ed to a GGUF (deleted afterwards) served with `--plan full`.

    .venv/bin/python bench/serve.py [--model smollm2-135m] [--threads 2] [--requests 5] [--paragraphs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from painters_gguf.fetch import resolve_model
from painters_gguf.plan import Plan
from painters_gguf.runtime import Model

CLI = str(Path(sys.executable).with_name("painters-gguf"))
START_TIMEOUT = 300  # a bound on start-up, not a wait: the start-up line ends it
# the first word of each prompt: no two requests in a row start alike (the two lists share no word)
WORDS = "Apples Bridges Clouds Deserts Engines Forests Glaciers Harbors Islands Jungles Kites Lanterns".split()
SUBJECTS = "Owls Pirates Robots Sailors Tigers Wizards Dragons Knights Otters Comets Giants Ravens".split()
PARAGRAPH = (
    "The old lighthouse keeper climbed the spiral stairs every evening, counting the steps as his father "
    "had taught him, and lit the great lamp that warned the fishing boats away from the rocks. Winter storms "
    "rattled the windows, gulls sheltered on the gallery rail, and the village below watched the beam sweep "
    "across the bay until dawn, when he wrote the weather in a worn leather logbook. "
)


class Server:
    """A server process until stopped; `url` (ending in /v1) once a line containing `marker` is printed."""

    def __init__(self, command: list[str], marker: str, url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.name = " ".join(command[:3])
        environment = {**os.environ, "COLUMNS": "200", **(env or {})}
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        self.tail: deque[str] = deque(maxlen=30)  # the last lines, for an error message
        lines: queue.Queue[str] = queue.Queue()
        for stream in (self.proc.stdout, self.proc.stderr):  # both drained for good: a full pipe would block the server
            threading.Thread(target=self._drain, args=(stream, lines), daemon=True).start()
        try:
            self.url = self._wait_for(marker, lines, url)
        except BaseException:
            self.stop()
            raise

    def _drain(self, stream: Any, lines: queue.Queue[str]) -> None:
        for line in stream:
            self.tail.append(line)
            lines.put(line)
        lines.put("")  # end of output: the process stopped

    def _wait_for(self, marker: str, lines: queue.Queue[str], url: str | None) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {marker!r} line in {START_TIMEOUT} s:\n{''.join(self.tail)}") from None
            if not line:
                raise RuntimeError(f"{self.name} stopped at start-up:\n{''.join(self.tail)}")
            if marker in line:
                return url or line.split(" at ", 1)[1].strip()

    def complete(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """A /v1/completions answer and its wall seconds."""
        start = time.perf_counter()
        response = requests.post(f"{self.url}/completions", json=body, timeout=600)
        seconds = time.perf_counter() - start
        response.raise_for_status()
        return response.json(), seconds

    def memory_mib(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak RSS) of the process, MiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bounded wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ours(model: Path, plans: list[str], args: argparse.Namespace, env: dict[str, str] | None = None) -> Server:
    command = [CLI, "serve", "-m", str(model), "--port", "0", "-c", str(args.ctx), "-t", str(args.threads)]
    return Server(command + [f"--plan={plan}" for plan in plans], " at http://", env=env)


def stock(model: Path, args: argparse.Namespace) -> Server:
    with socket.socket() as sock:  # a free port for it (it takes no port 0)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--n_ctx", str(args.ctx), "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)]
    # as ours: flash attention (ours: llama.cpp's auto, on for a CPU), logits of the last token only
    # (ours keeps every token's only for a request asking logprobs, which this one never does)
    command += ["--flash_attn", "True", "--logits_all", "False"]
    return Server([*command, "--verbose", "False"], "Uvicorn running on", url=f"http://127.0.0.1:{port}/v1")


def throughput(servers: dict[str, Server], n: int, max_tokens: int, long_prompt: str) -> dict[str, dict[str, float]]:
    """Prompt and generation tokens/s of each server: the same requests, the servers taking turns
    request by request (a slow spell of a shared machine hits both), medians of the per-request rates."""
    greedy = {"temperature": 0.0, "repeat_penalty": 1.0, "stop": [], "seed": 0}
    rates: dict[str, dict[str, list[float]]] = {name: {"prompt": [], "generation": []} for name in servers}
    for server in servers.values():
        server.complete({"prompt": "Hello there", "max_tokens": 4, **greedy})
    for i in range(n):  # each prompt's first word differs from the previous one's: no shared prefix
        long_request = {"prompt": f"{WORDS[i % len(WORDS)]}. {long_prompt}", "max_tokens": 1, **greedy}
        story = f"{SUBJECTS[i % len(SUBJECTS)]} are the subject of this short story. Once upon a time"
        for name, server in servers.items():
            reply, seconds = server.complete(long_request)
            rates[name]["prompt"].append(reply["usage"]["prompt_tokens"] / seconds)
            reply, seconds = server.complete({"prompt": story, "max_tokens": max_tokens, **greedy})
            rates[name]["generation"].append(reply["usage"]["completion_tokens"] / seconds)
    return {
        name: {
            "prompt_tokens_per_s": statistics.median(rates[name]["prompt"]),
            "generation_tokens_per_s": statistics.median(rates[name]["generation"]),
            **{f"{key}_mib": value for key, value in servers[name].memory_mib().items()},
        }
        for name in servers
    }


def touched(server: Server, names: list[str], long_prompt: str) -> dict[str, float]:
    """Memory after one request to each plan (its KV cache, compute and logits buffers used)."""
    for name in names:
        server.complete({"model": name, "prompt": f"{name}: {long_prompt}", "max_tokens": 8, "temperature": 0.0})
    return server.memory_mib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="A catalog name or a .gguf path.")
    parser.add_argument("--threads", "-t", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ctx", "-c", type=int, default=2048, help="Context size of each server (and of each plan).")
    parser.add_argument("--requests", type=int, default=5, help="Requests of each kind (prompt, generation) per server.")
    parser.add_argument("--max-tokens", type=int, default=64, help="Tokens generated per generation request.")
    parser.add_argument("--paragraphs", type=int, default=4, help="Long prompt: this many ~75-token paragraphs.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the numbers to this JSON file.")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a SIGTERM stops the servers too (the with blocks)
    console, started, long_prompt = Console(), time.monotonic(), PARAGRAPH * args.paragraphs

    def say(line: str) -> None:
        console.print(f"[{time.monotonic() - started:4.0f} s] {line}", highlight=False, markup=False)

    path = resolve_model(args.model, log=lambda line: console.print(line, highlight=False))
    with Model(path, vocab_only=True) as info:
        T, kv_slot_mib = info.n_layer, info.kv_bytes(1, min(args.ctx, info.n_ctx_train or args.ctx)) / 2**20
    looped = f"0-4,{{5-{T - 5}}}x3,{T - 4}-{T - 1}"
    sequential = f"0-4,{','.join([f'5-{T - 5}'] * 3)},{T - 4}-{T - 1}"
    spec = importlib.util.find_spec("llama_cpp")
    library = f"llama_cpp from {Path(spec.origin).parent if spec and spec.origin else '?'}"
    console.print(f"{path.name}: {T} layers, {args.threads} threads, n_ctx {args.ctx}; both servers on the same {library}")
    found: dict[str, Any] = {"model": path.name, "threads": args.threads, "n_ctx": args.ctx, "library": library}

    say(f"throughput: {args.requests} prompt and {args.requests} generation requests per server ...")
    with ours(path, ["full"], args) as mine, stock(path, args) as theirs:
        found.update(throughput({"ours_full": mine, "stock": theirs}, args.requests, args.max_tokens, long_prompt))

    say(f"memory: 1, 2 and 4 copies of {looped} ...")
    for k in (1, 2, 4):
        names = [f"lp{i}" for i in range(1, k + 1)]
        with ours(path, [f"{name}={looped}" for name in names], args) as server:
            found[f"plans_{k}"] = {"start": server.memory_mib(), "request": touched(server, names, long_prompt)}
    say(f"memory: {sequential} as a plan vs exported as copies ...")
    with ours(path, [f"seq={sequential}"], args) as server:
        found["sequential_plan"] = touched(server, ["seq"], long_prompt)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        copy, env = Path(tmp) / "copies.gguf", {"PAINTERS_GGUF_HOME": tmp}  # what is learned of the copy stays in tmp
        export = [CLI, "export", sequential, "-m", str(path), "-o", str(copy)]
        done = subprocess.run(export, capture_output=True, text=True, env={**os.environ, **env})
        if done.returncode != 0:
            raise RuntimeError(f"painters-gguf export failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        found["file_mib"] = {"original": path.stat().st_size / 2**20, "exported": copy.stat().st_size / 2**20}
        with ours(copy, ["full"], args, env=env) as server:
            found["exported_full"] = touched(server, ["full"], long_prompt)

    one, four = found["plans_1"]["request"]["VmRSS"], found["plans_4"]["request"]["VmRSS"]
    found["extra_rss_per_plan_mib"] = (four - one) / 3
    found["kv_per_plan_mib"] = Plan.parse(looped).n_slots * kv_slot_mib
    say("done")
    report(console, found, looped, sequential)
    if args.json is not None:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
        console.print(f"wrote {args.json}")


def report(console: Console, found: dict[str, Any], looped: str, sequential: str) -> None:
    table = Table(
        title=f"{found['model']}: {found['threads']} threads, n_ctx {found['n_ctx']}",
        caption=f"looped: {looped}; sequential: {sequential}. ratio: ours / the other column",
    )
    for column in ("measurement", "ours", "stock/copy", "ratio"):
        table.add_column(column, justify="left" if column == "measurement" else "right")

    def row(name: str, mine: float | str, theirs: float | None = None) -> None:
        ratio = f"{mine / theirs:.3f}" if theirs and isinstance(mine, float) else ""
        table.add_row(name, mine if isinstance(mine, str) else f"{mine:.1f}", "" if theirs is None else f"{theirs:.1f}", ratio)

    mine, theirs = found["ours_full"], found["stock"]
    row("prompt tok/s, --plan full vs stock (median)", *speeds(found, "prompt"))
    row("generation tok/s (median)", *speeds(found, "generation"))
    row("  RSS after those requests, MiB", mine["VmRSS_mib"], theirs["VmRSS_mib"])
    row("  peak RSS, MiB", mine["VmHWM_mib"], theirs["VmHWM_mib"])
    table.add_section()
    for k in (1, 2, 4):
        start, request = found[f"plans_{k}"]["start"], found[f"plans_{k}"]["request"]
        shown = f"{start['VmRSS']:.1f} / {request['VmRSS']:.1f} ({request['VmHWM']:.1f})"
        row(f"{k} x looped: RSS start-up / after requests (peak), MiB", shown)
    row("  extra RSS per added plan vs its f16 KV, MiB", found["extra_rss_per_plan_mib"], found["kv_per_plan_mib"])
    table.add_section()
    plan_rss, copy_rss = found["sequential_plan"], found["exported_full"]
    row("sequential: as a plan vs exported: RSS, MiB", plan_rss["VmRSS"], copy_rss["VmRSS"])
    row("  peak RSS, MiB", plan_rss["VmHWM"], copy_rss["VmHWM"])
    row("  model file, MiB (original vs exported)", found["file_mib"]["original"], found["file_mib"]["exported"])
    console.print(table)
    console.print(f"Both servers run {found['library']}; the stock one sets no plan.", highlight=False)


def speeds(found: dict[str, Any], kind: str) -> tuple[float, float]:
    return found["ours_full"][f"{kind}_tokens_per_s"], found["stock"][f"{kind}_tokens_per_s"]


if __name__ == "__main__":
    main()

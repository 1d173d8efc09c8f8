"""Real `painters-gguf serve` processes on 127.0.0.1 for the tests, and the Python API's answers to
compare them with."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import requests

CLI = str(Path(sys.executable).with_name("painters-gguf"))
START_TIMEOUT = 300  # seconds for the model and the contexts (a bound, not a wait: the URL line ends it)
REQUEST_TIMEOUT = 300


class Server:
    """`painters-gguf serve --port 0 ARGS` until stopped; `url` from its start-up line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [CLI, "serve", "--port", "0", "--threads", "2", *args],  # the default host: 127.0.0.1
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []  # read as it comes: uvicorn logs every request there, a full pipe would block it
        self.url = self._start_up_url()
        assert self.url.startswith("http://127.0.0.1:"), self.url
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def _start_up_url(self) -> str:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put("")  # end of output: the process stopped

        def read_errors() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)

        self.readers = [threading.Thread(target=read, daemon=True), threading.Thread(target=read_errors, daemon=True)]
        for reader in self.readers:
            reader.start()
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no start-up line in {START_TIMEOUT} s: {''.join(self.stdout)}") from None
            if not line:
                self.proc.wait()
                self.readers[1].join(timeout=10)
                raise AssertionError(f"serve exited with {self.proc.returncode}: {''.join(self.stderr)}")
            self.stdout.append(line)
            if " at http://" in line:
                return line.split(" at ", 1)[1].strip()

    def post(self, path: str, body: dict, **kwargs: object) -> requests.Response:
        return requests.post(f"{self.url}/{path}", json=body, timeout=REQUEST_TIMEOUT, **kwargs)  # type: ignore[arg-type]

    def complete(self, body: dict) -> dict:
        response = self.post("completions", body)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        """Stop the server; its exit code and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)  # the pipes are closed: they end
        return self.proc.returncode, "".join(self.stderr)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def eval_with_samples(folder: Path, model: Path, data: Path, *args: str) -> None:
    """`painters-gguf eval ARGS` on `model` with its results and samples in folder/ours/ (store: folder/store.db)."""
    result = subprocess.run(
        [CLI, "--db", str(folder / "store.db"), "eval", "-m", str(model), *args, "--data-dir", str(data), "-t", "2"]
        + ["-o", f"{folder / 'ours'}/", "--log-samples"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr


def lm_eval_run(command: list[str], folder: Path, tasks: Path, task_names: str, limit: int) -> None:
    """lm-eval's command line (`command`: the program and its --model/--model_args) offline on local
    task YAMLs, results and samples in folder/lm_eval/."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(folder / "hf")}
    result = subprocess.run(
        [*command, "--tasks", task_names, "--include_path", str(tasks), "--limit", str(limit)]
        + ["--log_samples", "--output_path", str(folder / "lm_eval")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:]

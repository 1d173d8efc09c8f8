"""Sweeps on a local Ray cluster of 2 workers: the store equals a local sweep's, document for
document; a worker killed mid-unit loses nothing; a driver killed and rerun finishes with the same
store; every document records the machine that scored it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faults import interrupt_midway, stored_documents
from test_sweeps import CLI, store_contents

from painters_gguf.engine import distributed

TIMEOUT = 900


@pytest.fixture(scope="module")
def sweep_args(smollm2_path: Path) -> list[str]:
    """Two plans that share layers with the full model, on 64-token batches: units of a few
    seconds each on SmolLM2 with one thread per worker."""
    return ["-m", str(smollm2_path), "--plan", "0-9,20-29", "--plan", "0-4,{5-24}x2,25-29", "--tasks", "arc_easy"]


def common(shared_data: Path) -> list[str]:
    return ["--limit", "10", "--threads", "1", "--batch-size", "64", "--data-dir", str(shared_data)]


@pytest.fixture(scope="module")
def local_store(sweep_args: list[str], shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    db = tmp_path_factory.mktemp("local") / "local.db"
    subprocess.run([CLI, "--db", str(db), "sweep", *sweep_args, *common(shared_data)], check=True, capture_output=True)
    return store_contents(db)


def ray_command(db: Path, sweep_args: list[str], shared_data: Path) -> list[str]:
    return [CLI, "--db", str(db), "sweep", *sweep_args, *common(shared_data), "--ray", "local", "--ray-workers", "2"]


def machines(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM docs WHERE machine_id IS NULL").fetchone()[0] == 0
        return [json.loads(text) for (text,) in con.execute("SELECT description FROM machines")]


def test_ray_sweep_stores_what_a_local_sweep_stores(local_store: dict, sweep_args, shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "ray.db"
    result = subprocess.run(ray_command(db, sweep_args, shared_data), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plans: normalized scores" in " ".join(result.stdout.split())
    said = re.search(r"Ray \S+ \(local\): 1 node\(s\) at \S+, \d+ CPUs; up to 2 workers of 1 threads", result.stderr)
    assert said is not None, result.stderr[-2000:]  # that Ray ran, where, and with how many workers
    assert store_contents(db) == local_store
    (machine,) = machines(db)
    assert machine["host"] == os.uname().nodename and machine["features"].startswith("CPU :")
    assert "libraries sha256" in machine["library"]


def worker_in_a_unit() -> int | None:
    """A Ray worker process busy scoring a unit (Ray titles it with the method it runs)."""
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        pid, _, args = line.strip().partition(" ")
        if args.startswith("ray::Worker.score"):
            return int(pid)
    return None


def test_a_worker_killed_mid_unit_loses_nothing(local_store: dict, sweep_args, shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "ray.db"
    process = subprocess.Popen(ray_command(db, sweep_args, shared_data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    while (stored_documents(db) == 0 or (victim := worker_in_a_unit()) is None) and process.poll() is None:
        assert time.monotonic() < deadline, "no unit was scored"
        time.sleep(0.05)  # polling the store and the process table, not a guess at timing
    assert process.poll() is None, "the sweep ended before a worker could be killed mid-unit"
    os.kill(victim, signal.SIGKILL)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert store_contents(db) == local_store


def test_a_killed_driver_reruns_to_the_same_store(local_store: dict, sweep_args, shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "ray.db"
    command = ray_command(db, sweep_args, shared_data)
    total = len(local_store)
    stored, code, _ = interrupt_midway(command, dict(os.environ), db, 1, total, signal.SIGKILL, timeout=TIMEOUT)
    assert code == -signal.SIGKILL and 1 <= stored < total
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert store_contents(db) == local_store


def test_units_never_split_a_document_across_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A document too long to share its prefix spans batches: its batches stay in one unit."""
    monkeypatch.setattr(distributed, "UNIT_BATCHES", 2)
    from painters_gguf.engine.scoring import Unit, _Sequence

    def batch(group: int) -> list[Unit]:
        return [Unit(prefix=[], sequences=[_Sequence(tokens=[1], targets=[1], slot=(group, 0))])]

    groups = [0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 8]  # the document of each batch: document 3 spans three
    runs = distributed._batch_runs([batch(g) for g in groups], list(range(len(groups))))
    assert [b for run in runs for b in run] == list(range(len(groups)))
    unit_of = {b: i for i, run in enumerate(runs) for b in run}
    for g in set(groups):
        assert len({unit_of[b] for b, group in enumerate(groups) if group == g}) == 1, g
    assert runs == [[0, 1], [2, 3, 4, 5], [6, 7], [8, 9], [10]]


def test_a_worker_scores_generation_units_as_the_local_path(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    """gsm8k's units (a plan and a few documents, generated one by one) hold the documents a local
    run stores; the worker runs in this process here, as a Ray actor runs it."""
    from painters_gguf.engine.scoring import Scorer
    from painters_gguf.evaluate import Evaluator, Settings, prepare
    from painters_gguf.plan import Plan
    from painters_gguf.store import Store
    from painters_gguf.tasks import TASKS

    model = tiny_bpe_model
    settings = Settings().for_model(model.arch, model.n_layer)
    prepared = [prepare(TASKS["gsm8k"], shared_data, 3, settings)]
    plans = [Plan.parse("0,2-3"), Plan.parse("0,{1-2},3")]
    store = Store(tmp_path / "local.db")
    try:
        evaluator = Evaluator(Scorer(model, threads=2), store, settings)
        work, _ = distributed.units(evaluator, plans, prepared)
        assert sorted(len(unit.todo[0][1]) for unit in work) == [3, 3, 3] and all(len(unit.todo) == 1 for unit in work)
        tasks = (("gsm8k", distributed.docs_digest(prepared[0])),)
        job = distributed.Job(str(model.path), model.sha256, str(shared_data), tasks, 3, settings, 2)
        worker = distributed.Worker(job)
        assert worker.ready()
        from_worker = {
            (text, i): result for unit in work for text, docs in worker.score(unit).documents.items() for i, result in docs
        }
        for plan in [evaluator.full_plan, *plans]:
            local = evaluator.run(plan, prepared[0]).results
            assert {i: from_worker[plan.text, i] for i in local} == local
    finally:
        store.close()


def test_a_worker_refuses_another_model_file_or_other_data(tiny_bpe_model, smollm2_path: Path, shared_data: Path) -> None:
    """Before anything is scored: a worker whose model file or documents differ from the driver's."""
    from painters_gguf.errors import PaintersError
    from painters_gguf.evaluate import Settings, prepare
    from painters_gguf.tasks import TASKS

    model = tiny_bpe_model
    settings = Settings().for_model(model.arch, model.n_layer)
    prep = prepare(TASKS["arc_easy"], shared_data, 3, settings)
    good = (("arc_easy", distributed.docs_digest(prep)),)
    other_file = distributed.Job(str(smollm2_path), model.sha256, str(shared_data), good, 3, settings, 1)
    with pytest.raises(PaintersError, match="is not the driver's model file"):
        distributed.Worker(other_file).ready()
    other_data = distributed.Job(str(model.path), model.sha256, str(shared_data), (("arc_easy", "0" * 64),), 3, settings, 1)
    with pytest.raises(PaintersError, match="arc_easy: the data in .* is not the driver's"):
        distributed.Worker(other_data).ready()


def test_workers_fit_the_cluster() -> None:
    """--threads CPUs per worker (and a GPU each with layers on one); more than fit is one line, not a hang."""
    from painters_gguf.engine.distributed import ray_workers as _ray_workers
    from painters_gguf.errors import PaintersError

    assert _ray_workers({"CPU": 16.0}, None, 4, gpu=False) == 4
    assert _ray_workers({"CPU": 16.0, "GPU": 1.0}, None, 1, gpu=True) == 1
    assert _ray_workers({"CPU": 16.0}, 2, 4, gpu=False) == 2
    with pytest.raises(PaintersError, match="--ray-workers 5: the cluster has room for 4 workers"):
        _ray_workers({"CPU": 16.0}, 5, 4, gpu=False)
    with pytest.raises(PaintersError, match="no room for a worker of 1 CPUs and a GPU"):
        _ray_workers({"CPU": 16.0}, None, 1, gpu=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ray", ""], "error: --ray '': give local, auto, HOST:PORT or ray://HOST:PORT"),
        (["--ray", "head"], "error: --ray 'head': give local, auto, HOST:PORT or ray://HOST:PORT"),
        (["--ray", "localhost:1"], "error: --ray localhost:1: no Ray head answers there"),
        (["--ray", "ray://localhost:70000"], "give local, auto, HOST:PORT or ray://HOST:PORT"),
        (["--ray-workers", "2"], "error: --ray-workers goes with --ray"),
        (["--ray", "local", "--ray-workers", "0"], "--ray-workers"),
        (["--ray", "local", "--plan-by-plan"], "error: --plan-by-plan is a local way of computing"),
    ],
)
def test_ray_options_refuse_bad_values(tiny_bpe_model, shared_data: Path, tmp_path: Path, options, message: str) -> None:
    """One line and exit 2, before the model loads or Ray starts; nothing written."""
    db = tmp_path / "r.db"
    args = ["sweep", "-m", str(tiny_bpe_model.path), "--plan", "0,2-3", "--tasks", "arc_easy", "--limit", "2"]
    result = subprocess.run(
        [CLI, "--db", str(db), *args, "--data-dir", str(shared_data), *options], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not db.exists()


def http_server(conn: socket.socket) -> None:
    conn.recv(1024)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def echo_server(conn: socket.socket) -> None:
    while data := conn.recv(1024):
        conn.sendall(data)


def silent_server(conn: socket.socket) -> None:
    while conn.recv(1024):  # reads until the client leaves, never answers
        pass


def closing_server(conn: socket.socket) -> None:
    pass  # closes at once


def settings_server(conn: socket.socket) -> None:
    """What a gRPC server (a Ray head) answers first: a SETTINGS frame of one setting."""
    conn.recv(1024)
    conn.sendall(bytes([0, 0, 6, 4, 0, 0, 0, 0, 0]) + bytes([0, 3, 0, 0, 0, 100]))


@contextmanager
def listener(answer: Callable[[socket.socket], None], connections: int = 1) -> Iterator[str]:
    """HOST:PORT of a server on 127.0.0.1 that answers each connection so; it stops by itself
    within seconds whatever the client does."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(30)

    def serve() -> None:
        try:
            for _ in range(connections):
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(30)
                    answer(conn)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        thread.join(timeout=30)
        server.close()


def check_in_time(address: str) -> str | None:
    """The refusal of --ray ADDRESS (None where it passes), asserting it came within the bound."""
    from painters_gguf.cli.sweep import REACH_TIMEOUT, _check_reachable
    from painters_gguf.errors import PaintersError

    refusals: list[str] = []
    done = threading.Event()

    def check() -> None:
        try:
            _check_reachable(address)
        except PaintersError as error:
            refusals.append(str(error))
        finally:
            done.set()

    threading.Thread(target=check, daemon=True).start()
    assert done.wait(REACH_TIMEOUT + 5), f"--ray {address}: the check outlived its {REACH_TIMEOUT} s"
    return refusals[0] if refusals else None


@pytest.mark.parametrize("answer", [http_server, echo_server, silent_server, closing_server], ids=lambda f: f.__name__)
def test_a_port_that_answers_but_is_no_ray_head_is_refused_in_seconds(answer: Callable[[socket.socket], None]) -> None:
    """Ray would wait minutes on it: one line within REACH_TIMEOUT instead."""
    with listener(answer) as address:
        refusal = check_in_time(address)
    assert refusal == f"--ray {address}: not a Ray head (no gRPC handshake there within 10 s)"


def test_a_server_that_speaks_grpc_passes_the_check() -> None:
    """The handshake a Ray head (GCS, or the Ray Client server for ray://) answers passes."""
    with listener(settings_server, connections=2) as address:
        assert check_in_time(address) is None
        assert check_in_time(f"ray://{address}") is None


def test_ray_refuses_a_port_that_is_no_ray_head(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    """One line and exit 2 from the command, before the model loads; nothing written."""
    db = tmp_path / "r.db"
    args = ["sweep", "-m", str(tiny_bpe_model.path), "--plan", "0,2-3", "--tasks", "arc_easy", "--limit", "2"]
    with listener(http_server) as address:
        result = subprocess.run(
            [CLI, "--db", str(db), *args, "--data-dir", str(shared_data), "--ray", f"ray://{address}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert f"error: --ray ray://{address}: not a Ray head" in result.stderr
    assert not db.exists()

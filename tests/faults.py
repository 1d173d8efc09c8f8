"""Fault injection: hostile inputs and interruptions against the painters-gguf CLI.

    .venv/bin/python tests/faults.py          # runs every scenario, prints a summary table

Each scenario feeds bad inputs (model files, data files, plans, memory limits) or interrupts
runs (SIGINT, SIGKILL, two writers at once) and counts: inputs tried, errors as expected (one
line, exit code 2, no traceback), crashes (must be 0) and results lost (must be 0).
tests/test_faults.py runs the same scenarios under pytest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).with_name("painters-gguf"))


@dataclasses.dataclass
class Outcome:
    scenario: str
    tried: int = 0
    expected: int = 0  # clear one-line errors with exit code 2 (or clean finishes where that is right)
    crashes: int = 0  # killed by a signal, a traceback, or a wrong exit code
    lost: int = 0  # finished documents missing or duplicated, or scores that differ
    notes: list[str] = dataclasses.field(default_factory=list)

    def check_error(self, result: subprocess.CompletedProcess[str], must_contain: str) -> None:
        self.tried += 1
        lines = result.stderr.strip().splitlines()
        if result.returncode < 0 or "Traceback" in result.stderr:
            self.crashes += 1
            self.notes.append(f"crash: {result.args[-1]!s}: {result.stderr[-300:]}")
        elif result.returncode == 2 and len(lines) == 1 and must_contain in lines[0]:
            self.expected += 1
        else:
            self.notes.append(f"unexpected (exit {result.returncode}): {result.stderr.strip()[-300:]}")


def cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def environment(data: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PAINTERS_GGUF_DATA": str(data), "COLUMNS": "200", **extra}


# --- model files ---


def bad_model_files(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Broken variants of a good GGUF, each with a part of the one-line error it must give."""
    data = good.read_bytes()
    header_end = data.find(b"token_embd.weight")  # the tensor table comes after the metadata

    def write(name: str, content: bytes) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    corrupt_header = bytearray(data)
    corrupt_header[24:40] = b"\xff" * 16  # the first key's length field
    corrupt_table = bytearray(data)
    corrupt_table[header_end - 8 : header_end + 40] = bytes(range(48))  # a tensor name and its dims
    version = bytearray(data)
    version[4:8] = (99).to_bytes(4, "little")
    return {
        "missing file": (folder / "missing.gguf", "no such file"),
        "directory": (folder, "is a directory"),
        "not a GGUF": (write("text.gguf", b"just some text, certainly not a model\n"), "not a GGUF file"),
        "empty file": (write("empty.gguf", b""), "not a GGUF file"),
        "truncated in the metadata": (write("trunc-meta.gguf", data[:200]), "trunc-meta.gguf"),
        "truncated in the weights": (write("trunc-weights.gguf", data[: len(data) * 2 // 3]), "not within the file bounds"),
        "corrupted header": (write("bad-header.gguf", bytes(corrupt_header)), "bad-header.gguf"),
        "corrupted tensor table": (write("bad-table.gguf", bytes(corrupt_table)), "bad-table.gguf"),
        "unknown GGUF version": (write("version.gguf", bytes(version)), "GGUF version 99"),
    }


def scenario_model_files(good: Path, other_arch: Path, unknown_arch: Path, data: Path) -> Outcome:
    outcome = Outcome("model files")
    env = environment(data)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, message) in bad_model_files(good, Path(tmp)).items():
            for command in (
                ["plan", "skip", "-m", str(path)],
                ["eval", "-m", str(path), "--tasks", "winogrande", "--limit", "1"],
            ):
                start = time.perf_counter()
                outcome.check_error(cli(*command, env=env, timeout=120), message)
                if time.perf_counter() - start > 30:
                    outcome.notes.append(f"{name}: took {time.perf_counter() - start:.0f} s")
    outcome.check_error(cli("plan", "skip", "-m", str(unknown_arch), env=env), "unknown model architecture")
    outcome.check_error(
        cli("eval", "-m", str(other_arch), "--plan", "skip", "--tasks", "winogrande", "--limit", "1", env=env),
        "does not run layer plans",
    )
    return outcome


# --- data files ---


def scenario_data_files(model: Path, data: Path) -> Outcome:
    outcome = Outcome("data files")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        winogrande = (data / "winogrande" / "validation.jsonl").read_text().splitlines()
        (root / "winogrande").mkdir()
        split = root / "winogrande" / "validation.jsonl"
        env = environment(root)
        args = ["eval", "-m", str(model), "--tasks", "winogrande", "--limit", "5", "--threads", "2"]
        outcome.check_error(
            cli("--db", str(root / "a.db"), *args, "--data-dir", str(root / "nowhere"), env=env),
            "allenai/winogrande (winogrande_xl) split 'validation': no ",
        )
        split.write_text("\n".join([winogrande[0], winogrande[1][:40], winogrande[2]]) + "\n")
        outcome.check_error(cli("--db", str(root / "a.db"), *args, env=env), "validation.jsonl:2: not valid JSON")
        split.write_text(winogrande[0] + "\n" + json.dumps({"sentence": "A _ B", "option1": "x"}) + "\n")
        outcome.check_error(cli("--db", str(root / "a.db"), *args, env=env), "validation.jsonl:2: field 'option2' is missing")
        split.write_text("\n".join(winogrande[:3]) + "\n")
        outcome.tried += 1
        result = cli("--db", str(root / "a.db"), *args[:-4], "--limit", "50", "--threads", "2", env=env)
        if result.returncode == 0 and "│ winogrande │ acc ↑ │ 3 │" in result.stdout.replace("  ", " ").replace("  ", " "):
            outcome.expected += 1
        else:
            outcome.notes.append(f"--limit past the split: exit {result.returncode}: {result.stderr[-300:]}")
    return outcome


# a row each task cannot use, and the message naming what is wrong (the file and line come first)
BAD_ROWS: list[tuple[str, str, dict | str, str]] = [
    (
        "arc_easy",
        "test",
        {"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "C"},
        "field 'answerKey' 'C' is not among the labels",
    ),
    (
        "arc_easy",
        "test",
        {"question": "q", "choices": {"text": ["a", "b"], "label": ["A"]}, "answerKey": "A"},
        "field 'choices.label' must hold 2 strings",
    ),
    (
        "arc_easy",
        "test",
        {"question": 7, "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "A"},
        "field 'question' must be a string, found int",
    ),
    ("arc_easy", "test", {"question": "q", "choices": [], "answerKey": "A"}, "field 'choices' must be an object"),
    (
        "hellaswag",
        "validation",
        {"activity_label": "a", "ctx_a": "b", "ctx_b": "", "endings": [], "label": "0"},
        "field 'endings' must be a non-empty list",
    ),
    (
        "hellaswag",
        "validation",
        {"activity_label": "a", "ctx_a": "b", "ctx_b": "", "endings": ["1", "2", "3", "4"], "label": "7"},
        "field 'label' must be 0..3",
    ),
    (
        "hellaswag",
        "validation",
        {"activity_label": "a", "ctx_a": "b", "ctx_b": "", "endings": ["1", "2", "3", "4"], "label": True},
        "field 'label' must be 0..3",
    ),
    (
        "winogrande",
        "validation",
        {"sentence": "no blank here", "option1": "a", "option2": "b", "answer": "1"},
        "field 'sentence' has no blank",
    ),
    (
        "winogrande",
        "validation",
        {"sentence": "a _ b", "option1": "a", "option2": "b", "answer": "3"},
        "field 'answer' must be '1' or '2'",
    ),
    ("winogrande", "validation", {"sentence": "a _ b", "option1": "", "option2": "b", "answer": "1"}, "field 'option1' is empty"),
    ("lambada_openai", "test", {"text": 42}, "field 'text' must be a string, found int"),
    ("lambada_openai", "test", {"text": "oneword"}, "field 'text' must be a passage ending in"),
    ("lambada_openai", "test", '{"text": "a lone \\ud800 surrogate"}', "field 'text' holds a lone surrogate"),
    ("lambada_openai", "test", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply"),
    ("lambada_openai", "test", "[1, 2]", "expected a JSON object, found list"),
    ("gsm8k", "test", {"question": "q", "answer": "no final answer"}, "field 'answer' has no '#### <number>'"),
    (
        "mmlu",
        "test",
        {"question": "q", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": 7},
        "field 'answer' must be 0..3",
    ),
    (
        "mmlu",
        "test",
        {"question": "q", "subject": "s", "choices": ["a", "b"], "answer": 0},
        "field 'choices' must hold 4 strings",
    ),
    (
        "mmlu",
        "test",
        {"question": "q", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": "0"},
        "field 'answer' must be an integer",
    ),
]


def scenario_data_rows(model: Path) -> Outcome:
    """Each task's rows with a field of the wrong type, empty, missing or out of range, and files
    that are not UTF-8 text, empty, a directory or a FIFO."""
    outcome = Outcome("data rows and files")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = environment(root)

        def run(task: str) -> subprocess.CompletedProcess[str]:
            args = ["--db", str(root / "a.db"), "eval", "-m", str(model), "--tasks", task, "--limit", "2", "--num-fewshot", "0"]
            return cli(*args, env=env, timeout=60)

        for task, split, row, message in BAD_ROWS:
            path = root / task / f"{split}.jsonl"
            path.parent.mkdir(exist_ok=True)
            path.write_text(row if isinstance(row, str) else json.dumps(row))
            outcome.check_error(run(task), f"{split}.jsonl:1: {message}")
        split = root / "lambada_openai" / "test.jsonl"
        for content, message in [(b"\xff\xfe{}\n", "not UTF-8 text"), (b"", "no rows"), (b"\n\n", "no rows")]:
            split.write_bytes(content)
            outcome.check_error(run("lambada_openai"), message)
        split.unlink()
        split.mkdir()
        outcome.check_error(run("lambada_openai"), "test.jsonl is a directory")
        split.rmdir()
        os.mkfifo(split)
        try:
            outcome.check_error(run("lambada_openai"), "test.jsonl is not a regular file")
        except subprocess.TimeoutExpired:
            outcome.tried += 1
            outcome.crashes += 1
            outcome.notes.append("a FIFO as a split: the run hung")
    return outcome


# --- option values, environment, outputs, stores, untrusted text ---


def scenario_options(model: Path, data: Path) -> Outcome:
    """Option values llama.cpp would assert on, wrap or corrupt memory with: refused at the boundary."""
    outcome = Outcome("option values")
    env = environment(data)
    m = ["-m", str(model), "--tasks", "arc_easy", "--limit", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        db = ["--db", str(Path(tmp) / "r.db")]
        for args, message in [
            (["eval", *m, "--batch-size", "8"], "'--batch-size' / '-b': Input should be greater than or equal to 64"),
            (["eval", *m, "--batch-size", "-1"], "'--batch-size'"),
            (["eval", *m, "--n-ctx", "4294967297"], "'--n-ctx' / '-c': Input should be less than or equal to 2147483647"),
            (["eval", *m, "--n-ctx", "2000000000"], "KV cache of 4 slots x 2000000000 cells"),
            (["eval", *m, "--threads", "0"], "'--threads'"),
            (["eval", *m, "--num-fewshot", "-1"], "'--num-fewshot'"),
            (["eval", *m, "--limit", "0"], "'--limit' / '-l'"),
            (["eval", *m, "--limit", "two"], "valid number"),
            (["eval", *m, "--n-gpu-layers", "-2"], "'--n-gpu-layers'"),
            (["eval", *m, "--n", "-1"], "'--n'"),
            (["eval", *m, "--iters", "0"], "'--iters'"),
            (["eval", *m, "--plan", "0,{1-2}x999999999"], "the most is 16384"),
            (["sweep", *m, "--seeds", "0", "--variant", "random"], "'--seeds'"),
            (["report", *m, "--variant", "looped-parallel", "--iters", "1-10000000000"], "iterations go from 1 to 16384"),
            (["report", *m, "--variant", "looped-parallel", "--iters", "5-2"], "iterations go from 1 to 16384"),
            (["similarity", "-m", str(model), "--docs", "0"], "'--docs'"),
            (["report", *m, "--similarity", str(model)], "not a saved similarity matrix"),
            (["eval", *m, "--tasks", "arc_easy,nope"], "nope"),
            (["nosuch"], "No such command 'nosuch'"),
        ]:
            outcome.check_error(cli(*db, *args, env=env), message)
    return outcome


def scenario_environment(model: Path, data: Path) -> Outcome:
    outcome = Outcome("environment")
    m = ["eval", "-m", str(model), "--tasks", "arc_easy", "--limit", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        a_file = Path(tmp) / "a-file"
        a_file.write_text("x")
        db = str(Path(tmp) / "r.db")
        for extra, args, message in [
            (
                {"PAINTERS_GGUF_MEMORY_LIMIT": "infG"},
                ["--db", db, *m],
                "PAINTERS_GGUF_MEMORY_LIMIT='infG': write a positive size",
            ),
            ({"PAINTERS_GGUF_MEMORY_LIMIT": "-5G"}, ["--db", db, *m], "PAINTERS_GGUF_MEMORY_LIMIT='-5G'"),
            ({"PAINTERS_GGUF_MEMORY_LIMIT": "lots"}, ["--db", db, *m], "PAINTERS_GGUF_MEMORY_LIMIT='lots'"),
            ({"PAINTERS_GGUF_LOCK_TIMEOUT": "soon"}, ["--db", db, *m], "PAINTERS_GGUF_LOCK_TIMEOUT='soon'"),
            ({"PAINTERS_GGUF_HOME": str(a_file)}, m, "exists and is not a folder"),
            ({"PAINTERS_GGUF_HOME": "~nosuchuser-x/home"}, m, "~nosuchuser-x/home: Could not determine home directory"),
            ({"PAINTERS_GGUF_DATA": "~nosuchuser-x/data"}, ["--db", db, *m], "Could not determine home directory"),
            ({}, ["--db", "~nosuchuser-x/r.db", *m], "Could not determine home directory"),
            ({}, ["--db", str(a_file / "r.db"), *m], "exists and is not a folder"),
            ({}, ["--db", tmp, *m], "is a directory"),
        ]:
            outcome.check_error(cli(*args, env=environment(data, **extra)), message)
    return outcome


def scenario_outputs(model: Path, data: Path) -> Outcome:
    """Outputs that would destroy an input or are not regular files: refused before any scoring,
    the files left as they were; a folder takes the results as lm-eval does."""
    outcome = Outcome("output paths")
    env = environment(data)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_copy = root / "model.gguf"
        model_copy.write_bytes(model.read_bytes())
        db = root / "r.db"
        base = ["--db", str(db), "eval", "-m", str(model_copy), "--tasks", "arc_easy", "--limit", "2"]
        cli(*base, env=env)  # the store exists
        fifo = root / "fifo"
        os.mkfifo(fifo)
        link = root / "link.json"
        link.symlink_to(root / "target.json")
        model_bytes, stored = model_copy.read_bytes(), store_docs(db)
        for args, message in [
            (["-o", str(db)], "is r.db, an input of this run"),
            (["--log-samples"], "--log-samples writes beside the results: give -o"),
            (["-o", str(fifo)], "is not a regular file"),
            (["-o", "/dev/null"], "is not a regular file"),
            (["-o", str(link)], "is a symbolic link"),
            (["-o", str(model_copy / "x.json")], "Not a directory"),
            (["-o", str(model_copy.with_suffix(".json")) + "/x/../../model.gguf"], "is model.gguf, an input of this run"),
            (["-o", str(data / "results.json")], "inside the benchmark data folder"),
        ]:
            outcome.check_error(cli(*base, *args, env=env), message)
        outcome.lost += int(model_copy.read_bytes() != model_bytes) + int(store_docs(db) != stored)
        outcome.lost += int(not stat.S_ISFIFO(os.lstat(fifo).st_mode)) + int(not link.is_symlink())
        for args, folder in [
            (["-o", str(root / "new" / "deeper" / "r.json")], None),  # missing parents are created
            (["-o", str(root / "folder") + "/"], root / "folder" / "model"),  # a folder, as lm-eval's --output_path
        ]:
            outcome.tried += 1
            result = cli(*base, *args, env=env)
            written = [root / "new" / "deeper" / "r.json"] if folder is None else sorted(folder.glob("results_*.json"))
            if result.returncode == 0 and written and all(p.is_file() and json.loads(p.read_text())["results"] for p in written):
                outcome.expected += 1
            else:
                outcome.notes.append(f"{args}: exit {result.returncode}: {result.stderr[-300:]}")
    return outcome


def file_digests(paths: list[Path]) -> dict[Path, bytes | None]:
    return {path: path.read_bytes() if path.exists() else None for path in paths}


def scenario_every_output(model: Path, data: Path) -> Outcome:
    """Every command that writes, given as its output each thing the run reads (the model, the
    store, its -wal file, the default store named by $PAINTERS_GGUF_DB, a benchmark file, a file
    of the model cache): refused in one line, every input left as it was. Folders given as
    outputs hold what is written."""
    outcome = Outcome("outputs of every command")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        own_data = root / "data"  # a copy: a check that failed here must not touch the shared data
        for task in ("arc_easy", "lambada_openai"):
            shutil.copytree(data / task, own_data / task)
        home, env_db = root / "home", root / "env.db"
        cached = home / "models" / "other" / "other.gguf"
        cached.parent.mkdir(parents=True)
        cached.write_bytes(model.read_bytes())
        env = environment(own_data, PAINTERS_GGUF_HOME=str(home), PAINTERS_GGUF_DB=str(env_db))
        model_copy, db = root / "model.gguf", root / "r.db"
        model_copy.write_bytes(model.read_bytes())
        scoring = ["-m", str(model_copy), "--tasks", "arc_easy", "--threads", "2"]
        for store in (env_db, db):  # both stores exist
            cli("--db", str(store), "eval", *scoring, "--limit", "2", env=env)
        data_file = own_data / "arc_easy" / "test.jsonl"
        targets = {
            model_copy: "is model.gguf, an input of this run",
            db: "is r.db, an input of this run",
            db.with_name("r.db-wal"): "is r.db, an input of this run",
            env_db: "is env.db, an input of this run",
            data_file: "is inside the benchmark data folder",
            cached: "is inside the model cache",
        }
        commands = {
            "eval": [*scoring, "--limit", "2"],
            "search": [*scoring, "--budget", "0.75", "--search-items", "2", "--held-out", "2"],
            "export": ["0-1", "-m", str(model_copy)],
        }
        before = file_digests([model_copy, env_db, data_file, cached]), store_docs(db)
        for command, args in commands.items():
            for target, message in targets.items():
                outcome.check_error(cli("--db", str(db), command, *args, "-o", str(target), env=env), message)
        sim = ["similarity", "-m", str(model_copy), "--docs", "2", "--data-dir", str(own_data)]
        for target, message in {
            data_file: "is inside the benchmark data folder",
            cached: "is inside the model cache",
            root / "sim.npy": "is sim.npy, an input of this run",  # a store may have any name
        }.items():
            outcome.check_error(cli("--db", str(root / "sim.npy"), *sim, "-o", str(target), env=env), message)
        for folder, message in (
            (own_data / "figures", "inside the benchmark data folder"),
            (cached.parent, "inside the model cache"),
        ):
            report = ["report", "-m", str(model_copy), "--tasks", "arc_easy", "--limit", "2", "--plot", str(folder)]
            outcome.check_error(cli("--db", str(db), *report, env=env), message)
            frontier = [
                "search",
                *scoring,
                "--budgets",
                "0.5,0.75",
                "--search-items",
                "2",
                "--held-out",
                "2",
                "--plot",
                str(folder),
            ]
            outcome.check_error(cli("--db", str(db), *frontier, env=env), message)
        after = file_digests([model_copy, env_db, data_file, cached]), store_docs(db)
        outcome.lost += sum(before[0][path] != after[0][path] for path in before[0]) + int(before[1] != after[1])
        outcome.lost += int(not db.is_file() or (root / "sim.npy").exists())
        # a folder as the output: the results go inside it, whatever the model's file name
        odd = root / "...gguf"
        odd.write_bytes(model.read_bytes())
        outcome.tried += 1
        evals = root / "evals"
        result = cli("--db", str(db), "eval", "-m", str(odd), "--tasks", "arc_easy", "--limit", "2", "-o", f"{evals}/", env=env)
        written = sorted(p.relative_to(root) for p in root.rglob("results_*.json"))
        if result.returncode == 0 and len(written) == 1 and written[0].parts[:2] == ("evals", "model"):
            outcome.expected += 1
        else:
            outcome.notes.append(f"eval -o {evals}/ with the model {odd.name}: exit {result.returncode}, wrote {written}")
    return outcome


def scenario_stores(model: Path, data: Path) -> Outcome:
    """Stores from a newer schema, with a table missing, with damaged rows, or locked too long;
    another program's database, hostile schema numbers and writer rows, paths that are not files."""
    outcome = Outcome("damaged stores")
    env = environment(data)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args = ["eval", "-m", str(model), "--tasks", "arc_easy", "--limit", "4", "--plan", "skip"]
        clean = root / "clean.db"
        first = cli("--db", str(clean), *args, "-o", str(root / "clean.json"), env=env)
        if first.returncode != 0:
            outcome.notes.append(first.stderr[-300:])
            outcome.crashes += 1
            return outcome

        def damaged(name: str, *sql: str) -> Path:
            path = root / f"{name}.db"
            path.write_bytes(clean.read_bytes())
            with sqlite3.connect(path) as con:
                for statement in sql:
                    con.execute(statement)
            return path

        newer = damaged("newer", "INSERT INTO migrations VALUES (99, 'future', '2030')")
        outcome.check_error(cli("--db", str(newer), *args, env=env), "was written by a newer painters-gguf (schema 99")
        missing = damaged("missing", "DROP TABLE docs")
        outcome.check_error(cli("--db", str(missing), *args, env=env), "is damaged: table 'docs' is missing")
        not_a_db = root / "text.db"
        not_a_db.write_text("not a database, just text\n" * 100)
        outcome.check_error(cli("--db", str(not_a_db), *args, env=env), "file is not a database")
        # refused before anything is written: another program's database, hostile schema numbers, not a file
        one_byte = root / "byte.db"
        one_byte.write_bytes(b"x")  # SQLite would take it for an empty database and overwrite it
        other = root / "other.db"
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE notes (x)")
        con.commit()
        con.close()
        fifo = root / "fifo.db"
        os.mkfifo(fifo)
        untouched = {path: path.read_bytes() for path in (one_byte, other)}
        for store, message in [
            (one_byte, "byte.db: file is not a database"),
            (other, "other.db is not a painters-gguf results store (an SQLite database holding 'notes')"),
            (damaged("negative", "INSERT INTO migrations VALUES (-1, 'x', 't')"), "its migrations table holds -1, not a schema"),
            (damaged("gap", "DELETE FROM migrations WHERE id = 2"), "its migrations table records schema 3 but not 2"),
            (fifo, "fifo.db is not a regular file"),
            (Path("/dev/null"), "/dev/null is not a regular file"),
        ]:
            outcome.check_error(cli("--db", str(store), *args, env=env, timeout=60), message)
        outcome.lost += sum(path.read_bytes() != content for path, content in untouched.items())
        outcome.lost += len([p for p in root.iterdir() if p.name.startswith(("byte.db-", "other.db-", "fifo.db-"))])
        outcome.lost += int(any(Path(f"/dev/null{suffix}").exists() for suffix in ("-journal", "-wal", "-shm")))
        # writer rows that name no process (advisory): forgotten, the run goes on
        writers = damaged(
            "writers",
            "INSERT INTO writers VALUES ('abc', 'h', 'c', 't'), (-1, 'h', 'c', 't'), (4294967296, 'h', 'c', 't')",
            "INSERT INTO writers VALUES (12, 'h', 'c', 'yesterday'), (13, x'00', 'c', '2026-01-01')",
        )
        outcome.tried += 1
        result = cli("--db", str(writers), *args, env=env)
        if result.returncode == 0 and "Traceback" not in result.stderr:
            outcome.expected += 1
        else:
            outcome.crashes += 1
            outcome.notes.append(f"malformed writer rows: exit {result.returncode}: {result.stderr[-300:]}")
        # rows that are not JSON, or lack a metric: scored again, the same numbers as the clean run
        rows = damaged(
            "rows",
            "UPDATE docs SET result = 'not json' WHERE doc_index = 1",
            """UPDATE docs SET result = '{"acc": 1.0}' WHERE doc_index = 2""",
        )
        outcome.tried += 1
        again = cli("--db", str(rows), *args, "-o", str(root / "again.json"), env=env)
        clean_json, again_json = (json.loads((root / name).read_text()) for name in ("clean.json", "again.json"))
        if (
            again.returncode == 0
            and "damaged stored documents" in again.stderr
            and again_json["results"] == clean_json["results"]
        ):
            outcome.expected += 1
        else:
            outcome.lost += 1
            outcome.notes.append(f"damaged rows: exit {again.returncode}: {again.stderr[-300:]}")
        # a writer holding the lock past the timeout: the message names it
        sys.path.insert(0, str(HERE.parent))
        from painters_gguf.store import Store

        holder = Store(clean)
        holder.db.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        try:
            locked = cli("--db", str(clean), *args, "--limit", "6", env=environment(data, PAINTERS_GGUF_LOCK_TIMEOUT="1"))
            outcome.check_error(locked, f"stayed locked for 1 s by another process (pid {os.getpid()} on ")
        finally:
            holder.db.execute("ROLLBACK")  # type: ignore[union-attr]
            holder.close()
    return outcome


def scenario_untrusted_text(model: Path, data: Path) -> Outcome:
    """Control characters in metadata and markup in file names reach the terminal made visible."""
    import gguf

    outcome = Outcome("untrusted text")
    env = environment(data)
    with tempfile.TemporaryDirectory() as tmp:
        reader = gguf.GGUFReader(str(model))
        evil = Path(tmp) / "[reverse red]x.gguf"
        writer = gguf.GGUFWriter(str(evil), "llama")
        writer.add_name("\x1b[31mred\x1b[0m [bold]bold[/]")
        for key, field in reader.fields.items():
            if key.startswith(("llama.", "tokenizer.")):
                writer.add_key_value(key, field.contents(), field.types[0], field.types[-1] if len(field.types) > 1 else None)
        for tensor in reader.tensors:
            writer.add_tensor(tensor.name, tensor.data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        result = cli("plan", "skip", "-m", str(evil), env=env)
        outcome.tried += 1
        shown = result.stdout
        if result.returncode == 0 and "\x1b" not in shown and "\\x1b[31mred" in shown and "[reverse red]x.gguf" in shown:
            outcome.expected += 1
        else:
            outcome.notes.append(f"metadata and file name: exit {result.returncode}: {shown[:300]!r}")
    return outcome


# --- plans and resources ---


def scenario_plans(model: Path, data: Path) -> Outcome:
    outcome = Outcome("plans and memory")
    env = environment(data)
    for text, message in [
        ("0-3,{4-x", "at column 8"),
        ("{}", "expected a layer id"),
        ("0-99", "names layer 4"),
        ("paralel", "unknown plan variant"),
        ("0x0", "at least 1"),
    ]:
        outcome.check_error(cli("plan", text, "-m", str(model), env=env), message)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "r.db")
        # 50 MiB: the context's own cache and logits fit (49 MiB), the plan's 10 slots do not
        limited = environment(data, PAINTERS_GGUF_MEMORY_LIMIT="50M")
        for command in (["eval", "--plan", "looped-parallel"], ["sweep", "--variant", "looped-parallel"]):
            result = cli(
                "--db", db, command[0], "-m", str(model), *command[1:], "--tasks", "winogrande", "--limit", "1", env=limited
            )
            outcome.check_error(result, "10 slots x 2048 cells, logits for 256 tokens), more than the 50.0 MiB of memory")
        outcome.lost += stored_documents(Path(db))  # refused before any work started
    return outcome


# --- interruptions and concurrency ---


def store_docs(db: Path) -> dict[tuple, str]:
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT r.plan, r.task, d.doc_index, d.result FROM docs d JOIN runs r ON r.id = d.run_id").fetchall()
    keys = [(plan, task, index) for plan, task, index, _ in rows]
    assert len(keys) == len(set(keys)), "duplicated documents"
    return {(plan, task, index): result for plan, task, index, result in rows}


def stored_documents(db: Path) -> int:
    """Documents in the store now (0 before it exists), read while another process writes."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or no tables yet
        return 0


class NotInterrupted(Exception):
    """The run ended (or hung) before it could be interrupted midway."""


def interrupt_midway(
    command: list[str], env: dict[str, str], db: Path, at: int, total: int, signum: signal.Signals, timeout: float = 300
) -> tuple[int, int, str]:
    """Start the command, wait until the store holds at least `at` of its `total` documents while
    the process still runs, send `signum`, and wait for it to end. Returns (documents stored when
    the signal went, exit code, stderr); raises NotInterrupted if the run finished first."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while (stored := stored_documents(db)) < at:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            ended = f"exit {process.returncode}, {stored} documents stored"
            raise NotInterrupted(f"the run ended ({ended}) before {at} documents: {stderr[-300:]}")
        time.sleep(0.02)  # polling the store, not a guess at timing
    if stored >= total or process.poll() is not None:
        process.kill()
        raise NotInterrupted(f"the run had finished ({stored} of {total} documents) before the signal")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=timeout)
    return stored, process.returncode, stderr


def interrupted(args: list[str], env: dict[str, str], db: Path, fractions: list[float], sig: list[signal.Signals]) -> Outcome:
    """Run to the end once; then run again, interrupting it at the given fractions of the documents
    done, and rerun to the end; the resumed store must equal the uninterrupted one."""
    outcome = Outcome(f"{args[0]} interrupted {len(fractions)}x ({', '.join(s.name for s in sig)})")
    whole = db.with_name("whole-" + db.name)
    first = cli("--db", str(whole), *args, env=env)
    if first.returncode != 0:
        outcome.notes.append(first.stderr[-300:])
        outcome.crashes += 1
        return outcome
    total = stored_documents(whole)
    for fraction, signum in zip(sorted(fractions), sig, strict=True):
        outcome.tried += 1
        at = min(max(int(fraction * total), stored_documents(db) + 1), total - 1)
        try:
            stored, code, stderr = interrupt_midway([CLI, "--db", str(db), *args], env, db, at, total, signum)
        except NotInterrupted as err:
            outcome.crashes += 1
            outcome.notes.append(f"{signum.name} at {at}/{total} documents: {err}")
            continue
        cut_short = stored_documents(db) < total
        said = "interrupted: finished documents are saved; run the same command to resume" in stderr
        ended_as_asked = code == 130 and said if signum == signal.SIGINT else code == -signum
        if ended_as_asked and cut_short and "Traceback" not in stderr:
            outcome.expected += 1
        else:
            outcome.crashes += 1
            what = f"{signum.name} at {stored}/{total} documents: exit {code}, cut short: {cut_short}"
            outcome.notes.append(f"{what}: {stderr[-300:]}")
    outcome.tried += 1
    final = cli("--db", str(db), *args, env=env)
    expected, actual = store_docs(whole), store_docs(db)
    if final.returncode == 0 and expected == actual:
        outcome.expected += 1
    else:
        missing = len(set(expected) - set(actual))
        changed = sum(actual.get(k) != v for k, v in expected.items() if k in actual)
        outcome.lost += missing + changed
        outcome.notes.append(f"after resuming: {missing} documents missing, {changed} differ; exit {final.returncode}")
    return outcome


def scenario_interruptions(model: Path, data: Path, seed: int = 0) -> list[Outcome]:
    rnd = random.Random(seed)
    env = environment(data)
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        common = ["-m", str(model), "--tasks", "arc_easy,winogrande", "--limit", "24", "--threads", "2", "--batch-size", "64"]
        eval_args = ["eval", *common, "--plan", "looped-parallel", "--n", "1"]
        sweep_args = ["sweep", *common, "--variant", "skip,parallel"]
        for args, name in ((eval_args, "eval"), (sweep_args, "sweep")):
            fractions = [rnd.uniform(0.05, 0.95) for _ in range(4)]
            signals_ = [signal.SIGINT, signal.SIGKILL, signal.SIGINT, signal.SIGKILL]
            outcomes.append(interrupted(args, env, Path(tmp) / f"{name}.db", fractions, signals_))
    return outcomes


def scenario_concurrency(model: Path, data: Path) -> Outcome:
    outcome = Outcome("two writers on one store")
    env = environment(data)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "shared.db"
        args = ["--db", str(db), "eval", "-m", str(model), "--tasks", "arc_easy,winogrande", "--limit", "20", "--threads", "1"]
        plans = (["--plan", "skip", "--n", "1"], ["--plan", "reverse", "--n", "0"])
        processes = [
            subprocess.Popen([CLI, *args, *plan], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for plan in plans
        ]
        for process in processes:
            outcome.tried += 1
            _, stderr = process.communicate(timeout=600)
            if process.returncode == 0:
                outcome.expected += 1
            else:
                outcome.crashes += 1
                outcome.notes.append(stderr[-300:])
        docs = store_docs(db)
        for plan in ("0-1,3", "0,3-1", "0-3"):  # the two plans and the full model, 2 tasks x 20
            found = sum(1 for (p, _, index) in docs if p == plan and index < 20)
            outcome.lost += 40 - found
    return outcome


def run_all(good: Path, other_arch: Path, unknown_arch: Path, tiny: Path, data: Path) -> list[Outcome]:
    return [
        scenario_model_files(good, other_arch, unknown_arch, data),
        scenario_data_files(tiny, data),
        scenario_data_rows(tiny),
        scenario_options(tiny, data),
        scenario_environment(tiny, data),
        scenario_outputs(tiny, data),
        scenario_every_output(tiny, data),
        scenario_stores(tiny, data),
        scenario_untrusted_text(tiny, data),
        scenario_plans(tiny, data),
        *scenario_interruptions(tiny, data),
        scenario_concurrency(tiny, data),
    ]


def print_summary(outcomes: list[Outcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="fault injection")
    for column in ("scenario", "inputs tried", "errors as expected", "crashes", "results lost"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for o in outcomes:
        table.add_row(o.scenario, str(o.tried), str(o.expected), str(o.crashes), str(o.lost))
    total = Outcome("total", *(sum(getattr(o, f) for o in outcomes) for f in ("tried", "expected", "crashes", "lost")))
    table.add_row(total.scenario, str(total.tried), str(total.expected), str(total.crashes), str(total.lost), style="bold")
    Console().print(table)
    for o in outcomes:
        for note in o.notes:
            print(f"{o.scenario}: {note}")


def fixtures(folder: Path) -> tuple[Path, Path, Path, Path]:
    """The real SmolLM2 (must be fetched), and tiny models written here: BPE llama, baichuan
    (llama-shaped, no plans), unknown arch."""
    sys.path.insert(0, str(HERE))
    from tiny_llama import TinyConfig, Vocab, random_weights, write_gguf

    from painters_gguf.fetch import model_path
    from painters_gguf.models import find

    good = model_path(find("smollm2-135m"))
    vocab = Vocab.from_gguf(good)
    weights = random_weights(TinyConfig(n_vocab=len(vocab.tokens), n_layer=4), seed=1)
    tiny = write_gguf(weights, folder / "tiny-bpe.gguf", vocab=vocab)
    small = random_weights(TinyConfig(), seed=0)
    return (
        good,
        write_gguf(small, folder / "tiny-baichuan.gguf", arch="baichuan"),
        write_gguf(small, folder / "tiny-unknown.gguf", arch="painterz"),
        tiny,
    )


def main() -> int:
    from painters_gguf.paths import data_dir

    data = data_dir() if os.environ.get("PAINTERS_GGUF_DATA") else HERE.parent.parent / "shared" / "data"
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_all(*fixtures(Path(tmp)), data)
    print_summary(outcomes)
    return 0 if all(o.crashes == 0 and o.lost == 0 and o.expected == o.tried for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

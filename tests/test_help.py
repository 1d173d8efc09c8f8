"""What a new user reads first: every command's --help at 80 columns (nothing cut, no <bool>
placeholders, markup printed as written, examples that parse), `models list` at 80 columns, and
lm-eval's fractional --limit."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
from test_docs import CLI, usage_problems

from painters_gguf.cli.app import app
from painters_gguf.cli.examples import EXAMPLES
from painters_gguf.models import CATALOG


def command_paths() -> list[tuple[str, ...]]:
    """Every command of the app, as the words that name it (lm-eval's help is lm-eval's own)."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = [()]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        if name == "lm-eval":
            continue
        subcommands = getattr(command, "commands", None)
        paths += [(name, sub) for sub in subcommands] if subcommands else [(name,)]
    return paths


def at_80_columns(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120)


def test_every_command_has_examples() -> None:
    assert {" ".join(path) for path in command_paths()} == set(EXAMPLES)


@pytest.mark.parametrize("path", command_paths(), ids=lambda path: " ".join(path) or "painters-gguf")
def test_help_at_80_columns(path: tuple[str, ...]) -> None:
    result = at_80_columns(*path, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "<bool>" not in text and "…" not in text  # no placeholder for a flag; no word cut short
    assert max(map(len, text.splitlines())) <= 80
    examples = text.split("Examples:\n", 1)[1].splitlines()
    assert [line.strip() for line in examples if line.strip()] == list(EXAMPLES[" ".join(path)])
    for example in EXAMPLES[" ".join(path)]:
        argv = tuple(shlex.split(example)[1:])
        assert usage_problems(argv) == [], example


def test_help_keeps_brackets_and_quotes_as_written() -> None:
    """rich markup ate `[ray]` from `pip install 'painters-gguf[ray]'`."""
    text = " ".join(at_80_columns("sweep", "--help").stdout.split())
    assert "pip install 'painters-gguf[ray]'" in text.replace("painters- gguf", "painters-gguf")


def test_models_list_at_80_columns_keeps_names_whole_and_says_what_each_is() -> None:
    result = at_80_columns("models", "list")
    assert result.returncode == 0, result.stderr
    cells = {line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")}
    for model in CATALOG:
        assert model.name in cells or f"{model.name} (default)" in cells, model.name
    assert "Qwen2.5-Coder-0.5B-Instruct" in result.stdout and "…" not in result.stdout


@pytest.mark.parametrize(("limit", "expected"), [(0.01, 24), (0.5, 1188), (3, 3), (None, 2376)])
def test_limit_takes_a_fraction_as_lm_eval(limit: float | None, expected: int) -> None:
    """ARC-Easy's test split holds 2376 documents: 0.01 of them rounded up is 24 (lm-eval: ceil);
    mmlu takes the fraction of each subject."""
    from painters_gguf.tasks import TASKS

    assert len(TASKS["arc_easy"].limit_indices([{}] * 2376, limit)) == expected
    subjects = [{"subject": "a"}] * 10 + [{"subject": "b"}] * 3
    taken = [subjects[i]["subject"] for i in TASKS["mmlu"].limit_indices(subjects, 0.5)]
    assert (taken.count("a"), taken.count("b")) == (5, 2)


def test_eval_with_a_fractional_limit(tiny_bpe_model, shared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "PAINTERS_GGUF_DATA": str(shared_data)}
    args = [
        "--db",
        str(tmp_path / "r.db"),
        "eval",
        "-m",
        str(tiny_bpe_model.path),
        "--tasks",
        "arc_easy",
        "--limit",
        "0.001",
        "--plan",
        "skip",
    ]
    result = subprocess.run([str(CLI), *args, "-t", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "6 documents to score" in result.stderr  # ceil(2376 x 0.001) = 3, for the plan and the full model


@pytest.mark.parametrize("limit", ["0", "-1", "2.5", "nan"])
def test_limit_refuses_what_is_neither_a_count_nor_a_fraction(limit: str) -> None:
    result = at_80_columns("eval", "--limit", limit, "--tasks", "arc_easy")
    assert result.returncode == 2 and "--limit" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("make", "message"), [("folder", "is a directory"), ("garbage", "file is not a database")])
def test_store_refuses_what_is_not_a_store(make: str, message: str, tmp_path: Path) -> None:
    target = tmp_path / "x.db"
    if make == "folder":
        target.mkdir()
    else:
        target.write_text("not a database")
    result = at_80_columns("store", "--db", str(target))
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert make == "folder" or target.read_text() == "not a database"

"""The package against the library it finds: a stock llama_cpp gives one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_stock_library_gives_one_clear_error(stock_lib_dir: Path) -> None:
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(stock_lib_dir))
    result = subprocess.run(
        [sys.executable, "-c", "import painters_gguf; from painters_gguf import Model"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("painters_gguf.errors.RuntimeMissingError: the llama_cpp library at ")
    assert "stock build without layer plans: run `python patches/build_wheel.py`" in last


def test_cli_with_stock_library_is_one_line(stock_lib_dir: Path, tiny_gguf: Path) -> None:
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(stock_lib_dir))
    cli = Path(sys.executable).with_name("painters-gguf")
    result = subprocess.run([str(cli), "plan", "skip", "--model", str(tiny_gguf)], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "stock build without layer plans" in result.stderr


def test_plan_importable_without_the_runtime(stock_lib_dir: Path) -> None:
    """Plans are plain data: parsing needs no llama_cpp at all."""
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=str(stock_lib_dir))
    code = "from painters_gguf import Plan; print(Plan.parse('0-3,{4-27}x3,28-29').n_slots)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "78"


def test_every_subpackage_is_packaged() -> None:
    """pyproject's package list names every folder with an __init__.py, where it installs
    (a wheel built from a shorter list lacks it: `eval` failed without painters_gguf.tasks)."""
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"painters_gguf": repo / "painters_gguf", **{name: repo / path for name, path in config["package-dir"].items()}}
    found = set()
    for root_name, root in folders.items():
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((root_name, *parts)))
    assert found == set(config["packages"])


def test_cli_without_llama_cpp_python(tmp_path: Path, tiny_gguf: Path) -> None:
    """With no llama_cpp importable (a module of that name that fails to import stands first on the
    path), --version and --help work, and every command that needs llama.cpp fails in one line."""
    (tmp_path / "llama_cpp.py").write_text("raise ImportError(\"No module named 'llama_cpp'\")\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    cli = str(Path(sys.executable).with_name("painters-gguf"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], env=env, capture_output=True, text=True, timeout=120)

    assert run("--version").stdout.startswith("painters-gguf ")
    for args in (["--help"], ["eval", "--help"], ["sweep", "--help"], ["export", "--help"]):
        shown = run(*args)
        assert shown.returncode == 0 and "Usage:" in shown.stdout, (args, shown.stderr)
    db = str(tmp_path / "r.db")
    model = str(tiny_gguf)
    for args in (
        ["eval", "-m", model, "--limit", "1"],
        ["sweep", "-m", model, "--variant", "skip", "--limit", "1"],
        ["report", "-m", model],
        ["plan", "skip", "-m", model],
        ["models", "list"],
        ["export", "0-1", "-m", model, "-o", str(tmp_path / "x.gguf")],
        ["similarity", "-m", model],
        ["search", "-m", model, "--budget", "0.5"],
    ):
        result = run("--db", db, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.stderr.strip().splitlines() == [
            "error: llama_cpp (the patched llama-cpp-python) is not usable here (No module named 'llama_cpp'): "
            "run `python patches/build_wheel.py`"
        ], args
    assert list(tmp_path.iterdir()) == [tmp_path / "llama_cpp.py"]  # nothing written


def test_every_module_imports_on_its_own() -> None:
    """Each library module in a fresh interpreter: an import cycle that the order of a test run
    hides (engine/__init__ and evaluate) shows here."""
    import pkgutil

    import painters_gguf

    names = [m.name for m in pkgutil.walk_packages(painters_gguf.__path__, "painters_gguf.")]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    for name in names:  # one interpreter each: what is imported first decides whether a cycle breaks
        result = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr.strip().splitlines()[-1:]}"

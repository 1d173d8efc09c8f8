"""patches/make_patch.py: the recipe's tree round-trips to the committed patch, and an edit shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAKE_PATCH = REPO / "patches" / "make_patch.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAKE_PATCH), *args], capture_output=True, text=True)


def test_init_gives_the_committed_patch_and_an_edit_makes_it_out_of_date(tmp_path: Path) -> None:
    init = run("--init", str(tmp_path))
    assert init.returncode == 0, init.stderr
    tree = tmp_path / "llama_cpp_python-0.3.36"
    block = tree / "vendor" / "llama.cpp" / "src" / "models" / "qwen3.cpp"
    assert "build_layer_stack(inpL, inp_out_ids, block)" in block.read_text()  # the patch is applied

    check = run(str(tree), "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout

    block.write_text(block.read_text().replace("// norm", "// the attention norm", 1))
    check = run(str(tree), "--check")
    assert check.returncode == 1 and "out of date" in check.stdout


def test_init_refuses_an_existing_tree(tmp_path: Path) -> None:
    (tmp_path / "llama_cpp_python-0.3.36").mkdir()
    result = run("--init", str(tmp_path))
    assert result.returncode == 2 and "exists" in result.stderr


def test_a_folder_that_is_no_source_tree_is_refused(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.returncode == 2 and "is not a llama_cpp_python-0.3.36 source tree" in result.stderr

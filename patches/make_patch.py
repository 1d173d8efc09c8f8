#!/usr/bin/env python3
"""Regenerate our llama.cpp patch from an edited source tree.

    python patches/make_patch.py --init DIR     # DIR/llama_cpp_python-<version>: the sdist, patched
    python patches/make_patch.py TREE           # TREE: that tree, edited: rewrite the patch file
    python patches/make_patch.py TREE --check   # exit 1 if the patch file is not TREE's diff

`--init` unpacks the pinned sdist (downloaded and checked as build_wheel.py does) and applies the
current patch and the generated graphs (blockify.py), giving a tree to edit. Without it, the script
unpacks the pristine sdist to a temporary folder and writes the unified diff of TREE's
`vendor/llama.cpp` over the patch file, less the files blockify.py generates.
Standard library, `diff` and `patch` only.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blockify import generated_patch, listed
from build_wheel import PATCH, VERSION, cache_root, fail, fetch_sdist, full_patch

VENDOR = "vendor/llama.cpp"
# never part of the patch: version control, editor and build leftovers
EXCLUDE = [".git", "build", "*.orig", "*.rej", "*~", "__pycache__"]


def tree_diff(pristine: Path, edited: Path) -> bytes:
    """`diff -ruN` of the vendored llama.cpp, with a/ and b/ paths for `patch -p1`."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").symlink_to(pristine)
        (Path(tmp) / "b").symlink_to(edited)
        excludes = [f"--exclude={pattern}" for pattern in EXCLUDE]
        result = subprocess.run(["diff", "-ruN", *excludes, f"a/{VENDOR}", f"b/{VENDOR}"], cwd=tmp, capture_output=True)
    if result.returncode not in (0, 1):  # 1: the trees differ
        fail(f"diff failed: {result.stderr.decode(errors='replace').strip()}")
    return b"".join(_stable(line) for line in result.stdout.splitlines(keepends=True))


def without_generated(patch: bytes, generated: bytes) -> bytes:
    """The diff without the files blockify.py generates (their graphs and the covered list's .inc)."""
    paths = set(re.findall(rb"^diff -ruN a/(\S+) ", generated, flags=re.MULTILINE))
    sections = re.split(rb"(?m)^(?=diff -ruN )", patch)
    return b"".join(s for s in sections if not (m := re.match(rb"diff -ruN a/(\S+) ", s)) or m.group(1) not in paths)


def _stable(line: bytes) -> bytes:
    """A diff line without what changes from run to run: file times, the exclude options."""
    if line.startswith((b"--- ", b"+++ ")) and b"\t" in line:
        return line.split(b"\t", 1)[0] + b"\n"
    if line.startswith(b"diff -ruN "):
        return b"diff -ruN " + b" ".join(word for word in line.split()[2:] if not word.startswith(b"'--exclude")) + b"\n"
    return line


def init_tree(folder: Path) -> None:
    """Unpack the pinned sdist into folder and apply the current patch."""
    tree = folder / f"llama_cpp_python-{VERSION}"
    if tree.exists():
        fail(f"{tree} exists: edit it, or remove it for a fresh tree")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fetch_sdist(cache_root())) as tar:
        tar.extractall(folder, filter="data")
    result = subprocess.run(
        ["patch", "-p1", "--batch", "--forward", "--silent"],
        cwd=tree,
        input=full_patch(fetch_sdist(cache_root())),
        capture_output=True,
    )
    if result.returncode != 0:
        fail(f"the patch did not apply in {tree}: {(result.stdout + result.stderr).decode(errors='replace').strip()}")
    print(
        f"make_patch: {tree} holds the sdist with {PATCH.name} and the generated graphs applied; edit {tree / VENDOR}, then run"
    )
    print(f"    python patches/make_patch.py {tree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "tree", type=Path, help=f"the edited llama_cpp_python-{VERSION} source tree (with --init: a folder for it)"
    )
    parser.add_argument("--init", action="store_true", help="unpack the sdist into TREE and apply the current patch")
    parser.add_argument("--check", action="store_true", help="exit 1 if the patch file differs from the tree's diff")
    options = parser.parse_args()
    for tool in ("diff", "patch"):
        if shutil.which(tool) is None:
            fail(f"'{tool}' is not installed (Debian: apt-get install {tool if tool == 'patch' else 'diffutils'})")
    if options.init:
        init_tree(options.tree.resolve())
        return
    edited = options.tree.resolve()
    if not (edited / VENDOR / "src" / "llama.cpp").is_file():
        fail(f"{edited} is not a llama_cpp_python-{VERSION} source tree (no {VENDOR}/src/llama.cpp)")
    sdist = fetch_sdist(cache_root())
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"llama_cpp_python-{VERSION}/{VENDOR}/")]
            tar.extractall(tmp, members, filter="data")
        patch = without_generated(tree_diff(Path(tmp) / f"llama_cpp_python-{VERSION}", edited), generated_patch(sdist, listed()))

    if not patch:
        fail(f"{edited} does not differ from the pristine sdist")
    if options.check:
        current = PATCH.read_bytes() if PATCH.exists() else b""
        print(f"make_patch: {PATCH.name} is {'up to date' if current == patch else 'out of date'}")
        sys.exit(0 if current == patch else 1)
    PATCH.write_bytes(patch)
    n_files = patch.count(b"\ndiff -ruN ") + patch.startswith(b"diff -ruN ")
    print(f"make_patch: wrote {PATCH} ({n_files} files, {len(patch.splitlines())} lines)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Build, cache and install llama-cpp-python with our layer-plan patch.

    python patches/build_wheel.py                    # CPU build into the current Python
    CMAKE_ARGS="-DGGML_CUDA=on" python patches/build_wheel.py
    python patches/build_wheel.py --stock --lib-dir  # unpatched library, for reference tests

The pinned sdist comes from the package registry and is checked against its sha256. Wheels are
cached outside the checkout, keyed by version, patch hash, build flags and machine; a second
run with the same key installs from the cache in seconds. One source tree and CMake build
directory per set of build flags are kept, and switching between the stock and the patched
source re-applies only the patch, so the rebuild touches only the patched files (libllama).

Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
PATCH = Path(__file__).resolve().parent / f"llama-cpp-python-{VERSION}-layer-plan.patch"
# what every build gets: skip the multimodal library we do not use
FIXED_CMAKE_ARGS = ["-DLLAVA_BUILD=OFF"]
# x86-64: no AMX kernels, even where -march=native would enable them (an explicit -mno-* wins over
# -march in GCC and Clang): ggml's AMX matmul segfaults on Q4_1 weights (SmolLM2) on Xeons with AMX
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
X86_CMAKE_ARGS = [f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"]


def cache_root() -> Path:
    if "PAINTERS_GGUF_CACHE" in os.environ:
        return Path(os.environ["PAINTERS_GGUF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "painters-gguf"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cmake_args() -> list[str]:
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return shlex.split(os.environ.get("CMAKE_ARGS", "")) + FIXED_CMAKE_ARGS + (X86_CMAKE_ARGS if x86 else [])


def flags_key(args: list[str]) -> str:
    return sha256_of(" ".join(args).encode())[:12]


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def fail(message: str) -> None:
    print(f"build_wheel: {message}", file=sys.stderr)
    sys.exit(2)


def fetch_sdist(root: Path) -> Path:
    """The pinned sdist from the registry, downloaded once and checked."""
    sdist = root / "sdist" / f"llama_cpp_python-{VERSION}.tar.gz"
    if not sdist.exists():
        with tempfile.TemporaryDirectory() as tmp:
            run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp, f"{PACKAGE}=={VERSION}"]
            )
            found = list(Path(tmp).glob("*.tar.gz"))
            if len(found) != 1:
                fail(f"expected one sdist from pip download, found {[f.name for f in found]}")
            sdist.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(found[0]), sdist)
    actual = file_sha256(sdist)
    if actual != SDIST_SHA256:
        sdist.unlink()
        fail(f"{sdist.name}: sha256 {actual}, expected {SDIST_SHA256}; deleted it, run again to re-download")
    return sdist


def full_patch(sdist: Path) -> bytes:
    """Our patch file, then the graphs of the families blockify.py generates (blockified-families.txt)."""
    from blockify import generated_patch, listed

    return PATCH.read_bytes() + generated_patch(sdist, listed())


class SourceTree:
    """An unpacked sdist kept with its CMake build directory; the applied patch is recorded."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = root / "build" / key
        self.src = self.dir / f"llama_cpp_python-{VERSION}"
        self.applied = self.dir / "applied.patch"

    def prepare(self, sdist: Path, patch: bytes | None) -> None:
        if not self.src.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            with tarfile.open(sdist) as tar:
                tar.extractall(self.dir, filter="data")
            self.applied.unlink(missing_ok=True)
        current = self.applied.read_bytes() if self.applied.exists() else None
        if current == patch:
            return
        if current is not None:
            self._patch(current, reverse=True)
            self.applied.unlink()
        if patch is not None:
            self._patch(patch, reverse=False)
            self.applied.write_bytes(patch)

    def _patch(self, patch: bytes, *, reverse: bool) -> None:
        cmd = ["patch", "-p1", "--batch", "--forward", "--silent"] + (["--reverse"] if reverse else [])
        result = subprocess.run(cmd, cwd=self.src, input=patch, capture_output=True)
        if result.returncode != 0:
            shutil.rmtree(self.dir)
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            fail(f"the patch did not apply ({output}); removed {self.dir}, run again for a clean tree")


def source_tree(root: Path, args: list[str]) -> SourceTree:
    """The source tree and CMake build directory kept for one set of build flags."""
    return SourceTree(root, f"{VERSION}-{flags_key(args)}-{platform.machine()}")


def build(root: Path, stock: bool, cached_only: bool) -> Path:
    """The cached wheel for this key, built if missing."""
    args = cmake_args()
    patch = None if stock else full_patch(fetch_sdist(root))
    variant = "stock" if stock else f"patch-{sha256_of(patch or b'')[:12]}"
    key = f"{VERSION}-{variant}-{flags_key(args)}-{platform.machine()}"
    out = root / "wheels" / key
    wheels = sorted(out.glob("*.whl"))
    if wheels:
        print(f"build_wheel: cached {wheels[0]}")
        return wheels[0]
    if cached_only:
        fail(f"no cached wheel {key} in {root / 'wheels'}")

    tree = source_tree(root, args)
    tree.prepare(fetch_sdist(root), patch)
    env = dict(os.environ, CMAKE_ARGS=shlex.join(args))
    with tempfile.TemporaryDirectory() as tmp:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(tree.src),
                "--no-deps",
                "-w",
                tmp,
                "-C",
                f"build-dir={tree.dir / 'cmake'}",
            ],
            env=env,
        )
        built = list(Path(tmp).glob("*.whl"))
        out.mkdir(parents=True, exist_ok=True)
        wheel = out / built[0].name
        shutil.move(str(built[0]), wheel)
    (out / "build-flags.txt").write_text(shlex.join(args) + "\n")
    return wheel


def lib_dir(wheel: Path) -> Path:
    """The wheel's shared libraries unpacked beside it (for LLAMA_CPP_LIB_PATH)."""
    target = wheel.parent / "lib"
    if not target.exists():
        with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory(dir=wheel.parent) as tmp:
            members = [m for m in zf.namelist() if m.startswith("llama_cpp/lib/")]
            zf.extractall(tmp, members)
            os.rename(Path(tmp) / "llama_cpp" / "lib", target)
    return target


def install(wheel: Path) -> None:
    run([sys.executable, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)])
    run([sys.executable, "-m", "pip", "install", "--quiet", str(wheel)])  # its dependencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stock", action="store_true", help="build without the patch (reference library)")
    parser.add_argument("--lib-dir", action="store_true", help="print the folder of the built shared libraries; do not install")
    parser.add_argument("--no-install", action="store_true", help="build or find the wheel, do not install it")
    parser.add_argument("--cached-only", action="store_true", help="fail instead of building when the wheel is not cached")
    options = parser.parse_args()
    for tool in ("patch",):
        if shutil.which(tool) is None:
            fail(f"'{tool}' is not installed (Debian: apt-get install {tool})")

    wheel = build(cache_root(), options.stock, options.cached_only)
    if options.lib_dir:
        print(lib_dir(wheel))
    elif not options.no_install:
        install(wheel)
        print(f"build_wheel: installed {wheel}")


if __name__ == "__main__":
    main()

"""Check a model file before llama.cpp sees it: a GGUF is data from strangers.

First cheap checks in Python (exists, a regular file, the GGUF magic and version); then the file
is opened once by llama.cpp in a child process (metadata, tensor table and tensor bounds, no
weights), so that a file which would make llama.cpp abort takes down the child, not us. A file
that passed is remembered (`file_facts`) with the llama.cpp library that read it: unchanged, and
read by the same library, it is not probed again.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

from painters_gguf import file_facts
from painters_gguf.errors import PaintersError

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
PROBE_TIMEOUT_S = 120

_PROBE = """
import sys
from painters_gguf.errors import PaintersError
try:
    from painters_gguf.runtime import Model
    model = Model(sys.argv[1], vocab_only=True)
    print(model.arch)
except PaintersError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""


def check_header(path: Path) -> None:
    if not path.exists():
        raise PaintersError(f"{path}: no such file")
    if path.is_dir():
        raise PaintersError(f"{path}: is a directory, not a .gguf file")
    if not path.is_file():
        raise PaintersError(f"{path}: not a regular file")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as err:
        raise PaintersError(f"{path}: cannot be read ({err.strerror})") from None
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise PaintersError(f"{path}: not a GGUF file (it does not start with the GGUF magic)")
    (version,) = struct.unpack("<I", head[4:8])
    if version not in GGUF_VERSIONS:
        raise PaintersError(f"{path}: GGUF version {version}, expected one of {', '.join(map(str, GGUF_VERSIONS))}")


def check_model_file(path: Path) -> str:
    """Raise PaintersError naming the file and the problem; return the architecture."""
    check_header(path)
    library = _library()
    known = file_facts.recall(path)
    if known.get("probed_by") == library and isinstance(known.get("arch"), str):
        return str(known["arch"])
    arch = _probe(path)
    file_facts.remember(path, probed_by=library, arch=arch)
    return arch


def _library() -> str:
    """The llama.cpp library llama_cpp will load: its files' sizes and modification times."""
    folder = os.environ.get("LLAMA_CPP_LIB_PATH")
    if folder is None:
        spec = importlib.util.find_spec("llama_cpp")
        folder = str(Path(spec.origin).parent / "lib") if spec is not None and spec.origin else ""
    try:
        found = sorted(Path(folder).glob("lib*.so*")) if folder else []
        return ";".join(f"{lib}:{lib.stat().st_size}:{lib.stat().st_mtime_ns}" for lib in found)
    except OSError:
        return ""


def _probe(path: Path) -> str:
    """llama.cpp reads the file's metadata in a child process; returns the architecture."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, os.fspath(path)], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise PaintersError(f"{path}: llama.cpp did not finish reading its metadata in {PROBE_TIMEOUT_S} s") from None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise PaintersError(f"{path}: corrupted: llama.cpp crashed reading it ({name})")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise PaintersError(lines[-1] if lines[-1].startswith(str(path)) else f"{path}: {lines[-1]}")
    return result.stdout.strip()

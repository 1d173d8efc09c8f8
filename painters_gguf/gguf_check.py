"""Check a model file before llama.cpp sees it: a GGUF is data from strangers.

First cheap checks in Python (exists, a regular file, the GGUF magic and version); then the file
is opened once by llama.cpp in a child process (metadata, tensor table and tensor bounds, no
weights), so that a file which would make llama.cpp abort takes down the child, not us. A file
that passed is remembered (`model-checks.json` at home) with its size, modification time and
inode and the llama.cpp library that read it: unchanged, it is not probed again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

from painters_gguf import outputs, paths
from painters_gguf.errors import PaintersError

GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
PROBE_TIMEOUT_S = 120
CHECKS_FILE = "model-checks.json"  # at home: the files that passed the probe
MAX_REMEMBERED = 256

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
    key, stamp = os.path.realpath(path), _stamp(path)
    remembered = _remembered()
    if remembered.get(key, {}).get("stamp") == stamp:
        return str(remembered[key].get("arch", ""))
    arch = _probe(path)
    remembered.pop(key, None)
    remembered[key] = {"stamp": stamp, "arch": arch}  # the newest last: the oldest are forgotten first
    _remember(dict(list(remembered.items())[-MAX_REMEMBERED:]))
    return arch


def _stamp(path: Path) -> list[object]:
    """What a probe's outcome depends on: the file as it is now and the library that reads it."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, _library()]


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


def _remembered() -> dict[str, dict]:
    try:
        data = json.loads((paths.home() / CHECKS_FILE).read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: every file is probed again
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _remember(checks: dict[str, dict]) -> None:
    """Kept at home; a home that cannot be written only costs a probe next time."""
    try:
        paths.home().mkdir(parents=True, exist_ok=True)
        with outputs.replaced(paths.home() / CHECKS_FILE) as part:
            part.write_text(json.dumps(checks))
    except OSError:
        pass


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

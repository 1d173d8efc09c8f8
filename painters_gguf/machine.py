"""Which machine scored a document. llama.cpp's numbers on quantized models differ slightly from
one CPU to another (per-document log-likelihoods by ~0.1 nats), so every stored document names
the machine and library build that scored it."""

from __future__ import annotations

import functools
import hashlib
import platform
import socket
from pathlib import Path

from painters_gguf.bindings import C, lib, llama_cpp
from painters_gguf.memory import backend_devices


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _libraries_sha256() -> str:
    """One sha256 over the shared libraries beside the loaded libllama (libllama, libggml and its
    backends, in name order): the exact build, patch and flags included."""
    folder = Path(getattr(lib, "_name", "")).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("lib*.so*")) + sorted(folder.glob("*.dll")) + sorted(folder.glob("lib*.dylib")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def describe() -> dict[str, str]:
    """This machine as it bears on the numbers: host, CPU model and the instruction sets llama.cpp
    uses, GPUs, and the library build (llama.cpp's shared libraries)."""
    gpus = [device.name for device in backend_devices() if device.kind in ("gpu", "igpu")]
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "features": C.llama_print_system_info().decode("utf-8", "replace").strip(),
        "gpus": ", ".join(gpus) or "none",
        "library": f"llama-cpp-python {llama_cpp.__version__}, libraries sha256 {_libraries_sha256()[:16]}",
    }

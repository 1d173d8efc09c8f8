"""How much memory a new KV cache may take (the system's, a GPU's), and sizes for people."""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os

from painters_gguf.errors import PaintersError


def human_bytes(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


def memory_limit(*, system: bool = True) -> int | None:
    """Bytes a new KV cache may take: $PAINTERS_GGUF_MEMORY_LIMIT (e.g. 8G, 512M, or bytes), else,
    with `system`, the memory the kernel reports available; None where neither is known."""
    text = os.environ.get("PAINTERS_GGUF_MEMORY_LIMIT", "").strip()
    if text:
        return parse_size(text, "PAINTERS_GGUF_MEMORY_LIMIT")
    if not system:
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str, name: str) -> int:
    """'8G', '512M', '1.5G' or a number of bytes: a positive, finite size."""
    number, unit = (text[:-1], UNITS[text[-1].upper()]) if text[-1:].upper() in UNITS else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 1 <= value < 2**63):
        raise PaintersError(f"{name}={text!r}: write a positive size like 8G, 512M or a number of bytes")
    return int(value)


# --- GPU memory, through ggml's backend device API ---

# enum ggml_backend_dev_type (ggml-backend.h), in order: "gpu" has memory of its own, "igpu" shares
# the host's, "accel" works beside the CPU (BLAS, AMX)
DEVICE_KINDS = ("cpu", "gpu", "igpu", "accel")


@dataclasses.dataclass(frozen=True)
class Device:
    """A device of ggml's backends and its memory in bytes, as its backend reports it now."""

    name: str
    kind: str  # one of DEVICE_KINDS
    free: int
    total: int


def backend_devices() -> list[Device]:
    """The devices ggml's backends see (on a CPU build, the CPU alone), with their memory now."""
    from painters_gguf.bindings import ggml as lib  # imported here: sizes and limits need no llama.cpp

    devices = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        name = lib.ggml_backend_dev_name(device).decode("utf-8", "replace")
        devices.append(Device(name, DEVICE_KINDS[lib.ggml_backend_dev_type(device)], free.value, total.value))
    return devices


def gpu_free_memory() -> int | None:
    """Free bytes over the GPUs with memory of their own that ggml sees (CUDA devices, where the
    KV cache of offloaded layers lives); None where there are none."""
    free = [device.free for device in backend_devices() if device.kind == "gpu"]
    return sum(free) if free else None


def offloaded_slots(n_slots: int, n_layer: int, n_gpu_layers: int) -> int:
    """How many of `n_slots` KV slots llama.cpp puts on the GPU: a slot lives with its layer, and
    n_gpu_layers=k offloads the output layer and the last k-1 blocks (-1: all of them). A plan's
    slots are taken to split between GPU and host as the model's blocks do (rounded up)."""
    blocks = n_layer if n_gpu_layers < 0 else max(0, min(n_layer, n_gpu_layers - 1))
    if blocks == n_layer:
        return n_slots
    return -(-n_slots * blocks // n_layer)  # ceiling division

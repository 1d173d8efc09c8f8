"""How much memory a new KV cache may take, and sizes for people."""

from __future__ import annotations

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

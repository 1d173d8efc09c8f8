"""How much memory a new KV cache may take, and sizes for people."""

from __future__ import annotations

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


def memory_limit() -> int | None:
    """Bytes a new KV cache may take: $PAINTERS_GGUF_MEMORY_LIMIT (e.g. 8G, 512M), else the
    memory the kernel reports available; None where neither is known."""
    text = os.environ.get("PAINTERS_GGUF_MEMORY_LIMIT")
    if text:
        units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        try:
            return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)
        except ValueError:
            raise PaintersError(f"PAINTERS_GGUF_MEMORY_LIMIT={text!r}: write bytes or a size like 8G") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None

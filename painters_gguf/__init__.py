"""painters-gguf: Transformer Layers as Painters on quantized GGUF models through llama.cpp."""

from __future__ import annotations

from typing import TYPE_CHECKING

from painters_gguf.errors import PaintersError, PlanError, RuntimeMissingError
from painters_gguf.plan import Plan, Step

if TYPE_CHECKING:
    from painters_gguf.runtime import Context, Model

__all__ = ["Context", "Model", "PaintersError", "Plan", "PlanError", "RuntimeMissingError", "Step"]
__version__ = "0.1.0"


def __getattr__(name: str) -> type:
    # the runtime needs the patched llama_cpp: import it only when it is asked for
    if name in ("Model", "Context"):
        from painters_gguf import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'painters_gguf' has no attribute {name!r}")

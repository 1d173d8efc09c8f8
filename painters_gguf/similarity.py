"""Fig. 3: how alike the hidden states of every pair of layers are.

As the authors computed it: per document, each hidden state [tokens x hidden] is flattened to
one vector; the cosine similarity of every pair of states is taken; the matrices are averaged
over documents. The states are the embedding output and each step's output (each layer's, for
the full model), captured with the eval callback while the model runs under a plan: our patch
names them `plan_inp` and `plan_out-<step>`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence

import numpy as np
from llama_cpp import _ggml
from llama_cpp import llama_cpp as C

from painters_gguf import variants
from painters_gguf.plan import Plan
from painters_gguf.runtime import Context

_ggml.libggml.ggml_get_name.argtypes = [ctypes.c_void_p]
_ggml.libggml.ggml_get_name.restype = ctypes.c_char_p
_ggml.libggml.ggml_nbytes.argtypes = [ctypes.c_void_p]
_ggml.libggml.ggml_nbytes.restype = ctypes.c_size_t
_ggml.libggml.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
_ggml.libggml.ggml_backend_tensor_get.restype = None


class HiddenStates:
    """Collects the named hidden states of one pass, in graph order."""

    def __init__(self, n_embd: int) -> None:
        self.n_embd = n_embd
        self.states: dict[str, np.ndarray] = {}
        self.callback = C.ggml_backend_sched_eval_callback(self._on_tensor)  # alive while set

    @staticmethod
    def wanted(name: str) -> bool:
        return name == "plan_inp" or name.startswith("plan_out-")

    def _on_tensor(self, tensor: int, ask: bool, _user_data: ctypes.c_void_p) -> bool:
        name = (_ggml.libggml.ggml_get_name(tensor) or b"").decode()
        if ask:
            return self.wanted(name)
        if self.wanted(name):
            nbytes = _ggml.libggml.ggml_nbytes(tensor)
            data = np.empty(nbytes // 4, dtype=np.float32)
            _ggml.libggml.ggml_backend_tensor_get(tensor, data.ctypes.data, 0, nbytes)
            previous = self.states.get(name)
            rows = data.reshape(-1, self.n_embd)  # (tokens in this ubatch, n_embd)
            self.states[name] = rows if previous is None else np.concatenate([previous, rows])
        return True

    def ordered(self, n_steps: int) -> list[np.ndarray]:
        return [self.states["plan_inp"], *(self.states[f"plan_out-{s}"] for s in range(n_steps))]


def capture(ctx: Context, plan: Plan, tokens: Sequence[int]) -> list[np.ndarray]:
    """The embedding output and each step's output for one document: (n_steps + 1) x (tokens, n_embd)."""
    hidden = HiddenStates(ctx.model.n_embd)
    ctx.set_plan(plan)  # the identity plan for the full model: bit for bit the default graph
    ctx.set_eval_callback(hidden.callback)
    try:
        ctx.logits(tokens)  # every position is an output, so no rows are dropped in the last step
    finally:
        ctx.set_eval_callback(None)
    return hidden.ordered(plan.n_steps)


def cosine_matrix(states: Sequence[np.ndarray]) -> np.ndarray:
    """Cosine similarity of every pair of flattened states."""
    flat = np.stack([s.astype(np.float64).ravel() for s in states])
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return flat @ flat.T


def mean_similarity(
    ctx: Context,
    plan: Plan | None,
    documents: Sequence[Sequence[int]],
    progress: Callable[[int], None] = lambda n: None,
) -> np.ndarray:
    """The document-averaged cosine-similarity matrix of the plan's hidden states."""
    plan = plan or variants.full(ctx.model.n_layer)
    total = np.zeros((plan.n_steps + 1, plan.n_steps + 1))
    for tokens in documents:
        total += cosine_matrix(capture(ctx, plan, tokens))
        progress(1)
    return total / len(documents)

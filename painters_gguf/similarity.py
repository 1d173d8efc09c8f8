"""Fig. 3: how alike the hidden states of every pair of layers are.

As the authors computed it: per document, each hidden state [tokens x hidden] is flattened to
one vector; the cosine similarity of every pair of states is taken; the matrices are averaged
over documents. The states are the embedding output and each step's output (each layer's, for
the full model), captured with the eval callback while the model runs under a plan (`hidden_states`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from painters_gguf import variants
from painters_gguf.engine.hidden_states import HiddenStates
from painters_gguf.plan import Plan
from painters_gguf.runtime import Context


def capture(ctx: Context, plan: Plan, tokens: Sequence[int]) -> list[np.ndarray]:
    """The embedding output and each step's output for one document: (n_steps + 1) x (tokens, n_embd)."""
    hidden = HiddenStates(ctx.model.n_embd)
    ctx.set_plan(plan)  # the identity plan for the full model: bit for bit the default graph
    ctx.set_eval_callback(hidden.observe)
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
